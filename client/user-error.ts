import { userInfo } from 'node:os';

/** An error the CLI prints as one line, without a stack trace. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export function defaultIdentity(env: NodeJS.ProcessEnv = process.env): string {
  return env.RUNBOOK_USER ?? env.USER ?? userInfo().username;
}
