import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PayloadEncryption } from '../lib/codec/index.js';
import type { Logger } from '../lib/logger.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));

/**
 * The compiled worker's workflow bundle, as a file beside dist/ kept for the life of that build:
 * `dist/workflow-bundle.<plain|encrypted>.js`. A worker that bundled its own workflows held
 * webpack's ~170 MB for the rest of its life (peak RSS 481 MB over 1,000 health-checks, 295 MB of
 * it before the first run); this builds the bundle once, in a child process, and the workers
 * load the file. `npm run build` replaces dist/ as a whole, so a bundle there is never older than
 * the workflows beside it. Undefined when running from the TypeScript sources (tests, vitest):
 * the worker bundles as before.
 */
/** Which of the two bundles `encryption` needs: failures raised in workflow code are encrypted by a converter built into the bundle. */
export function workflowBundleKind(encryption: PayloadEncryption): 'encrypted' | 'plain' {
  return encryption.dataConverter.failureConverterPath ? 'encrypted' : 'plain';
}

export async function cachedWorkflowBundle(encryption: PayloadEncryption, logger: Logger): Promise<{ codePath: string } | undefined> {
  if (!import.meta.url.endsWith('.js')) return undefined;
  const dist = path.resolve(HERE, '..');
  const kind = workflowBundleKind(encryption);
  const codePath = path.join(dist, `workflow-bundle.${kind}.js`);
  if (existsSync(codePath)) return { codePath };
  const started = Date.now();
  logger.info({ codePath }, 'building the workflow bundle (once per build of dist/)');
  const stderr: Buffer[] = [];
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(HERE, 'bundle-main.js'), kind, codePath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
    child.on('error', reject);
    child.on('exit', resolve);
  });
  if (code !== 0 || !existsSync(codePath)) {
    // Not fatal: the worker bundles in its own process, as it did before the cache.
    logger.warn({ exitCode: code, stderr: Buffer.concat(stderr).toString().slice(-2000) }, 'could not build the workflow bundle file; bundling in the worker');
    return undefined;
  }
  logger.info({ codePath, ms: Date.now() - started }, 'workflow bundle built');
  return { codePath };
}
