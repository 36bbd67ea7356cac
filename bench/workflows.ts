import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';

export interface BenchActivities {
  step(i: number): Promise<number>;
}

const { step } = proxyActivities<BenchActivities>({ startToCloseTimeout: '10 seconds' });
const local = proxyLocalActivities<BenchActivities>({ startToCloseTimeout: '10 seconds' });

/** N sequential activity steps: what a runbook's orchestration costs per step. */
export async function sequentialSteps(n: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += await step(i);
  return sum;
}

/** The same N steps as local activities: run by the worker within the workflow task, no server round trip each. */
export async function sequentialLocalSteps(n: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += await local.step(i);
  return sum;
}
