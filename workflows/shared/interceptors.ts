import type { WorkflowInboundCallsInterceptor, WorkflowInterceptors, WorkflowInterceptorsFactory, WorkflowOutboundCallsInterceptor } from '@temporalio/workflow';
import { readsOnly } from '../../common/plan.js';
import { activitySummary, runMetadata } from '../../common/summaries.js';
import { gate, planning } from './plan-mode.js';

function requesterIn(input: unknown): string | undefined {
  const by = input && typeof input === 'object' ? (input as { requestedBy?: unknown }).requestedBy : undefined;
  return typeof by === 'string' && by !== '' ? by : undefined;
}

/**
 * Names every step in the Temporal UI's Event History: an activity's summary says what it does
 * to what ("serviceAction stop api"), a child run gets the summary and details every start path
 * sets, asked for by whoever asked for its parent unless its input says otherwise. Summaries
 * are user metadata of the commands, not part of them: replay compares command types and ids,
 * so runs recorded before these summaries existed replay unchanged. What the workflow code sets
 * itself is kept. In a plan run (workflows/shared/plan-mode.ts) every command passes its gate first.
 */
export const interceptors: WorkflowInterceptorsFactory = (): WorkflowInterceptors => {
  // Per run: the factory is called once for each workflow execution.
  let requestedBy: string | undefined;
  const inbound: WorkflowInboundCallsInterceptor = {
    execute(input, next) {
      requestedBy = requesterIn(input.args[0]);
      return next(input);
    },
  };
  const outbound: WorkflowOutboundCallsInterceptor = {
    scheduleActivity(input, next) {
      if (planning()) gate(input.options.summary || activitySummary(input.activityType, input.args), readsOnly(input.activityType, input.args));
      if (input.options.summary) return next(input);
      return next({ ...input, options: { ...input.options, summary: activitySummary(input.activityType, input.args) } });
    },
    scheduleLocalActivity(input, next) {
      if (planning()) gate(input.options.summary || activitySummary(input.activityType, input.args), readsOnly(input.activityType, input.args));
      if (input.options.summary) return next(input);
      return next({ ...input, options: { ...input.options, summary: activitySummary(input.activityType, input.args) } });
    },
    startTimer(input, next) {
      if (planning()) gate(`wait ${Math.round(input.durationMs / 1000)}s`, false);
      return next(input);
    },
    signalWorkflow(input, next) {
      if (planning()) gate(`signal ${input.signalName}`, false);
      return next(input);
    },
    continueAsNew(input, next) {
      if (planning()) gate('continue as new', false);
      return next(input);
    },
    startChildWorkflowExecution(input, next) {
      if (planning()) gate(`start ${input.workflowType}`, false);
      const { staticSummary, staticDetails } = input.options;
      if (staticSummary && staticDetails) return next(input);
      const meta = runMetadata({ procedure: input.workflowType, input: input.options.args?.[0], requestedBy });
      return next({ ...input, options: { ...input.options, staticSummary: staticSummary || meta.staticSummary, staticDetails: staticDetails || meta.staticDetails } });
    },
  };
  return { inbound: [inbound], outbound: [outbound] };
};
