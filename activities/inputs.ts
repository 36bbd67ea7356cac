import { ApplicationFailure } from '@temporalio/activity';
import { ErrorTypes } from '../common/errors.js';
import { InputError, parseInput, type ProcedureInput } from '../common/inputs.js';
import type { ProcedureId } from '../common/procedures.js';

/**
 * A run's first step: its input checked against the procedure's schema, here in the worker
 * rather than in the workflow sandbox, so the schema library stays out of the workflow bundle.
 * A bad input fails the run at once (never retried) with every problem named.
 */
export async function checkInput<P extends ProcedureId>(procedure: P, input: unknown): Promise<ProcedureInput<P>> {
  try {
    return parseInput(procedure, input);
  } catch (err) {
    if (err instanceof InputError) throw ApplicationFailure.nonRetryable(err.message, ErrorTypes.InvalidInput);
    throw err;
  }
}

/** The input check needs no dependencies: the schemas are all it reads. */
export function createInputActivities() {
  return { checkInput };
}
