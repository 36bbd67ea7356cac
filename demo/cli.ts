import { DEMO_SERVICES, demoServiceAction } from './env.js';

/**
 * `runbook demo service <action> <service> [--state-dir D] [--port N] [--port2 M]`: the demo
 * environment's service commands. Kept apart from the main CLI so the many short calls a
 * stack runbook makes load only what they need.
 */
export async function demoMain(argv: string[]): Promise<number> {
  const [sub, action, service, ...rest] = argv;
  if (sub !== 'service' || !action || !service) {
    process.stderr.write(`usage: runbook demo service <start|stop|status|logs|clean> <${DEMO_SERVICES.join('|')}> [--state-dir DIR] [--port N] [--port2 N]\n`);
    return 2;
  }
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i]!;
    const value = rest[i + 1];
    if (!['--state-dir', '--port', '--port2'].includes(key) || value === undefined) {
      process.stderr.write(`runbook demo: unknown or incomplete option ${key}\n`);
      return 2;
    }
    flags.set(key, value);
  }
  const num = (key: string): number | undefined => {
    const v = flags.get(key);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${key}: expected a port number, got ${v}`);
    return n;
  };
  const out = await demoServiceAction(action, service, {
    stateDir: flags.get('--state-dir') ?? process.env.RUNBOOK_STATE_DIR ?? '.runbook',
    port: num('--port'),
    port2: num('--port2'),
  });
  if (out.output) (out.exitCode === 0 ? process.stdout : process.stderr).write(`${out.output}\n`);
  return out.exitCode;
}
