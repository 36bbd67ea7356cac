import { Context } from '@temporalio/activity';

/** What every activity family uses from the activity context. */

/** Heartbeats `details()` every 3 s while `body` runs; the body gets the activity's cancellation signal. */
export async function heartbeating<T>(details: () => unknown, body: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctx = Context.current();
  ctx.heartbeat(details());
  const timer = setInterval(() => ctx.heartbeat(details()), 3000);
  try {
    return await body(ctx.cancellationSignal);
  } finally {
    clearInterval(timer);
  }
}

/** The running activity's cancellation signal; none when called outside an activity (a test calling a function directly). */
export function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}
