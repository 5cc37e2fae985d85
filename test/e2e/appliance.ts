/**
 * The appliance inside the e2e lab: `node dist/appliance.cjs serve --config CONFIG.json` started in
 * the lab namespace on the bridge address, driven through its HTTP API the way an operator's
 * script would. The test process lives outside the namespace, so API calls go through curl run
 * with `ip netns exec` (nothing is ever exposed outside the namespace).
 *
 * bootWithAppliance() is the appliance half of bench/boot-vs-peer.ts: the same disk, the same
 * qemu client, the appliance instead of dnsmasq + tgt.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootLogLines, CACHE_DIR, REPO_ROOT, type TestDisk } from './build-disk';
import { Lab, labMac, type BootResult, type LabProcess } from './lab';

/**
 * The bundle `make build` produces. E2E_APPLIANCE_BUNDLE points the lab at another build (a
 * candidate fix built elsewhere) without touching dist/.
 */
export const BUNDLE = process.env.E2E_APPLIANCE_BUNDLE || join(REPO_ROOT, 'dist/appliance.cjs');

/** Why the appliance cannot be started (bundle missing), or undefined. A test must FAIL on this. */
export function applianceMissingReason(): string | undefined {
  if (!existsSync(BUNDLE)) return `${BUNDLE} is missing: run \`make build\` first (the e2e boot test needs the bundled appliance)`;
  return undefined;
}

/** An API reply: status and parsed JSON (or the raw text when it is not JSON). */
export interface ApiReply {
  status: number;
  json: any;
}

/** A running appliance in a lab. */
export interface LabAppliance {
  proc: LabProcess;
  dataDir: string;
  token: string;
  baseUrl: string;
  /** One API call (JSON in, JSON out) through curl inside the namespace. */
  api(method: string, path: string, body?: unknown): Promise<ApiReply>;
  /** Like api() but throws unless the status is one of `ok`. */
  call(method: string, path: string, body?: unknown, ok?: number[]): Promise<any>;
  /** Streams GET `path` into `file`; returns the HTTP status. */
  download(path: string, file: string): Promise<number>;
  /** The appliance's own log so far (JSON lines). */
  log(): string;
  stop(): Promise<void>;
}

