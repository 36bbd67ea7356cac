/**
 * What the workers' workflow bundle may hold. The worker evaluates its modules once when it loads
 * the bundle and shares them between runs (worker/main.ts, preloadModules; before that it
 * evaluated them again for every run), but every byte is still parsed and compiled by every
 * worker, and a package in it is code that runs inside each run: zod alone (dragged in by one
 * value import of a schema module) cost about a quarter of the worker's CPU per health-check when
 * modules were evaluated per run. A test holds the bundle to this budget and package list, and to
 * evaluating nothing per run; `npm run bench` prints the size against it.
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

export interface PerRunEvaluation {
  /** Modules the bundle evaluates when the worker loads it, shared by every run. */
  shared: number;
  /** Module ids evaluated again for each run: anything not preloaded (worker/main.ts). */
  perRun: string[];
  /** Median time, over `runs` simulated runs, to import the workflows and interceptors as a new run does. */
  medianMs: number;
}

/**
 * Loads a bundle the way the SDK's reusable V8 context does (one context, webpack's module cache
 * routed through `__webpack_module_cache__`: modules required before any run exists are shared,
 * later ones go to the run's own cache) and then imports the workflows as each new run does.
 * A test holds `perRun` to empty; the bench prints it.
 */
export async function perRunEvaluation(code: string, runs = 20): Promise<PerRunEvaluation> {
  const vm = await import('node:vm');
  const { injectGlobals } = (await import('@temporalio/worker/lib/workflow/vm-shared.js')) as { injectGlobals(context: object): void };
  const context = vm.createContext({}, { microtaskMode: 'afterEvaluate' }) as Record<string, unknown>;
  const shared = new Map<PropertyKey, unknown>();
  const runCache = (): Map<PropertyKey, unknown> | undefined => (context.__TEMPORAL_ACTIVATOR__ as { moduleCache?: Map<PropertyKey, unknown> } | undefined)?.moduleCache;
  const cache = new Proxy(
    {},
    {
      get: (_, p) => shared.get(p) ?? runCache()?.get(p),
      set: (_, p, v) => {
        (runCache() ?? shared).set(p, v);
        return true;
      },
    },
  );
  Object.defineProperty(context, '__webpack_module_cache__', { value: cache });
  injectGlobals(context);
  new vm.Script(code, { filename: 'workflow-bundle.js' }).runInContext(context);
  vm.runInContext('__TEMPORAL__.preloadModules?.()', context);
  const times: number[] = [];
  let perRun: string[] = [];
  for (let i = 0; i < runs; i++) {
    // Stands in for the run's activator: the SDK keys a run's own modules on it.
    const moduleCache = new Map<PropertyKey, unknown>();
    context.__TEMPORAL_ACTIVATOR__ = { moduleCache };
    const started = performance.now();
    vm.runInContext('__TEMPORAL__.importWorkflows(); __TEMPORAL__.importInterceptors();', context);
    times.push(performance.now() - started);
    perRun = [...moduleCache.keys()].map(String);
  }
  times.sort((a, b) => a - b);
  return { shared: shared.size, perRun, medianMs: times[Math.floor(times.length / 2)] ?? 0 };
}
