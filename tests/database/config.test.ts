import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../lib/config.js';

const base = {
  services: [{ name: 'postgres', group: 'infra', driver: { type: 'command', status: ['true'] } }],
  databases: [{ name: 'app', url: 'postgres://postgres@127.0.0.1:5432/app' }],
};

function problems(databaseOps: unknown): string {
  try {
    parseConfig(stringify({ ...base, databaseOps }), 'runbooks.yaml');
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('databaseOps config section', () => {
  it('fills the runbooks defaults', () => {
    const cfg = parseConfig(stringify({ ...base, databaseOps: { backups: { repository: '/b' } } }), 'runbooks.yaml');
    expect(cfg.databaseOps?.backups).toMatchObject({ retention: 7, format: 'custom', jobs: 1 });
    expect(cfg.databaseOps?.lock).toEqual({ mode: 'fail', waitTimeoutSeconds: 3600, pollSeconds: 5 });
    expect(cfg.databaseOps?.disasterRecovery).toMatchObject({ rtoSeconds: 3600, rpoSeconds: 900 });
    expect(cfg.databaseOps?.vacuum.deadTuplesThreshold).toBe(1000);
  });

  it('names the bad field and the fix', () => {
    expect(problems({ backups: { repository: '/b', format: 'tar' } })).toMatch(/databaseOps\.backups\.format/);
    expect(problems({ backups: { repository: '/b', verifyTables: { app: ['drop table x;'] } } })).toMatch(
      /databaseOps\.backups\.verifyTables\.app\[0\]: expected a table name like "policies"/,
    );
    expect(problems({ schedules: [{ id: 'a', procedure: 'db-backup', cron: ['0 2 * * *'], everySeconds: 60 }] })).toMatch(
      /databaseOps\.schedules\[0\]: give exactly one of cron or everySeconds/,
    );
    expect(problems({ schedules: [{ id: 'a', procedure: 'db-backup', everySeconds: 60 }, { id: 'a', procedure: 'db-vacuum', everySeconds: 60 }] })).toMatch(
      /databaseOps\.schedules\[1\]\.id: duplicate schedule id "a"/,
    );
    expect(problems({ lock: { mode: 'queue' } })).toMatch(/databaseOps\.lock\.mode/);
    expect(problems({ backup: {} })).toMatch(/unknown field\(s\) "backup"/);
  });

  it('docker-volume entries: a volume or repository that could become a different mount is refused', () => {
    const vol = (v: Record<string, unknown>) => problems({ volumes: [{ database: 'app', volume: 'pgdata', repository: '/backups/volumes', ...v }] });
    expect(vol({})).toBe('');
    // `-v /etc:/data` would bind-mount the host's /etc instead of a named volume.
    expect(vol({ volume: '/etc' })).toMatch(/databaseOps\.volumes\[0\]\.volume: expected a Docker volume name/);
    expect(vol({ repository: '/backups,target=/etc' })).toMatch(/databaseOps\.volumes\[0\]\.repository: a directory without "," or ":"/);
    expect(vol({ image: '--privileged' })).toMatch(/databaseOps\.volumes\[0\]\.image: expected an image reference/);
    expect(problems({ volumes: [{ database: 'app', volume: 'a', repository: '/r' }, { database: 'app', volume: 'b', repository: '/r' }] })).toMatch(
      /databaseOps\.volumes\[1\]\.database: database "app" already has a volume entry/,
    );
  });
});
