/**
 * Limits on what a human or a stranger can send to a run (signals, updates, inputs) and on
 * what a run keeps of it. Anyone who can reach the server can signal a run; without these
 * limits a few large messages make every later workflow task exceed the server's message size
 * and wedge the run. Workflow-safe: no imports.
 */

/** Names: `by`, `step`, `confirm`, a level or a severity. */
export const MAX_NAME_CHARS = 128;
/** Free text: a comment, a note, a reason, a summary. */
export const MAX_TEXT_CHARS = 2000;
/** Refusals, and other records of what strangers sent, kept in full; the rest are only counted. */
export const MAX_KEPT_REFUSALS = 20;
/** A message's whole JSON payload; anything larger is refused before a field is read. */
export const MAX_MESSAGE_CHARS = 16_384;
/** A run's whole input as the CLI reads it (`--input`, `@file`, stdin); kept in history, under Temporal's 2 MB payload limit. */
export const MAX_RUN_INPUT_BYTES = 1024 * 1024;
/** Lists in a message (action items, what went well): at most this many entries. */
export const MAX_LIST_ITEMS = 50;

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
// eslint-disable-next-line no-control-regex -- and these are refused in names
const NAME_CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/**
 * Why `value` is not acceptable as `field`, or undefined. The reason names the field, the
 * limit and the fix, and never repeats the value: a refusal must not grow with what was sent.
 */
export function textProblem(field: string, value: unknown, opts: { max?: number; required?: boolean; name?: boolean } = {}): string | undefined {
  const max = opts.max ?? (opts.name ? MAX_NAME_CHARS : MAX_TEXT_CHARS);
  if (value === undefined || value === null) return opts.required ? `"${field}" is required` : undefined;
  if (typeof value !== 'string') return `"${field}" must be a string (got ${Array.isArray(value) ? 'array' : typeof value})`;
  if (value.length > max) return `"${field}" is too long (${value.length} characters; at most ${max}): shorten it`;
  if (opts.required && value.trim() === '') return `"${field}" is required and cannot be blank`;
  if ((opts.name ? NAME_CONTROL : CONTROL).test(value)) return `"${field}" contains control characters or bidi overrides: send plain text`;
  return undefined;
}

/**
 * Why a message payload is not acceptable before its fields are looked at: not one JSON
 * object, or larger than `max` (MAX_MESSAGE_CHARS) in all. Undefined when it may be read.
 */
export function messageProblem(input: unknown, example: string, max = MAX_MESSAGE_CHARS): string | undefined {
  if (!input || typeof input !== 'object' || Array.isArray(input)) return `expected one JSON object like ${example}`;
  const undecodable = undecodableReason(input);
  if (undecodable !== undefined) return `the message could not be decoded (${clip(undecodable, 200)}): send plain JSON, or encode it with the run's codec`;
  let size: number;
  try {
    size = JSON.stringify(input).length;
  } catch {
    return `expected one JSON object like ${example}`;
  }
  if (size > max) return `message too large (${size} characters; at most ${max}): send only the fields asked for`;
  return undefined;
}

/**
 * Why `value` is not acceptable as the list `field`, or undefined: not an array, more than
 * `max` entries, or the first entry `item` refuses (its problem names `field[i]`).
 */
export function listProblem(field: string, value: unknown, item: (entry: unknown, name: string) => string | undefined, max = MAX_LIST_ITEMS): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) return `"${field}" must be a list`;
  if (value.length > max) return `"${field}" has too many entries (${value.length}; at most ${max})`;
  for (let k = 0; k < value.length; k++) {
    const problem = item(value[k], `${field}[${k}]`);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * The key of the value the worker's codec and payload converter put where a payload could not
 * be decoded (forged encryption metadata, an unknown encoding, malformed JSON, a missing key).
 */
export const UNDECODABLE = '__undecodable';

/** The reason a value is a marker for an undecodable payload, or undefined. */
export function undecodableReason(value: unknown): string | undefined {
  if (!value || typeof value !== 'object' || !Object.hasOwn(value, UNDECODABLE)) return undefined;
  const why = (value as Record<string, unknown>)[UNDECODABLE];
  return typeof why === 'string' ? why : 'unknown reason';
}

/** `text` cut to `max` characters with an ellipsis: for echoing strings in details and logs. */
export function clip(text: string, max = MAX_NAME_CHARS): string {
  return text.length > max ? `${text.slice(0, Math.max(0, max - 1))}…` : text;
}

/**
 * Appends `item` unless `items` already holds `limit` entries; returns whether it was kept, so
 * the caller counts what it dropped. What a run keeps of what strangers send cannot grow without bound.
 */
export function pushCapped<T>(items: T[], item: T, limit = MAX_KEPT_REFUSALS): boolean {
  if (items.length >= limit) return false;
  items.push(item);
  return true;
}
