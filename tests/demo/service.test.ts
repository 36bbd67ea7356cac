import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProbe } from '../../activities/probes/index.js';
import { startDemoService, type DemoService } from '../../demo/service.js';
import { freePort } from '../fixtures/servers.js';

let demo: DemoService;

beforeAll(async () => {
  demo = await startDemoService({ httpPort: await freePort(), grpcPort: await freePort(), version: '1.4.2' });
});

afterAll(async () => {
  await demo?.stop();
});

async function admin(state: Record<string, unknown>): Promise<Response> {
  return fetch(`${demo.httpUrl}/admin/state`, { method: 'POST', body: JSON.stringify(state) });
}

async function metricsText(): Promise<string> {
  return (await fetch(`${demo.httpUrl}/metrics`)).text();
}

function counter(text: string, code: number): number {
  return Number(new RegExp(`^http_requests_total\\{code="${code}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
}

const grpcStatus = async () =>
  (await runProbe({ type: 'grpc', address: demo.grpcAddress, service: '', tls: false, timeoutMs: 2000 }, { env: {}, field: 'demo' })).detail;

describe('demo service', () => {
  it('answers with its version and counts requests in Prometheus format', async () => {
    const before = counter(await metricsText(), 200);
    const res = await fetch(`${demo.httpUrl}/orders/42`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ version: '1.4.2', ok: true });
    const text = await metricsText();
    expect(counter(text, 200)).toBe(before + 1);
    expect(text).toContain('# TYPE http_requests_total counter');
    expect(text).toContain('# TYPE http_request_duration_seconds histogram');
    expect(text).toMatch(/^http_request_duration_seconds_bucket\{le="\+Inf"\} \d+$/m);
    expect(text).toMatch(/^http_request_duration_seconds_count \d+$/m);
  });

  it('fails requests at the configured error rate and slows them by the configured latency', async () => {
    expect((await admin({ errorRate: 1, latencyMs: 150 })).status).toBe(200);
    try {
      const before = counter(await metricsText(), 500);
      const started = Date.now();
      const res = await fetch(`${demo.httpUrl}/`);
      expect(res.status).toBe(500);
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      const text = await metricsText();
      expect(counter(text, 500)).toBe(before + 1);
      // 150 ms lands above the 0.1 s bucket boundary.
      const le01 = Number(/^http_request_duration_seconds_bucket\{le="0.1"\} (\d+)$/m.exec(text)?.[1]);
      const inf = Number(/^http_request_duration_seconds_bucket\{le="\+Inf"\} (\d+)$/m.exec(text)?.[1]);
      expect(inf).toBeGreaterThan(le01);
    } finally {
      await admin({ errorRate: 0, latencyMs: 0 });
    }
    expect((await fetch(`${demo.httpUrl}/`)).status).toBe(200);
  });

  it('turns unhealthy on HTTP and gRPC together, and back', async () => {
    expect(await grpcStatus()).toMatch(/^SERVING/);
    await admin({ healthy: false });
    const res = await fetch(`${demo.httpUrl}/healthz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'unhealthy' });
    expect(await grpcStatus()).toMatch(/^NOT_SERVING/);
    await admin({ healthy: true, version: '1.5.0' });
    expect(await (await fetch(`${demo.httpUrl}/healthz`)).json()).toEqual({ status: 'healthy', version: '1.5.0' });
    expect(await grpcStatus()).toMatch(/^SERVING/);
  });

  it('refuses a bad admin request, naming the field', async () => {
    const res = await admin({ errorRate: 3 });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toMatch(/^errorRate: /);
    const unknown = await admin({ healthy: false, colour: 'red' });
    expect(unknown.status).toBe(400);
    expect((await fetch(`${demo.httpUrl}/healthz`)).status).toBe(200);
  });

  it('runs as a process: one JSON line when ready, clean exit on SIGTERM', async () => {
    const [httpPort, grpcPort] = [await freePort(), await freePort()];
    const script = fileURLToPath(new URL('../../demo/service.ts', import.meta.url));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', script, '--http-port', String(httpPort), '--grpc-port', String(grpcPort), '--version', '2.0.0', '--error-rate', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      for (let i = 0; i < 200 && !out.includes('demo service ready'); i++) await new Promise((r) => setTimeout(r, 50));
      const ready = JSON.parse(out.split('\n')[0]!) as { msg: string; httpUrl: string; grpcAddress: string; version: string };
      expect(ready).toMatchObject({
        msg: 'demo service ready',
        httpUrl: `http://127.0.0.1:${httpPort}`,
        grpcAddress: `127.0.0.1:${grpcPort}`,
        version: '2.0.0',
      });
      expect(await (await fetch(`${ready.httpUrl}/`)).json()).toEqual({ version: '2.0.0', ok: true });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${httpPort}/`)).rejects.toThrow();
  });

  it('refuses bad command-line arguments', async () => {
    const script = fileURLToPath(new URL('../../demo/service.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script, '--http-port', 'x', '--grpc-port', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).not.toBe(0);
    expect(err).toMatch(/--http-port must be an integer/);
  });
});
