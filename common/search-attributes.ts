import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Custom search attributes every run sets; registered by the dev server launcher and `runbook temporal setup`. */
export const RunbookProcedure = defineSearchAttributeKey('RunbookProcedure', SearchAttributeType.KEYWORD);
export const AwaitingApproval = defineSearchAttributeKey('AwaitingApproval', SearchAttributeType.BOOL);

export const SEARCH_ATTRIBUTES: ReadonlyArray<{ name: string; type: 'Keyword' | 'Bool' }> = [
  { name: RunbookProcedure.name, type: 'Keyword' },
  { name: AwaitingApproval.name, type: 'Bool' },
];
