/**
 * `npx tsx scripts/temporal-install.ts`: finds the Temporal CLI the dev server runs on,
 * building it with Go into the project's cache when it is nowhere to be found.
 * Progress goes to stderr; the binary's path is the only line on stdout.
 */
import { execa } from 'execa';
import { findTemporalCli, TEMPORAL_CLI_VERSION, temporalCliCacheDir } from '../lib/temporal-server.js';

const started = Date.now();
const log = (line: string) => process.stderr.write(`${line}\n`);

try {
  log(`looking for the Temporal CLI (TEMPORAL_CLI_PATH, PATH, ${temporalCliCacheDir()}) ...`);
  const cli = await findTemporalCli({ install: true, onProgress: log });
  if (!cli) {
    log(
      [
        `error: no Temporal CLI found and Go is not installed to build ${TEMPORAL_CLI_VERSION}.`,
        '  install Go 1.25+ (https://go.dev/dl/) and run this again, or',
        '  download the CLI (https://github.com/temporalio/cli/releases) and set TEMPORAL_CLI_PATH=/path/to/temporal',
      ].join('\n'),
    );
    process.exit(1);
  }
  const version = await execa(cli, ['--version'], { reject: false, timeout: 10_000 });
  log(`using ${cli}: ${version.exitCode === 0 ? version.stdout.trim() : `(--version failed: ${version.stderr.trim()})`} [${((Date.now() - started) / 1000).toFixed(1)} s]`);
  process.stdout.write(`${cli}\n`);
} catch (err) {
  log(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
