import { beforeAll, describe, expect, it } from 'vitest';
import { perRunEvaluation, WORKFLOW_BUNDLE_BUDGET_BYTES, WORKFLOW_BUNDLE_PACKAGES, workflowBundleReport, type WorkflowBundleReport } from '../../lib/temporal/workflow-bundle.js';
import { bundleRunbookWorkflows } from '../../worker/main.js';
import { quietBundlerLogger } from '../fixtures/runbook-worker.js';

/**
 * The bundle the worker evaluates for every run it starts: heavy modules stay out of it. A
 * value import of a schema module (zod) or of activity code fails here, before it costs CPU.
 */
describe('the workers’ workflow bundle', () => {
  let report: WorkflowBundleReport;
  let code: string;
  beforeAll(async () => {
    code = (await bundleRunbookWorkflows({ logger: quietBundlerLogger })).code;
    report = workflowBundleReport(code);
  }, 120_000);

  it('holds the runbook workflows', () => {
    expect(report.modules).toContain('./workflows/index.ts');
    expect(report.modules).toContain('./workflows/shared/interceptors.ts');
  });

  it('has no zod module', () => {
    expect(report.modules.filter((id) => id.includes('node_modules/zod/'))).toEqual([]);
  });

  it('takes packages only from the SDK and its dependencies', () => {
    expect(report.packages.filter((p) => !WORKFLOW_BUNDLE_PACKAGES.includes(p))).toEqual([]);
  });

  it('has no activity, worker or client code', () => {
    expect(report.modules.filter((id) => /^\.\/(activities|worker|client)\//.test(id))).toEqual([]);
  });

  it('stays within its size budget', () => {
    expect(report.bytes).toBeLessThanOrEqual(WORKFLOW_BUNDLE_BUDGET_BYTES);
  });

  it('is evaluated once per worker: a new run evaluates none of its modules again', async () => {
    const evaluation = await perRunEvaluation(code, 3);
    expect(evaluation.perRun).toEqual([]);
    expect(evaluation.shared).toBeGreaterThanOrEqual(report.modules.length - 5);
  });
});

describe('workflowBundleReport', () => {
  it('names the packages of webpack module ids, scoped and nested ones too', () => {
    const code = [
      '/***/ "./workflows/index.ts"',
      '/***/ "./node_modules/zod/v4/classic/schemas.js"',
      '/***/ "./node_modules/@temporalio/workflow/lib/index.js"',
      '/***/ "./node_modules/@temporalio/common/node_modules/long/index.js"',
      'const s = "/***/ \\"./node_modules/not-a-module/x.js\\"";',
    ].join('\n');
    const r = workflowBundleReport(code);
    expect(r.modules).toHaveLength(4);
    expect(r.packages).toEqual(['@temporalio/workflow', 'long', 'zod']);
    expect(r.bytes).toBe(Buffer.byteLength(code));
  });
});
