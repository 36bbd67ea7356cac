import fc from 'fast-check';
import type { FieldSpec } from '../../common/field-spec.js';
import { INPUT_FIELDS } from '../../common/inputs.js';
import type { ProcedureId } from '../../common/procedures.js';

/**
 * Shared by the security tests: hostile strings, and fast-check arbitraries derived from
 * each procedure's input spec (valid values, boundary values, wrong types, extra keys).
 */

/** Strings an attacker (or a careless copy-paste) puts in an input field. */
export const HOSTILE: ReadonlyArray<readonly [label: string, value: string]> = [
  ['SQL statement', 'users; DROP TABLE x'],
  ['SQL quote', "x' OR '1'='1"],
  ['quoted identifier', '"weird""name"'],
  ['command substitution', '$(touch /tmp/pwned)'],
  ['backticks', '`id`'],
  ['pipe', 'a|b'],
  ['and-list', 'a&&touch /tmp/pwned'],
  ['redirect', 'a>/tmp/pwned'],
  ['path traversal', '../../etc/passwd'],
  ['encoded traversal', '..%2f..%2fetc%2fpasswd'],
  ['absolute path', '/etc/passwd'],
  ['NUL byte', 'api\u0000x'],
  ['newline', 'api\nrm -rf /'],
  ['CRLF', 'api\r\nFLUSHALL'],
  ['ANSI escape', '\u001b[2Jcleared'],
  ['very long', 'a'.repeat(100_000)],
  ['Cyrillic lookalike', 'p\u043estgres'],
  ['fullwidth lookalike', '\uff50\uff4f\uff53\uff54\uff47\uff52\uff45\uff53'],
  ['zero-width space', 'post\u200bgres'],
  ['bidi override', 'api\u202eexe.sh'],
  ['option', '--help'],
  ['short option', '-rf'],
  ['glob', '*'],
  ['space', 'a b'],
  ['empty', ''],
];

/** Of those, what a free-text ('string') field must still refuse. */
export const REFUSED_EVEN_IN_TEXT = new Set(['NUL byte', 'ANSI escape', 'very long', 'bidi override', 'empty']);

/** Numbers and look-alikes a numeric field must refuse. */
export const HOSTILE_NUMBERS: ReadonlyArray<readonly [string, unknown]> = [
  ['negative', -1],
  ['huge', 1e308],
  ['infinity', Number.POSITIVE_INFINITY],
  ['NaN', Number.NaN],
  ['numeric string', '1'],
  ['SQL in a number', '1; DROP TABLE x'],
  ['null', null],
  ['boolean', true],
  ['array', [1]],
  ['object', { $gt: 0 }],
];

const LIST_KINDS = new Set(['string-list', 'integer-list', 'table-list']);
export const isListKind = (spec: FieldSpec) => LIST_KINDS.has(spec.kind);

const lower = 'abcdefghijklmnopqrstuvwxyz0123456789';
const nameArb = fc.oneof(
  fc.constantFrom('api', 'cache', 'main', 'app', 'postgres', 'redis', 'x-1', 'a.b', 'a', 'z'.repeat(63)),
  fc
    .tuple(fc.constantFrom(...lower), fc.string({ unit: fc.constantFrom(...`${lower}._-`), maxLength: 20 }))
    .map(([a, b]) => a + b),
);
const idArb = fc.oneof(
  fc.constantFrom('EVENTS', '20261123T020000Z-1a2b3c4d', 'x', 'A'.repeat(128)),
  fc.string({ unit: fc.constantFrom(...'ABCxyz019_-'), minLength: 1, maxLength: 20 }).map((s) => `a${s}`),
);
const tableArb = fc.constantFrom('policies', 'public.policies', 'T_1', '_x$', 'a.b');
const textArb = fc.oneof(
  fc.constantFrom('API down', 'policy:stale:*', "o'brien", 'users; DROP TABLE x', '$(id)', 'line one\nline two', 'x'.repeat(200), 'ünïcødé ✓'),
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  fc.string({ minLength: 1, maxLength: 50 }).filter((s) => s.trim() !== '' && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(s)),
);
const identityArb = fc.constantFrom('alice', 'bob', 'schedule:daily-backup', 'alertmanager', 'ops@example.com', 'a'.repeat(128));
const datetimeArb = fc
  .date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true })
  .map((d) => d.toISOString());
