/**
 * Builds the workflow bundle into a file, in a process of its own: `runbook worker` runs this once
 * per build of dist/ (worker/bundle-cache.ts) so that webpack's memory is never the worker's; the
 * Dockerfile runs it at image build for both kinds.
 *   node dist/worker/bundle-main.js <plain|encrypted> <outFile>
 * `encrypted` builds in the failure converter that encrypts failures raised in workflow code
 * (used when RUNBOOK_CODEC_KEY or RUNBOOK_CODEC_KEY_FILE is set); it reads no key.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { FAILURE_CONVERTER_PATH, type PayloadEncryption } from '../lib/codec/index.js';
import { bundleRunbookWorkflows } from './main.js';

const [kind, out] = process.argv.slice(2);
if ((kind !== 'plain' && kind !== 'encrypted') || !out) throw new Error('usage: bundle-main.js <plain|encrypted> <outFile>');
const silent = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
// Only the converter path is read from `encryption` when bundling.
const encryption = { dataConverter: kind === 'encrypted' ? { failureConverterPath: FAILURE_CONVERTER_PATH } : {} } as PayloadEncryption;
const { code } = await bundleRunbookWorkflows({ encryption, logger: silent });
const tmp = `${out}.${process.pid}`;
try {
  writeFileSync(tmp, code);
  renameSync(tmp, out);
} finally {
  rmSync(tmp, { force: true });
}
