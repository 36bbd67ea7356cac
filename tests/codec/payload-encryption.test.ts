import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { HealthCheckResult } from '../../common/types.js';
import { ENCRYPTED_ENCODING, payloadEncryptionFromEnv } from '../../lib/codec/index.js';
import type { LoadedConfig } from '../../lib/config.js';
import { findTemporalCli } from '../../lib/temporal/install.js';
import { freePort } from '../fixtures/servers.js';
import { historyToText } from '../fixtures/history.js';
import { temporalAddress, temporalNamespace, uniqueQueue, withWorker, writeConfig } from '../fixtures/runbook-worker.js';

type History = temporal.api.history.v1.IHistory;
const HistoryType = temporal.api.history.v1.History;

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(ROOT, 'bin/runbook.mjs');

// Random per run: a string that can only be in the history if it was written there in plain text.
const MARKER = `marker-${randomBytes(6).toString('hex')}`;
const SECRET = `secret-${randomBytes(6).toString('hex')}`;
const MISSING_VAR = `E2E_MISSING_${randomBytes(4).toString('hex').toUpperCase()}`;

let probeTarget: http.Server;
const tokensSeen: string[] = [];
let loaded: LoadedConfig;
let plainConnection: Connection;
/** What someone with access to the Temporal server (or its database) sees: no codec. */
let rawClient: Client;

