import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../common/errors.js';
import type { ServiceAction, ServiceActionResult } from '../../common/types.js';
import { CommandError, runCommand, tailLines, type ExecResult } from '../../lib/exec.js';
import { MissingEnvError } from '../../lib/env.js';
import { redactSecrets } from '../../lib/redact.js';
import type { DriverContext } from './driver.js';

/** What one step of an action runs. */
export interface Invocation {
  argv: string[];
  secrets?: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs: number;
}

/** Output kept in a ServiceActionResult: it lands in workflow history, so only the tail. */
const OUTPUT_LINES = 100;
const OUTPUT_CHARS = 8000;

/** Shown between the steps of a two-command action in plans and results; nothing is run through a shell. */
export const THEN = '&&';

export function unsupportedAction(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ErrorTypes.UnsupportedAction);
}

export function configFailure(err: unknown): never {
  if (err instanceof MissingEnvError) {
    throw ApplicationFailure.nonRetryable(`${err.message}; set it in the worker's environment`, ErrorTypes.InvalidConfig);
  }
  throw err;
}

/**
 * Runs one step, turning a CommandError into the failure Temporal retries (or, for a
 * missing program, does not: retrying cannot install it). A cancelled activity gets the
 * cancellation back rather than a command failure.
 */
export async function invoke(inv: Invocation, ctx: DriverContext, what: string): Promise<ExecResult> {
  try {
    return await runCommand(inv.argv, {
      cwd: inv.cwd,
      env: inv.env,
      baseEnv: ctx.env,
      timeoutMs: inv.timeoutMs,
      secrets: inv.secrets,
      signal: ctx.signal,
      logger: ctx.logger,
    });
  } catch (err) {
    if (err instanceof CommandError) {
      if (err.cancelled && ctx.signal?.aborted && ctx.signal.reason !== undefined) throw ctx.signal.reason;
      throw commandFailure(err, what);
    }
    throw err;
  }
}

export function commandFailure(err: CommandError, what: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: ErrorTypes.CommandFailed,
    message: `${what}: ${err.message}`,
    nonRetryable: err.notFound,
    details: [
      {
        command: err.command,
        exitCode: err.exitCode ?? null,
        stderrTail: err.stderrTail,
        timedOut: err.timedOut,
        notFound: err.notFound,
      } satisfies FailureDetails,
    ],
  });
}

/**
 * Like invoke, but a plain non-zero exit is returned as an answer (a status command saying
 * "not running") instead of thrown; timeouts, missing programs and cancellation still throw.
 */
export async function invokeForAnswer(
  inv: Invocation,
  ctx: DriverContext,
  what: string,
): Promise<{ result: ExecResult } | { exitCode: number; output: string; failure: ApplicationFailure }> {
  try {
    return { result: await invoke(inv, ctx, what) };
  } catch (err) {
    if (err instanceof ApplicationFailure && err.type === ErrorTypes.CommandFailed) {
      const d = err.details?.[0] as FailureDetails | undefined;
      if (d && typeof d.exitCode === 'number' && d.exitCode !== 0 && !d.timedOut) {
        return { exitCode: d.exitCode, output: d.stderrTail, failure: err };
      }
    }
    throw err;
  }
}

interface FailureDetails {
  command: string;
  exitCode: number | null;
  stderrTail: string;
  timedOut: boolean;
  notFound: boolean;
}

export function outputOf(results: ExecResult[], secrets: readonly string[] = []): string {
  const text = results
    .flatMap((r) => [r.stdout, r.stderr])
    .filter((s) => s.trim() !== '')
    .join('\n');
  return redactSecrets(tailLines(text, OUTPUT_LINES).slice(-OUTPUT_CHARS), secrets);
}

/** Runs the steps in order and reports them as one action. */
export async function runSteps(
  steps: Invocation[],
  ctx: DriverContext,
  meta: { service: string; action: ServiceAction },
): Promise<ServiceActionResult> {
  const started = performance.now();
  const results: ExecResult[] = [];
  for (const step of steps) {
    results.push(await invoke(step, ctx, `service ${meta.service} ${meta.action}`));
  }
  return {
    service: meta.service,
    action: meta.action,
    command: results.map((r) => r.command).join(` ${THEN} `),
    ok: true,
    output: outputOf(results, steps.flatMap((s) => s.secrets ?? [])),
    durationMs: Math.round(performance.now() - started),
  };
}

export function joinSteps(steps: Invocation[]): string[] {
  return steps.flatMap((s, i) => (i === 0 ? s.argv : [THEN, ...s.argv]));
}
