import { readFileSync } from 'node:fs';

/**
 * Whether a process with this pid is running; one owned by another user (EPERM) counts as
 * alive. A zombie (exited, not yet reaped: what a killed orphan stays as under a PID 1 that
 * reaps nobody, as in some containers) has stopped and counts as dead.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    // Field 3 of /proc/<pid>/stat, after the parenthesised command name (which may hold spaces).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}
