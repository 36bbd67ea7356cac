import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TASK_QUEUE } from '../../common/procedures.js';
import { connectClient, connectWorker, describeSettings, temporalSettingsFromEnv } from '../../lib/temporal/connection.js';
import { testTemporal } from '../fixtures/temporal.js';

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'runbook-conn-test-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('temporalSettingsFromEnv', () => {
  it('defaults to a local plaintext server, the default namespace and the runbooks task queue', () => {
    expect(temporalSettingsFromEnv({})).toEqual({ address: '127.0.0.1:7233', namespace: 'default', taskQueue: DEFAULT_TASK_QUEUE });
  });

  it('reads address, namespace, task queue and mTLS files', () => {
    const s = temporalSettingsFromEnv({
      TEMPORAL_ADDRESS: 'ops.tmprl.cloud:7233',
      TEMPORAL_NAMESPACE: 'ops.abc12',
      RUNBOOK_TASK_QUEUE: 'runbooks-prod',
      TEMPORAL_TLS_CERT: '/etc/runbooks/client.pem',
      TEMPORAL_TLS_KEY: '/etc/runbooks/client.key',
      TEMPORAL_TLS_CA: '/etc/runbooks/ca.pem',
      TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
    });
    expect(s).toEqual({
      address: 'ops.tmprl.cloud:7233',
      namespace: 'ops.abc12',
      taskQueue: 'runbooks-prod',
      tls: {
        clientCertPath: '/etc/runbooks/client.pem',
        clientKeyPath: '/etc/runbooks/client.key',
        serverRootCaPath: '/etc/runbooks/ca.pem',
        serverNameOverride: 'temporal.internal',
      },
    });
  });

  it('turns TLS on for an API key, and never shows the key in what may be logged', () => {
    const s = temporalSettingsFromEnv({ TEMPORAL_API_KEY: 'sk-very-secret-key' });
    expect(s.tls).toEqual({});
    expect(s.apiKey).toBe('sk-very-secret-key');
    const shown = JSON.stringify(describeSettings(s));
    expect(shown).not.toContain('sk-very-secret-key');
    expect(shown).toContain('"apiKey":"***"');
  });

  it('names the variables of a bad combination', () => {
    expect(() => temporalSettingsFromEnv({ TEMPORAL_TLS_CERT: '/c.pem' })).toThrow(/TEMPORAL_TLS_CERT is set but TEMPORAL_TLS_KEY is not/);
    expect(() => temporalSettingsFromEnv({ TEMPORAL_TLS_KEY: '/c.key' })).toThrow(/TEMPORAL_TLS_KEY is set but TEMPORAL_TLS_CERT is not/);
    expect(() => temporalSettingsFromEnv({ TEMPORAL_TLS: 'false', TEMPORAL_API_KEY: 'k-123456' })).toThrow(/TEMPORAL_TLS=false contradicts TEMPORAL_API_KEY/);
    expect(() => temporalSettingsFromEnv({ TEMPORAL_TLS: 'maybe' })).toThrow(/TEMPORAL_TLS=maybe is not a boolean/);
  });
});

describe('connecting', () => {
  it('the client and the worker connection reach the server named in the environment', async () => {
    const { address, namespace } = testTemporal();
    const settings = temporalSettingsFromEnv({ TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace });
    const { client, connection } = await connectClient(settings);
    try {
      expect(client.options.namespace).toBe(namespace);
      const info = await connection.workflowService.getSystemInfo({});
      expect(info.serverVersion).toBeTruthy();
    } finally {
      await connection.close();
    }
    const native = await connectWorker(settings);
    await native.close();
  });

  it('a missing certificate file is reported with its variable, before any network call', async () => {
    const missing = path.join(scratch, 'absent-ca.pem');
    const settings = temporalSettingsFromEnv({ TEMPORAL_ADDRESS: testTemporal().address, TEMPORAL_TLS_CA: missing });
    await expect(connectClient(settings)).rejects.toThrow(new RegExp(`TEMPORAL_TLS_CA=${missing}: cannot read the file \\(ENOENT\\)`));
    await expect(connectWorker(settings)).rejects.toThrow(/TEMPORAL_TLS_CA=.*ENOENT/);
  });
});
