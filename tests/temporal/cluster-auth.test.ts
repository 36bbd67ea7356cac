import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { isGrpcServiceError, WorkflowUpdateFailedError, type Client, type Connection } from '@temporalio/client';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { approveUpdate, pendingApprovalQuery } from '../../common/messages.js';
import { createLogger } from '../../lib/logger.js';
import { findTemporalServerTools, startTemporalCluster, type TemporalCluster } from '../../lib/temporal/cluster.js';
import { clusterTlsEnv, ensureClusterCerts } from '../../lib/temporal/cluster-tls.js';
import { connectClient, temporalSettingsFromEnv } from '../../lib/temporal/connection.js';
import { ensureSigningKey, signToken } from '../../lib/temporal/jwt.js';
import { approveDelete, destructiveStack, waitForJournal, waitForPending, type DestructiveStack } from '../fixtures/cluster.js';
import { uniqueQueue } from '../fixtures/runbook-worker.js';
import { killWorkers, spawnWorker } from '../fixtures/worker-process.js';

/**
 * `runbook temporal cluster --mtls --jwt`: the server's own JWT authorization on top of mTLS.
 * A client with a valid certificate but no token, or with a read-only token, cannot start,
 * approve or signal a run; a writer starts one and a worker with a writer token runs it
 * (the default authorizer ranks the `worker` role below `read`: alone it allows nothing).
 */
let dataDir: string;
let cluster: TemporalCluster;
let stack: DestructiveStack;
let tlsEnv: Record<string, string>;
let privateKeyFile: string;
const opened: Connection[] = [];
const taskQueue = uniqueQueue('cluster-auth');

async function clientWith(token?: string): Promise<Client> {
  const env = { ...tlsEnv, ...(token ? { TEMPORAL_API_KEY: token } : {}) };
  const { client, connection } = await connectClient({ ...temporalSettingsFromEnv(env), address: cluster.address, namespace: cluster.namespace });
  opened.push(connection);
  return client;
}

const token = (subject: string, ...permissions: string[]) => signToken(privateKeyFile, { subject, permissions, ttlSeconds: 600 });

/** The gRPC status a refused call ends with (an update's failure wraps it). */
async function refusal(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (err) {
    const inner = err instanceof WorkflowUpdateFailedError || !isGrpcServiceError(err) ? ((err as { cause?: unknown }).cause ?? err) : err;
    if (isGrpcServiceError(inner)) return inner.code;
    if (isGrpcServiceError(err)) return err.code;
    throw err;
  }
  throw new Error('the call was not refused');
}
const REFUSED = [GrpcStatus.PERMISSION_DENIED, GrpcStatus.UNAUTHENTICATED];

beforeAll(async () => {
  await findTemporalServerTools({ install: true, onProgress: (line) => process.stderr.write(`${line}\n`) });
  dataDir = await mkdtemp(path.join(tmpdir(), 'runbook-cluster-auth-'));
  const certs = await ensureClusterCerts(path.join(dataDir, 'tls'));
  tlsEnv = clusterTlsEnv(certs);
  const key = await ensureSigningKey(path.join(dataDir, 'jwt'));
  privateKeyFile = key.privateKeyFile;
  [cluster, stack] = await Promise.all([
    startTemporalCluster({
      dataDir,
      port: 0,
      ephemeral: true,
      logFile: path.resolve('tests/artifacts/cluster-auth-server.log'),
      logger: createLogger({ component: 'cluster-auth' }, process.env.TEST_LOG_LEVEL ?? 'warn'),
      tls: { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, clientCaFile: certs.caFile },
      jwksFile: key.jwksFile,
    }),
    destructiveStack(),
  ]);
}, 600_000);

