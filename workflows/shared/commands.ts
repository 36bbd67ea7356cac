import { setHandler, type SignalDefinition } from '@temporalio/workflow';
import type { UpdateDefinition } from '@temporalio/common';
import { MAX_KEPT_REFUSALS, pushCapped } from '../../common/bounds.js';

/** How a command reached the run: a signal (the UI's "Send a Signal", fire and forget) or an update (the CLI, answered at once). */
export type Via = 'signal' | 'update';

export interface Command<I, R> {
  /**
   * Why `input` cannot apply now, or undefined. It runs in the update's validator, so it
   * must not change the run; `via` lets a check that only a signal needs (a patch gate) skip updates.
   */
  validate: (input: I, via: Via) => string | undefined;
  /** Applies an accepted input; what it returns is the update's result (a signal's is dropped). */
  apply: (input: I) => R;
  /** Records (bounded) or logs a refused input; never throws. */
  refuse: (input: I, reason: string, via: Via) => void;
  /** The failure a refused update ends with (its message is the reason). */
  failure: (reason: string) => Error;
  /**
   * `rejected` (the default): a refused update fails in its validator, so it leaves nothing in
   * the run or its history. `recorded`: no validator; the update is accepted, its refusal kept
   * like a signal's, then thrown: for an audit trail that must keep every refused answer.
   */
  refusedUpdates?: 'rejected' | 'recorded';
}

/**
 * One command sent two ways, a signal and an update of the same name, with the same checks:
 * a refused signal is recorded and changes nothing; a refused update fails for its caller;
 * an accepted one applies, and the update returns what `apply` returned.
 */
export function handleCommand<I, R>(signal: SignalDefinition<[I]>, update: UpdateDefinition<R, [I]>, command: Command<I, R>): void {
  const { validate, apply, refuse, failure } = command;
  setHandler(signal, (input: I) => {
    const reason = validate(input, 'signal');
    if (reason !== undefined) refuse(input, reason, 'signal');
    else apply(input);
  });
  if (command.refusedUpdates === 'recorded') {
    setHandler(update, (input: I): R => {
      const reason = validate(input, 'update');
      if (reason === undefined) return apply(input);
      refuse(input, reason, 'update');
      throw failure(reason);
    });
    return;
  }
  // Validators run only live, never on replay: an update in a history was accepted then, so
  // it applies as it did, even if a check added since would refuse it now.
  setHandler(update, (input: I): R => apply(input), {
    validator: (input: I) => {
      const reason = validate(input, 'update');
      if (reason !== undefined) throw failure(reason);
    },
  });
}

/** Where a run keeps refused messages: the first few in full, the rest only counted. */
export interface RefusalLog<T> {
  refusals: T[];
  refusalsDropped: number;
}

/** Keeps `refusal` unless the log is full, else counts it; returns whether it was kept. */
export function keepRefusal<T>(log: RefusalLog<T>, refusal: T, limit = MAX_KEPT_REFUSALS): boolean {
  if (pushCapped(log.refusals, refusal, limit)) return true;
  log.refusalsDropped += 1;
  return false;
}
