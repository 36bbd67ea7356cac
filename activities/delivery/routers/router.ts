import type { RouterType, WeightChange } from '../../../common/delivery/types.js';

/**
 * Moves a percentage of traffic between a stable and a canary backend. Blue/green
 * uses the same interface: blue is the stable backend (weight 0), green the canary
 * backend (weight 100).
 */
export interface TrafficRouter {
  readonly type: RouterType;
  /** Where the two backends are, for display. */
  describe(): { stable: string; canary: string };
  /** What setWeight would run, for dry runs. */
  plan(weight: number): string[];
  /** The canary percentage now in effect, or null when it cannot be told (no file yet, no getWeight command). */
  currentWeight(): Promise<number | null>;
  /** Idempotent: a weight already in effect changes nothing. */
  setWeight(weight: number): Promise<WeightChange>;
}

export function checkWeight(weight: number): void {
  if (!Number.isInteger(weight) || weight < 0 || weight > 100) throw new RangeError(`weight must be an integer 0..100, got ${weight}`);
}
