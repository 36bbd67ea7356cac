import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Every relative link in README.md and docs/ points at a file that exists and, when it
 * names an anchor in a Markdown file, at a heading of that file (GitHub's slugs). Reads
 * files only: no servers.
 */

const root = fileURLToPath(new URL('..', import.meta.url));

function markdownFiles(dir: string): string[] {
  if (!fs.existsSync(path.join(root, dir))) return [];
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return markdownFiles(rel);
    return e.name.endsWith('.md') ? [rel] : [];
  });
}

/** The lines outside fenced code blocks. */
function prose(text: string): string[] {
  let fence = false;
  return text.split('\n').filter((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fence = !fence;
      return false;
    }
    return !fence;
  });
}

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

function anchors(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(fs.readFileSync(file, 'utf8'))) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m?.[1]) continue;
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

interface Link {
  from: string;
  target: string;
}

function links(rel: string): Link[] {
  const found: Link[] = [];
  for (const line of prose(fs.readFileSync(path.join(root, rel), 'utf8'))) {
    const text = line.replace(/`[^`]*`/g, '``');
    for (const m of text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
      if (m[1]) found.push({ from: rel, target: m[1] });
    }
  }
  return found;
}

/** Why a relative link is broken, or undefined when it resolves. */
function broken({ from, target }: Link): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined;
  const hash = target.indexOf('#');
  const filePart = decodeURIComponent(hash < 0 ? target : target.slice(0, hash));
  const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
  const file = filePart === '' ? path.join(root, from) : path.resolve(path.dirname(path.join(root, from)), filePart);
  if (!file.startsWith(root)) return `${from}: ${target} leaves the repository`;
  if (!fs.existsSync(file)) return `${from}: ${target}: no such file`;
  if (anchor !== undefined && file.endsWith('.md') && !anchors(file).has(anchor)) {
    return `${from}: ${target}: no heading #${anchor} in ${path.relative(root, file)}`;
  }
  return undefined;
}

const files = ['README.md', ...markdownFiles('docs')];

describe('documentation links', () => {
  it('slugs headings the way GitHub does', () => {
    expect(slug('Docker-volume variant: db-backup / db-restore with `mode: "docker-volume"`')).toBe(
      'docker-volume-variant-db-backup--db-restore-with-mode-docker-volume',
    );
    expect(slug('Configuration (`databaseOps`)')).toBe('configuration-databaseops');
    expect(slug('PITR: db-base-backup, pitr-restore, restore-drill')).toBe('pitr-db-base-backup-pitr-restore-restore-drill');
  });

  it('finds the docs pages', () => {
    expect(files.length).toBeGreaterThan(1);
  });

  it.each(files)('%s: every relative link and anchor resolves', (rel) => {
    const found = links(rel);
    expect(found.map(broken).filter((b) => b !== undefined)).toEqual([]);
  });

  it('README links every docs page', () => {
    const linked = new Set(
      links('README.md')
        .map((l) => l.target.split('#')[0] ?? '')
        .filter((t) => t.startsWith('docs/'))
        .map((t) => path.normalize(t)),
    );
    expect(markdownFiles('docs').filter((f) => !linked.has(f))).toEqual([]);
  });
});
