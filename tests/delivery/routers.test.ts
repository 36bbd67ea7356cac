import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRouter } from '../../activities/delivery/routers/index.js';
import { renderUpstream } from '../../activities/delivery/routers/nginx.js';
import { routerSchema } from '../../common/delivery/config.js';
import { createLogger } from '../../lib/logger.js';
import { startDeliveryBed, measureSplit, type DeliveryBed } from '../fixtures/delivery-traffic.js';
import { createRecordingCli, type RecordingCli } from '../fixtures/recording-cli.js';

const logger = createLogger({ component: 'router-test' }, 'warn');
let bed: DeliveryBed;
let kubectl: RecordingCli;

beforeAll(async () => {
  bed = await startDeliveryBed();
  kubectl = await createRecordingCli('kubectl');
}, 60_000);

afterAll(async () => {
  await bed?.stop();
  await kubectl?.remove();
});

function nginxRouter(overrides: Record<string, unknown> = {}) {
  const cfg = routerSchema.parse({
    type: 'nginx',
    configPath: bed.nginx.configPath,
    prefix: bed.nginx.prefix,
    upstreamFile: bed.nginx.upstreamFile,
    upstreamName: 'api',
    stable: new URL(bed.stable.httpUrl).host,
    canary: new URL(bed.canary.httpUrl).host,
    pidFile: bed.nginx.pidFile,
    ...overrides,
  });
  return createRouter('api', cfg, { env: process.env, logger, configDir: '/' });
}

describe('nginx router (real nginx, real backends)', () => {
  it('moves the measured split to each weight within 5 points over 400 requests', async () => {
    const router = nginxRouter();
    for (const weight of [5, 25, 50, 100, 0]) {
      const change = await router.setWeight(weight);
      expect(change.weight).toBe(weight);
      expect(await router.currentWeight()).toBe(weight);
      const split = await measureSplit(bed.nginx.url, 400);
      expect(split.errors).toBe(0);
      expect(Math.abs(split.percent('2.0.0') - weight), `weight ${weight}: ${JSON.stringify(split.byVersion)}`).toBeLessThanOrEqual(5);
    }
  }, 60_000);

  it('is idempotent: the weight in effect changes nothing and reloads nothing', async () => {
    const router = nginxRouter();
    await router.setWeight(25);
    const again = await router.setWeight(25);
    expect(again.changed).toBe(false);
    expect(again.commands).toEqual([]);
    expect(again.previousWeight).toBe(25);
  });

  it('a crash between writing the file and the reload: the retry still reloads', async () => {
    const router = nginxRouter();
    await router.setWeight(0);
    // What a worker that died after the rename left behind: the new file, never reloaded.
    await writeFile(bed.nginx.upstreamFile, renderUpstream({ upstreamName: 'api', stable: new URL(bed.stable.httpUrl).host, canary: new URL(bed.canary.httpUrl).host }, 100));
    expect((await measureSplit(bed.nginx.url, 100)).byVersion).toEqual({ '1.0.0': 100 });
    const retry = await router.setWeight(100);
    expect(retry.changed).toBe(true);
    expect((await measureSplit(bed.nginx.url, 100)).byVersion).toEqual({ '2.0.0': 100 });
  }, 30_000);

  it('a config nginx -t rejects is not reloaded, and the previous upstream file is restored', async () => {
    await nginxRouter().setWeight(50);
    const before = await readFile(bed.nginx.upstreamFile, 'utf8');
    const broken = nginxRouter({ canary: 'no-such-host.invalid:80' });
    await expect(broken.setWeight(10)).rejects.toThrow(/nginx rejected the new upstream.*previous file was restored/s);
    expect(await readFile(bed.nginx.upstreamFile, 'utf8')).toBe(before);
    const split = await measureSplit(bed.nginx.url, 400);
    expect(Math.abs(split.percent('2.0.0') - 50)).toBeLessThanOrEqual(5);
  }, 30_000);
});

describe('istio router (kubectl stand-in: no cluster here)', () => {
  it('patches the VirtualService route weights with kubectl', async () => {
    await kubectl.clear();
    await kubectl.respond([
      { when: ['get', 'virtualservice'], stdout: JSON.stringify({ spec: { http: [{ route: [{ weight: 95 }, { weight: 5 }] }] } }) },
    ]);
    const cfg = routerSchema.parse({ type: 'istio', virtualService: 'api', namespace: 'alphapulse', context: 'prod' });
    const router = createRouter('api', cfg, { env: { ...process.env, PATH: kubectl.path }, logger, configDir: '/' });
    expect(await router.currentWeight()).toBe(5);
    const change = await router.setWeight(25);
    expect(change).toMatchObject({ previousWeight: 5, weight: 25, changed: true });
    const calls = await kubectl.calls();
    expect(calls.at(-1)).toEqual([
      '--context', 'prod', '-n', 'alphapulse', 'patch', 'virtualservice', 'api', '--type', 'json', '-p',
      JSON.stringify([
        { op: 'replace', path: '/spec/http/0/route/0/weight', value: 75 },
        { op: 'replace', path: '/spec/http/0/route/1/weight', value: 25 },
      ]),
    ]);
    // Already at 5 %: nothing patched.
    await kubectl.clear();
    expect((await router.setWeight(5)).changed).toBe(false);
    expect((await kubectl.calls()).map((c) => c[4])).toEqual(['get']);
  });
});

describe('command router (the user\'s script)', () => {
  it('runs setWeight with {weight} substituted, without a shell', async () => {
    const script = await createRecordingCli('set-weight');
    try {
      const cfg = routerSchema.parse({ type: 'command', setWeight: ['set-weight', '--canary={weight}', 'api'] });
      const router = createRouter('api', cfg, { env: { ...process.env, PATH: script.path }, logger, configDir: '/' });
      expect(router.plan(25)).toEqual(['set-weight --canary=25 api']);
      await router.setWeight(25);
      expect(await script.calls()).toEqual([['--canary=25', 'api']]);
    } finally {
      await script.remove();
    }
  });

  it('refuses a setWeight without {weight}', () => {
    const r = routerSchema.safeParse({ type: 'command', setWeight: ['set-weight', 'api'] });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toMatch(/\{weight\}/);
  });
});
