/** The kinds of procedure input fields, as `runbook describe` and the docs name them; common/input-fields.ts builds their schemas. */
export type FieldKind =
  | 'string'
  | 'name'
  | 'boolean'
  | 'number'
  | 'positive-integer'
  | 'non-negative-integer'
  | 'string-list'
  | 'integer-list'
  | 'enum'
  | 'datetime'
  | 'object'
  /** Who asks: one plain ASCII name (letters, digits, . _ @ : + -), compared exactly with the approvers of the config. */
  | 'identity'
  /** An opaque id such as a backup id or a NATS stream name: letters, digits, "_" and "-". */
  | 'id'
  /** An http(s) URL without credentials (they would land in the run's history). */
  | 'url'
  /** A container image reference, e.g. ghcr.io/org/api:v1.0.0. */
  | 'image'
  /** A file relative to the config file's directory that stays inside it. */
  | 'relative-path'
  /** SQL table names, `table` or `schema.table`, unquoted. */
  | 'table-list';

/** What is shown of a field: its kind, whether it is required, its help and the config list it names. */
export interface FieldSpec {
  kind: FieldKind;
  required?: boolean;
  values?: readonly string[];
  /** Names a service or database of the config: the CLI refuses an unknown one before starting a run. */
  ref?: 'service' | 'database';
  help: string;
}
