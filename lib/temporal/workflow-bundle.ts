/**
 * What the workers' workflow bundle may hold. The worker evaluates the bundle afresh for every
 * run it starts, so every byte costs CPU per run: zod alone (dragged in by one value import of
 * a schema module) cost about a quarter of the worker's CPU per health-check. A test holds the
 * bundle to this budget and package list; `npm run bench` prints the size against it.
 */

/**
 * About 15% above the bundle as measured on 2026-11-30: 2.74 MB, two thirds of it the inline
 * source map (with zod in it, it was 3.6 MB).
 */
export const WORKFLOW_BUNDLE_BUDGET_BYTES = 3_150_000;

/** The only packages the workflow sandbox needs: the SDK and what it depends on. */
export const WORKFLOW_BUNDLE_PACKAGES: readonly string[] = ['@temporalio/common', '@temporalio/workflow', 'long', 'ms', 'nexus-rpc'];

export interface WorkflowBundleReport {
  bytes: number;
  budgetBytes: number;
  /** Module ids as webpack names them: `./workflows/index.ts`, `./node_modules/zod/...`. */
  modules: string[];
  /** Distinct npm packages the modules come from, sorted. */
  packages: string[];
}

/** Reads module ids and packages out of webpack's development-mode output (a `/***\/ "id"` line opens each module). */
export function workflowBundleReport(code: string): WorkflowBundleReport {
  const modules = [...code.matchAll(/^\/\*{3}\/ "([^"]+)"$/gm)].map((m) => m[1]!);
  const packages = new Set<string>();
  for (const id of modules) {
    const rest = id.split('node_modules/').at(-1)!;
    if (rest === id) continue;
    const parts = rest.split('/');
    packages.add(parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!);
  }
  return { bytes: Buffer.byteLength(code), budgetBytes: WORKFLOW_BUNDLE_BUDGET_BYTES, modules, packages: [...packages].sort() };
}
