/**
 * Interop: the advertiser, run as its own process in a network namespace, is found by a real
 * resolver (avahi-daemon + avahi-browse/avahi-resolve) in a second namespace across a veth pair,
 * the way a laptop on the LAN finds the box. A second appliance on the same link must end up with
 * a different, readable name, and a stopped one must say goodbye (RFC 6762 §10.1).
 *
 * avahi needs a D-Bus system bus: both run in a private mount namespace (`unshare -m` with a
 * tmpfs on /run) so nothing of the host's /run is touched.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const NS_A = `nb-mdns-${process.pid}-a`;
const NS_B = `nb-mdns-${process.pid}-b`;
const IF_A = `nbma${process.pid % 10000}`;
const IF_B = `nbmb${process.pid % 10000}`;
const ADDR_A = '198.18.0.1';
const ADDR_B = '198.18.0.2';
const ROOT = join(import.meta.dirname, '..', '..');

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['ip', 'unshare', 'nsenter', 'avahi-daemon', 'dbus-daemon', 'avahi-browse', 'avahi-resolve'].filter((c) => !has(c));
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root for network namespaces'
    : missing.length
      ? `missing tools: ${missing.join(', ')} (apt-get install avahi-daemon avahi-utils)`
      : '';

function sh(cmd: string, args: string[], timeoutMs = 10_000): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}
function ip(...args: string[]): void {
  const r = sh('ip', args);
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.out}`);
}

let dir = '';
let avahi: ChildProcess | undefined;
const runners: ChildProcess[] = [];

/** Runs a command inside the resolver's namespaces (network + the mount namespace with its bus). */
function inResolver(args: string[], timeoutMs = 8_000) {
  return sh('nsenter', ['-t', String(avahi!.pid), '-m', '-n', ...args], timeoutMs);
}

/** Browses a service type until `want` matches a resolved line (bounded: 8 tries). */
async function browse(type: string, want: (lines: string[]) => boolean): Promise<string[]> {
  let lines: string[] = [];
  for (let i = 0; i < 8; i++) {
    // -r resolve, -t terminate after the cache dump, -p parseable, -k raw type names
    lines = inResolver(['avahi-browse', '-rtpk', type])
      .out.split('\n')
      .filter((l) => l.startsWith('='));
    if (want(lines)) return lines;
    await new Promise((r) => setTimeout(r, 500));
  }
  return lines;
}

/** Starts one advertiser process in NS_A and waits for its JSON line. */
function startRunner(name: string, port: number): Promise<{ proc: ChildProcess; result: any }> {
  const proc = spawn('ip', ['netns', 'exec', NS_A, process.execPath, '--import', 'tsx', 'test/mdns/runner.ts', name, String(port), '9.8.7', IF_A], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  runners.push(proc);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`runner ${name}:${port} printed nothing in 30 s: ${err}`)), 30_000);
    proc.stderr!.on('data', (d) => {
      err += d;
    });
    proc.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        const result = JSON.parse(out.slice(0, nl));
        console.log(`mdns ${name}:${port} → ${result.names?.host} in ${result.ms} ms (probe + announce start)`);
        resolve({ proc, result });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`runner exited ${code}: ${err}`));
    });
  });
}

function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      p.kill('SIGKILL');
      resolve();
    }, 5_000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

