export { assertPortFree, freePort } from './ports.js';
export { pidAlive } from './processes.js';
export {
  asPostgres,
  initPostgres,
  newestPostgresBinDir,
  pgCtl,
  postgresOwnedDir,
  postgresRunning,
  postgresServerBinDir,
  startPostgresServer,
  stopPostgresServer,
  type LocalPostgres,
} from './postgres.js';