beforeAll(async () => {
  probeTarget = http.createServer((req, res) => {
    const token = new URL(req.url ?? '/', 'http://x').searchParams.get('token') ?? '';
    tokensSeen.push(token);
    res.writeHead(token === SECRET ? 200 : 401).end(token === SECRET ? 'healthy' : 'who are you');
  });
  await new Promise<void>((resolve) => probeTarget.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(probeTarget.address() as AddressInfo).port}`;
  const noop = { type: 'command', status: ['true'] };
  loaded = await writeConfig({
    environment: 'test',
    services: [
      { name: 'web', group: 'apps', driver: noop, probes: [{ type: 'http', url: `${base}/healthz?token=\${E2E_SECRET}`, bodyMatch: 'healthy' }] },
      { name: 'broken', group: 'apps', driver: noop, probes: [{ type: 'http', url: `${base}/healthz?token=\${${MISSING_VAR}}` }] },
    ],
    approvals: { approvers: { default: ['alice'] } },
  });
  plainConnection = await Connection.connect({ address: temporalAddress() });
  rawClient = new Client({ connection: plainConnection, namespace: temporalNamespace() });
});

afterAll(async () => {
  await plainConnection?.close();
  await new Promise((resolve) => probeTarget?.close(resolve));
});

const workerEnv = () => ({ ...process.env, E2E_SECRET: SECRET });

/** Every Payload in the history, with where it is; search attributes and headers are left out (Temporal never encodes those). */
function payloadsIn(node: unknown, at = '', out: Array<{ at: string; payload: Payload }> = []): Array<{ at: string; payload: Payload }> {
  if (node === null || typeof node !== 'object' || ArrayBuffer.isView(node)) return out;
  if (Array.isArray(node)) {
    node.forEach((v, i) => payloadsIn(v, `${at}[${i}]`, out));
    return out;
  }
  const o = node as Record<string, unknown>;
  if (o.metadata && typeof o.metadata === 'object' && 'encoding' in (o.metadata as object)) {
    out.push({ at, payload: o as Payload });
    return out;
  }
  for (const [k, v] of Object.entries(o)) {
    if (k === 'searchAttributes' || k === 'header') continue;
    payloadsIn(v, at ? `${at}.${k}` : k, out);
  }
  return out;
}

/** Every Failure in the history (cause chains included). */
function failuresIn(node: unknown, out: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (node === null || typeof node !== 'object' || ArrayBuffer.isView(node)) return out;
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if ((k === 'failure' || k === 'cause') && v && typeof v === 'object') out.push(v as Record<string, unknown>);
    failuresIn(v, out);
  }
  return out;
}

const encoding = (p: Payload) => Buffer.from(p.metadata!.encoding!).toString();

/** The history as stored: its protobuf bytes and its JSON (failure messages, ids, names). */
function storedForms(history: History): string[] {
  const withoutSearchAttributes = JSON.parse(historyToText(history), (k, v: unknown) => (k === 'searchAttributes' ? undefined : v)) as Record<string, unknown>;
  const bytes = HistoryType.encode(HistoryType.fromObject(withoutSearchAttributes)).finish();
  return [Buffer.from(bytes).toString('latin1'), JSON.stringify(withoutSearchAttributes)];
}

function expectNoPlaintext(history: History, needles: string[]): void {
  const [bytes, json] = storedForms(history);
  const found = needles.filter((needle) => bytes!.includes(needle) || json!.includes(needle));
  expect(found, 'stored in plain text').toEqual([]);
}

/** Which encrypted payloads exist, and which payloads are not encrypted (only Temporal's own marker bookkeeping may be). */
function expectPayloadsEncrypted(history: History): number {
  const payloads = payloadsIn(history);
  const plain = payloads.filter((p) => encoding(p.payload) !== ENCRYPTED_ENCODING);
  // The SDK core writes markers' bookkeeping itself, past the codec: a local activity's `data` (seq,
  // attempt, activity type, times; its own `result` is encrypted) and a patched() call's `patch-data` (the patch id).
  const unexpected = plain.filter((p) => !/markerRecordedEventAttributes\.details\.(data|patch-data)\.payloads\[\d+\]$/.test(p.at));
  expect(unexpected.map((p) => `${p.at}: ${encoding(p.payload)}`)).toEqual([]);
  return payloads.length - plain.length;
}

describe('payload encryption against the real Temporal server', () => {
  it('a run\'s input, config, probe results and result are ciphertext in history, and decrypt with the key', async () => {
    const input = { services: ['web'], requestedBy: MARKER };
    const { workflowId, result } = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const workflowId = `codec-e2e-${Date.now()}`;
        const result = (await client.workflow.execute('health-check', { taskQueue, workflowId, args: [input] })) as HealthCheckResult;
        return { workflowId, result };
      },
      { env: workerEnv() },
    );
    // The worker resolved ${E2E_SECRET} and the probe passed with it: the secret was really used.
    expect(tokensSeen).toContain(SECRET);
    expect(result.ok).toBe(true);
    expect(result.results).toMatchObject([{ service: 'web', type: 'http', status: 'healthy' }]);

    const history = await rawClient.workflow.getHandle(workflowId).fetchHistory();
    expect(expectPayloadsEncrypted(history)).toBeGreaterThanOrEqual(3);
    // The input, the secret (resolved or as a reference), the config snapshot's URL, the probe result.
    expectNoPlaintext(history, [MARKER, SECRET, '${E2E_SECRET}', '/healthz?token=', 'healthy']);

    // A client without the codec cannot read the result; one with the key reads the input back.
    await expect(rawClient.workflow.getHandle(workflowId).result()).rejects.toThrow(/binary\/encrypted/);
    const started = history.events![0]!.workflowExecutionStartedEventAttributes!;
    const [decoded] = await payloadEncryptionFromEnv().codec.decode(started.input!.payloads! as Payload[]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual(input);
  });

  it('failure messages and stack traces are encrypted too: from workflow code and from an activity', async () => {
    const ids = await withWorker(
      loaded,
      async ({ client, taskQueue }) => {
        const inWorkflow = `codec-e2e-wf-fail-${Date.now()}`;
        const wfErr = await client.workflow.execute('health-check', { taskQueue, workflowId: inWorkflow, args: [{ services: ['web', MARKER] }] }).catch((e: unknown) => e);
        // With the codec the caller still gets the real message.
        expect(wfErr).toBeInstanceOf(WorkflowFailedError);
        expect((wfErr as WorkflowFailedError).cause?.message).toMatch(new RegExp(`unknown service\\(s\\) ${MARKER}`));

        const inActivity = `codec-e2e-act-fail-${Date.now()}`;
        const actErr = await client.workflow.execute('health-check', { taskQueue, workflowId: inActivity, args: [{ services: ['broken'] }] }).catch((e: unknown) => e);
        expect(actErr).toBeInstanceOf(WorkflowFailedError);
        const chain = JSON.stringify((actErr as WorkflowFailedError).cause, Object.getOwnPropertyNames((actErr as WorkflowFailedError).cause));
        expect(chain).toContain(`${MISSING_VAR} is not set`);
        return [inWorkflow, inActivity];
      },
      { env: workerEnv() },
    );
    for (const workflowId of ids) {
      const history = await rawClient.workflow.getHandle(workflowId).fetchHistory();
      const failures = failuresIn(history);
      expect(failures.length).toBeGreaterThan(0);
      for (const f of failures) {
        expect(f.message).toBe('Encoded failure');
        expect(f.stackTrace ?? '').toBe('');
        expect(encoding(f.encodedAttributes as Payload)).toBe(ENCRYPTED_ENCODING);
      }
      expectPayloadsEncrypted(history);
      expectNoPlaintext(history, [MARKER, MISSING_VAR, 'unknown service', 'is not set']);
    }
  });

  it('the check above can fail: a run started by a client without the codec stores its input in plain text', async () => {
    const workflowId = `codec-e2e-plain-${Date.now()}`;
    const handle = await rawClient.workflow.start('health-check', { taskQueue: uniqueQueue('no-worker'), workflowId, args: [{ requestedBy: MARKER }] });
    try {
      const history = await handle.fetchHistory();
      expect(storedForms(history)[0]!.includes(MARKER)).toBe(true);
      expect(payloadsIn(history).map((p) => encoding(p.payload))).toContain('json/plain');
    } finally {
      await handle.terminate('test done');
    }
  });

  it('the CLI reads encrypted runs with the key, and without the right key says which key it needs', async () => {
    const workflowId = `codec-e2e-cli-${Date.now()}`;
    const taskQueue = uniqueQueue('codec-cli');
    await withWorker(
      loaded,
      async ({ client }) => {
        await client.workflow.execute('health-check', { taskQueue, workflowId, args: [{ services: ['web'], requestedBy: MARKER }] });
      },
      { env: workerEnv(), taskQueue },
    );
    const env = { TEMPORAL_ADDRESS: temporalAddress(), TEMPORAL_NAMESPACE: temporalNamespace() };
    const ok = await execa(process.execPath, [CLI, 'status', workflowId, '--json'], { env, reject: false });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ workflowId, status: 'COMPLETED' });

    const otherKeys = path.join(await mkdtemp(path.join(tmpdir(), 'codec-cli-')), 'keys.json');
    await writeFile(otherKeys, JSON.stringify({ current: 'other', keys: { other: randomBytes(32).toString('base64') } }));
    const wrong = await execa(process.execPath, [CLI, 'status', workflowId], { env: { ...env, RUNBOOK_CODEC_KEY_FILE: otherKeys }, reject: false });
    expect(wrong.exitCode).toBe(1);
    // Not reported as the run's failure: the run succeeded, this CLI lacks its key.
    expect(wrong.stdout).not.toMatch(/failure:/);
    expect(wrong.stderr).toMatch(/encrypted with key id "test-only-1", which is not among the configured keys \(other\) from RUNBOOK_CODEC_KEY_FILE=.*keys\.json: add that key/);

    // `runbook codec-server` with a token serves the Temporal CLI (the codec protocol's other consumer).
    const port = await freePort();
    const server = spawn(process.execPath, [CLI, 'codec-server', '--port', String(port), '--token-env', 'E2E_CODEC_TOKEN'], {
      env: { ...process.env, E2E_CODEC_TOKEN: 'e2e-token' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      let banner = '';
      server.stderr.on('data', (d: Buffer) => (banner += d.toString()));
      for (let i = 0; i < 200 && !banner.includes('codec server on'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(banner).toContain(`codec server on http://127.0.0.1:${port}`);
      const temporalCli = (await findTemporalCli({ install: false }))!;
      const show = (...extra: string[]) =>
        execa(temporalCli, ['workflow', 'show', '-w', workflowId, '--address', temporalAddress(), '--namespace', temporalNamespace(), '-o', 'json', ...extra], { reject: false });
      // Its JSON output keeps payloads in proto JSON form: the started event's input, base64-decoded.
      const input = (out: string) => {
        const started = (JSON.parse(out) as { events: Array<{ workflowExecutionStartedEventAttributes?: { input: { payloads: Array<{ data: string }> } } }> }).events[0]!;
        return Buffer.from(started.workflowExecutionStartedEventAttributes!.input.payloads[0]!.data, 'base64').toString('latin1');
      };
      const decoded = await show('--codec-endpoint', `http://127.0.0.1:${port}`, '--codec-auth', 'Bearer e2e-token');
      expect(decoded.exitCode, decoded.stderr).toBe(0);
      expect(JSON.parse(input(decoded.stdout))).toEqual({ services: ['web'], requestedBy: MARKER });
      const raw = await show();
      expect(input(raw.stdout)).not.toContain(MARKER);
      const unauthorized = await show('--codec-endpoint', `http://127.0.0.1:${port}`, '--codec-auth', 'Bearer wrong');
      expect(unauthorized.exitCode).not.toBe(0);
      expect(unauthorized.stdout + unauthorized.stderr).not.toContain(MARKER);
    } finally {
      server.kill('SIGTERM');
    }
  });

  it('a memo set when starting a run is encrypted as well', async () => {
    const client = new Client({ connection: plainConnection, namespace: temporalNamespace(), dataConverter: payloadEncryptionFromEnv().dataConverter });
    const handle = await client.workflow.start('health-check', { taskQueue: uniqueQueue('no-worker'), workflowId: `codec-e2e-memo-${Date.now()}`, args: [{}], memo: { note: MARKER } });
    try {
      const history = await handle.fetchHistory();
      const memo = history.events![0]!.workflowExecutionStartedEventAttributes!.memo!.fields!.note!;
      expect(encoding(memo as Payload)).toBe(ENCRYPTED_ENCODING);
      expectNoPlaintext(history, [MARKER]);
      expect((await handle.describe()).memo).toEqual({ note: MARKER });
    } finally {
      await handle.terminate('test done');
    }
  });
});

