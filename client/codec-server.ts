import { type Command, Option } from 'commander';
import { UserError } from './user-error.js';

// The codec (and the SDK's protobuf definitions under it), the HTTP server and the logger (pino)
// load in the actions: every `runbook` call defines these commands, and `--help` needs none of them.
const codec = () => import('../lib/codec/index.js');
const codecServer = () => import('../lib/codec/server.js');

/** lib/codec/server.ts's DEFAULT_CODEC_PORT and DEFAULT_CORS_ORIGINS, as the help shows them (a test checks they agree). */
export const CLI_CODEC_PORT = 8234;
export const CLI_CORS_ORIGINS: readonly string[] = ['http://localhost:8233', 'http://127.0.0.1:8233'];

export const DEFAULT_TOKEN_ENV = 'RUNBOOK_CODEC_SERVER_TOKEN';

/** The bearer token from `--token-env NAME`, else RUNBOOK_CODEC_SERVER_TOKEN; a named but empty variable is an error. */
export function codecServerToken(tokenEnv: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (tokenEnv) {
    const token = env[tokenEnv]?.trim();
    if (!token) throw new UserError(`--token-env ${tokenEnv}: the variable is not set; export ${tokenEnv}=<token> or drop --token-env`);
    return token;
  }
  return env[DEFAULT_TOKEN_ENV]?.trim() || undefined;
}

/** `runbook codec-server`: the payload codec over HTTP, for the Temporal UI's "codec endpoint" and `temporal --codec-endpoint`. */
export function registerCodecServerCommand(program: Command): void {
  program
    .command('codec-server')
    .description('serve /encode and /decode with the payload encryption keys, for the Temporal UI (set its codec endpoint to this URL)')
    .option('--port <port>', 'listen port', String(CLI_CODEC_PORT))
    .option('--host <host>', 'listen address', '127.0.0.1')
    .addOption(new Option('--cors-origin <origin...>', 'browser origins allowed to call it (the UI)').default([...CLI_CORS_ORIGINS]))
    .option('--token-env <name>', `variable holding the bearer token callers must send (default ${DEFAULT_TOKEN_ENV}; none = no token)`)
    .action(async (opts: { port: string; host: string; corsOrigin: string[]; tokenEnv?: string }) => {
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError(`--port ${opts.port}: expected a port number`);
      for (const origin of opts.corsOrigin) {
        if (!/^https?:\/\/[^/]+$/.test(origin)) throw new UserError(`--cors-origin ${origin}: expected scheme://host[:port] without a path, e.g. http://localhost:8233`);
      }
      const encryption = (await codec()).payloadEncryptionFromEnv();
      if (!encryption.keyring) {
        throw new UserError('no payload encryption key: set RUNBOOK_CODEC_KEY_FILE (or RUNBOOK_CODEC_KEY) to the keys the worker uses');
      }
      const token = codecServerToken(opts.tokenEnv);
      const [{ startCodecServer }, { createLogger }] = await Promise.all([codecServer(), import('../lib/logger.js')]);
      const logger = createLogger({ component: 'codec-server' });
      const server = await startCodecServer({ codec: encryption.codec, host: opts.host, port, corsOrigins: opts.corsOrigin, token, logger });
      logger.info({ url: server.url, corsOrigins: opts.corsOrigin, token: token ? 'required' : 'none', keyId: encryption.keyring.currentId, keyIds: encryption.keyring.ids }, 'codec server listening');
      console.error(`codec server on ${server.url} (${encryption.description}); UI codec endpoint: ${server.url}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
    });
}

/** `runbook codec-keys new|rotate <file>`: make a key file, or add a new current key to one. */
export function registerCodecKeysCommand(program: Command): void {
  const keys = program.command('codec-keys').description('payload encryption key files (RUNBOOK_CODEC_KEY_FILE): create and rotate');
  keys
    .command('new')
    .description('write a key file with one new random key (mode 0600); refuses to overwrite')
    .argument('<file>')
    .option('--id <keyId>', 'the key id (default dev-<date>)')
    .action(async (file: string, opts: { id?: string }) => {
      if (!(await (await codec()).createKeyFile(file, opts.id))) throw new UserError(`${file} already exists: use \`runbook codec-keys rotate ${file}\` to add a key`);
      console.log(`wrote ${file}; set RUNBOOK_CODEC_KEY_FILE=${file} for the worker, the CLI and the codec server`);
    });
  keys
    .command('rotate')
    .description('add a new key and make it current; older keys stay so existing histories still decrypt')
    .argument('<file>')
    .option('--id <keyId>', 'the new key id (default k-<timestamp>)')
    .action(async (file: string, opts: { id?: string }) => {
      const { CodecKeyError, rotateKeyFile } = await codec();
      try {
        const id = await rotateKeyFile(file, opts.id);
        console.log(`${file}: current key is now ${id}; restart the workers, the codec server and long-lived clients to encrypt with it`);
      } catch (err) {
        if (err instanceof CodecKeyError) throw new UserError(err.message);
        throw err;
      }
    });
}
