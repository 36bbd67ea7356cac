import { describe, expect, it } from 'vitest';
import { analysisOverrideProblems, judge, mergeAnalysis, resolveQueries } from '../../common/delivery/analysis.js';
import { deliverySchema, DEFAULT_ANALYSIS_QUERIES } from '../../common/delivery/config.js';
import { InputError, parseInput } from '../../common/inputs.js';
import { ConfigError, parseConfig } from '../../lib/config.js';
import { stringify } from 'yaml';

const services = [{ name: 'api', driver: { type: 'command', start: ['true'] } }];

function configIssues(delivery: unknown): string[] {
  try {
    parseConfig(stringify({ services, delivery }), 'runbooks.yaml');
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n').slice(1).map((l) => l.trim());
    throw err;
  }
}

describe('delivery config section', () => {
  it('defaults are the runbooks\' values', () => {
    const d = deliverySchema.parse({});
    expect(d.canary).toEqual({ steps: [5, 25, 50, 100], bakeSeconds: 300 });
    expect(d.analysis.queries.map((q) => [q.name, q.max])).toEqual([
      ['error-rate', 0.005],
      ['p99-latency', 0.5],
    ]);
    expect(d.blueGreen.scaleDownDelaySeconds).toBe(600);
  });

  it('names the bad field and the fix', () => {
    const issues = configIssues({
      routers: {
        api: { type: 'nginx', configPath: 'x', upstreamFile: 'y', upstreamName: 'api', stable: 'localhost', canary: '127.0.0.1:8082' },
        edge: { type: 'traefik' },
        script: { type: 'command', setWeight: ['set-weight', 'api'] },
      },
      analysis: { queries: [{ name: 'errors', query: 'up' }], window: '1 minute' },
    });
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^- delivery\.routers\.api\.stable: expected host:port/),
        expect.stringMatching(/^- delivery\.routers\.edge\.type: .*nginx.*istio.*command/i),
        expect.stringMatching(/^- delivery\.routers\.script\.setWeight: one argument must contain \{weight\}/),
        expect.stringMatching(/^- delivery\.analysis\.queries\[0\]: set max or min/),
        expect.stringMatching(/^- delivery\.analysis\.window: expected a Prometheus duration/),
      ]),
    );
  });
});

describe('canary inputs and analysis', () => {
  it('the CLI and the workflow refuse a bad input field by name', () => {
    expect(() => parseInput('canary-deploy', { steps: [5, 'x'] })).toThrow(InputError);
    try {
      parseInput('canary-deploy', { steps: [5, 'x'] });
    } catch (err) {
      expect((err as InputError).problems).toEqual([expect.stringMatching(/^router: required/), expect.stringMatching(/^steps: expected integer-list/)]);
    }
    expect(analysisOverrideProblems({ count: 0, onMissingData: 'ignore', queries: [{ name: 'x', query: 'up' }], colour: 1 })).toEqual([
      'analysis.colour: unknown field, expected one of intervalSeconds, count, failureLimit, onMissingData, window, queries',
      'analysis.count: expected an integer > 0',
      'analysis.onMissingData: expected "fail" or "pass"',
      'analysis.queries[0]: set max or min (the threshold)',
    ]);
  });

  it('queries get the selector and window; values are judged against thresholds and the missing-data policy', () => {
    const settings = mergeAnalysis(deliverySchema.parse({}).analysis, { window: '30s' });
    const [errorRate] = resolveQueries(settings, 'job="api-canary"');
    expect(errorRate!.query).toBe(
      '(sum(rate(http_requests_total{job="api-canary",code=~"5.."}[30s])) or vector(0)) / sum(rate(http_requests_total{job="api-canary"}[30s]))',
    );
    expect(judge(errorRate!, 0.001, 'fail')).toMatchObject({ ok: true });
    expect(judge(errorRate!, 0.02, 'fail')).toMatchObject({ ok: false, detail: '0.0200 > max 0.005' });
    expect(judge(errorRate!, null, 'fail')).toMatchObject({ ok: false, detail: 'no data (onMissingData: fail)' });
    expect(judge(errorRate!, null, 'pass')).toMatchObject({ ok: true });
    expect(DEFAULT_ANALYSIS_QUERIES).toHaveLength(2);
  });
});
