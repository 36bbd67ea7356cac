import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Custom search attributes every run sets; registered by the dev server launcher and `runbook temporal setup`. */
export const RunbookProcedure = defineSearchAttributeKey('RunbookProcedure', SearchAttributeType.KEYWORD);
export const AwaitingApproval = defineSearchAttributeKey('AwaitingApproval', SearchAttributeType.BOOL);
/** What a restore drill measured (AlphaPulse 5.1 DR table), so drills can be listed by them: `RestoreDrillRtoSeconds > 3600`. */
export const RestoreDrillRtoSeconds = defineSearchAttributeKey('RestoreDrillRtoSeconds', SearchAttributeType.DOUBLE);
export const RestoreDrillRpoSeconds = defineSearchAttributeKey('RestoreDrillRpoSeconds', SearchAttributeType.DOUBLE);

/** Type names as the Temporal CLI spells them (`--search-attribute Name=Type`, `--type Type`). */
export type SearchAttributeCliType = 'Keyword' | 'Bool' | 'Double';

export const SEARCH_ATTRIBUTES: ReadonlyArray<{ name: string; type: SearchAttributeCliType }> = [
  { name: RunbookProcedure.name, type: 'Keyword' },
  { name: AwaitingApproval.name, type: 'Bool' },
  { name: RestoreDrillRtoSeconds.name, type: 'Double' },
  { name: RestoreDrillRpoSeconds.name, type: 'Double' },
];
