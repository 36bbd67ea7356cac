// Part of `npm run build`: the CLI's short commands (status, run, approve, list, …) as one CommonJS
// file, client/cli.bundle.cjs, beside the compiled client/cli.js. bin/runbook.mjs loads it with a V8
// code cache (cli-loader.mjs): resolving ~900 module files and compiling the Temporal SDK's
// protobuf definitions on every call is most of what a short command costs, and one file whose
// compiled code is cached skips both. The long-running commands (worker, dev, demo, temporal) keep
// running the compiled ES modules: they start once, and they load the worker's native module and
// its webpack bundler, which are not bundled.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** The bundle's file name inside dist/client/. */
export const CLI_BUNDLE = 'cli.bundle.cjs';

/**
 * Modules the bundle leaves out: what the long-running commands load (never reached through the
 * bundle: bin/runbook.mjs runs those commands from the ES modules) and what cannot be bundled
 * (native addons, optional peers).
 */
// The AWS SDK (about a quarter of the bundle) is used only by `runbook wal` (object storage), which
// loads it from node_modules when it runs: every other command no longer reads and hashes it.
const EXTERNAL_PACKAGES = ['@temporalio/worker', '@temporalio/testing', '@temporalio/core-bridge', 'pg-native', 'webpack', '@swc/core', 'playwright-core', '@aws-sdk/*', '@smithy/*'];
const EXTERNAL_MODULES = ['worker/main.js', 'client/dev.js', 'client/temporal-cluster.js', 'demo/cli.js'];

/**
 * Bundles `<dist>/client/cli.js` into `<dist>/client/cli.bundle.cjs`. Every module keeps its own
 * `import.meta.url` (the converters, .proto and migration files are found beside the compiled
 * module they belong to, as without the bundle).
 */
export async function bundleCli(dist) {
  const require = createRequire(import.meta.url);
  const esbuild = require('esbuild');
  const outfile = path.join(dist, 'client', CLI_BUNDLE);
  const ownFiles = {
    name: 'own-files',
    setup(build) {
      build.onResolve({ filter: /^\.\.?\// }, (args) => {
        const target = path.resolve(args.resolveDir, args.path);
        const rel = path.relative(dist, target).split(path.sep).join('/');
        if (!EXTERNAL_MODULES.includes(rel)) return undefined;
        return { path: `./${path.relative(path.dirname(outfile), target).split(path.sep).join('/')}`, external: true };
      });
      build.onLoad({ filter: /\.js$/ }, (args) => {
        if (!args.path.startsWith(dist + path.sep)) return undefined;
        const source = readFileSync(args.path, 'utf8');
        if (!source.includes('import.meta.url')) return undefined;
        const rel = path.relative(path.dirname(outfile), args.path).split(path.sep).join('/');
        const url = `require("node:url").pathToFileURL(require("node:path").join(__dirname, ${JSON.stringify(rel)})).href`;
        return { contents: source.replaceAll('import.meta.url', url), loader: 'js' };
      });
    },
  };
  const result = await esbuild.build({
    entryPoints: [path.join(dist, 'client', 'cli.js')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: EXTERNAL_PACKAGES,
    plugins: [ownFiles],
    logLevel: 'warning',
    legalComments: 'none',
    // Without comments and indentation (the packages' JSDoc, some of it not ASCII) the file is about
    // half the size, all ASCII, and read, decoded and checked against its code cache in a third of
    // the time. Names stay as written: error classes are matched by name, and stack traces name
    // their functions (RUNBOOK_CLI_BUNDLE=0 runs the ES modules when a line number matters).
    minifyWhitespace: true,
    charset: 'ascii',
    keepNames: true,
  });
  return { outfile, warnings: result.warnings.length, url: pathToFileURL(outfile).href };
}
