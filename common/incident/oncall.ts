import type { OncallConfig } from './config.js';

/**
 * The on-call rotation (AlphaPulse 7.1): one-week shifts handed off at a local
 * weekday and time (Monday 09:00) in the rotation's time zone. Pure and
 * deterministic: the answer depends only on the config and the instant.
 */

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const DAY_MS = 86_400_000;

export interface Shift {
  primary: string;
  secondary: string;
  /** Index of the shift since startDate (0 = the first week). */
  index: number;
  start: string;
  end: string;
}

export interface OncallAnswer {
  timezone: string;
  now: Shift;
  next: Shift;
}

interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function localParts(at: number, timeZone: string): LocalParts {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  const get = (type: string) => Number(f.formatToParts(at).find((p) => p.type === type)?.value);
  return { year: get('year'), month: get('month'), day: get('day'), hour: get('hour'), minute: get('minute'), second: get('second') };
}

/** The zone's offset from UTC at `at`, in ms. */
function offsetAt(at: number, timeZone: string): number {
  const p = localParts(at, timeZone);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(at / 1000) * 1000;
}

/**
 * The instant a local wall-clock time happens in the zone. A time skipped by a DST
 * change resolves to the instant after the gap; a repeated one to its first occurrence.
 */
export function zonedToInstant(dayNumber: number, hour: number, minute: number, timeZone: string): number {
  const wall = dayNumber * DAY_MS + (hour * 60 + minute) * 60_000;
  const first = wall - offsetAt(wall, timeZone);
  const second = wall - offsetAt(first, timeZone);
  if (second === first) return first;
  // Two candidates: a repeated hour keeps the earlier; a gap takes the one whose local time is later.
  const ok = (t: number) => {
    const p = localParts(t, timeZone);
    return p.hour === hour && p.minute === minute;
  };
  if (ok(first) && ok(second)) return Math.min(first, second);
  if (ok(first)) return first;
  if (ok(second)) return second;
  return Math.max(first, second);
}

/** Days since 1970-01-01 of a calendar date (no zone). */
function dayNumberOf(year: number, month: number, day: number): number {
  return Math.floor(Date.UTC(year, month - 1, day) / DAY_MS);
}

export function parseHandoff(handoff: string): { weekday: number; hour: number; minute: number } {
  const m = /^(\w+) (\d{2}):(\d{2})$/.exec(handoff);
  const weekday = m ? WEEKDAYS.indexOf(m[1]!) : -1;
  if (!m || weekday < 0) throw new Error(`oncall.handoff: expected "<Weekday> HH:MM", got "${handoff}"`);
  return { weekday, hour: Number(m[2]), minute: Number(m[3]) };
}

function pair(cfg: OncallConfig, index: number): { primary: string; secondary: string } {
  if (cfg.rotation) {
    const n = cfg.rotation.length;
    return cfg.rotation[((index % n) + n) % n]!;
  }
  const people = cfg.people!;
  const n = people.length;
  const i = ((index % n) + n) % n;
  return { primary: people[i]!, secondary: people[(i + 1) % n]! };
}

/** Who is on call at `at` and who takes over at the next handoff. */
export function oncallAt(cfg: OncallConfig, at: Date): OncallAnswer {
  const tz = cfg.timezone;
  const { weekday, hour, minute } = parseHandoff(cfg.handoff);
  const [sy, sm, sd] = cfg.startDate.split('-').map(Number) as [number, number, number];
  const startDay = dayNumberOf(sy, sm, sd);
  const local = localParts(at.getTime(), tz);
  const today = dayNumberOf(local.year, local.month, local.day);
  // 1970-01-01 was a Thursday (4).
  const todayWeekday = (((today + 4) % 7) + 7) % 7;
  let handoffDay = today - ((todayWeekday - weekday + 7) % 7);
  if (at.getTime() < zonedToInstant(handoffDay, hour, minute, tz)) handoffDay -= 7;
  const index = Math.floor((handoffDay - startDay) / 7);
  const shift = (i: number): Shift => {
    const day = startDay + i * 7;
    return {
      ...pair(cfg, i),
      index: i,
      start: new Date(zonedToInstant(day, hour, minute, tz)).toISOString(),
      end: new Date(zonedToInstant(day + 7, hour, minute, tz)).toISOString(),
    };
  };
  return { timezone: tz, now: shift(index), next: shift(index + 1) };
}
