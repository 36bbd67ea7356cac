import { describe, expect, it } from 'vitest';
import { oncallSchema, type OncallConfig } from '../../common/incident/config.js';
import { oncallAt } from '../../common/incident/oncall.js';

const berlin: OncallConfig = oncallSchema.parse({ timezone: 'Europe/Berlin', handoff: 'Monday 09:00', startDate: '2026-03-02', people: ['alice', 'bob', 'carol'] });

describe('on-call rotation', () => {
  it('hands off at Monday 09:00 local time, not a minute earlier', () => {
    // 2026-03-09 is a Monday; Berlin is UTC+1 in winter, so 09:00 local = 08:00Z.
    const before = oncallAt(berlin, new Date('2026-03-09T07:59:59Z'));
    expect(before.now).toMatchObject({ primary: 'alice', secondary: 'bob', index: 0, start: '2026-03-02T08:00:00.000Z', end: '2026-03-09T08:00:00.000Z' });
    expect(before.next).toMatchObject({ primary: 'bob', secondary: 'carol' });
    const at = oncallAt(berlin, new Date('2026-03-09T08:00:00Z'));
    expect(at.now).toMatchObject({ primary: 'bob', secondary: 'carol', index: 1 });
    expect(at.next).toMatchObject({ primary: 'carol', secondary: 'alice', start: '2026-03-16T08:00:00.000Z' });
  });

  it('a week whose Sunday has the DST change is one hour shorter, and the handoff stays at 09:00 local', () => {
    // Europe/Berlin springs forward on 2026-03-29 (Sunday): the Monday 03-30 handoff is 07:00Z.
    const a = oncallAt(berlin, new Date('2026-03-30T06:59:00Z'));
    expect(a.now).toMatchObject({ start: '2026-03-23T08:00:00.000Z', end: '2026-03-30T07:00:00.000Z', primary: 'alice' });
    expect(Date.parse(a.now.end) - Date.parse(a.now.start)).toBe(7 * 86_400_000 - 3_600_000);
    const b = oncallAt(berlin, new Date('2026-03-30T07:00:00Z'));
    expect(b.now).toMatchObject({ primary: 'bob', start: '2026-03-30T07:00:00.000Z', end: '2026-04-06T07:00:00.000Z' });
    // And back in autumn (2026-10-25): that week is one hour longer.
    const c = oncallAt(berlin, new Date('2026-10-26T07:30:00Z'));
    expect(c.now.start).toBe('2026-10-19T07:00:00.000Z');
    expect(c.now.end).toBe('2026-10-26T08:00:00.000Z');
  });

  it('uses the local weekday: Sunday 23:30 in New York is already Monday in UTC but not a handoff', () => {
    const ny = oncallSchema.parse({ timezone: 'America/New_York', startDate: '2026-01-05', rotation: [{ primary: 'ann', secondary: 'ben' }, { primary: 'cat', secondary: 'dan' }] });
    const sundayNight = oncallAt(ny, new Date('2026-01-12T04:30:00Z'));
    expect(sundayNight.now).toMatchObject({ primary: 'ann', secondary: 'ben' });
    const monday = oncallAt(ny, new Date('2026-01-12T14:00:00Z'));
    expect(monday.now).toMatchObject({ primary: 'cat', secondary: 'dan', start: '2026-01-12T14:00:00.000Z' });
    // Before the rotation starts it still answers deterministically (cycling backwards).
    expect(oncallAt(ny, new Date('2026-01-01T00:00:00Z')).now.primary).toBe('cat');
  });

  it('rejects a config that cannot rotate, naming the field', () => {
    expect(() => oncallSchema.parse({ timezone: 'Mars/Olympus', startDate: '2026-03-02', people: ['a', 'b'] })).toThrow(/time zone/);
    expect(() => oncallSchema.parse({ startDate: '2026-03-03', people: ['a', 'b'] })).toThrow(/not a Monday/);
    expect(() => oncallSchema.parse({ startDate: '2026-03-02' })).toThrow(/exactly one of rotation/);
    expect(() => oncallSchema.parse({ startDate: '2026-03-02', people: ['a', 'b'], handoff: 'monday 9am' })).toThrow(/Weekday/);
  });
});
