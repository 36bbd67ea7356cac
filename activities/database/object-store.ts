import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { pipeline as pipe, Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ApplicationFailure } from '@temporalio/common';
import type { ObjectStorageConfig } from '../../common/database/config.js';
import { ErrorTypes } from '../../common/errors.js';
import { MissingEnvError, resolveEnvRefs } from '../../lib/env.js';
import { redactSecrets } from '../../lib/redact.js';
import type { ActivityDeps } from '../deps.js';

/**
 * The S3-compatible store of databaseOps.objectStorage: streamed uploads whose SHA-256 the
 * server checks (per part for multipart uploads) and that are compared with the server's
 * checksum afterwards, streamed downloads hashed on the way to disk. Credentials are resolved
 * here, inside the activity, from the worker's environment; they never reach a result or a log.
 */

export interface ObjectStore {
  client: S3Client;
  bucket: string;
  /** Key prefix without a trailing "/" ('' for the bucket's root). */
  prefix: string;
  partSize: number;
  queueSize: number;
  secrets: string[];
}

const stores = new WeakMap<ObjectStorageConfig, ObjectStore>();

function fromEnv(value: string, env: NodeJS.ProcessEnv, field: string): string {
  try {
    return resolveEnvRefs(value, env, field);
  } catch (err) {
    if (err instanceof MissingEnvError) throw ApplicationFailure.nonRetryable(`${err.message}; set it in the worker's environment`, ErrorTypes.InvalidConfig);
    throw err;
  }
}