/** What startAppliance needs. */
export interface ApplianceOptions {
  mode: 'full' | 'proxy';
  /** Extra config merged over the defaults below, one level deep. */
  config?: Record<string, Record<string, unknown>>;
  name?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The config the e2e test runs the appliance with (the shape of appliance/core/config.ts). */
export function labConfig(lab: Lab, dataDir: string, opts: ApplianceOptions): Record<string, unknown> {
  const server = lab.serverAddress;
  const net = server.replace(/\.\d+$/, '');
  const base: Record<string, Record<string, unknown> | string> = {
    dataDir,
    serverAddress: server,
    http: { host: server, port: 8080 },
    // The default NOP-In interval (5 s): a powered-off client's dead session is dropped 10 s
    // after its last PDU, so the tests that restore a disk right after a boot need no
    // ?force=true, and they measure the product's own figure (issue #14: within 15 s).
    iscsi: { host: server, port: 3260 },
    tftp: { host: '0.0.0.0', port: 69 },
    dhcp: {
      mode: opts.mode,
      interface: lab.bridge,
      ...(opts.mode === 'full'
        ? { range: [`${net}.100`, `${net}.150`], netmask: '255.255.255.0', router: '', dns: [], leaseSeconds: 600, conflictProbeSeconds: 1 }
        : {}),
    },
    boot: { ipxeDir: '/usr/lib/ipxe' },
    // Server-side imports read only from import directories (issue #13): the built disks and the run's files.
    images: { importDirs: [CACHE_DIR, join(REPO_ROOT, 'test-artifacts/e2e')] },
    mdns: { enabled: false },
    log: { level: 'info', format: 'json' },
  };
  for (const [k, v] of Object.entries(opts.config ?? {})) {
    base[k] = { ...((base[k] as Record<string, unknown>) ?? {}), ...v };
  }
  return base;
}

/** Runs curl inside the namespace (async, so qemu's serial keeps being read meanwhile). */
function curl(lab: Lab, args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', lab.ns, 'curl', '-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * Starts the appliance in the lab namespace and waits (bounded) until its API answers with the
 * admin token from <dataDir>/admin.token.
 */
export async function startAppliance(lab: Lab, opts: ApplianceOptions): Promise<LabAppliance> {
  const why = applianceMissingReason();
  if (why) throw new Error(why);
  const name = opts.name ?? `appliance-${opts.mode}`;
  const dataDir = join(lab.workDir, `${name}-data`);
  mkdirSync(dataDir, { recursive: true });
  const configFile = join(lab.workDir, `${name}.json`);
  writeFileSync(configFile, JSON.stringify(labConfig(lab, dataDir, opts), null, 2));
  const proc = lab.startProcess(name, 'node', [BUNDLE, 'serve', '--config', configFile]);
  const baseUrl = `http://${lab.serverAddress}:8080`;
  const log = () => (existsSync(proc.logFile) ? readFileSync(proc.logFile, 'utf8') : '');

  const tokenFile = join(dataDir, 'admin.token');
  let token = '';
  const api = async (method: string, path: string, body?: unknown): Promise<ApiReply> => {
    const args = ['-X', method, '-w', '\n%{http_code}', '-H', `Authorization: Bearer ${token}`];
    if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
    const r = await curl(lab, [...args, baseUrl + path]);
    if (r.code !== 0) {
      const dead = proc.child.exitCode !== null || proc.child.signalCode !== null;
      const state = dead ? `; the appliance has exited (${proc.child.exitCode ?? proc.child.signalCode}), log tail:\n${log().slice(-2000)}` : '';
      return { status: 0, json: `${r.stderr.trim()}${state}` };
    }
    const nl = r.stdout.lastIndexOf('\n');
    const text = r.stdout.slice(0, nl);
    let json: any = text;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON: keep the text */
    }
    return { status: Number(r.stdout.slice(nl + 1)), json };
  };

  const deadline = Date.now() + 45_000;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`the appliance exited during start-up (${proc.child.exitCode ?? proc.child.signalCode}):\n${log().slice(-3000)}`);
    }
    if (!token && existsSync(tokenFile)) token = readFileSync(tokenFile, 'utf8').trim();
    if (token) {
      const r = await api('GET', '/api/status');
      if (r.status === 200) break;
    }
    if (Date.now() > deadline) throw new Error(`the appliance did not answer GET /api/status within 45 s:\n${log().slice(-3000)}`);
    await sleep(250);
  }

  const call = async (method: string, path: string, body?: unknown, ok = [200, 201, 202, 204]) => {
    const r = await api(method, path, body);
    if (!ok.includes(r.status)) throw new Error(`${method} ${path} -> ${r.status}: ${JSON.stringify(r.json)}`);
    return r.json;
  };
  return {
    proc,
    dataDir,
    token,
    baseUrl,
    api,
    call,
    async download(path, file) {
      const r = await curl(lab, ['-o', file, '-w', '%{http_code}', '-H', `Authorization: Bearer ${token}`, baseUrl + path], 120_000);
      return r.code === 0 ? Number(r.stdout) : 0;
    },
    log,
    stop: () => proc.stop(5000),
  };
}

/**
 * Imports `file` as golden image `name` (POST /api/images; 201 = done, 202 = a job to poll until
 * its state is ready). Bounded by timeoutMs.
 */
