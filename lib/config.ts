import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type RunbookConfig } from '../common/config-schema.js';
import { requiredEnvRefs } from './env.js';

export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly issues: ConfigIssue[],
  ) {
    super(`${source}: invalid configuration\n${issues.map((i) => `  - ${i.path || '(top level)'}: ${i.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  config: RunbookConfig;
  /** Absolute path of the file. */
  path: string;
  /** Relative paths in the config (migrations, compose files, preflight files) resolve against this. */
  dir: string;
}

export const DEFAULT_CONFIG_FILE = 'runbooks.yaml';
export const EXAMPLE_CONFIG_FILE = 'runbooks.example.yaml';

export function configPathFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.RUNBOOK_CONFIG ?? DEFAULT_CONFIG_FILE);
}

/**
 * The file `runbook dev` and the CLI use: RUNBOOK_CONFIG, else runbooks.yaml, else the shipped
 * example (the demo environment). The worker does not fall back: it wants a real config.
 */
export function resolveConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RUNBOOK_CONFIG) return path.resolve(env.RUNBOOK_CONFIG);
  if (existsSync(DEFAULT_CONFIG_FILE)) return path.resolve(DEFAULT_CONFIG_FILE);
  return path.resolve(EXAMPLE_CONFIG_FILE);
}

/** `services[2].driver.type` from zod's path array. */
export function formatPath(p: ReadonlyArray<PropertyKey>): string {
  return p.reduce<string>((acc, key) => (typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key)), '');
}

function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}: check the spelling`;
  if (issue.code === 'invalid_union' && 'discriminator' in issue) return `${issue.message}`;
  return issue.message;
}

export function parseConfig(text: string, source: string): RunbookConfig {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({ path: `line ${e.linePos?.[0]?.line ?? '?'}`, message: e.message.split('\n')[0] ?? e.message })),
    );
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object') {
    throw new ConfigError(source, [{ path: '', message: 'expected a YAML mapping with at least `services:`' }]);
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      source,
      parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: issueMessage(i) })),
    );
  }
  return parsed.data;
}

export async function loadConfig(file: string = configPathFromEnv()): Promise<LoadedConfig> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError(abs, [
        {
          path: '',
          message: `no such file: copy ${EXAMPLE_CONFIG_FILE} to ${DEFAULT_CONFIG_FILE} and edit it, or set RUNBOOK_CONFIG to your config's path`,
        },
      ]);
    }
    throw err;
  }
  return { config: parseConfig(text, abs), path: abs, dir: path.dirname(abs) };
}

/** Every `${NAME}` the config needs (references without a `:-fallback`), with the first field that uses it. */
export function referencedEnv(config: RunbookConfig): Map<string, string> {
  const refs = new Map<string, string>();
  const walk = (value: unknown, at: string): void => {
    if (typeof value === 'string') {
      for (const name of requiredEnvRefs(value)) if (!refs.has(name)) refs.set(name, at);
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => walk(v, `${at}[${i}]`));
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) walk(v, at ? `${at}.${k}` : k);
    }
  };
  walk(config, '');
  return refs;
}

/** Issues for `runbook config check`: env references that are not set where the check runs. */
export function missingEnv(config: RunbookConfig, env: NodeJS.ProcessEnv = process.env): ConfigIssue[] {
  return [...referencedEnv(config)]
    .filter(([name]) => env[name] === undefined)
    .map(([name, at]) => ({ path: at, message: `environment variable ${name} is not set` }));
}