const relPathArb = fc.constantFrom('.env', 'config/app.env', 'k8s/config-v1.yaml', 'a_b-c.d', 'runbooks.yaml.backup');

/**
 * Valid values of a field, boundaries included. `urlHost` keeps generated URLs on a
 * closed local port, so a valid run never reaches out anywhere.
 */
export function validValue(spec: FieldSpec, urlHost = '127.0.0.1:9'): fc.Arbitrary<unknown> {
  switch (spec.kind) {
    case 'name':
      return nameArb;
    case 'string':
      return textArb;
    case 'identity':
      return identityArb;
    case 'id':
      return idArb;
    case 'url':
      return fc.constantFrom(`http://${urlHost}/`, `http://${urlHost}/healthz?x=1`, `https://${urlHost}/metrics`);
    case 'image':
      return fc.constantFrom('ghcr.io/org/api:v1.0.0', 'nginx', 'registry:5000/a/b@sha256:0123abcd');
    case 'relative-path':
      return relPathArb;
    case 'boolean':
      return fc.boolean();
    case 'number':
      return fc.oneof(fc.constantFrom(0, 0.5, 1, 31_536_000), fc.double({ min: 0, max: 31_536_000, noNaN: true }));
    case 'positive-integer':
      return fc.oneof(fc.constantFrom(1, 2, 31_536_000), fc.integer({ min: 1, max: 31_536_000 }));
    case 'non-negative-integer':
      return fc.oneof(fc.constantFrom(0, 1, 31_536_000), fc.integer({ min: 0, max: 31_536_000 }));
    case 'integer-list':
      return fc.array(fc.oneof(fc.constantFrom(1, 5, 100, 2_147_483_647), fc.integer({ min: 1, max: 2_147_483_647 })), { maxLength: 5 });
    case 'string-list':
      return fc.array(nameArb, { maxLength: 4 });
    case 'table-list':
      return fc.array(tableArb, { maxLength: 4 });
    case 'enum':
      return fc.constantFrom(...spec.values!);
    case 'datetime':
      return datetimeArb;
    case 'object':
      return fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 });
  }
}

/** Values of the wrong type or shape for a field, hostile strings included. */
export function invalidValue(spec: FieldSpec): fc.Arbitrary<unknown> {
  const hostile = fc.constantFrom(...HOSTILE.filter(([label]) => spec.kind !== 'string' || REFUSED_EVEN_IN_TEXT.has(label)).map(([, v]) => v));
  const numbers = fc.constantFrom(...HOSTILE_NUMBERS.map(([, v]) => v));
  const wrongType: fc.Arbitrary<unknown> =
    spec.kind === 'boolean'
      ? fc.constantFrom('true', 1, 0, null, [], {})
      : spec.kind === 'object'
        ? fc.constantFrom(null, [], 'x', 1, true)
        : isListKind(spec)
          ? fc.oneof(
              fc.constantFrom(null, 'api', 1, {}, [null], [[]], [{}]),
              spec.kind === 'integer-list' ? fc.constantFrom([0], [-1], [1.5], ['1'], [2_147_483_648], [1e308]) : hostile.map((h) => [h]),
              fc.constant(Array.from({ length: 1001 }, () => (spec.kind === 'integer-list' ? 1 : 'policies'))),
            )
          : ['number', 'positive-integer', 'non-negative-integer'].includes(spec.kind)
            ? fc.oneof(numbers, fc.constantFrom(31_536_001, 0.5, -0.5), fc.string({ maxLength: 5 }))
            : fc.oneof(hostile, numbers, fc.constantFrom([], {}, false));
  return wrongType.filter((v) => !(spec.kind === 'number' && v === 0.5));
}

/** An input object made only of valid values; every required field present. */
export function validInput(procedure: ProcedureId, urlHost?: string): fc.Arbitrary<Record<string, unknown>> {
  const fields = INPUT_FIELDS[procedure];
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, spec] of Object.entries(fields)) model[name] = validValue(spec, urlHost);
  const requiredKeys = Object.entries(fields)
    .filter(([, s]) => s.required)
    .map(([n]) => n);
  return fc.record(model, { requiredKeys }) as fc.Arbitrary<Record<string, unknown>>;
}

