/** What every benchmark shares: percentiles, a printed table, and a silent bundler logger. */

export const quietLogger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };

/** The q-quantile of an already sorted list. */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export function table(title: string, rows: Array<Record<string, string | number>>): void {
  console.log(`\n${title}`);
  const cols = Object.keys(rows[0]!);
  const cells = [cols, ...rows.map((r) => cols.map((c) => String(r[c])))];
  const widths = cols.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  for (const [i, r] of cells.entries()) {
    console.log(r.map((c, j) => c.padEnd(widths[j]!)).join('  '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

/** A table row with n, median, p95 and max of a list of milliseconds. */
export function stats(label: string, xs: readonly number[]): Record<string, string | number> {
  const s = [...xs].sort((a, b) => a - b);
  return { measure: label, n: s.length, median_ms: quantile(s, 0.5).toFixed(0), p95_ms: quantile(s, 0.95).toFixed(0), max_ms: s[s.length - 1]!.toFixed(0) };
}
