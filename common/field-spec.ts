/** How a procedure input field is validated; shared by every runbook family. */
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
  | 'object';

export interface FieldSpec {
  kind: FieldKind;
  required?: boolean;
  values?: readonly string[];
  help: string;
}

/** Fields every procedure accepts. */
export const COMMON_FIELDS: Record<string, FieldSpec> = {
  requestedBy: { kind: 'string', help: 'who started the run (name as in approvals.approvers)' },
  approvalTimeoutSeconds: { kind: 'positive-integer', help: 'seconds to wait for an approval before rejecting' },
};
