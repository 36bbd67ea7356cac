import { proxyActivities } from '@temporalio/workflow';

export interface BenchActivities {
  step(i: number): Promise<number>;
}

const { step } = proxyActivities<BenchActivities>({ startToCloseTimeout: '10 seconds' });

/** N sequential activity steps: what a runbook's orchestration costs per step. */
export async function sequentialSteps(n: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += await step(i);
  return sum;
}
