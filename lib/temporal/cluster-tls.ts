import { existsSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCommand } from '../exec.js';

/** The files of a cluster's mTLS: its own CA, the server's pair, one client pair for workers and the CLI. */
export interface ClusterCerts {
  dir: string;
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** The name the server certificate is issued for: what TEMPORAL_TLS_SERVER_NAME must say. */
  serverName: string;
}

/** Certificates this long: the 825 days browsers and most TLS stacks still accept for a leaf. */
const DAYS = '825';
const SERVER_NAME = 'localhost';

/**
 * Makes, with openssl, a CA and from it a server certificate (localhost, 127.0.0.1, ::1; server
 * and client use: the cluster's own services call the frontend with it) and a client
 * certificate, unless `dir` holds them already. Keys are ECDSA P-256 in files of mode 0600; the
 * CA's key stays in `dir` so more client certificates can be issued with openssl.
 */
export async function ensureClusterCerts(dir: string): Promise<ClusterCerts> {
  const certs: ClusterCerts = {
    dir,
    caFile: path.join(dir, 'ca.pem'),
    serverCertFile: path.join(dir, 'server.pem'),
    serverKeyFile: path.join(dir, 'server.key'),
    clientCertFile: path.join(dir, 'client.pem'),
    clientKeyFile: path.join(dir, 'client.key'),
    serverName: SERVER_NAME,
  };
  if ([certs.caFile, certs.serverCertFile, certs.serverKeyFile, certs.clientCertFile, certs.clientKeyFile].every((f) => existsSync(f))) return certs;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caKey = path.join(dir, 'ca.key');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const openssl = (...args: string[]) => runCommand(['openssl', ...args], { timeoutMs: 30_000 });
  await openssl(
    'req', '-x509', ...ec, '-keyout', caKey, '-out', certs.caFile, '-days', DAYS, '-subj', '/CN=runbook temporal cluster CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ); // prettier-ignore
  const issue = async (name: string, subject: string, extensions: string[]) => {
    const csr = path.join(dir, `${name}.csr`);
    const ext = path.join(dir, `${name}.ext`);
    await openssl('req', ...ec, '-keyout', path.join(dir, `${name}.key`), '-out', csr, '-subj', subject);
    await writeFile(ext, `${['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', ...extensions].join('\n')}\n`);
    await openssl('x509', '-req', '-in', csr, '-CA', certs.caFile, '-CAkey', caKey, '-CAcreateserial', '-out', path.join(dir, `${name}.pem`), '-days', DAYS, '-extfile', ext);
    await rm(csr);
    await rm(ext);
  };
  await issue('server', `/CN=${SERVER_NAME}`, [`subjectAltName=DNS:${SERVER_NAME},IP:127.0.0.1,IP:::1`, 'extendedKeyUsage=serverAuth,clientAuth']);
  await issue('client', '/CN=runbook-worker', ['extendedKeyUsage=clientAuth']);
  for (const key of [caKey, certs.serverKeyFile, certs.clientKeyFile]) await chmod(key, 0o600);
  return certs;
}

/** The variables the worker and the CLI read (lib/temporal/connection.ts) to connect with the client certificate. */
export function clusterTlsEnv(certs: ClusterCerts): Record<string, string> {
  return {
    TEMPORAL_TLS_CA: certs.caFile,
    TEMPORAL_TLS_CERT: certs.clientCertFile,
    TEMPORAL_TLS_KEY: certs.clientKeyFile,
    TEMPORAL_TLS_SERVER_NAME: certs.serverName,
  };
}
