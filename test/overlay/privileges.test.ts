/**
 * The claim behind the unit's capability set: with the box's default config (proxy DHCP on eth0,
 * HTTP 80, TFTP 69, iSCSI 3260, mDNS, router-solicitation answers), the bundle runs as an
 * unprivileged user holding only CAP_NET_BIND_SERVICE and CAP_NET_RAW (for ra-responder, which
 * drops it at once), and fails clearly without the first. Runs dist/appliance.cjs (make build) under
 * `setpriv` in a network namespace whose interface is called eth0, and a PXE-like client in a
 * second namespace checks DHCP (broadcast reply: no CAP_NET_RAW needed), TFTP and HTTP.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const BUNDLE = join(ROOT, 'dist/appliance.cjs');
const NS = `nb-overlay-${process.pid}-box`;
const NS_CLIENT = `nb-overlay-${process.pid}-pc`;
const NOBODY = 65534;
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['ip', 'setpriv', 'curl'].filter((c) => !has(c));
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root for network namespaces and setpriv'
    : missing.length
      ? `missing tools: ${missing.join(', ')}`
      : !existsSync(BUNDLE)
        ? 'dist/appliance.cjs is missing: run make build'
        : !existsSync('/usr/lib/ipxe/undionly.kpxe')
          ? 'Debian package ipxe is not installed'
          : '';

const ip = (...args: string[]) => {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
};

describe.skipIf(skipReason)('the box config runs with CAP_NET_BIND_SERVICE and CAP_NET_RAW only', () => {
  let dir = '';
  let box: ChildProcess | undefined;
  let logText = '';

  /** setpriv: drop to nobody, keep only net_bind_service (ambient, so node keeps it after exec). */
  const privileged = (caps: boolean) => [
    'netns',
    'exec',
    NS,
    'setpriv',
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    ...(caps
      ? ['--inh-caps=+net_bind_service,+net_raw', '--ambient-caps=+net_bind_service,+net_raw', '--bounding-set=-all,+net_bind_service,+net_raw']
      : ['--bounding-set=-all']),
    process.execPath,
    join(dir, 'appliance.cjs'),
    'serve',
    '--config',
    join(dir, 'config.json'),
  ];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nb-overlay-priv-'));
    chmodSync(dir, 0o755);
    // The bundle and its addon, readable by nobody (the repo may sit under a private home).
    copyFileSync(BUNDLE, join(dir, 'appliance.cjs'));
    copyFileSync(join(ROOT, 'dist/better_sqlite3.node'), join(dir, 'better_sqlite3.node'));
    copyFileSync(join(ROOT, 'dist/ra-responder'), join(dir, 'ra-responder'));
    chmodSync(join(dir, 'ra-responder'), 0o755);
    mkdirSync(join(dir, 'data'));
    chownSync(join(dir, 'data'), NOBODY, NOBODY);
    const cfg = JSON.parse(readFileSync(join(ROOT, 'os-overlay/rootfs/etc/netboot/config.json'), 'utf8'));
    cfg.dataDir = join(dir, 'data');
    cfg.boot.unknownClients = 'menu'; // so an unknown PXE client gets an offer to look at
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));

    ip('netns', 'add', NS);
    ip('netns', 'add', NS_CLIENT);
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    ip('-n', NS, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'pxe0', 'netns', NS_CLIENT);
    ip('-n', NS, 'link', 'set', 'eth0', 'up');
    ip('-n', NS_CLIENT, 'link', 'set', 'pxe0', 'up');
    ip('-n', NS, 'addr', 'add', '198.18.0.1/24', 'dev', 'eth0');
    ip('-n', NS, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
    ip('-n', NS_CLIENT, 'addr', 'add', '198.18.0.2/24', 'dev', 'pxe0');
    ip('-n', NS_CLIENT, 'route', 'add', '255.255.255.255/32', 'dev', 'pxe0');

    box = spawn('ip', privileged(true), { stdio: ['ignore', 'pipe', 'pipe'] });
    box.stdout!.on('data', (d) => {
      logText += d;
    });
    box.stderr!.on('data', (d) => {
      logText += d;
    });
    for (let i = 0; i < 60 && !logText.includes('appliance running'); i++) {
      if (box.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  afterAll(async () => {
    if (box && box.exitCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          box!.kill('SIGKILL');
          resolve();
        }, 10_000);
        box!.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        box!.kill('SIGTERM');
      });
    }
    spawnSync('ip', ['netns', 'del', NS]);
    spawnSync('ip', ['netns', 'del', NS_CLIENT]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts every service as nobody', () => {
    expect(logText, logText).toContain('appliance running');
    expect(logText).not.toMatch(/"level":(50|60)/);
    const ss = spawnSync('ip', ['netns', 'exec', NS, 'ss', '-H', '-lntup'], { encoding: 'utf8' }).stdout;
    for (const port of ['67', '69', '80', '3260', '4011']) expect(ss, ss).toMatch(new RegExp(`:${port}\\s`));
  });

  it('runs ra-responder as nobody with no capability left once its socket is open (issue #17)', () => {
    expect(logText).toContain('answering router solicitations of booting clients');
    const pid = spawnSync('pgrep', ['-x', 'ra-responder'], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .find((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith(join(dir, 'ra-responder'));
        } catch {
          return false;
        }
      });
    expect(pid, 'ra-responder is running').toBeDefined();
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    expect(status).toMatch(new RegExp(`^Uid:\\s+${NOBODY}\\s`, 'm'));
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) expect(status).toMatch(new RegExp(`^${set}:\\s+0+$`, 'm'));
  });

  it('answers a PXE DISCOVER with a broadcast proxy offer (no CAP_NET_RAW)', () => {
    const r = spawnSync('ip', ['netns', 'exec', NS_CLIENT, process.execPath, join(ROOT, 'test/overlay/pxe-discover.mjs')], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ op: 2, msgType: 2, vendorClass: 'PXEClient', siaddr: '198.18.0.1', file: 'undionly.kpxe' });
  });

  it('serves iPXE over TFTP on port 69 and the UI on port 80', () => {
    const tftp = spawnSync(
      'ip',
      ['netns', 'exec', NS_CLIENT, 'curl', '-sS', '--max-time', '20', '-o', join(dir, 'undionly.kpxe'), 'tftp://198.18.0.1/undionly.kpxe'],
      { encoding: 'utf8' },
    );
    expect(tftp.status, tftp.stderr).toBe(0);
    expect(readFileSync(join(dir, 'undionly.kpxe')).equals(readFileSync('/usr/lib/ipxe/undionly.kpxe'))).toBe(true);
    const http = spawnSync(
      'ip',
      ['netns', 'exec', NS_CLIENT, 'curl', '-s', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}', 'http://198.18.0.1/'],
      { encoding: 'utf8' },
    );
    expect(http.stdout).toBe('200');
  });

  it('without the capability it refuses to start and names the port and the capability', async () => {
    // One process owns a data directory (the store is locked): stop the privileged box first.
    if (box && box.exitCode === null) {
      await new Promise<void>((resolve) => {
        box!.once('exit', () => resolve());
        box!.kill('SIGTERM');
      });
    }
    const r = spawnSync('ip', privileged(false), { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/port (67|69|80) .*needs privileges \(ports below 1024 need CAP_NET_BIND_SERVICE\)/);
  });
});
