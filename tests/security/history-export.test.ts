import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { PROCEDURE_IDS } from '../../common/procedures.js';
import { ENCRYPTED_ENCODING, payloadEncryptionFromEnv } from '../../lib/codec/index.js';

/**
 * The histories under tests/replay/histories are exports of real runs of every runbook,
 * made by the test suite (RECORD_HISTORIES=1) with encryption on, exactly as `temporal
 * workflow show --output json` or the UI's download would give them to whoever can read
 * the history. Read them as that person would, without the key.
 */

const dir = path.resolve('tests/replay/histories');

interface Found {
  payload: { metadata?: Record<string, string>; data?: string };
  eventType: string;
  key: string;
}

function b64(s: string | undefined): string {
  return s ? Buffer.from(s, 'base64').toString('utf8') : '';
}

/** Every Payload-shaped object in an exported event, with the event type it sits in. */
function payloadsOf(value: unknown, eventType: string, key: string, out: Found[]): void {
  if (Array.isArray(value)) {
    for (const v of value) payloadsOf(v, eventType, key, out);
    return;
  }
  if (!value || typeof value !== 'object') return;
  const o = value as Record<string, unknown>;
  if (o.metadata && typeof o.metadata === 'object' && 'encoding' in (o.metadata as object)) {
    out.push({ payload: o as Found['payload'], eventType, key });
    return;
  }
  for (const [k, v] of Object.entries(o)) {
    // Search attributes are indexed by the server and are documented as plain text.
    if (k === 'searchAttributes') continue;
    payloadsOf(v, eventType, k, out);
  }
}

/** Every failure object in an exported event. */
function failuresOf(value: unknown, out: Array<Record<string, unknown>>): void {
  if (Array.isArray(value)) return value.forEach((v) => failuresOf(v, out));
  if (!value || typeof value !== 'object') return;
  const o = value as Record<string, unknown>;
  if (typeof o.message === 'string' && ('applicationFailureInfo' in o || 'encodedAttributes' in o || 'activityFailureInfo' in o || 'childWorkflowExecutionFailureInfo' in o)) out.push(o);
  for (const v of Object.values(o)) failuresOf(v, out);
}

/** Strings in a decrypted input that are specific enough to spot elsewhere ("alice", a target time; not "api"). */
function distinctiveStrings(value: unknown, out: Set<string>): Set<string> {
  if (typeof value === 'string' && value.length >= 5) out.add(value);
  else if (Array.isArray(value)) value.forEach((v) => distinctiveStrings(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => distinctiveStrings(v, out));
  return out;
}

/**
 * Temporal's own names, clear by design and documented as such: workflow and activity types
 * (the procedure, e.g. "blue-green-switch"), workflow ids (which may name the subject), task queues.
 */
const CLEAR_BY_DESIGN = new Set(['searchAttributes', 'workflowType', 'activityType', 'workflowId', 'taskQueue']);

/** The exported JSON with encrypted payload bodies and Temporal's own names removed: what is left is stored in clear. */
function clearText(events: unknown[]): string {
  return JSON.stringify(events, (k, v: unknown) => {
    if (CLEAR_BY_DESIGN.has(k)) return undefined;
    if (v && typeof v === 'object' && 'metadata' in v && b64((v as Found['payload']).metadata?.encoding) === ENCRYPTED_ENCODING) return '[encrypted]';
    return v;
  });
}

async function histories(): Promise<Array<{ name: string; events: Array<Record<string, unknown> & { eventType?: string }> }>> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  return Promise.all(
    files.map(async (f) => ({ name: f.replace(/\.json$/, ''), events: (JSON.parse(await readFile(path.join(dir, f), 'utf8')) as { events: never[] }).events })),
  );
}

describe('exported histories of every runbook hold no plain text', async () => {
  const all = await histories();
  const codec = payloadEncryptionFromEnv().codec;

  it('covers every procedure', () => {
    const types = new Set(all.map((h) => (h.events[0]?.workflowExecutionStartedEventAttributes as { workflowType?: { name?: string } })?.workflowType?.name));
    for (const p of PROCEDURE_IDS) expect(types, p).toContain(p);
  });

  for (const h of all) {
    it(`${h.name}: every payload is encrypted, failures are encoded, and no input text is in clear`, async () => {
      const found: Found[] = [];
      for (const e of h.events) payloadsOf(e, String(e.eventType), '', found);
      expect(found.length).toBeGreaterThan(0);
      // The SDK core writes its own bookkeeping into markers (a local activity's type, attempt
      // and times; patch ids) without the codec; everything else must be ciphertext.
      const clear = found.filter((f) => b64(f.payload.metadata?.encoding) !== ENCRYPTED_ENCODING);
      for (const f of clear) {
        expect(`${f.eventType} ${f.key}`, `${h.name}: a plain payload outside a marker: ${b64(f.payload.data).slice(0, 120)}`).toMatch(/^EVENT_TYPE_MARKER_RECORDED /);
      }

      const failures: Array<Record<string, unknown>> = [];
      failuresOf(h.events, failures);
      for (const f of failures) expect(f.message, `${h.name}: a failure message stored in clear`).toBe('Encoded failure');

      // The run's own input, decrypted with the key, must not appear anywhere the reader can see.
      const started = h.events[0]!.workflowExecutionStartedEventAttributes as { input?: { payloads?: Array<{ metadata: Record<string, string>; data: string }> } };
      const stored = started.input?.payloads ?? [];
      const decoded = await codec.decode(
        stored.map((p): Payload => ({
          metadata: Object.fromEntries(Object.entries(p.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
          data: Buffer.from(p.data ?? '', 'base64'),
        })),
      );
      const input = decoded.map((p) => defaultPayloadConverter.fromPayload(p));
      const text = clearText(h.events);
      for (const s of distinctiveStrings(input, new Set())) {
        expect(text.includes(s), `${h.name}: input value ${JSON.stringify(s)} is readable in the exported history`).toBe(false);
      }
      // Nothing shaped like a credential, in clear or in a base64 field the reader can decode.
      expect(text).not.toMatch(/[a-z]+:\/\/[^/\s:@"]+:[^@\s"]+@/i);
      expect(text).not.toMatch(/password\s*[=:]/i);
    });
  }
});