export function storeClient(cfg: ObjectStorageConfig, env: NodeJS.ProcessEnv): ObjectStore {
  const at = 'databaseOps.objectStorage';
  const secretAccessKey = cfg.secretAccessKey ? fromEnv(cfg.secretAccessKey, env, `${at}.secretAccessKey`) : undefined;
  const sessionToken = cfg.sessionToken ? fromEnv(cfg.sessionToken, env, `${at}.sessionToken`) : undefined;
  const client = new S3Client({
    region: cfg.region,
    ...(cfg.endpoint ? { endpoint: fromEnv(cfg.endpoint, env, `${at}.endpoint`) } : {}),
    forcePathStyle: cfg.forcePathStyle,
    ...(cfg.accessKeyId && secretAccessKey
      ? { credentials: { accessKeyId: fromEnv(cfg.accessKeyId, env, `${at}.accessKeyId`), secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } }
      : {}),
    // Checksums are asked for explicitly (SHA-256) where they matter, not a default CRC on every call.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  });
  // A request that carries its body's SHA-256 as x-amz-checksum-sha256 is signed with that same hash
  // (hex) as its payload hash: the signer would otherwise hash every part a second time.
  client.middlewareStack.add(
    (next) => async (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers;
      const sum = headers?.['x-amz-checksum-sha256'];
      if (headers && sum && !headers['x-amz-content-sha256']) headers['x-amz-content-sha256'] = Buffer.from(sum, 'base64').toString('hex');
      return next(args);
    },
    { step: 'build', priority: 'low', name: 'payloadHashFromChecksum' },
  );
  return {
    client,
    bucket: cfg.bucket,
    prefix: cfg.prefix.replace(/\/+$/, ''),
    partSize: cfg.partSizeMiB * 1024 * 1024,
    queueSize: cfg.queueSize,
    secrets: [secretAccessKey, sessionToken].filter((s): s is string => Boolean(s)),
  };
}

/** The configured store (one client per worker), or undefined when databaseOps.objectStorage is not set. */
export function objectStore(deps: ActivityDeps): ObjectStore | undefined {
  const cfg = deps.config.databaseOps?.objectStorage;
  if (!cfg) return undefined;
  let s = stores.get(cfg);
  if (!s) {
    s = storeClient(cfg, deps.env);
    stores.set(cfg, s);
  }
  return s;
}

export function storeKey(store: ObjectStore, ...parts: string[]): string {
  return [store.prefix, ...parts].filter(Boolean).join('/');
}

export const storeUrl = (store: ObjectStore, key: string) => `s3://${store.bucket}/${key}`;

/** An S3 error as a message naming the object; retryable unless the store refused us (credentials, bucket). */
export function storeFailure(store: ObjectStore, key: string, err: unknown): never {
  if (err instanceof ApplicationFailure) throw err;
  const e = err as Error & { $metadata?: { httpStatusCode?: number }; Code?: string };
  const status = e.$metadata?.httpStatusCode;
  const message = redactSecrets(`object storage ${storeUrl(store, key)}: ${e.name}${status ? ` (HTTP ${status})` : ''}: ${e.message}`, store.secrets);
  const refused = err instanceof S3ServiceException && (status === 403 || status === 401 || e.name === 'NoSuchBucket' || e.name === 'InvalidAccessKeyId' || e.name === 'SignatureDoesNotMatch');
  if (refused) throw ApplicationFailure.nonRetryable(`${message}; check databaseOps.objectStorage (bucket, endpoint) and the credentials in the worker's environment`, ErrorTypes.InvalidConfig);
  throw ApplicationFailure.retryable(message, 'ObjectStorageError');
}

const isMissing = (err: unknown) => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
};

/**
 * Hashes what flows through: the whole stream, and (given a partSize) each `partSize` slice as the
 * multipart upload cuts it, so the server's composite checksum can be computed here and compared.
 */
export class Hasher extends Transform {
  readonly whole = createHash('sha256');
  readonly parts: Buffer[] = [];
  bytes = 0;
  private part: Hash = createHash('sha256');
  private inPart = 0;

  constructor(private readonly partSize = Number.POSITIVE_INFINITY) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.whole.update(chunk);
    this.bytes += chunk.length;
    if (!Number.isFinite(this.partSize)) return done(null, chunk);
    let rest = chunk;
    while (rest.length > 0) {
      const take = Math.min(rest.length, this.partSize - this.inPart);
      this.part.update(rest.subarray(0, take));
      this.inPart += take;
      rest = rest.subarray(take);
      if (this.inPart === this.partSize) this.closePart();
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (Number.isFinite(this.partSize) && (this.inPart > 0 || this.parts.length === 0)) this.closePart();
    done();
  }

  private closePart(): void {
    this.parts.push(this.part.digest());
    this.part = createHash('sha256');
    this.inPart = 0;
  }
}

export interface Uploaded {
  key: string;
  bytes: number;
  /** Hex SHA-256 of what was read and sent. */
  sha256: string;
  parts: number;
  /** The SHA-256 the server reports for the object (base64; "<base64>-N" for N parts). */
  checksum: string;
}

/**
 * Streams `file` to `key` (one PUT, or a multipart upload of partSize parts), each request with
 * its x-amz-checksum-sha256 for the server to check; then compares the server's checksum of the
 * stored object with the one computed while reading.
 */
export async function uploadFile(store: ObjectStore, key: string, file: string, onProgress: (bytes: number) => void = () => undefined): Promise<Uploaded> {
  const size = (await stat(file)).size;
  const up = await uploadStream(store, key, createReadStream(file, { highWaterMark: 1024 * 1024 }), onProgress);
  if (up.bytes !== size) throw ApplicationFailure.retryable(`upload of ${file} to ${storeUrl(store, key)}: ${up.bytes} bytes sent, the file has ${size}`, 'ObjectStorageError');
  return up;
}

/** The checksum the server reports for `file` uploaded in store.partSize parts (composite "…-N" for several). */
export async function expectedChecksum(store: ObjectStore, file: string): Promise<{ checksum: string; sha256: string }> {
  const hasher = new Hasher(store.partSize);
  await pipeline(createReadStream(file), hasher, new Writable({ write: (_chunk, _enc, done) => done() }));
  return { checksum: serverChecksum(hasher), sha256: hasher.whole.digest('hex') };
}

function serverChecksum(hasher: Hasher, wholeHex?: string): string {
  return hasher.parts.length <= 1
    ? Buffer.from(wholeHex ?? hasher.whole.copy().digest('hex'), 'hex').toString('base64')
    : `${createHash('sha256').update(Buffer.concat(hasher.parts)).digest('base64')}-${hasher.parts.length}`;
}

/** {@link uploadFile} for a stream of unknown length (a tar of a data directory). */
export async function uploadStream(store: ObjectStore, key: string, source: Readable, onProgress: (bytes: number) => void = () => undefined): Promise<Uploaded> {
  const hasher = new Hasher(store.partSize);
  pipe(source, hasher, (err) => {
    if (err) hasher.destroy(err);
  });
  try {
    const upload = new Upload({
      client: store.client,
      params: { Bucket: store.bucket, Key: key, Body: hasher, ChecksumAlgorithm: 'SHA256', ContentType: 'application/octet-stream' },
      partSize: store.partSize,
      queueSize: store.queueSize,
      leavePartsOnError: false,
    });
    upload.on('httpUploadProgress', (p) => onProgress(p.loaded ?? 0));
    await upload.done();
  } catch (err) {
    source.destroy();
    storeFailure(store, key, err);
  }
  onProgress(hasher.bytes);
  return checkStored(store, key, hasher);
}

/** Compares the stored object's size and SHA-256 (composite for multipart) with what `hasher` saw go out. */
async function checkStored(store: ObjectStore, key: string, hasher: Hasher): Promise<Uploaded> {
  const sha256 = hasher.whole.digest('hex');
  const expected = serverChecksum(hasher, sha256);
  const head = await headObject(store, key);
  if (head?.ContentLength !== hasher.bytes) {
    throw ApplicationFailure.retryable(`upload to ${storeUrl(store, key)}: ${head?.ContentLength} bytes stored, ${hasher.bytes} sent`, 'ObjectStorageError');
  }
  if (head.ChecksumSHA256 !== expected) {
    throw ApplicationFailure.retryable(
      `upload to ${storeUrl(store, key)}: the server's SHA-256 ${head.ChecksumSHA256 ?? '(none returned)'} differs from the one sent, ${expected}`,
      'ObjectStorageError',
    );
  }
  return { key, bytes: hasher.bytes, sha256, parts: Math.max(1, hasher.parts.length), checksum: expected };
}

export interface OpenUpload {
  /** Write the data here (respecting write()'s backpressure); it is sent in store.partSize parts as it comes. */
  body: Writable;
  /**
   * Ends the body and completes the upload, then compares the stored object with the parts sent
   * (their SHA-256 computed once, here, from the bytes in each request) and with `hasher`, a Hasher
   * without partSize that hashed exactly what was written to the body.
   */
  finish(hasher: Hasher): Promise<Uploaded>;
  /** Aborts the multipart upload (its parts are deleted; nothing appears under the key). */
  abort(reason: Error): Promise<void>;
}

/**
 * A multipart upload fed while the data is produced (pg_dump's output as it is written to disk).
 * Nothing is stored under `key` until finish(): the last part and the completion wait for it, so a
 * producer that fails is aborted without leaving an object behind. Data shorter than one part is
 * sent in one PUT at finish(), as lib-storage's Upload does.
 *
 * Written here rather than with lib-storage's Upload, which concatenates every part into a newly
 * allocated buffer: the parts are copied into queueSize + 1 buffers that are reused, which is
 * what kept a streamed db-backup behind pg_dump followed by an upload (see docs/benchmarks.md).
 */
export function openUpload(store: ObjectStore, key: string): OpenUpload {
  const { bucket: Bucket, partSize } = store;
  const pool: Buffer[] = [];
  let current: Buffer | undefined;
  let filled = 0;
  let partNumber = 0;
  let uploadId: Promise<string> | undefined;
  let failure: unknown;
  const inFlight = new Set<Promise<void>>();
  const sent: Array<{ PartNumber: number; ETag?: string; ChecksumSHA256?: string }> = [];
  const digests: Buffer[] = [];

  const fail = (err: unknown) => {
    failure ??= err;
    // A failed part: the writer waiting for 'drain' stops; the error comes from finish().
    if (!body.destroyed) body.destroy(err instanceof Error ? err : new Error(String(err)));
  };
  const started = () =>
    (uploadId ??= store.client
      .send(new CreateMultipartUploadCommand({ Bucket, Key: key, ChecksumAlgorithm: 'SHA256', ContentType: 'application/octet-stream' }))
      .then((r) => r.UploadId!));
  /** Sends what the current buffer holds as the next part; resolves once fewer than queueSize parts are in flight. */
  const cut = async (): Promise<void> => {
    const buf = current!;
    const data = buf.subarray(0, filled);
    const n = ++partNumber;
    current = undefined;
    filled = 0;
    // The part's SHA-256, for the store to check and for the composite compared after completion.
    const digest = createHash('sha256').update(data).digest();
    digests[n - 1] = digest;
    const id = await started();
    const p: Promise<void> = store.client
      .send(new UploadPartCommand({ Bucket, Key: key, UploadId: id, PartNumber: n, Body: data, ContentLength: data.length, ChecksumSHA256: digest.toString('base64') }))
      .then((r) => {
        sent.push({ PartNumber: n, ETag: r.ETag, ChecksumSHA256: r.ChecksumSHA256 });
        pool.push(buf);
      }, fail)
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    while (inFlight.size >= store.queueSize) await Promise.race(inFlight);
  };
  const abort = async (reason: Error): Promise<void> => {
    failure ??= reason;
    if (!body.destroyed) body.destroy(reason);
    await Promise.allSettled(inFlight);
    // A failure before the first part was cut leaves no upload to abort.
    const id = await uploadId?.catch(() => undefined);
    if (id) await store.client.send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: id })).catch(() => undefined);
  };

  const body = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, done) {
      void (async () => {
        let rest = chunk;
        while (rest.length > 0) {
          if (failure) throw failure;
          // A full buffer is sent once more data follows: the last part is sent by finish().
          if (current && filled === partSize) await cut();
          current ??= pool.pop() ?? Buffer.allocUnsafeSlow(partSize);
          const n = rest.copy(current, filled);
          filled += n;
          rest = rest.subarray(n);
        }
      })().then(() => done(), done);
    },
  });
  body.on('error', () => undefined);

  return {
    body,
    async finish(hasher) {
      try {
        if (!body.writableFinished) {
          body.end();
          await finished(body);
        }
        if (partNumber === 0) {
          const only = (current ?? Buffer.alloc(0)).subarray(0, filled);
          await store.client.send(new PutObjectCommand({ Bucket, Key: key, Body: only, ContentLength: only.length, ChecksumAlgorithm: 'SHA256', ContentType: 'application/octet-stream' }));
        } else {
          if (filled > 0) await cut();
          await Promise.all(inFlight);
          if (failure) throw failure;
          const parts = [...sent].sort((a, b) => a.PartNumber - b.PartNumber);
          await store.client.send(new CompleteMultipartUploadCommand({ Bucket, Key: key, UploadId: await started(), MultipartUpload: { Parts: parts } }));
          hasher.parts.splice(0, hasher.parts.length, ...digests);
        }
      } catch (err) {
        await abort(err instanceof Error ? err : new Error(String(err)));
        storeFailure(store, key, failure ?? err);
      }
      return checkStored(store, key, hasher);
    },
    abort,
  };
}

