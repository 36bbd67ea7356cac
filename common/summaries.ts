/**
 * What the Temporal UI shows of a run (its Summary and Details panels) and of each step in its
 * Event History: built from the procedure, its input and who asked, never from the config, so
 * nothing secret can land in them. Workflow-safe: used by the CLI, the schedules, the alert
 * intake and the workflow interceptor that names child runs and activities.
 */

/** The UI shows one line; Temporal stores it in the history of every run. */
export const MAX_SUMMARY_CHARS = 200;
/** The Details panel: a short markdown list, not the whole input (that is in the history). */
export const MAX_DETAILS_CHARS = 2000;
const MAX_VALUE_CHARS = 120;
const MAX_FIELDS = 20;
const MAX_LIST_SHOWN = 5;

/** Input fields that name what a run acts on, in the order they are shown. */
const TARGET_FIELDS = ['service', 'database', 'router'] as const;
/** Input fields whose value says which variant of the procedure runs. */
const VARIANT_FIELDS = ['severity', 'mode', 'kind', 'to'] as const;

export interface RunMetadata {
  staticSummary: string;
  staticDetails: string;
}

export interface RunMetadataRequest {
  procedure: string;
  input: unknown;
  /** The config's environment, where the starter knows it (child runs leave it out). */
  environment?: string;
  /** Who asked, when the input does not say (`requestedBy` wins). */
  requestedBy?: string;
}

/** One line: no line breaks or control characters, cut to `max`. */
function oneLine(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex -- removing control characters is the point
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]+/g, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, Math.max(0, max - 1))}…` : flat;
}

function fieldsOf(input: unknown): Record<string, unknown> {
  return input && typeof input === 'object' && !Array.isArray(input) ? (input as Record<string, unknown>) : {};
}

function names(value: unknown): string | undefined {
  if (typeof value === 'string' && value !== '') return oneLine(value, MAX_VALUE_CHARS);
  if (Array.isArray(value)) {
    const shown = value.filter((v): v is string => typeof v === 'string').slice(0, MAX_LIST_SHOWN).map((v) => oneLine(v, 60));
    if (shown.length === 0) return undefined;
    return `${shown.join(', ')}${value.length > shown.length ? ` (+${value.length - shown.length})` : ''}`;
  }
  return undefined;
}

/** "service api, database main": what a run or a step acts on, from the fields that name it. */
export function targetOf(input: unknown): string | undefined {
  const f = fieldsOf(input);
  const parts: string[] = [];
  for (const key of TARGET_FIELDS) {
    const v = names(f[key]);
    if (v) parts.push(`${key} ${v}`);
  }
  if (parts.length === 0) {
    const services = names(f.services);
    if (services) parts.push(`services ${services}`);
  }
  return parts.length ? parts.join(', ') : undefined;
}

/** "clean", "P1", "docker-volume reindex": the variant, from enum values and the flags set. */
function variantOf(input: unknown): string | undefined {
  const f = fieldsOf(input);
  const parts: string[] = [];
  for (const key of VARIANT_FIELDS) {
    const v = f[key];
    if (typeof v === 'string' && v !== '') parts.push(key === 'to' ? `to ${oneLine(v, 40)}` : oneLine(v, 40));
  }
  for (const [key, v] of Object.entries(f)) if (v === true) parts.push(oneLine(key, 40));
  return parts.length ? parts.slice(0, 4).join(' ') : undefined;
}

function requesterOf(req: RunMetadataRequest): string {
  const by = fieldsOf(req.input).requestedBy;
  return oneLine(typeof by === 'string' && by !== '' ? by : (req.requestedBy ?? 'unknown'), 128) || 'unknown';
}

/**
 * "stack-stop clean of demo, requested by alice", "db-backup of database main in prod,
 * requested by schedule:daily-backup", "incident P1 "API down" of service api in prod, requested by alertmanager".
 */
export function runSummary(req: RunMetadataRequest): string {
  const f = fieldsOf(req.input);
  const variant = variantOf(f);
  const title = typeof f.title === 'string' && f.title.trim() !== '' ? `"${oneLine(f.title, 80)}"` : undefined;
  const target = targetOf(f);
  const env = req.environment ? oneLine(req.environment, 60) : undefined;
  const where = target ? ` of ${target}${env ? ` in ${env}` : ''}` : env ? ` of ${env}` : '';
  const head = [oneLine(req.procedure, 60), variant, title].filter(Boolean).join(' ');
  return oneLine(`${head}${where}, requested by ${requesterOf(req)}`, MAX_SUMMARY_CHARS);
}

/** A value as inline markdown code: it can neither close the span nor start a line of its own. */
function code(text: string): string {
  const flat = oneLine(text, MAX_VALUE_CHARS).replace(/`/g, "'");
  return `\`${flat}\``;
}

function shown(value: unknown): string {
  if (typeof value === 'string') return code(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return code(String(value));
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    json = undefined;
  }
  return code(json ?? String(value));
}

/** A short markdown list: the procedure, who asked, the environment, then each input field. */
export function runDetails(req: RunMetadataRequest): string {
  const f = fieldsOf(req.input);
  const lines = [`**${oneLine(req.procedure, 60)}** requested by ${code(requesterOf(req))}${req.environment ? ` in environment ${code(req.environment)}` : ''}`, ''];
  const keys = Object.keys(f).filter((k) => k !== 'requestedBy' && f[k] !== undefined);
  if (keys.length === 0) lines.push('- no input fields (the defaults)');
  for (const key of keys.slice(0, MAX_FIELDS)) lines.push(`- ${code(key)}: ${shown(f[key])}`);
  if (keys.length > MAX_FIELDS) lines.push(`- … and ${keys.length - MAX_FIELDS} more fields (see the run's input)`);
  let text = lines.join('\n');
  if (text.length > MAX_DETAILS_CHARS) text = `${text.slice(0, text.lastIndexOf('\n', MAX_DETAILS_CHARS - 40))}\n- … (cut; see the run's input)`;
  return text;
}

/** The static summary and details every start path sets: `runbook run`, schedules, the alert intake, child runs. */
export function runMetadata(req: RunMetadataRequest): RunMetadata {
  return { staticSummary: runSummary(req), staticDetails: runDetails(req) };
}

/** Fields of an activity's first argument that name its step, in the order they are shown. */
const STEP_FIELDS = ['action', 'service', 'database', 'router', 'services', 'stream', 'name', 'procedure'] as const;

/**
 * What the Event History shows for an activity: "serviceAction stop api", "dumpDatabase main",
 * "waitHealthy api, worker"; only names from its first argument, never free text.
 */
export function activitySummary(activityType: string, args: readonly unknown[]): string {
  const f = fieldsOf(args[0]);
  const parts = [oneLine(activityType, 80)];
  for (const key of STEP_FIELDS) {
    const v = names(f[key]);
    if (v && !parts.includes(v)) parts.push(v);
  }
  return oneLine(parts.join(' '), MAX_SUMMARY_CHARS);
}
