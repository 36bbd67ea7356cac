import net from 'node:net';

/** An unused TCP port on `ip`, chosen by the kernel (free when asked; a caller binding later may still race). */
export async function freePort(ip = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, ip, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port assigned'))));
    });
  });
}

/** Throws when `ip:port` cannot be bound, naming `what` (a server already there would answer in place of ours). */
export async function assertPortFree(ip: string, port: number, what: string, hint = 'stop it or choose another port'): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          err.code === 'EADDRINUSE'
            ? `${what} port ${ip}:${port} is already in use: ${hint}`
            : `${what} port ${ip}:${port} cannot be used: ${err.message}`,
        ),
      ),
    );
    srv.listen(port, ip, () => srv.close(() => resolve()));
  });
}
