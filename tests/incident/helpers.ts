import type { WebhookReceiver } from '../fixtures/webhook-receiver.js';

/** A config whose incident durations are seconds, with Slack-style and JSON webhooks pointing at `receiver` via env. */
export function incidentTestConfig(overrides: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    environment: 'test',
    services: [{ name: 'api', driver: { type: 'command', status: ['true'] } }],
    approvals: { approvers: { default: ['alice', 'bob'] } },
    incident: {
      severities: {
        P0: { response: 3 },
        P1: { response: 30, stakeholderUpdates: 2 },
        P2: { response: 60 },
        P3: { response: 120 },
      },
      ackTimeout: 2,
      escalation: { l3After: 5, l4After: 7, contacts: { L2: ['tess-techlead'], L3: ['lee-leadership'], L4: ['cara-cto'] } },
      postmortem: { due: 3, meetingWithin: 6, reminderEvery: 1, maxReminders: 20 },
      oncall: { timezone: 'Europe/Berlin', handoff: 'Monday 09:00', startDate: '2024-01-01', people: ['alice', 'bob', 'carol'] },
      webhooks: [
        { name: 'incidents-channel', kind: 'slack', url: '${TEST_SLACK_URL}', events: ['channel', 'status', 'stakeholder', 'postmortem'] },
        { name: 'pager', kind: 'json', url: '${TEST_PAGER_URL}', events: ['page', 'escalation'] },
      ],
      ...overrides,
    },
    ...extra,
  };
}

export const SLACK_TOKEN_PATH = '/services/T000/B000/slack-token-9f8e7d';
export const PAGER_TOKEN_PATH = '/pager/key-5c4b3a';

export function webhookEnv(receiver: WebhookReceiver): NodeJS.ProcessEnv {
  return { ...process.env, TEST_SLACK_URL: `${receiver.url}${SLACK_TOKEN_PATH}`, TEST_PAGER_URL: `${receiver.url}${PAGER_TOKEN_PATH}` };
}
