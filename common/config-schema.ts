import { z } from 'zod';
import { APPROVAL_STEPS, approvalPolicyFor, isApprovalStep } from './approvals.js';
import { isProcedureId, PROCEDURE_IDS, type ProcedureId } from './procedures.js';
import { parsePublicKeyLine } from './signed-approvals.js';
import { databaseOpsSchema } from './database/config.js';
import { incidentConfigSchema } from './incident/config.js';
import { deliverySchema } from './delivery/config.js';
import { alertsSchema, thresholdsSchema } from './thresholds-config.js';

/**
 * The one configuration file (runbooks.yaml). Values may reference the environment
 * as `${NAME}`; references are resolved only inside activities, so workflow inputs
 * and history carry the reference, never the secret.
 */

const ENV_REF = /\$\{[A-Za-z_][A-Za-z0-9_]*\}/;
const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const name = z
  .string()
  .regex(NAME, 'expected a lower-case name of letters, digits, ".", "_" or "-" (max 63), starting with a letter or digit');

/** A URL or DSN that may embed credentials: any password must come from the environment. */
const secretAwareUrl = z
  .string()
  .min(1)
  .refine((value) => {
    if (ENV_REF.test(value)) return true;
    const m = /^[a-z][a-z0-9+.-]*:\/\/([^@/]*)@/i.exec(value);
    return !(m && m[1]!.includes(':'));
  }, 'a password must not be written in the config: put the whole URL or the password in an environment variable and write ${NAME}');

const argv = z
  .array(z.string().min(1))
  .min(1, 'expected a command as a list: [program, arg, ...] (it runs without a shell)');

const port = z.number().int().min(1).max(65535);

/** `default` or a procedure id; checked in checkApprovals so the error names the valid ones. */
const procedureKey = z.string();

const approverName = z
  .string()
  .trim()
  .min(1)
  .max(128)
  .regex(/^[^\s,]+$/, 'an approver is one name without spaces or commas, as people pass it to --as');

/** Every step override names a step its procedure asks for; no quorum exceeds the people who could meet it. */
function checkApprovals(
  a: { approvers: Record<string, string[]>; quorum: Record<string, number>; steps: Record<string, Record<string, { approvers?: string[]; quorum?: number }>> },
  ctx: z.RefinementCtx,
): void {
  for (const map of ['approvers', 'quorum', 'steps'] as const) {
    for (const key of Object.keys(a[map])) {
      if (key !== 'default' && !isProcedureId(key)) {
        ctx.addIssue({ code: 'custom', path: [map, key], message: `unknown procedure "${key}": expected "default" or one of ${PROCEDURE_IDS.join(', ')}` });
      }
    }
  }
  for (const [procedure, steps] of Object.entries(a.steps)) {
    if (procedure !== 'default' && !isProcedureId(procedure)) continue;
    if (procedure === 'default') {
      ctx.addIssue({ code: 'custom', path: ['steps', procedure], message: 'step overrides belong to one procedure: write steps.<procedure>.<step>' });
      continue;
    }
    for (const step of Object.keys(steps)) {
      if (!isApprovalStep(procedure as ProcedureId, step)) {
        const known = APPROVAL_STEPS[procedure as ProcedureId] ?? [];
        ctx.addIssue({
          code: 'custom',
          path: ['steps', procedure, step],
          message: known.length
            ? `${procedure} has no approval step "${step}": expected one of ${known.join(', ')}`
            : `${procedure} asks for no approval, so it has no steps to configure`,
        });
      }
    }
  }
  const procedures = new Set([...Object.keys(a.approvers), ...Object.keys(a.quorum), ...Object.keys(a.steps)]);
  for (const procedure of procedures) {
    const policy = approvalPolicyFor({ approvers: a.approvers, quorum: a.quorum, steps: a.steps }, procedure);
    const rules: Array<[string, (string | number)[], { approvers: string[]; quorum: number }]> = [
      [procedure, ['quorum', procedure], policy],
      ...Object.entries(policy.steps).map(([step, rule]): [string, (string | number)[], typeof rule] => [`${procedure} step ${step}`, ['steps', procedure, step, 'quorum'], rule]),
    ];
    for (const [what, path, rule] of rules) {
      const distinct = new Set(rule.approvers).size;
      if (rule.quorum > distinct && (distinct > 0 || rule.quorum > 1)) {
        ctx.addIssue({
          code: 'custom',
          path,
          message: `${what} needs ${rule.quorum} approvals but has only ${distinct} approver(s) (${rule.approvers.join(', ') || 'none'}): lower the quorum or add approvers`,
        });
      }
    }
  }
}

/** One `approvals.keys` line: `ed25519:<key> <key id>`, as `runbook keys new` prints it. */
const publicKeyLine = z.string().superRefine((line, ctx) => {
  const parsed = parsePublicKeyLine(line);
  if ('problem' in parsed) ctx.addIssue({ code: 'custom', message: parsed.problem });
});

