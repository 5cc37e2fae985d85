import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '../..');
export const BUNDLE = join(ROOT, 'dist/appliance.cjs');

/** Builds dist/appliance.cjs unless it exists (`make test` builds it first anyway). */
export function ensureBuilt(): void {
  if (existsSync(BUNDLE) && existsSync(join(ROOT, 'dist/better_sqlite3.node'))) return;
  const r = spawnSync('node', [join(ROOT, 'appliance/build.mjs')], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('build failed');
}

/** A running `node dist/appliance.cjs serve` with its own temp dataDir and free ports. */
export interface RunningAppliance {
  proc: ChildProcess;
  dataDir: string;
  configFile: string;
  url: string;
  token: string;
  logs: () => string;
  api: (method: string, path: string, body?: unknown, token?: string | null) => Promise<{ status: number; json: any }>;
  stop: (signal?: NodeJS.Signals) => Promise<{ code: number | null; ms: number }>;
}

/** Config for tests: everything on loopback with ephemeral ports, DHCP and mDNS off. */
export function testConfig(dataDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    dataDir,
    serverAddress: '127.0.0.1',
    http: { host: '127.0.0.1', port: 0 },
    iscsi: { host: '127.0.0.1', port: 0 },
    tftp: { host: '127.0.0.1', port: 0 },
    dhcp: { mode: 'off' },
    mdns: { enabled: false },
    log: { level: 'info', format: 'json' },
    ...extra,
  };
}

/** Starts the bundled appliance and waits until it prints its URL. */
export async function startAppliance(config?: Record<string, unknown>, opts: { cwd?: string; args?: string[] } = {}): Promise<RunningAppliance> {
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'nb-app-'));
  const dataDir = (config?.dataDir as string) ?? join(dir, 'var');
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify(config ?? testConfig(dataDir)));
  const proc = spawn('node', [BUNDLE, 'serve', '--config', configFile, ...(opts.args ?? [])], { cwd: opts.cwd ?? dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`appliance did not start within 20 s:\n${out}`)), 20_000);
    const check = () => {
      const m = /"url":"(http:[^"]+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1].replace(/\/$/, '').replace('localhost', '127.0.0.1'));
      }
    };
    proc.stdout!.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`appliance exited with ${code}:\n${out}`));
    });
  });
  const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
  const api = async (method: string, path: string, body?: unknown, tok: string | null = token) => {
    const res = await fetch(url + path, {
      method,
      headers: { ...(tok ? { authorization: `Bearer ${tok}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    let json: any = text;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, json };
  };
  const stop = (signal: NodeJS.Signals = 'SIGTERM') =>
    new Promise<{ code: number | null; ms: number }>((res) => {
      if (proc.exitCode !== null) return res({ code: proc.exitCode, ms: 0 });
      const t0 = Date.now();
      const kill = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      proc.once('exit', (code) => {
        clearTimeout(kill);
        res({ code, ms: Date.now() - t0 });
      });
      proc.kill(signal);
    });
  return { proc, dataDir, configFile, url, token, logs: () => out, api, stop };
}

/** Polls GET /api/images/NAME until the import is no longer running (at most ~20 s); returns the image. */
export async function waitForImport(app: Pick<RunningAppliance, 'api'>, name: string): Promise<any> {
  let img;
  for (let i = 0; i < 200; i++) {
    img = (await app.api('GET', `/api/images/${name}`)).json;
    if (img?.state !== 'importing') break;
    await new Promise((res) => setTimeout(res, 100));
  }
  return img;
}
