/**
 * Network-namespace plumbing for the DHCP interop tests: namespaces named nb-dhcp-<tag>-<pid>,
 * addresses from 198.18.0.0/15, everything deleted in cleanup (processes inside first).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Runs a command, returns stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[], timeoutMs = 20_000): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a command that may fail; returns its combined output and status. */
export function run(cmd: string, args: string[], timeoutMs = 20_000): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** Which of the tools are missing from PATH. */
export function missingTools(...tools: string[]): string[] {
  return tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
}

/** Why netns tests cannot run here, or undefined. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for ip netns';
  const missing = missingTools('ip');
  return missing.length ? `missing ${missing.join(', ')}` : undefined;
}

/** Deletes a namespace after killing what runs in it. */
export function deleteNamespace(ns: string): void {
  const pids = run('ip', ['netns', 'pids', ns]).out.split(/\s+/).filter(Boolean);
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  run('ip', ['netns', 'del', ns]);
}

/** Two namespaces joined by a veth pair: server side 198.18.0.1/24 on `vs`, client side `vc` (no address). */
export function createPair(tag: string): { server: string; client: string; dir: string; cleanup: () => void } {
  const server = `nb-dhcp-${tag}s-${process.pid}`;
  const client = `nb-dhcp-${tag}c-${process.pid}`;
  for (const ns of [server, client]) deleteNamespace(ns);
  sh('ip', ['netns', 'add', server]);
  sh('ip', ['netns', 'add', client]);
  sh('ip', ['link', 'add', 'vs', 'netns', server, 'type', 'veth', 'peer', 'name', 'vc', 'netns', client]);
  sh('ip', ['-n', server, 'addr', 'add', '198.18.0.1/24', 'dev', 'vs']);
  sh('ip', ['-n', client, 'link', 'set', 'vc', 'address', '02:00:00:00:00:c1']);
  for (const [ns, dev] of [
    [server, 'vs'],
    [client, 'vc'],
    [server, 'lo'],
    [client, 'lo'],
  ])
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  const dir = mkdtempSync(join(tmpdir(), `nb-dhcp-${tag}-`));
  return {
    server,
    client,
    dir,
    cleanup: () => {
      [client, server].forEach(deleteNamespace);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const runnerPath = join(__dirname, 'runner.ts');
const capturePath = join(__dirname, 'capture.ts');
const repo = join(__dirname, '../../..');

/** A runner process (the DHCP service) inside a namespace. */
export interface Runner {
  lines: string[];
  proc: ChildProcess;
  /** Resolves with the first line matching re (rejects after timeoutMs). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Parsed EVENT lines so far. */
  events(): { mac: string; stage: string; detail?: Record<string, unknown> }[];
  stop(): Promise<void>;
}

/** Starts test/dhcp/helpers/runner.ts with `spec` in namespace `ns`. */
export function startRunner(ns: string, dir: string, name: string, spec: unknown): Runner {
  const specFile = join(dir, `${name}.json`);
  writeFileSync(specFile, JSON.stringify(spec));
  const proc = spawn('ip', ['netns', 'exec', ns, join(repo, 'node_modules/.bin/tsx'), runnerPath, specFile], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  const onData = (chunk: Buffer) => {
    buf += chunk.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters])
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    lines,
    proc,
    waitFor(re, timeoutMs = 20_000) {
      const hit = lines.find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = {
          re,
          resolve: (l: string) => {
            clearTimeout(t);
            resolve(l);
          },
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`timed out waiting for ${re}; output:\n${lines.join('\n')}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    events() {
      return lines.filter((l) => l.startsWith('EVENT ')).map((l) => JSON.parse(l.slice(6)));
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** Captures UDP payloads arriving on `port` in namespace ns (a sniffer beside a real client, SO_REUSEADDR). */
export function startCapture(
  ns: string,
  dir: string,
  prefix: string,
  port: number,
  count: number,
  seconds: number,
): { ready: Promise<void>; done: Promise<Buffer[]> } {
  const proc = spawn('ip', ['netns', 'exec', ns, join(repo, 'node_modules/.bin/tsx'), capturePath, String(port), dir, prefix, String(count), String(seconds)], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const ready = new Promise<void>((r) => proc.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && r()));
  const done = new Promise<Buffer[]>((resolve) =>
    proc.once('exit', () => {
      const files = readdirSync(dir)
        .filter((f) => f.startsWith(`${prefix}-`))
        .sort();
      resolve(files.map((f) => readFileSync(join(dir, f))));
    }),
  );
  return { ready, done };
}

/**
 * Runs a command until its output matches `until` (then kills it), it exits, or timeoutMs passes.
 * Async, so the test's event loop keeps reading the runner's output meanwhile.
 */
export function runUntil(argv: string[], until: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (proc.exitCode === null) proc.kill('SIGTERM');
      resolve(out);
    };
    const timer = setTimeout(finish, timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (until.test(out)) finish();
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', finish);
  });
}

/** Counts DHCP message types (Discover, Offer, Request, ACK, ...) in `tcpdump -vv` text. */
export function dhcpTypes(tcpdumpText: string): string[] {
  return [...tcpdumpText.matchAll(/DHCP-Message \(53\), length 1: (\w+)/g)].map((m) => m[1]!);
}

/**
 * tcpdump on `dev` in `ns` for DHCP (ports 67/68), text with -vv; `stop()` ends it and resolves
 * with what it printed. `ready` resolves once tcpdump listens.
 */
export function startTcpdump(ns: string, dev: string): { ready: Promise<void>; stop: () => Promise<string> } {
  const proc = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-lnvv', '-i', dev, 'udp port 67 or udp port 68'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => /listening on/.test(d.toString()) && ready());
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const t = setTimeout(ready, 3000); // tcpdump prints "listening" late on some builds: go on anyway
  return {
    ready: readyP.then(() => new Promise<void>((r) => setTimeout(r, 200))),
    async stop() {
      clearTimeout(t);
      await new Promise((r) => setTimeout(r, 300)); // let the last packets print
      proc.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      return out;
    },
  };
}