/** Keys an object inherits or a parser treats specially: none of them is a field. */
export const SPECIAL_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype', ''] as const;

/** Any input a caller could send: valid, one field wrong, extra keys, not an object, random JSON. */
export function anyInput(procedure: ProcedureId, urlHost?: string): fc.Arbitrary<unknown> {
  const fields = INPUT_FIELDS[procedure];
  const names = Object.keys(fields);
  const valid = validInput(procedure, urlHost);
  const oneWrong = fc
    .tuple(valid, fc.constantFrom(...names))
    .chain(([input, field]) => invalidValue(fields[field]!).map((bad) => ({ ...input, [field]: bad })));
  const missingRequired = valid.map((input) => {
    const out = { ...input };
    for (const [n, s] of Object.entries(fields)) if (s.required) delete out[n];
    return out;
  });
  const extraKey = fc
    .tuple(valid, fc.oneof(fc.constantFrom(...SPECIAL_KEYS), fc.string({ maxLength: 60 })), fc.jsonValue({ maxDepth: 1 }))
    .map(([input, key, v]) => {
      const out: Record<string, unknown> = { ...input };
      // A data property even for "__proto__", as JSON.parse makes it.
      Object.defineProperty(out, key, { value: v, enumerable: true, configurable: true, writable: true });
      return out;
    });
  const notAnObject = fc.oneof(
    fc.constantFrom(null, undefined, 0, -1, Number.NaN, 1e308, '', '{}', 'null', true, false, [], [{}], '$(touch /tmp/pwned)'),
    fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
  );
  const randomObject = fc.dictionary(fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 12 })), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 6 });
  const manyUnknown = fc.integer({ min: 6, max: 2000 }).map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])));
  return fc.oneof(
    { arbitrary: valid, weight: 4 },
    { arbitrary: oneWrong, weight: 4 },
    { arbitrary: missingRequired, weight: 1 },
    { arbitrary: extraKey, weight: 2 },
    { arbitrary: notAnObject, weight: 1 },
    { arbitrary: randomObject, weight: 2 },
    { arbitrary: manyUnknown, weight: 1 },
  );
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

/** An oracle written from the documented rules, independent of common/inputs.ts: does `value` fit `spec`? */
export function conforms(spec: FieldSpec, value: unknown): boolean {
  const int = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
  switch (spec.kind) {
    case 'name':
      return typeof value === 'string' && NAME.test(value);
    case 'string':
      return typeof value === 'string' && value.trim() !== '' && value.length <= 200 && !CONTROL.test(value);
    case 'identity':
      return typeof value === 'string' && /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/.test(value);
    case 'id':
      return typeof value === 'string' && /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/.test(value);
    case 'url': {
      const m = typeof value === 'string' ? /^https?:\/\/([^/?#]*)/.exec(value) : null;
      return m !== null && m[1] !== '' && !m[1]!.includes('@') && !/\s/.test(value as string) && !CONTROL.test(value as string);
    }
    case 'image':
      return typeof value === 'string' && /^[A-Za-z0-9][\x21-\x7e]*$/.test(value) && !/[\s;|&$`'"<>\\(){}*?!]/.test(value);
    case 'relative-path':
      return typeof value === 'string' && !value.startsWith('/') && !value.split('/').includes('..') && /^[\x21-\x7e]+$/.test(value) && !/[;|&$`'"<>\\*?%]/.test(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 31_536_000;
    case 'positive-integer':
      return int(value, 1, 31_536_000);
    case 'non-negative-integer':
      return int(value, 0, 31_536_000);
    case 'integer-list':
      return Array.isArray(value) && value.length <= 1000 && value.every((v) => int(v, 1, 2_147_483_647));
    case 'string-list':
      return Array.isArray(value) && value.length <= 1000 && value.every((v) => typeof v === 'string' && NAME.test(v));
    case 'table-list':
      return Array.isArray(value) && value.length <= 1000 && value.every((v) => typeof v === 'string' && /^[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)?$/.test(v));
    case 'enum':
      return typeof value === 'string' && spec.values!.includes(value);
    case 'datetime':
      return typeof value === 'string' && /(Z|[+-]\d{2}:\d{2})$/.test(value) && !Number.isNaN(Date.parse(value));
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
  }
}