export async function importImage(app: LabAppliance, name: string, file: string, timeoutMs = 120_000): Promise<any> {
  const r = await app.api('POST', '/api/images', { name, path: file });
  if (r.status === 201) return r.json;
  if (r.status !== 202) throw new Error(`POST /api/images -> ${r.status}: ${JSON.stringify(r.json)}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const img = await app.call('GET', `/api/images/${encodeURIComponent(name)}`);
    if (img.state === 'ready') return img;
    if (img.state === 'failed' || img.error) throw new Error(`import of ${name} failed: ${JSON.stringify(img)}`);
    if (Date.now() > deadline) throw new Error(`import of ${name} not ready after ${timeoutMs} ms: ${JSON.stringify(img)}`);
    await sleep(250);
  }
}

/** The client view GET /api/clients/:mac returns (the fields the test uses). */
export interface ClientView {
  mac: string;
  target: string;
  lun: number;
  initiatorName: string;
  rootPath: string;
}

/** Creates a client disk for `mac` from `image` and returns its view. */
export async function addClient(app: LabAppliance, mac: string, image: string, name?: string): Promise<ClientView> {
  await app.call('POST', '/api/clients', { mac, image, ...(name ? { name } : {}) }, [200, 201]);
  return app.call('GET', `/api/clients/${mac}`);
}

/**
 * Runs `fn` until it stops answering 409 DISK_IN_USE (a powered-off client's iSCSI sessions
 * linger until the target notices the dead connection), every half second, bounded by
 * timeoutMs. Returns the final reply, how long the disk stayed busy and, when `mac` is given,
 * when GET /api/clients/:mac first showed the client offline.
 */
export async function retryWhileInUse(
  fn: () => Promise<ApiReply>,
  timeoutMs: number,
  watch?: { app: LabAppliance; mac: string },
): Promise<{ reply: ApiReply; waitedMs: number; offlineAfterMs?: number }> {
  const start = Date.now();
  let offlineAfterMs: number | undefined;
  const checkOnline = async () => {
    if (!watch || offlineAfterMs !== undefined) return;
    const view = await watch.app.api('GET', `/api/clients/${watch.mac}`);
    if (view.status === 200 && (view.json as { online?: boolean }).online === false) offlineAfterMs = Date.now() - start;
  };
  for (;;) {
    await checkOnline();
    const reply = await fn();
    const waitedMs = Date.now() - start;
    if (reply.status !== 409 || waitedMs > timeoutMs) {
      // The session may have gone between the two calls: then it shows offline now.
      await checkOnline();
      return { reply, waitedMs, offlineAfterMs };
    }
    await sleep(500);
  }
}

/**
 * Exports a client's disk as raw and returns the lines of /boot-log.txt on it, or undefined when
 * the export route does not answer 200 (the caller says so rather than failing on it).
 */
export async function exportedBootLog(app: LabAppliance, mac: string, disk: TestDisk, file: string): Promise<string[] | undefined> {
  const status = await app.download(`/api/clients/${mac}/export?format=raw`, file);
  if (status !== 200) return undefined;
  return bootLogLines(file, disk);
}

/** Options for bootWithAppliance (mirrors bootWithPeer). */
export interface ApplianceBootOptions {
  disk: TestDisk;
  firmware?: 'bios' | 'uefi';
  boots?: number;
  timeoutMs?: number;
  mode?: 'full' | 'proxy';
  id?: string;
  /** Extra config over labConfig's (e.g. `{ ra: { enabled: false } }`). */
  config?: Record<string, Record<string, unknown>>;
}

/** What bootWithAppliance measured. */
export interface ApplianceBootReport {
  boots: BootResult[];
  /** /boot-log.txt from the exported disk, undefined when the export route is unavailable. */
  bootLog?: string[];
  workDir: string;
}

/**
 * The appliance half of the boot benchmark: a fresh lab, the appliance in full-DHCP mode, the
 * test disk imported as a golden image and assigned to one MAC, `boots` boots in a row.
 */
export async function bootWithAppliance(opts: ApplianceBootOptions): Promise<ApplianceBootReport> {
  const id = opts.id ?? `${process.pid}a`;
  const workDir = join(REPO_ROOT, 'test-artifacts/e2e', `appliance-${id}-${Date.now()}`);
  mkdirSync(workDir, { recursive: true });
  const lab = new Lab({ id, workDir });
  const firmware = opts.firmware ?? 'bios';
  try {
    lab.create();
    const app = await startAppliance(lab, { mode: opts.mode ?? 'full', config: opts.config });
    try {
      await importImage(app, 'e2e-golden', opts.disk.path);
      const mac = labMac(0x200);
      await addClient(app, mac, 'e2e-golden', 'bench-client');
      const boots: BootResult[] = [];
      for (let i = 0; i < (opts.boots ?? 1); i++) {
        const q = lab.startQemu({ name: `appliance-${firmware}-${i + 1}`, mac, firmware, timeoutMs: opts.timeoutMs });
        boots.push(await q.result());
      }
      const bootLog = await exportedBootLog(app, mac, opts.disk, join(workDir, 'export.img'));
      return { boots, bootLog, workDir };
    } finally {
      await app.stop();
    }
  } finally {
    await lab.destroy();
  }
}

/** True when `tool` runs (used for the curl the API calls go through). */
export function hasCurl(): boolean {
  return spawnSync('curl', ['--version'], { stdio: 'ignore' }).status === 0;
}