/** No key id twice for one approver, and no key for two people: a shared key proves nobody. */
function checkKeys(keys: Record<string, string[]>, ctx: z.RefinementCtx): void {
  const owner = new Map<string, string>();
  for (const [approver, lines] of Object.entries(keys)) {
    const ids = new Set<string>();
    lines.forEach((line, i) => {
      const parsed = parsePublicKeyLine(line);
      if ('problem' in parsed) return;
      if (ids.has(parsed.keyId)) {
        ctx.addIssue({ code: 'custom', path: ['keys', approver, i], message: `${approver} has two keys with the id "${parsed.keyId}": give each key its own id` });
      }
      ids.add(parsed.keyId);
      const other = owner.get(parsed.key);
      if (other !== undefined && other !== approver) {
        ctx.addIssue({ code: 'custom', path: ['keys', approver, i], message: `this key is also ${other}'s: each person signs with a key of their own (runbook keys new)` });
      }
      owner.set(parsed.key, approver);
    });
  }
}

export const probeSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('http'),
    url: secretAwareUrl,
    expectStatus: z.number().int().min(100).max(599).default(200),
    bodyMatch: z.string().optional().describe('substring or /regex/ the body must match'),
    timeoutMs: z.number().int().positive().default(5000),
  }),
  z.strictObject({
    type: z.literal('grpc'),
    address: z.string().min(1).describe('host:port'),
    service: z.string().default(''),
    tls: z.boolean().default(false),
    timeoutMs: z.number().int().positive().default(5000),
  }),
  z.strictObject({
    type: z.literal('postgres'),
    url: secretAwareUrl,
    timeoutMs: z.number().int().positive().default(5000),
  }),
  z.strictObject({
    type: z.literal('redis'),
    url: secretAwareUrl,
    timeoutMs: z.number().int().positive().default(5000),
  }),
  z.strictObject({
    type: z.literal('nats'),
    servers: secretAwareUrl.describe('nats://host:port, comma separated for several'),
    monitorUrl: z.string().optional().describe('http://host:8222; when set its /healthz must answer ok'),
    jetstream: z.boolean().default(true),
    timeoutMs: z.number().int().positive().default(5000),
  }),
  z.strictObject({
    type: z.literal('tcp'),
    host: z.string().default('127.0.0.1'),
    port,
    timeoutMs: z.number().int().positive().default(3000),
  }),
]);

export const driverSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('command'),
    start: argv.optional(),
    stop: argv.optional(),
    restart: argv.optional(),
    rebuild: argv.optional(),
    forceRecreate: argv.optional(),
    status: argv.optional(),
    logs: argv.optional(),
    logFile: z
      .string()
      .min(1)
      .optional()
      .describe('the file the service writes its log to (relative to the config); searching logs by trace id or time reads it instead of the tail of `logs`'),
    clean: argv.optional().describe('deletes the service data; runs only after an approved clean stop'),
    rollback: argv.optional().describe('starts the service at its previous version (db-migration-rollback); without it the service is started as deployed'),
    cwd: z.string().optional(),
    env: z.record(z.string(), z.string()).default({}),
    timeoutSeconds: z.number().int().positive().default(120),
  }),
  z.strictObject({
    type: z.literal('compose'),
    file: z.string().min(1),
    command: argv
      .default(['docker', 'compose'])
      .describe("the Compose CLI: ['docker', 'compose'] (v2 plugin) or ['docker-compose'] (v1); status also runs `docker inspect`"),
    service: z.string().min(1).optional().describe('compose service name; defaults to the runbook service name'),
    project: z.string().optional(),
    timeoutSeconds: z.number().int().positive().default(300),
  }),
  z.strictObject({
    type: z.literal('kubernetes'),
    kind: z.enum(['deployment', 'statefulset', 'daemonset']).default('deployment'),
    name: z.string().min(1).optional().describe('defaults to the runbook service name'),
    namespace: z.string().default('default'),
    context: z.string().optional(),
    replicas: z.number().int().min(1).default(1).describe('replicas to scale back to on start'),
    timeoutSeconds: z.number().int().positive().default(300),
  }),
]);

export const serviceSchema = z.strictObject({
  name,
  group: name.default('apps'),
  driver: driverSchema,
  probes: z.array(probeSchema).default([]),
  dependsOn: z.array(name).default([]),
  ports: z.array(port).default([]).describe('ports this service listens on; preflight tolerates them when it is already healthy'),
  description: z.string().optional(),
});

export const stackGroupSchema = z.strictObject({
  name,
  waitTimeoutSeconds: z.number().int().positive(),
  runMigrationsAfter: z.boolean().default(false),
});

export const databaseSchema = z.strictObject({
  name,
  url: secretAwareUrl,
  migrationsDir: z.string().optional(),
  service: name.optional().describe('the service that hosts this database'),
  replicas: z
    .array(
      z.strictObject({
        name,
        url: secretAwareUrl.describe('the replica, for pg_is_in_recovery() and pg_last_xact_replay_timestamp()'),
        applicationName: z.string().min(1).max(63).optional().describe('its application_name in pg_stat_replication (default: name; the replica\'s cluster_name)'),
      }),
    )
    .max(16)
    .default([])
    .describe('streaming replicas of this database that db-triage checks (AlphaPulse 2.1 Replication Lag)'),
});