afterAll(async () => {
  killWorkers();
  await Promise.all(opened.map((c) => c.close().catch(() => undefined)));
  await cluster?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('JWT authorization on the cluster', () => {
  it('configures the server’s default authorizer with keys from the loopback JWKS server, which serves the public key only', async () => {
    const config = parse(await readFile(path.join(dataDir, 'config', 'runbook.yaml'), 'utf8')) as {
      global: { authorization: Record<string, unknown> };
      services: Record<string, { rpc: { bindOnLocalHost?: boolean } }>;
    };
    expect(config.global.authorization).toMatchObject({
      authorizer: 'default',
      claimMapper: 'default',
      permissionsClaimName: 'permissions',
      jwtKeyProvider: { keySourceURIs: [cluster.jwksUrl] },
    });
    expect(config.services['internal-frontend']!.rpc.bindOnLocalHost).toBe(true);
    const jwks = (await (await fetch(cluster.jwksUrl!)).json()) as { keys: Record<string, string>[] };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    expect(jwks.keys[0]!.d).toBeUndefined();
  });

  it('refuses a client without a token, a forged token and a read-only token to start; a writer starts, a reader queries but cannot approve; a worker with a writer token runs it', async () => {
    // GetSystemInfo (what the SDK calls at connect) is open to all; the workflow APIs are not.
    const anonymous = await clientWith();
    const start = (c: Client, id: string) => c.workflow.start('stack-stop', { taskQueue, workflowId: `${id}-${Date.now()}`, args: [{ clean: true, requestedBy: 'alice' }] });
    expect(REFUSED).toContain(await refusal(start(anonymous, 'anon')));

    // Signed by a key the server does not know (a key pair of another "cluster").
    const otherKey = await ensureSigningKey(path.join(dataDir, 'other-jwt'));
    // A token that does not verify is refused on the first call, even the connect's GetSystemInfo.
    const forgedToken = await signToken(otherKey.privateKeyFile, { subject: 'mallory', permissions: ['temporal-system:admin'] });
    expect(REFUSED).toContain(await refusal(clientWith(forgedToken)));

    // The reader's token from the CLI, as an operator makes one.
    const cli = await execa(process.execPath, ['bin/runbook.mjs', 'temporal', 'token', '--data-dir', dataDir, '--subject', 'auditor', '--permission', 'default:read', '--ttl', '600']);
    expect(cli.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const reader = await clientWith(cli.stdout.trim());
    expect(REFUSED).toContain(await refusal(start(reader, 'reader')));

    await stack.reset(0);
    const writer = await clientWith(await token('alice', 'default:write'));
    const handle = await start(writer, 'writer');

    const worker = await spawnWorker(stack.loaded.path, taskQueue, {
      temporal: { address: cluster.address, namespace: cluster.namespace },
      env: { ...process.env, ...tlsEnv, TEMPORAL_API_KEY: await token('runbook-worker', 'default:write') },
    });
    const pending = await waitForPending(handle);
    expect(pending.step).toBe('approve-delete');

    // The reader sees the run and its pending approval, but cannot answer it or signal the run.
    const asReader = reader.workflow.getHandle(handle.workflowId);
    expect((await asReader.describe()).status.name).toBe('RUNNING');
    expect((await asReader.query(pendingApprovalQuery))?.step).toBe('approve-delete');
    expect(REFUSED).toContain(await refusal(asReader.executeUpdate(approveUpdate, { args: [{ by: 'bob', confirm: 'DELETE', step: 'approve-delete' }] })));
    expect(REFUSED).toContain(await refusal(asReader.signal('cancel-run')));
    expect(REFUSED).toContain(await refusal(asReader.cancel()));
    // Without a token even reading is refused.
    const asAnonymous = anonymous.workflow.getHandle(handle.workflowId);
    expect(REFUSED).toContain(await refusal(asAnonymous.describe()));
    expect(REFUSED).toContain(await refusal(asAnonymous.query(pendingApprovalQuery)));
    expect(REFUSED).toContain(await refusal(asAnonymous.signal('cancel-run')));
    // None of those refused calls moved the run: nothing destructive ran.
    expect(await stack.journal()).not.toContain(expect.stringMatching(/^clean/));
    expect((await asReader.query(pendingApprovalQuery))?.step).toBe('approve-delete');

    await approveDelete(writer.workflow.getHandle(handle.workflowId));
    await waitForJournal(stack, 'clean-done');
    await handle.result();
    expect((await asReader.describe()).status.name).toBe('COMPLETED');
    worker.child.kill('SIGTERM');
  }, 60_000);
});
