import { pino, destination, type Logger } from 'pino';

export type { Logger };

/** JSON logs on stderr so stdout stays for the CLI's own output. */
export function createLogger(bindings: Record<string, unknown> = {}, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, ...bindings },
      redact: { paths: ['*.password', '*.token', '*.apiKey', '*.secret'], censor: '***' },
    },
    destination(2),
  );
}

/** For callers that pass no logger: logs nothing. */
export const silentLogger: Logger = pino({ enabled: false });