describe('the test UI', () => {
  it('decodes through the run\'s codec server, which answers the UI\'s origin', async () => {
    const uiUrl = inject('temporalUiUrl');
    const codecEndpoint = inject('codecEndpoint');
    const settings = (await (await fetch(`${uiUrl}/api/v1/settings`)).json()) as { Codec?: { Endpoint?: string } };
    expect(settings.Codec?.Endpoint).toBe(codecEndpoint);
    const preflight = await fetch(`${codecEndpoint}/encode`, {
      method: 'OPTIONS',
      headers: { Origin: new URL(uiUrl).origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(new URL(uiUrl).origin);
  });
});

describe('RUNBOOK_CODEC_REQUIRED', () => {
  /** `runbook worker` as an operator starts it, with no key in its environment and an empty working directory. */
  async function startWorker(extra: NodeJS.ProcessEnv) {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TEMPORAL_ADDRESS: temporalAddress(),
      TEMPORAL_NAMESPACE: temporalNamespace(),
      RUNBOOK_TASK_QUEUE: uniqueQueue('codec-required'),
      LOG_LEVEL: 'info',
      ...extra,
    };
    delete env.RUNBOOK_CODEC_KEY_FILE;
    delete env.RUNBOOK_CODEC_KEY;
    const child = spawn(process.execPath, [CLI, 'worker', '--config', loaded.path, '--metrics', 'off'], { env, cwd: await mkdtemp(path.join(tmpdir(), 'codec-cwd-')) });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { child, output: () => output, exited };
  }

  it('a worker that must encrypt refuses to start without a key, saying how to give it one', async () => {
    const w = await startWorker({ RUNBOOK_CODEC_REQUIRED: 'true' });
    expect(await w.exited).toBe(1);
    expect(w.output()).toMatch(/RUNBOOK_CODEC_REQUIRED=true but no payload encryption key is configured: set RUNBOOK_CODEC_KEY .* or RUNBOOK_CODEC_KEY_FILE/);
    expect(w.output()).not.toContain('"worker started"');
  });

  it('by default a worker without a key starts, and warns once that payloads are plain text', async () => {
    const w = await startWorker({});
    try {
      for (let i = 0; i < 300 && !w.output().includes('"worker started"') && w.child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
      expect(w.output()).toContain('"worker started"');
      const warnings = w.output().split('\n').filter((l) => l.includes('payload encryption is off'));
      expect(warnings).toHaveLength(1);
      expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 40 });
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
  });
});
