/**
 * What `runbook resume` may run a second time. A resume resets a failed run to the workflow task
 * before its failed step (or before the approval that step is behind): every activity the old run
 * scheduled after that point runs again in the new run. Only activities checked to be safe to
 * repeat are listed here, each with why; a resume that would repeat any other is refused and
 * names it. Add an activity only after reading it (and the workflow code around its call):
 * "checks before acting", "writes under a name of the new run", or "reads only".
 */
export const REPEATABLE_ACTIVITIES: Readonly<Record<string, string>> = {
  checkInput: 'validates the input against its schema; changes nothing',
  verifyApproval: 'checks an answer\'s signature and approver; changes nothing',
  loadPlan: 'reads the configuration snapshot; changes nothing',
  loadDatabasePlan: 'reads the configuration of one database; changes nothing',
  runProbe: 'one health probe (HTTP, TCP, PostgreSQL, Redis, ...); changes nothing',
  waitHealthy: 'polls the probes until healthy or the deadline; changes nothing',
  serviceStatus: "asks the service's driver whether it runs; changes nothing",
  serviceAction:
    "runs the driver's start/stop command; the workflows call it only for a service their status or probe check found not in that state (stack-start, startServices, stopServices), and its retry policy already repeats it after a failure",
  startAtPreviousVersion: "starts a command-driver app only when its status says it is not running (or runs its rollback command, which goes to one fixed version)",
  planRollback: 'reads schema_migrations and the down files; changes nothing',
  rollbackMigrations: 'rolls back only the migrations newer than the target that are still applied: a second run finds them gone and applies no down SQL',
  dumpDatabase: 'writes a new backup under a name made of the time and the (new) run id; never overwrites one',
  preflight: 'checks ports, files and docker (version, info); changes nothing',
  verifyBackup: "reads a backup's checksum and pg_restore --list; changes nothing",
  pitrWindow: 'lists the base backups and the archived WAL; changes nothing',
  startRecovery:
    "copies the base backup into a scratch data directory named by the restore id (under pitr[].restoreDir, never the live one) and starts it on a new port: a repeat finds its server running, or replaces the scratch copy whole; the base backup and the WAL archive are only read; its restore_command only copies from the archive",
  waitRecovered: 'polls the scratch cluster until it has replayed to the target and promoted; changes nothing',
  countRecovered: 'counts rows in the scratch cluster; changes nothing',
  stopRecovered: 'stops and removes only the scratch cluster of one restore id; a repeat finds it gone',
  setTrafficWeight:
    "sets an absolute weight, never a shift by an amount: every router (nginx, istio, command) reads the weight in effect first and changes nothing when it is already the one asked; a canary that rolled back is refused before this list is read",
};

/** Why repeating this activity is safe, or undefined when nobody checked it. */
export function repeatableBecause(activityType: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(REPEATABLE_ACTIVITIES, activityType) ? REPEATABLE_ACTIVITIES[activityType] : undefined;
}