export const configSchema = z
  .object({
    environment: name.default('default'),
    services: z.array(serviceSchema).min(1, 'configure at least one service'),
    stack: z
      .object({
        groups: z.array(stackGroupSchema).min(1),
        pollIntervalSeconds: z.number().positive().default(1),
      })
      .default({
        // The Fulcrum runbook: infra within 120 s, then migrations, apps within 180 s.
        groups: [
          { name: 'infra', waitTimeoutSeconds: 120, runMigrationsAfter: true },
          { name: 'apps', waitTimeoutSeconds: 180, runMigrationsAfter: false },
        ],
        pollIntervalSeconds: 1,
      }),
    preflight: z
      .object({
        ports: z.array(port).default([5432, 4222, 6379, 50051, 8080, 3000, 3001, 9090]),
        minDiskGb: z.number().nonnegative().default(5),
        diskPath: z.string().default('.'),
        minMemoryGb: z.number().nonnegative().default(4),
        files: z.array(z.string()).default([]),
      })
      .prefault({}),
    databases: z.array(databaseSchema).default([]),
    approvals: z
      .strictObject({
        timeoutSeconds: z.number().int().positive().default(3600),
        approvers: z.record(procedureKey, z.array(approverName).min(1)).default({}),
        quorum: z.record(procedureKey, z.number().int().min(1)).default({}).describe('approvals each step needs (N of M); default 1'),
        steps: z
          .record(
            procedureKey,
            z.record(z.string(), z.strictObject({ approvers: z.array(approverName).min(1).optional(), quorum: z.number().int().min(1).optional() })),
          )
          .default({})
          .describe('per-step overrides: steps.<procedure>.<step>: {approvers, quorum}'),
        keys: z
          .record(approverName, z.array(publicKeyLine).min(1))
          .default({})
          .describe('public keys per approver (runbook keys new prints the line); several = rotation, removing one = revocation'),
        requireSignatures: z.boolean().default(false).describe('refuse answers not signed with one of the approver\'s keys (the UI\'s Send a Signal)'),
      })
      .superRefine((a, ctx) => {
        checkApprovals(a, ctx);
        checkKeys(a.keys, ctx);
      })
      .prefault({}),
    databaseOps: databaseOpsSchema.optional(),
    incident: incidentConfigSchema.optional(),
    delivery: deliverySchema.optional(),
    thresholds: thresholdsSchema,
    alerts: alertsSchema,
  })
  .superRefine((cfg, ctx) => {
    const names = new Set<string>();
    cfg.services.forEach((svc, i) => {
      if (names.has(svc.name)) {
        ctx.addIssue({ code: 'custom', path: ['services', i, 'name'], message: `duplicate service name "${svc.name}"` });
      }
      names.add(svc.name);
    });
    const groups = new Set(cfg.stack.groups.map((g) => g.name));
    cfg.services.forEach((svc, i) => {
      if (!groups.has(svc.group)) {
        ctx.addIssue({
          code: 'custom',
          path: ['services', i, 'group'],
          message: `unknown group "${svc.group}": expected one of ${[...groups].join(', ')} (stack.groups)`,
        });
      }
      svc.dependsOn.forEach((dep, j) => {
        if (!names.has(dep)) {
          ctx.addIssue({ code: 'custom', path: ['services', i, 'dependsOn', j], message: `unknown service "${dep}"` });
        }
      });
    });
    cfg.databases.forEach((db, i) => {
      if (db.service && !names.has(db.service)) {
        ctx.addIssue({ code: 'custom', path: ['databases', i, 'service'], message: `unknown service "${db.service}"` });
      }
    });
    const cycle = findCycle(cfg.services);
    if (cycle) {
      ctx.addIssue({ code: 'custom', path: ['services'], message: `dependsOn has a cycle: ${cycle.join(' -> ')}` });
    }
  });

export type RunbookConfig = z.output<typeof configSchema>;
export type ServiceConfig = z.output<typeof serviceSchema>;
export type ProbeConfig = z.output<typeof probeSchema>;
export type DriverConfig = z.output<typeof driverSchema>;
export type DatabaseConfig = z.output<typeof databaseSchema>;
export type StackGroupConfig = z.output<typeof stackGroupSchema>;

function findCycle(services: ReadonlyArray<{ name: string; dependsOn: string[] }>): string[] | undefined {
  const deps = new Map(services.map((s) => [s.name, s.dependsOn]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === 'done') return undefined;
    if (state.get(n) === 'visiting') return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, 'visiting');
    stack.push(n);
    for (const d of deps.get(n) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    stack.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const s of services) {
    const c = visit(s.name);
    if (c) return c;
  }
  return undefined;
}
