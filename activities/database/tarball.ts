import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

/**
 * What a `.tar.gz` of a data directory holds, read without unpacking it: the whole gzip
 * stream is decompressed (its CRC and length trailer catch a truncated or altered file) and
 * the tar headers are walked to the end-of-archive block. Only the listing is needed, so a
 * few dozen lines over node:zlib rather than a tar dependency.
 */
export interface TarballListing {
  entries: number;
  /** The major version in PG_VERSION of the shallowest data directory (PG_VERSION beside global/pg_control). */
  pgVersion?: string;
  /** That data directory's path inside the archive ('.' for the archive's root). */
  pgDataDir?: string;
  /** An end-of-archive block was reached: no entry was cut short. */
  complete: boolean;
}

const BLOCK = 512;

function field(h: Buffer, start: number, length: number): string {
  const raw = h.subarray(start, start + length);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul === -1 ? length : nul).toString('utf8');
}

/** Octal, or GNU base-256 for sizes over 8 GiB. */
function size(h: Buffer): number {
  if ((h[124]! & 0x80) !== 0) return h.subarray(125, 136).reduce((n, b) => n * 256 + b, 0);
  return parseInt(field(h, 124, 12).trim() || '0', 8);
}

/** `./a/b/` and `a/b` alike; '.' for the root. */
function dirOf(p: string, strip: string): string {
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  const dir = parts.slice(0, parts.length - strip.split('/').length);
  return dir.length === 0 ? '.' : dir.join('/');
}

export async function listTarball(file: string): Promise<TarballListing> {
  const out: TarballListing = { entries: 0, complete: false };
  let header = Buffer.alloc(0);
  let dataLeft = 0;
  let padLeft = 0;
  let collect: { kind: 'pg-version' | 'long-name'; path: string; parts: Buffer[] } | undefined;
  let longName: string | undefined;
  const versions = new Map<string, string>();
  const controls = new Set<string>();

  const finishData = () => {
    if (!collect) return;
    const text = Buffer.concat(collect.parts).toString('utf8');
    if (collect.kind === 'long-name') longName = text.replace(/\0.*$/s, '');
    else versions.set(dirOf(collect.path, 'PG_VERSION'), text.split('\n')[0]!.trim());
    collect = undefined;
  };

  const onHeader = (h: Buffer) => {
    if (h.every((b) => b === 0)) {
      out.complete = true;
      return;
    }
    const type = String.fromCharCode(h[156]!);
    const prefix = field(h, 257, 6) === 'ustar' ? field(h, 345, 155) : '';
    const name = longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    longName = undefined;
    const n = size(h);
    dataLeft = n;
    padLeft = (BLOCK - (n % BLOCK)) % BLOCK;
    if (type === 'L') collect = { kind: 'long-name', path: name, parts: [] };
    else {
      if (type !== 'x' && type !== 'g') out.entries += 1;
      const regular = type === '0' || type === '\0';
      if (regular && name.split('/').pop() === 'PG_VERSION' && n < 64) collect = { kind: 'pg-version', path: name, parts: [] };
      if (regular && /(^|\/)global\/pg_control$/.test(name)) controls.add(dirOf(name, 'global/pg_control'));
    }
    if (n === 0) finishData();
  };

  await pipeline(createReadStream(file), createGunzip(), async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) {
      let off = 0;
      while (off < chunk.length && !out.complete) {
        if (dataLeft > 0) {
          const take = Math.min(dataLeft, chunk.length - off);
          collect?.parts.push(chunk.subarray(off, off + take));
          dataLeft -= take;
          off += take;
          if (dataLeft === 0) finishData();
        } else if (padLeft > 0) {
          const take = Math.min(padLeft, chunk.length - off);
          padLeft -= take;
          off += take;
        } else {
          const take = Math.min(BLOCK - header.length, chunk.length - off);
          header = Buffer.concat([header, chunk.subarray(off, off + take)]);
          off += take;
          if (header.length === BLOCK) {
            onHeader(header);
            header = Buffer.alloc(0);
          }
        }
      }
      // After the end-of-archive block the rest is padding; keep reading so gunzip checks its trailer.
    }
  });
  const dataDirs = [...versions.keys()].filter((d) => controls.has(d)).sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
  const chosen = dataDirs.find((d) => d === '.') ?? dataDirs[0];
  if (chosen !== undefined) {
    out.pgDataDir = chosen;
    out.pgVersion = versions.get(chosen);
  }
  return out;
}
