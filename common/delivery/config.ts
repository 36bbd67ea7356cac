import { z } from 'zod';

/**
 * The `delivery:` section of runbooks.yaml: where Prometheus answers, the traffic
 * routers (one per application), the analysis defaults and the notification webhook.
 * Defaults are the AlphaPulse alert table's: error rate under 0.5 %, p99 under 500 ms.
 */

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const name = z.string().regex(NAME, 'expected a lower-case name of letters, digits, ".", "_" or "-" (max 63)');
const hostPort = z.string().regex(/^[^\s:/]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:8081');
const argv = z.array(z.string().min(1)).min(1, 'expected a command as a list: [program, arg, ...] (it runs without a shell)');

export const ANALYSIS_WINDOW = /^\d+(ms|s|m|h)$/;

export const analysisQuerySchema = z
  .strictObject({
    name,
    query: z.string().min(1).describe('PromQL; {selector} becomes the backend\'s label selector, {window} the rate window'),
    max: z.number().optional().describe('the measurement fails when the value is above this'),
    min: z.number().optional().describe('the measurement fails when the value is below this'),
  })
  .refine((q) => q.max !== undefined || q.min !== undefined, 'set max or min (or both): the threshold the value is checked against');

/** Error rate and p99 latency of the selected backend, as in the AlphaPulse alert table. */
export const DEFAULT_ANALYSIS_QUERIES: Array<z.output<typeof analysisQuerySchema>> = [
  {
    name: 'error-rate',
    query:
      '(sum(rate(http_requests_total{{selector},code=~"5.."}[{window}])) or vector(0)) / sum(rate(http_requests_total{{selector}}[{window}]))',
    max: 0.005,
  },
  {
    name: 'p99-latency',
    query: 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{selector}}[{window}])))',
    max: 0.5,
  },
];

export const analysisSchema = z.strictObject({
  intervalSeconds: z.number().positive().default(60).describe('time between two measurements'),
  count: z.number().int().positive().default(3).describe('measurements per step'),
  failureLimit: z.number().int().min(0).default(0).describe('failed measurements tolerated per step; one more fails the canary'),
  onMissingData: z.enum(['fail', 'pass']).default('fail').describe('what an empty or NaN answer counts as'),
  window: z.string().regex(ANALYSIS_WINDOW, 'expected a Prometheus duration like 30s, 1m or 5m').default('1m'),
  queries: z.array(analysisQuerySchema).min(1).default(DEFAULT_ANALYSIS_QUERIES),
});

const routerCommon = {
  stableSelector: z.string().optional().describe('PromQL label matchers of the stable backend, e.g. job="api"'),
  canarySelector: z.string().optional().describe('PromQL label matchers of the canary backend, e.g. job="api-canary"'),
  stableService: name.optional().describe('services[] entry of the stable (blue) backend'),
  canaryService: name.optional().describe('services[] entry of the canary (green) backend; stopped when a canary fails'),
  healthUrl: z
    .strictObject({ stable: z.string().url(), canary: z.string().url() })
    .optional()
    .describe('HTTP health endpoints of both backends, checked before blue/green switches'),
  timeoutSeconds: z.number().int().positive().default(60),
};

export const routerSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('nginx'),
    configPath: z.string().min(1).describe('the nginx main config (nginx -t -c and -s reload use it)'),
    prefix: z.string().optional().describe('nginx -p prefix'),
    upstreamFile: z.string().min(1).describe('the file this router owns and rewrites; include it from the http block'),
    upstreamName: name,
    stable: hostPort,
    canary: hostPort,
    nginxBinary: z.string().default('nginx'),
    pidFile: z.string().optional().describe("the master's pid file; when set, a reload waits until the old workers are gone"),
    ...routerCommon,
  }),
  z.strictObject({
    type: z.literal('istio'),
    virtualService: z.string().min(1),
    namespace: z.string().default('default'),
    context: z.string().optional(),
    httpRouteIndex: z.number().int().min(0).default(0).describe('index in spec.http'),
    stableRouteIndex: z.number().int().min(0).default(0).describe('index of the stable destination in that route'),
    canaryRouteIndex: z.number().int().min(0).default(1).describe('index of the canary destination in that route'),
    ...routerCommon,
  }),
  z.strictObject({
    type: z.literal('command'),
    setWeight: argv.refine((a) => a.some((s) => s.includes('{weight}')), 'one argument must contain {weight} (the canary percentage)'),
    getWeight: argv.optional().describe('prints the current canary percentage'),
    cwd: z.string().optional(),
    env: z.record(z.string(), z.string()).default({}),
    ...routerCommon,
  }),
]);

export const deliverySchema = z.strictObject({
  prometheus: z
    .strictObject({
      url: z.string().min(1).describe('Prometheus base URL, e.g. http://127.0.0.1:9090 (may be ${VAR})'),
      timeoutMs: z.number().int().positive().default(5000),
    })
    .optional(),
  routers: z.record(name, routerSchema).default({}),
  analysis: analysisSchema.prefault({}),
  canary: z
    .strictObject({
      steps: z.array(z.number().int().min(1).max(100)).min(1).default([5, 25, 50, 100]),
      bakeSeconds: z.number().int().min(0).default(300).describe("the runbook's 5-10 minutes of watching per step"),
    })
    .prefault({}),
  blueGreen: z
    .strictObject({ scaleDownDelaySeconds: z.number().int().min(0).default(600) })
    .prefault({}),
  notify: z
    .strictObject({ webhookUrl: z.string().min(1).describe('POSTed a JSON message on rollbacks and completions; usually ${VAR}') })
    .optional(),
});

export type DeliveryConfig = z.output<typeof deliverySchema>;
export type RouterConfig = z.output<typeof routerSchema>;
export type AnalysisConfig = z.output<typeof analysisSchema>;
export type AnalysisQuery = z.output<typeof analysisQuerySchema>;
