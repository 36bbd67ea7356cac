import { ProbeConfigError, readCapped, snippet, type Probe } from './probe.js';

/** Body bytes read at most for an HTTP probe: enough for any health page, bounded for a wrong URL. */
const MAX_BODY_BYTES = 1024 * 1024;

export const probeHttp: Probe<'http'> = async (cfg, signal, field) => {
  const matcher = cfg.bodyMatch === undefined ? undefined : bodyMatcher(cfg.bodyMatch, `${field}.bodyMatch`);
  const expectRedirect = cfg.expectStatus >= 300 && cfg.expectStatus < 400;
  const res = await fetch(cfg.url, {
    signal,
    redirect: expectRedirect ? 'manual' : 'follow',
    headers: { 'user-agent': 'durable-runbooks-probe' },
  });
  const body = await readCapped(res, MAX_BODY_BYTES);
  if (res.status !== cfg.expectStatus) {
    return { healthy: false, detail: `HTTP ${res.status} (expected ${cfg.expectStatus})${snippet(body)}` };
  }
  if (matcher && !matcher.test(body)) {
    return { healthy: false, detail: `HTTP ${res.status} but the body does not match ${JSON.stringify(cfg.bodyMatch)}${snippet(body)}` };
  }
  return { healthy: true, detail: `HTTP ${res.status}${matcher ? `, body matches ${JSON.stringify(cfg.bodyMatch)}` : ''}` };
};

/** `/regex/flags` is a regular expression; anything else a plain substring. */
function bodyMatcher(spec: string, field: string): { test(body: string): boolean } {
  const m = /^\/(.+)\/([a-z]*)$/s.exec(spec);
  if (!m) return { test: (body) => body.includes(spec) };
  try {
    const re = new RegExp(m[1]!, m[2]!.replace(/[gy]/g, ''));
    return { test: (body) => re.test(body) };
  } catch (err) {
    throw new ProbeConfigError(field, `invalid regular expression ${spec}: ${(err as Error).message}`);
  }
}