/** Size and stored SHA-256 of an object, or undefined when there is none. */
export async function headObject(store: ObjectStore, key: string): Promise<{ ContentLength?: number; ChecksumSHA256?: string; LastModified?: Date } | undefined> {
  try {
    return await store.client.send(new HeadObjectCommand({ Bucket: store.bucket, Key: key, ChecksumMode: 'ENABLED' }));
  } catch (err) {
    if (isMissing(err)) return undefined;
    return storeFailure(store, key, err);
  }
}

/** A small object (a manifest) in one PUT with its SHA-256. */
export async function putSmall(store: ObjectStore, key: string, body: string): Promise<void> {
  await store.client
    .send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: body, ChecksumAlgorithm: 'SHA256', ContentType: 'application/json' }))
    .catch((err: unknown) => storeFailure(store, key, err));
}

/** A small object's text, or undefined when there is no such key. */
export async function getSmall(store: ObjectStore, key: string): Promise<string | undefined> {
  try {
    const r = await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
    return await r.Body!.transformToString('utf8');
  } catch (err) {
    if (isMissing(err)) return undefined;
    return storeFailure(store, key, err);
  }
}

/** Streams `key` into `dest` (through `dest.part`, renamed when complete); returns the SHA-256 of what arrived. */
export async function downloadFile(
  store: ObjectStore,
  key: string,
  dest: string,
  onProgress: (bytes: number) => void = () => undefined,
  signal?: AbortSignal,
): Promise<{ bytes: number; sha256: string; storedChecksum?: string; checksum: string }> {
  const part = `${dest}.part`;
  const got = await downloadTo(store, key, createWriteStream(part), onProgress, signal).catch(async (err: unknown) => {
    await rm(part, { force: true });
    throw err;
  });
  await rename(part, dest);
  return got;
}

