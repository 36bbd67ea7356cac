import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, rename } from 'node:fs/promises';
import path from 'node:path';

/**
 * Encryption keys for workflow payloads. Key material lives only inside a Keyring's
 * private field: it is never part of an error message, a log line or `util.inspect`.
 */

export const KEY_BYTES = 32;
/** What `runbook dev` generates and, without RUNBOOK_CODEC_KEY(_FILE), the CLI and worker pick up. */
export const DEV_KEY_FILE = path.join('.runbook', 'codec-keys.json');

/** The key file of `runbook dev --state-dir $RUNBOOK_STATE_DIR` (default .runbook), under `cwd`. */
export function devKeyFile(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const stateDir = env.RUNBOOK_STATE_DIR?.trim();
  return stateDir ? path.resolve(cwd, stateDir, 'codec-keys.json') : path.resolve(cwd, DEV_KEY_FILE);
}

const KEY_HINT = `a key is base64 of ${KEY_BYTES} random bytes, e.g. \`openssl rand -base64 32\``;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export class CodecKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecKeyError';
  }
}

export class Keyring {
  readonly #keys: ReadonlyMap<string, Buffer>;

  constructor(
    readonly currentId: string,
    keys: ReadonlyMap<string, Buffer>,
    /** Where the keys came from, for messages: `RUNBOOK_CODEC_KEY_FILE=/etc/runbooks/keys.json`. */
    readonly source: string,
  ) {
    if (!keys.has(currentId)) throw new CodecKeyError(`${source}: the current key id "${currentId}" is not among the keys`);
    this.#keys = keys;
  }

  get ids(): string[] {
    return [...this.#keys.keys()];
  }

  key(id: string): Buffer | undefined {
    return this.#keys.get(id);
  }

  toJSON(): Record<string, unknown> {
    return { currentId: this.currentId, ids: this.ids, source: this.source };
  }
}

/** A short, stable id for a key that says nothing about the key: the start of its SHA-256. */
export function keyFingerprint(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}

function parseKey(value: string, where: string, fix: string): Buffer {
  const text = value.trim();
  if (!BASE64.test(text) || text.length % 4 !== 0) {
    throw new CodecKeyError(`${where} is not valid base64: ${fix} (${KEY_HINT})`);
  }
  const key = Buffer.from(text, 'base64');
  if (key.length !== KEY_BYTES) {
    throw new CodecKeyError(`${where} decodes to ${key.length} bytes, AES-256 needs ${KEY_BYTES}: ${fix} (${KEY_HINT})`);
  }
  return key;
}

function checkKeyId(id: string, where: string): string {
  if (!KEY_ID.test(id)) throw new CodecKeyError(`${where}: key id "${id}" must be 1-64 letters, digits, ".", "_" or "-"`);
  return id;
}

interface KeyFile {
  current: string;
  keys: Record<string, string>;
}

/**
 * The key file's shape, checked by hand: every CLI command that talks to a server reads it,
 * and a schema library would add ~100 ms to each start. Returns the first problem as
 * `field: what is wrong`, or the file.
 */
function checkKeyFile(json: unknown): KeyFile | string {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return '(top level): expected an object';
  const { comment, current, keys, ...rest } = json as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) return `(top level): unknown field ${JSON.stringify(unknown[0]!.slice(0, 40))}`;
  if (comment !== undefined && typeof comment !== 'string') return 'comment: expected a string';
  if (typeof current !== 'string' || current === '') return 'current: expected the id of one of the keys';
  if (keys === null || typeof keys !== 'object' || Array.isArray(keys)) return 'keys: expected an object of key ids to base64 keys';
  const entries = Object.entries(keys as Record<string, unknown>);
  if (entries.length === 0) return 'keys: must hold at least one key';
  const bad = entries.find(([, v]) => typeof v !== 'string');
  if (bad) return `keys.${bad[0].slice(0, 64)}: expected a base64 key (a string)`;
  return { current, keys: keys as Record<string, string> };
}