describe.skipIf(skipReason)('mDNS advertiser seen by avahi across a veth pair', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nb-mdns-'));
    ip('netns', 'add', NS_A);
    ip('netns', 'add', NS_B);
    ip('-n', NS_A, 'link', 'set', 'lo', 'up');
    ip('-n', NS_B, 'link', 'set', 'lo', 'up');
    ip('-n', NS_A, 'link', 'add', IF_A, 'type', 'veth', 'peer', 'name', IF_B, 'netns', NS_B);
    ip('-n', NS_A, 'link', 'set', IF_A, 'multicast', 'on', 'up');
    ip('-n', NS_B, 'link', 'set', IF_B, 'multicast', 'on', 'up');
    ip('-n', NS_A, 'addr', 'add', `${ADDR_A}/24`, 'dev', IF_A);
    ip('-n', NS_B, 'addr', 'add', `${ADDR_B}/24`, 'dev', IF_B);
    ip('-n', NS_A, 'route', 'add', '224.0.0.0/4', 'dev', IF_A);
    ip('-n', NS_B, 'route', 'add', '224.0.0.0/4', 'dev', IF_B);

    writeFileSync(
      join(dir, 'avahi.conf'),
      [
        '[server]',
        'host-name=nb-querier',
        'use-ipv4=yes',
        'use-ipv6=no',
        `allow-interfaces=${IF_B}`,
        '[publish]',
        'publish-addresses=no',
        'publish-hinfo=no',
        'publish-workstation=no',
        'publish-domain=no',
        '',
      ].join('\n'),
    );
    // One shell owns the private mount namespace; the test enters it with nsenter -t <its pid>.
    writeFileSync(
      join(dir, 'resolver.sh'),
      [
        'set -e',
        'mount -t tmpfs none /run',
        'mkdir -p /run/dbus /run/avahi-daemon',
        'dbus-daemon --system --nofork --nopidfile & D=$!',
        'for i in 1 2 3 4 5 6 7 8 9 10; do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.2; done',
        'avahi-daemon --no-drop-root --no-chroot -f "$1" & A=$!',
        "trap 'kill $A $D 2>/dev/null; wait; exit 0' TERM INT",
        'wait',
        '',
      ].join('\n'),
    );
    avahi = spawn('ip', ['netns', 'exec', NS_B, 'unshare', '-m', 'sh', join(dir, 'resolver.sh'), join(dir, 'avahi.conf')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    // Wait until the daemon answers on the bus (bounded: 10 s).
    for (let i = 0; i < 40; i++) {
      if (inResolver(['avahi-browse', '-tp', '_nothing._tcp'], 3_000).status === 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  afterAll(async () => {
    await Promise.all(runners.map(stopProc));
    if (avahi) await stopProc(avahi);
    sh('ip', ['netns', 'del', NS_A]);
    sh('ip', ['netns', 'del', NS_B]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let first: { proc: ChildProcess; result: any };

  it('publishes netboot.local, _http._tcp (path=/) and _netboot._tcp (version, api)', async () => {
    first = await startRunner('netboot', 8080);
    expect(first.result.names).toEqual({
      host: 'netboot.local',
      http: 'netboot._http._tcp.local',
      api: 'netboot._netboot._tcp.local',
      apiHost: 'netboot-api.local',
    });
    expect(first.result.status.state).toBe('running');

    const resolved = inResolver(['avahi-resolve', '-4', '-n', 'netboot.local']);
    expect(resolved.out.trim()).toBe(`netboot.local\t${ADDR_A}`);

    // avahi -p line: =;iface;proto;instance;type;domain;host;address;port;txt
    const http = await browse('_http._tcp', (l) => l.some((x) => x.includes(';netboot;')));
    expect(http).toContain(`=;${IF_B};IPv4;netboot;_http._tcp;local;netboot.local;${ADDR_A};8080;"path=/"`);
    const api = await browse('_netboot._tcp', (l) => l.some((x) => x.includes(';netboot;')));
    const line = api.find((l) => l.split(';')[3] === 'netboot')!;
    expect(line.split(';').slice(0, 9).join(';')).toBe(`=;${IF_B};IPv4;netboot;_netboot._tcp;local;netboot-api.local;${ADDR_A};8080`);
    // avahi prints TXT strings in its own order: compare them as a set.
    expect(new Set(line.split(';')[9]!.match(/"[^"]*"/g))).toEqual(new Set(['"txtvers=1"', '"version=9.8.7"', '"api=/api"']));
  });

  it('a second appliance on the link probes, loses, and takes netboot-2 for every name', async () => {
    const second = await startRunner('netboot', 8081);
    expect(second.result.names.host).toBe('netboot-2.local');
    expect(second.result.names.http).toBe('netboot-2._http._tcp.local');
    expect(second.result.names.api).toBe('netboot-2._netboot._tcp.local');
    expect(second.result.status.counters.conflicts).toBeGreaterThanOrEqual(1);

    expect(inResolver(['avahi-resolve', '-4', '-n', 'netboot-2.local']).out.trim()).toBe(`netboot-2.local\t${ADDR_A}`);
    const api = await browse('_netboot._tcp', (l) => l.filter((x) => x.includes(';_netboot._tcp;')).length >= 2);
    const instances = api.map((l) => l.split(';')[3]).sort();
    expect(instances).toEqual(['netboot', 'netboot-2']);
    // ciao's own rename ("netboot (2)", "netboot-(2).local") must never have been announced.
    expect(api.join('\n')).not.toContain('(2)');
    expect(api.find((l) => l.split(';')[3] === 'netboot-2')).toContain(`;netboot-2-api.local;${ADDR_A};8081;`);

    // A third one skips both taken names.
    const third = await startRunner('netboot', 8083);
    expect(third.result.names.host).toBe('netboot-3.local');
    expect(third.result.status.counters.conflicts).toBeGreaterThanOrEqual(2);
    await stopProc(third.proc);
  });

  it('yields to another responder (avahi) that owns the host name: lab.local → lab-2.local', async () => {
    // avahi-publish -a claims lab.local → ADDR_B from the resolver's side of the link.
    const pub = spawn('nsenter', ['-t', String(avahi!.pid), '-m', '-n', 'avahi-publish', '-a', '-R', 'lab.local', ADDR_B], { stdio: 'ignore' });
    runners.push(pub);
    for (let i = 0; i < 20 && !inResolver(['avahi-resolve', '-4', '-n', 'lab.local'], 3_000).out.includes(ADDR_B); i++) {
      await new Promise((r) => setTimeout(r, 250));
    }
    const lab = await startRunner('lab', 8082);
    expect(lab.result.names.host).toBe('lab-2.local');
    expect(inResolver(['avahi-resolve', '-4', '-n', 'lab-2.local']).out.trim()).toBe(`lab-2.local\t${ADDR_A}`);
    expect(inResolver(['avahi-resolve', '-4', '-n', 'lab.local']).out.trim()).toBe(`lab.local\t${ADDR_B}`);
    await stopProc(lab.proc);
    await stopProc(pub);
  });

  it('stop() sends goodbyes: the first appliance disappears from the resolver', async () => {
    await stopProc(first.proc);
    const api = await browse('_netboot._tcp', (l) => !l.some((x) => x.split(';')[3] === 'netboot'));
    expect(api.map((l) => l.split(';')[3])).toEqual(['netboot-2']);
  });
});
