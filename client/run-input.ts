import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { MAX_RUN_INPUT_BYTES } from '../common/bounds.js';
import { INPUT_FIELDS, InputError, parseInput } from '../common/inputs.js';
import type { ProcedureId } from '../common/procedures.js';
import type { LoadedConfig } from '../lib/config.js';
import { UserError } from './user-error.js';

const EXAMPLE = `--input '{"clean": true}', --input @input.json or --input - (stdin)`;

/**
 * Where JSON.parse gave up: the offset of the first character that cannot continue a JSON text
 * (RFC 8259). V8's own message carries a position only for some mistakes, and quotes the text.
 */
export function jsonErrorOffset(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw i;
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const string = () => {
    i++;
    while (i < text.length) {
      const ch = text[i]!;
      if (ch === '"') {
        i++;
        return;
      }
      if (ch < ' ') fail();
      if (ch === '\\') {
        i++;
        const esc = text[i];
        if (esc === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 4;
        } else if (esc === undefined || !'"\\/bfnrt'.includes(esc)) fail();
      }
      i++;
    }
    fail();
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      ws();
      if (text[i] === close) {
        i++;
        return;
      }
      for (;;) {
        if (c === '{') {
          ws();
          if (text[i] !== '"') fail();
          string();
          ws();
          if (text[i] !== ':') fail();
          i++;
        }
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === close) {
          i++;
          return;
        } else fail();
      }
    }
    if (c === '"') return string();
    const literal = ['true', 'false', 'null'].find((l) => text.startsWith(l, i));
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400))?.[0];
    if (literal ?? number) i += (literal ?? number)!.length;
    else fail();
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
  } catch (at) {
    // A number is where it failed; anything else (a stack overflow on deep nesting) says nothing.
    if (typeof at === 'number') return at;
  }
  return text.length;
}

/** Line and column (1-based) of a character offset, as an editor shows them. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const lines = text.slice(0, offset).split('\n');
  return { line: lines.length, column: lines[lines.length - 1]!.length + 1 };
}

/** JSON.parse with an error that names where the input came from and the line and column of the mistake. */
export function parseJsonObject(text: string, source: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    const at = jsonErrorOffset(text);
    const { line, column } = lineColumn(text, at);
    const what = at >= text.length ? 'unexpected end of input' : `unexpected ${JSON.stringify(text[at])}`;
    throw new UserError(`${source}: not valid JSON at line ${line}, column ${column} (${what}); e.g. ${EXAMPLE}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    throw new UserError(`${source}: expected one JSON object, got ${got}; e.g. ${EXAMPLE}`);
  }
  return value as Record<string, unknown>;
}

function tooLarge(source: string, bytes: number): UserError {
  return new UserError(`${source}: ${bytes} bytes; a run's input is kept in its history and may be at most ${MAX_RUN_INPUT_BYTES} bytes`);
}

async function readStdin(stdin: NodeJS.ReadableStream, source: string): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    bytes += buf.length;
    if (bytes > MAX_RUN_INPUT_BYTES) throw tooLarge(source, bytes);
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readInputFile(file: string, source: string): Promise<string> {
  const abs = path.resolve(file);
  try {
    const info = await stat(abs);
    if (!info.isFile()) throw new UserError(`${source}: ${abs} is not a file`);
    if (info.size > MAX_RUN_INPUT_BYTES) throw tooLarge(source, info.size);
    return await readFile(abs, 'utf8');
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? (err as Error).message);
    throw new UserError(`${source}: cannot read ${abs} (${why})`);
  }
}

/**
 * The run's input from `--input`: JSON text, `@file.json`, or `-` for stdin (for inputs
 * larger than one command-line argument may be). Always one JSON object; no `--input` is `{}`.
 */
export async function readRunInput(spec: string | undefined, stdin: NodeJS.ReadableStream = process.stdin): Promise<Record<string, unknown>> {
  if (spec === undefined) return {};
  if (spec === '-') {
    const source = '--input - (stdin)';
    return parseJsonObject(await readStdin(stdin, source), source);
  }
  if (spec.startsWith('@')) {
    const file = spec.slice(1);
    const source = `--input @${file}`;
    if (file === '') throw new UserError(`--input @: name the file after the @, e.g. --input @input.json`);
    // A BOM is what some editors put first; JSON.parse would call it an unexpected token.
    return parseJsonObject((await readInputFile(file, source)).replace(/^\uFEFF/, ''), source);
  }
  if (Buffer.byteLength(spec) > MAX_RUN_INPUT_BYTES) throw tooLarge('--input', Buffer.byteLength(spec));
  return parseJsonObject(spec, '--input');
}

function refProblems(procedure: ProcedureId, input: Record<string, unknown>, loaded: LoadedConfig): string[] {
  const known = {
    service: loaded.config.services.map((s) => s.name),
    database: loaded.config.databases.map((d) => d.name),
  };
  const problems: string[] = [];
  for (const [field, spec] of Object.entries(INPUT_FIELDS[procedure])) {
    const value = input[field];
    if (!spec.ref || value === undefined) continue;
    const names = (Array.isArray(value) ? value : [value]) as string[];
    const unknown = names.filter((n) => !known[spec.ref!].includes(n));
    if (unknown.length > 0) {
      const list = known[spec.ref].join(', ') || '(none configured)';
      problems.push(`${field}: unknown ${spec.ref} ${unknown.map((n) => JSON.stringify(n)).join(', ')} in ${loaded.path}: expected one of ${list}`);
    }
  }
  return problems;
}

/**
 * Everything the CLI can check before it starts a run, so that a mistake is an exit 1 naming
 * the field instead of a run that fails: the input's fields, the requester (`--as`, or
 * $RUNBOOK_USER / $USER), and the services and databases it names, against `loaded` (the
 * config the CLI sees) when there is one. Returns the input with the requester set.
 */
export function checkRunRequest(
  procedure: ProcedureId,
  input: Record<string, unknown>,
  requester: { name: string; from: string },
  loaded: LoadedConfig | undefined,
): Record<string, unknown> {
  const withRequester = { ...input, requestedBy: input.requestedBy ?? requester.name };
  try {
    parseInput(procedure, withRequester);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    const fromFlag = input.requestedBy === undefined;
    const problems = err.problems.map((p) => (fromFlag && p.startsWith('requestedBy:') ? `${requester.from} (requestedBy):${p.slice('requestedBy:'.length)}` : p));
    throw new UserError(`invalid input for ${procedure}: ${problems.join('; ')}`);
  }
  const problems = loaded ? refProblems(procedure, withRequester, loaded) : [];
  if (problems.length > 0) throw new UserError(`invalid input for ${procedure}: ${problems.join('; ')}`);
  return withRequester;
}
