import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { RunbookConfig } from '../common/config-schema.js';
import type { IncidentSeverity as Severity } from '../common/incident/constants.js';
import { UserError } from './user-error.js';
import { describeThreshold, formatDuration, thresholdTable, type ThresholdId, type ThresholdRow } from '../common/thresholds.js';

/**
 * `runbook alerts export`: the threshold table (common/thresholds.ts) as Prometheus alerting
 * rules, so Prometheus fires what the runbooks grade, Alertmanager delivers it to the
 * `runbook` intake, and the incident opens with the row's severity.
 */

/**
 * The PromQL giving each row's value, in the row's unit, for the metric names the demo API
 * (`http_requests_total{code}`, `http_request_duration_seconds`), the seeds (Fulcrum 3.3 and
 * 7.2: `fulcrum_policy_evaluation_duration_seconds`, `fulcrum_db_query_duration_seconds`,
 * `fulcrum_nats_pending_messages`; AlphaPulse 4.1: `redis_memory_used_bytes`,
 * `redis_keyspace_*_total`, `pg_stat_activity_count`) and the common exporters (node_exporter,
 * postgres_exporter, redis_exporter) expose. `alerts.expressions.<id>` replaces one;
 * `{{window}}` is `alerts.rateWindow`.
 */
export const DEFAULT_ALERT_EXPRESSIONS: Record<ThresholdId, string> = {
  'service-down': 'up',
  'database-down': 'pg_up',
  'error-rate-critical': '100 * sum(rate(http_requests_total{code=~"5.."}[{{window}}])) / sum(rate(http_requests_total[{{window}}]))',
  'error-rate-warning': '100 * sum(rate(http_requests_total{code=~"5.."}[{{window}}])) / sum(rate(http_requests_total[{{window}}]))',
  'policy-latency-p99': '1000 * histogram_quantile(0.99, sum by (le) (rate(fulcrum_policy_evaluation_duration_seconds_bucket[{{window}}])))',
  'memory-usage': '100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)',
  'nats-lag': 'max(fulcrum_nats_pending_messages)',
  'cache-miss-rate': '100 * sum(rate(redis_keyspace_misses_total[{{window}}])) / (sum(rate(redis_keyspace_hits_total[{{window}}])) + sum(rate(redis_keyspace_misses_total[{{window}}])))',
  'slow-probe': '1000 * histogram_quantile(0.99, sum by (le) (rate(fulcrum_db_query_duration_seconds_bucket[{{window}}])))',
  'disk-usage': '100 * (1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"} / node_filesystem_size_bytes{fstype!~"tmpfs|overlay"})',
  'api-latency-p99': '1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[{{window}}])))',
  'api-error-rate': '100 * sum(rate(http_requests_total{code=~"5.."}[{{window}}])) / sum(rate(http_requests_total[{{window}}]))',
  'db-connection-pool': '100 * sum(pg_stat_activity_count) / max(pg_settings_max_connections)',
  'redis-memory': '100 * redis_memory_used_bytes / (redis_memory_max_bytes > 0)',
  'slow-query': '1000 * max(pg_stat_activity_max_tx_duration{state="active"})',
  'replication-lag': 'max(pg_replication_lag_seconds)',
  'replication-lag-bytes': 'max(pg_stat_replication_pg_wal_lsn_diff)',
};

/** The Alertmanager label value that the intake maps back to each severity (the config's `incident.intake.labelToSeverity`). */
const DEFAULT_LABEL_TO_SEVERITY: Record<string, Severity> = { critical: 'P0', page: 'P0', high: 'P1', error: 'P1', warning: 'P2', info: 'P3' };

export interface PrometheusRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface PrometheusRuleFile {
  groups: Array<{ name: string; rules: PrometheusRule[] }>;
}

function promDuration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

function labelFor(severity: Severity, mapping: Record<string, Severity>, label: string): string {
  const found = Object.entries(mapping).find(([, s]) => s === severity);
  if (!found) throw new UserError(`incident.intake.labelToSeverity has no label value for ${severity}: add one (e.g. ${label}: ${severity}) so exported alerts open ${severity} incidents`);
  return found[0];
}

function rule(row: ThresholdRow, config: RunbookConfig, severityLabel: string, mapping: Record<string, Severity>): PrometheusRule {
  const value = (config.alerts.expressions[row.id] ?? DEFAULT_ALERT_EXPRESSIONS[row.id]).replaceAll('{{window}}', config.alerts.rateWindow);
  const expr = `(${value}) ${row.comparison} ${row.value}`;
  return {
    alert: row.alert,
    expr,
    ...(row.forSeconds > 0 ? { for: promDuration(row.forSeconds) } : {}),
    labels: { ...config.alerts.labels, [severityLabel]: labelFor(row.severity, mapping, severityLabel), priority: row.severity, threshold: row.id },
    annotations: {
      summary: `${row.metric} ${row.comparison} ${row.value}${row.unit === '%' ? '%' : row.unit === 'healthy' ? '' : ` ${row.unit}`}${row.forSeconds > 0 ? ` for ${formatDuration(row.forSeconds)}` : ''}: ${row.action}`,
      description: `${describeThreshold(row)}, ${row.severity}`,
      seed: row.seed,
      runbook: `runbook run ${row.procedure}`,
      procedure: row.procedure,
    },
  };
}

/** One group with a rule per threshold row, values and durations from the config. */
export function alertRules(config: RunbookConfig): PrometheusRuleFile {
  const intake = config.incident?.intake;
  const severityLabel = intake?.severityLabel ?? 'severity';
  const mapping = intake?.labelToSeverity ?? DEFAULT_LABEL_TO_SEVERITY;
  const rows = thresholdTable(config.thresholds).filter((r) => !config.alerts.skip.includes(r.id));
  return { groups: [{ name: config.alerts.group, rules: rows.map((r) => rule(r, config, severityLabel, mapping)) }] };
}

export function registerAlertsCommand(program: Command): void {
  const alerts = program.command('alerts').description('Prometheus alerting rules from the runbooks\' threshold table');
  alerts
    .command('export')
    .description('print (or write) the threshold table as Prometheus alerting rules (rule_files YAML)')
    .option('--config <file>', 'configuration file (RUNBOOK_CONFIG, default runbooks.yaml)')
    .option('-o, --out <file>', 'write the rules to this file instead of stdout')
    .action(async (opts: { config?: string; out?: string }) => {
      const [{ configPathFromEnv, loadConfig }, { stringify }] = await Promise.all([import('../lib/config.js'), import('yaml')]);
      const loaded = await loadConfig(opts.config ?? configPathFromEnv());
      const rules = alertRules(loaded.config);
      const text = `# Generated by \`runbook alerts export\` from ${loaded.path}; thresholds: Fulcrum 2.3, AlphaPulse 4.2, AlphaPulse 2.1\n${stringify(rules, { lineWidth: 0 })}`;
      if (opts.out) {
        await writeFile(opts.out, text);
        console.error(`${rules.groups[0]!.rules.length} rules written to ${opts.out}`);
      } else process.stdout.write(text);
    });
}
