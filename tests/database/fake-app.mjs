// A tiny application service for the tests' command driver: plain Node (no TypeScript loader),
// so start/stop/status cost milliseconds on a loaded 2-core machine. It counts its starts and
// stops in <dir>/actions.log, one line each, so a test can tell what a run did (again). With
// `gated` it answers its health check with 200 only while <dir>/ready exists (503 before).
// Usage: node fake-app.mjs start|stop|status|serve <dir> <port> [gated]
import { spawn } from 'node:child_process';
import process from 'node:process';
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const [action, dir, portText] = process.argv.slice(2);
const port = Number(portText);
const gated = process.argv[5] === 'gated';
const pidFile = path.join(dir, `fake-app-${port}.pid`);
const log = (what) => appendFileSync(path.join(dir, 'actions.log'), `${what}\n`);

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const readPid = () => (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0);
const listening = () =>
  new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

if (action === 'serve') {
  http
    .createServer((_req, res) => {
      const ready = !gated || existsSync(path.join(dir, 'ready'));
      res.writeHead(ready ? 200 : 503).end(ready ? 'healthy' : 'not ready');
    })
    .listen(port, '127.0.0.1');
} else if (action === 'start') {
  if (readPid() && alive(readPid())) process.exit(0);
  const child = spawn(process.execPath, [process.argv[1], 'serve', dir, String(port), ...(gated ? ['gated'] : [])], { detached: true, stdio: 'ignore' });
  child.unref();
  writeFileSync(pidFile, String(child.pid));
  log('start');
  for (let i = 0; i < 100 && !(await listening()); i++) await sleep(50);
} else if (action === 'stop') {
  const pid = readPid();
  if (pid && alive(pid)) {
    process.kill(pid, 'SIGTERM');
    log('stop');
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(20);
  }
  rmSync(pidFile, { force: true });
} else if (action === 'status') {
  process.exit(readPid() && alive(readPid()) ? 0 : 3);
} else {
  process.stderr.write('usage: fake-app.mjs start|stop|status|serve <dir> <port> [gated]\n');
  process.exit(2);
}
