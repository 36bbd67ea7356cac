import { DefaultLogger, Runtime } from '@temporalio/worker';

/**
 * The security tests fail hundreds of runs on purpose, and the SDK logs each failed run and
 * activity as a warning. Raised to ERROR while they run; the fuzz test checks the histories
 * for failed workflow tasks directly, so nothing that matters is hidden.
 */
export function quietSdkWarnings(): () => void {
  const logger = Runtime.instance().logger;
  if (!(logger instanceof DefaultLogger)) return () => undefined;
  const l = logger as unknown as { severity: number };
  const before = l.severity;
  // DefaultLogger's severities are TRACE, DEBUG, INFO, WARN, ERROR: 4 is ERROR.
  l.severity = Math.max(before, 4);
  return () => {
    l.severity = before;
  };
}
