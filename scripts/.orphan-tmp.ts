import { startDevServer } from '../lib/temporal-server.js';
const s = await startDevServer({ port: 0, ui: false });
console.log(s.pid, process.pid);
setInterval(() => undefined, 1000);
