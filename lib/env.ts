/** `${NAME}`, or `${NAME:-fallback}` (as in a shell: the fallback when NAME is unset or empty). */
const REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export class MissingEnvError extends Error {
  constructor(
    readonly variable: string,
    readonly field: string,
  ) {
    super(`${field}: environment variable ${variable} is not set (the config references it as \${${variable}})`);
    this.name = 'MissingEnvError';
  }
}

/** Replaces every `${NAME}` in `value` from `env`. `field` names the config path for the error. */
export function resolveEnvRefs(value: string, env: NodeJS.ProcessEnv, field: string): string {
  return value.replace(REF, (_m, variable: string, fallback: string | undefined) => {
    const v = env[variable];
    if (fallback !== undefined && !v) return fallback;
    if (v === undefined) throw new MissingEnvError(variable, field);
    return v;
  });
}

/** Every variable `value` references, with or without a fallback. */
export function envRefs(value: string): string[] {
  return [...value.matchAll(REF)].map((m) => m[1]!);
}

/** The variables `value` cannot do without: those referenced without a fallback. */
export function requiredEnvRefs(value: string): string[] {
  return [...value.matchAll(REF)].filter((m) => m[2] === undefined).map((m) => m[1]!);
}