function keyringFromFile(file: string, source: string): Keyring {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CodecKeyError(`${source}: cannot read the key file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // The parser's message can quote the file's text, which is key material.
    throw new CodecKeyError(`${source}: not valid JSON; expected {"current": "<id>", "keys": {"<id>": "<base64 key>"}}`);
  }
  const content = checkKeyFile(json);
  if (typeof content === 'string') throw new CodecKeyError(`${source}: ${content}; expected {"current": "<id>", "keys": {"<id>": "<base64 key>"}}`);
  const keys = new Map<string, Buffer>();
  for (const [id, value] of Object.entries(content.keys)) {
    checkKeyId(id, source);
    keys.set(id, parseKey(value, `${source}: keys.${id}`, 'replace it with a new key'));
  }
  if (!keys.has(content.current)) {
    throw new CodecKeyError(
      `${source}: current is "${content.current}" but keys has only ${[...keys.keys()].join(', ')}: add that key or point current at one of them`,
    );
  }
  return new Keyring(content.current, keys, source);
}

function nonEmpty(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

export function codecRequired(env: NodeJS.ProcessEnv): boolean {
  const v = nonEmpty(env, 'RUNBOOK_CODEC_REQUIRED')?.toLowerCase();
  if (v === undefined) return false;
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new CodecKeyError(`RUNBOOK_CODEC_REQUIRED=${env.RUNBOOK_CODEC_REQUIRED} is not a boolean (use true or false)`);
}

/**
 * The keys from RUNBOOK_CODEC_KEY (+ RUNBOOK_CODEC_KEY_ID) or RUNBOOK_CODEC_KEY_FILE; without
 * either, `$RUNBOOK_STATE_DIR/codec-keys.json` (default `.runbook/`) under `cwd` when `runbook dev` made one. Undefined = no
 * encryption, an error when RUNBOOK_CODEC_REQUIRED=true.
 */
export function keyringFromEnv(env: NodeJS.ProcessEnv = process.env, opts: { cwd?: string } = {}): Keyring | undefined {
  const key = nonEmpty(env, 'RUNBOOK_CODEC_KEY');
  const file = nonEmpty(env, 'RUNBOOK_CODEC_KEY_FILE');
  const id = nonEmpty(env, 'RUNBOOK_CODEC_KEY_ID');
  const required = codecRequired(env);
  if (key && file) {
    throw new CodecKeyError('RUNBOOK_CODEC_KEY and RUNBOOK_CODEC_KEY_FILE are both set: use one (the key file can hold several keys for rotation)');
  }
  if (file) {
    if (id) throw new CodecKeyError('RUNBOOK_CODEC_KEY_ID goes with RUNBOOK_CODEC_KEY; with RUNBOOK_CODEC_KEY_FILE the file\'s "current" names the key');
    const resolved = path.resolve(opts.cwd ?? process.cwd(), file);
    return keyringFromFile(resolved, `RUNBOOK_CODEC_KEY_FILE=${resolved}`);
  }
  if (key) {
    const material = parseKey(key, 'RUNBOOK_CODEC_KEY', 'set it to a new key');
    const keyId = id ? checkKeyId(id, 'RUNBOOK_CODEC_KEY_ID') : keyFingerprint(material);
    return new Keyring(keyId, new Map([[keyId, material]]), 'RUNBOOK_CODEC_KEY');
  }
  if (id) throw new CodecKeyError('RUNBOOK_CODEC_KEY_ID is set but RUNBOOK_CODEC_KEY is not: set the key too, or unset the id');
  const devFile = devKeyFile(env, opts.cwd);
  if (existsSync(devFile)) return keyringFromFile(devFile, `${devFile} (made by runbook dev; RUNBOOK_CODEC_KEY_FILE is not set)`);
  if (required) {
    throw new CodecKeyError(
      `RUNBOOK_CODEC_REQUIRED=true but no payload encryption key is configured: set RUNBOOK_CODEC_KEY (${KEY_HINT}) or RUNBOOK_CODEC_KEY_FILE (JSON {"current": "<id>", "keys": {"<id>": "<base64 key>"}})`,
    );
  }
  return undefined;
}

/**
 * Writes a key file with one new key (mode 0600) unless `file` exists; returns whether it
 * wrote one. `wx` makes two concurrent callers agree on one key instead of overwriting.
 */
export async function createKeyFile(file: string, keyId = `dev-${new Date().toISOString().slice(0, 10)}`): Promise<boolean> {
  await mkdir(path.dirname(file), { recursive: true });
  let handle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    await handle.writeFile(`${JSON.stringify({ current: keyId, keys: { [keyId]: randomBytes(KEY_BYTES).toString('base64') } }, null, 2)}\n`);
  } finally {
    await handle.close();
  }
  return true;
}

/**
 * Rotation: adds a new key to an existing key file and makes it current, keeping every older
 * key so histories encrypted with them still decrypt. Written to a temp file and renamed, mode
 * 0600, so a reader never sees half a file. Returns the new key's id.
 */
export async function rotateKeyFile(file: string, keyId = `k-${new Date().toISOString().replace(/[-:]/g, '').slice(0, 15)}`): Promise<string> {
  const source = file;
  const current = keyringFromFile(file, source); // validates the file as it stands
  checkKeyId(keyId, 'new key id');
  if (current.ids.includes(keyId)) throw new CodecKeyError(`${source}: key id "${keyId}" is already in the file: choose another id`);
  const json = JSON.parse(readFileSync(file, 'utf8')) as { comment?: string; current: string; keys: Record<string, string> };
  json.keys[keyId] = randomBytes(KEY_BYTES).toString('base64');
  json.current = keyId;
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(json, null, 2)}\n`);
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  return keyId;
}