/**
 * Streams `key` into `sink` (a file, tar's stdin), hashing it: the SHA-256 of what arrived, the
 * checksum the server stored for it, and the same computed from what arrived, to compare.
 */
export async function downloadTo(
  store: ObjectStore,
  key: string,
  sink: NodeJS.WritableStream,
  onProgress: (bytes: number) => void = () => undefined,
  signal?: AbortSignal,
): Promise<{ bytes: number; sha256: string; storedChecksum?: string; checksum: string }> {
  const hasher = new Hasher(store.partSize);
  let stored: string | undefined;
  try {
    const r = await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: key, ChecksumMode: 'ENABLED' }), { abortSignal: signal });
    stored = r.ChecksumSHA256;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        onProgress(hasher.bytes + chunk.length);
        done(null, chunk);
      },
    });
    await pipeline(r.Body as Readable, counter, hasher, sink, { signal });
  } catch (err) {
    storeFailure(store, key, err);
  }
  const sha256 = hasher.whole.digest('hex');
  return { bytes: hasher.bytes, sha256, storedChecksum: stored, checksum: serverChecksum(hasher, sha256) };
}

/** Keys under `prefix/` (all pages). */
export async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  return (await listObjects(store, prefix)).map((o) => o.key);
}

/** Objects under `prefix/` with their time and size (all pages). */
export async function listObjects(store: ObjectStore, prefix: string): Promise<Array<{ key: string; lastModified: Date; size: number }>> {
  const out: Array<{ key: string; lastModified: Date; size: number }> = [];
  let token: string | undefined;
  do {
    const r = await store.client
      .send(new ListObjectsV2Command({ Bucket: store.bucket, Prefix: `${prefix}/`, ContinuationToken: token }))
      .catch((err: unknown) => storeFailure(store, prefix, err));
    for (const o of r.Contents ?? []) if (o.Key) out.push({ key: o.Key, lastModified: o.LastModified ?? new Date(0), size: o.Size ?? 0 });
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** The "folders" directly under `prefix/`. */
export async function listFolders(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const r = await store.client
      .send(new ListObjectsV2Command({ Bucket: store.bucket, Prefix: `${prefix}/`, Delimiter: '/', ContinuationToken: token }))
      .catch((err: unknown) => storeFailure(store, prefix, err));
    for (const p of r.CommonPrefixes ?? []) if (p.Prefix) out.push(p.Prefix.slice(prefix.length + 1).replace(/\/$/, ''));
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/** Deletes one object (none there is success: S3 answers a delete of a missing key the same way). */
export async function deleteKey(store: ObjectStore, key: string): Promise<void> {
  await store.client.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: key })).catch((err: unknown) => storeFailure(store, key, err));
}

/** Deletes every object under `prefix/`, `first` (the manifest) before the others: without it the rest is no backup. */
export async function deletePrefix(store: ObjectStore, prefix: string, first?: string): Promise<number> {
  const keys = await listKeys(store, prefix);
  const ordered = first ? [...keys.filter((k) => k === first), ...keys.filter((k) => k !== first)] : keys;
  for (const key of ordered) await deleteKey(store, key);
  return ordered.length;
}
