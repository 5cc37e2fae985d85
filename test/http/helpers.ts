import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAppliance, type Appliance } from '../../appliance/main/appliance';
import { systemClock } from '../../appliance/core/clock';
import { parseConfig } from '../../appliance/core/config';
import { silentLogger } from '../../appliance/core/log';
import { testConfig } from '../helpers/appliance-process';

/** The real appliance's HTTP app (every route plugin createAppliance wires), listening on 127.0.0.1. */
export interface LiveApp {
  appliance: Appliance;
  port: number;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * Builds the appliance as `serve` does, but only the HTTP app listens (on 127.0.0.1, a free
 * port): the protocol services stay stopped, which the routes tolerate. `beforeListen` may add
 * hooks (the route-table tests count handler runs).
 */
export async function liveApp(extra: Record<string, unknown> = {}, beforeListen?: (a: Appliance) => void): Promise<LiveApp> {
  const dir = mkdtempSync(join(tmpdir(), 'nb-http-'));
  const dataDir = join(dir, 'var');
  const config = parseConfig(testConfig(dataDir, { log: { level: 'silent' }, ...extra }));
  const appliance = await createAppliance(config, { log: silentLogger(), clock: systemClock, version: '0.0.0-test' });
  beforeListen?.(appliance);
  await appliance.http.listen({ host: '127.0.0.1', port: 0 });
  const port = (appliance.http.server.address() as { port: number }).port;
  return {
    appliance,
    port,
    dataDir,
    async close() {
      await appliance.stop();
      await appliance.http.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What rawRequest read back: the status code, the headers (lower-cased names) and the body. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * One HTTP/1.1 request written byte for byte on a fresh TCP connection, so the request target
 * reaches the server exactly as spelled (fetch and http.request normalise it). Bounded by a
 * 5 s timeout.
 */
export function rawRequest(port: number, method: string, target: string, headers: Record<string, string> = {}, body = ''): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer to ${method} ${target}`));
    }, 5000);
    const all: Record<string, string> = { host: `127.0.0.1:${port}`, connection: 'close', ...headers };
    if (body) all['content-length'] = String(Buffer.byteLength(body));
    const head =
      `${method} ${target} HTTP/1.1\r\n` +
      Object.entries(all)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('') +
      '\r\n';
    sock.on('connect', () => sock.end(head + body));
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) return reject(new Error(`no status line for ${method} ${target}: ${JSON.stringify(text.slice(0, 80))}`));
      const [rawHead, ...rest] = text.split('\r\n\r\n');
      const hdrs: Record<string, string> = {};
      for (const line of rawHead.split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) hdrs[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(m[1]), headers: hdrs, body: rest.join('\r\n\r\n') });
    });
  });
}
