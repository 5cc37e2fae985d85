/**
 * The files laid onto the box: systemd accepts the units (systemd-analyze verify, no warnings),
 * the sandbox scores as hardened, the default config is valid for our schema and matches the
 * mount, and install.sh is idempotent and keeps the user's config.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../appliance/core/config';

const ROOT = join(import.meta.dirname, '..', '..');
const OVERLAY = join(ROOT, 'os-overlay');
const UNITS = join(OVERLAY, 'rootfs/etc/systemd/system');
const unit = readFileSync(join(UNITS, 'netboot-appliance.service'), 'utf8');
const mount = readFileSync(join(UNITS, 'srv-netboot.mount'), 'utf8');
const hasAnalyze = spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0;

/** The value of `Key=` lines (all of them) in a unit file, ignoring comments. */
const values = (text: string, key: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));

describe.skipIf(!hasAnalyze)('systemd units (systemd-analyze, apt package systemd)', () => {
  it('verify reports nothing for the service and the mount unit', () => {
    // verify also checks that ExecStart's program exists: the release's Node.js lives in
    // /opt/netboot/node, so it runs in a mount namespace with a stand-in there (root only).
    const standIn =
      'mount -t tmpfs nb-verify /opt && mkdir -p /opt/netboot/node/bin && cp /bin/true /opt/netboot/node/bin/node && exec systemd-analyze verify "$@"';
    const r = spawnSync('unshare', ['-m', 'sh', '-c', standIn, 'sh', join(UNITS, 'netboot-appliance.service'), join(UNITS, 'srv-netboot.mount')], {
      encoding: 'utf8',
    });
    // Unknown keys are only warnings (exit 0): any output at all is a finding.
    expect(r.stderr.trim()).toBe('');
    expect(r.status).toBe(0);
  });

  it('verify catches a misspelt key, so the check above can fail', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nb-overlay-'));
    try {
      writeFileSync(join(dir, 'netboot-appliance.service'), unit.replace('ProtectHome=yes', 'ProtectHom=yes'));
      const r = spawnSync('systemd-analyze', ['verify', join(dir, 'netboot-appliance.service')], { encoding: 'utf8' });
      expect(r.stderr).toContain("Unknown key 'ProtectHom'");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the sandbox rates as well hardened (systemd-analyze security --offline)', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', join(UNITS, 'netboot-appliance.service')], { encoding: 'utf8' });
    const m = /Overall exposure level for netboot-appliance\.service: ([\d.]+)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(3);
  });
});

describe('service unit policy', () => {
  it("grants only CAP_NET_BIND_SERVICE (ports 67, 69, 80) and CAP_NET_RAW (ra-responder's ICMPv6 socket), no packet sockets", () => {
    expect(values(unit, 'AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE CAP_NET_RAW']);
    expect(values(unit, 'CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE CAP_NET_RAW']);
    expect(values(unit, 'RestrictAddressFamilies')).toEqual(['AF_INET AF_INET6 AF_UNIX AF_NETLINK']);
    expect(values(unit, 'NoNewPrivileges')).toEqual(['yes']);
  });

  it('keeps V8 working and the data disk writable, waits for it, runs as netboot', () => {
    expect(values(unit, 'MemoryDenyWriteExecute')).toEqual(['no']);
    expect(values(unit, 'ProtectSystem')).toEqual(['strict']);
    expect(values(unit, 'ReadWritePaths')).toEqual(['/srv/netboot']);
    expect(values(unit, 'RequiresMountsFor')).toEqual(['/srv/netboot']);
    expect(values(unit, 'User')).toEqual(['netboot']);
    expect(values(unit, 'ExecStart')).toEqual([
      '/opt/netboot/node/bin/node --optimize-for-size /opt/netboot/appliance.cjs serve --config /etc/netboot/config.json',
    ]);
    expect(values(unit, 'Restart')).toEqual(['on-failure']);
    expect(values(mount, 'Where')).toEqual(['/srv/netboot']);
    expect(values(mount, 'What')).toEqual(['/dev/disk/by-label/NETBOOT']);
    // Not pulled into local-fs.target: a missing disk must not block boot.
    expect(mount).not.toMatch(/^WantedBy=/m);
  });

  it('the udev rule starts the service when the NETBOOT filesystem appears', () => {
    const rule = readFileSync(join(OVERLAY, 'rootfs/etc/udev/rules.d/99-netboot-disk.rules'), 'utf8');
    const line = rule.split('\n').find((l) => l && !l.startsWith('#'))!;
    expect(line).toContain('ENV{ID_FS_LABEL}=="NETBOOT"');
    expect(line).toContain('ENV{SYSTEMD_WANTS}+="netboot-appliance.service"');
    expect(line).toContain('TAG+="systemd"');
  });
});

describe('default config for the box', () => {
  const raw = JSON.parse(readFileSync(join(OVERLAY, 'rootfs/etc/netboot/config.json'), 'utf8'));
  it('is valid and means proxy DHCP on eth0, HTTP 80, TFTP 69, data on the USB disk', () => {
    const cfg = parseConfig(raw);
    expect(cfg.dataDir).toBe('/srv/netboot');
    expect(cfg.dhcp).toMatchObject({ mode: 'proxy', interface: 'eth0', port: 67, proxyPort: 4011 });
    expect(cfg.http.port).toBe(80);
    expect(cfg.tftp.port).toBe(69);
    expect(cfg.log.format).toBe('json');
    expect(values(mount, 'Where')[0]).toBe(cfg.dataDir);
  });
});

describe('install.sh --root DIR --no-systemd', () => {
  let work = '';
  let dest = '';
  const install = () => spawnSync('sh', [join(work, 'os-overlay/install.sh'), '--root', dest, '--no-systemd'], { encoding: 'utf8' });

  beforeAll(() => {
    // A release layout in a temp dir: placeholder payload files beside a copy of os-overlay/.
    work = mkdtempSync(join(tmpdir(), 'nb-overlay-install-'));
    dest = join(work, 'root');
    cpSync(OVERLAY, join(work, 'os-overlay'), { recursive: true, filter: (s) => !s.includes('/build') });
    writeFileSync(join(work, 'appliance.cjs'), '#!/usr/bin/env node\n// placeholder for the test\n');
    writeFileSync(join(work, 'better_sqlite3.node'), 'placeholder');
    mkdirSync(join(work, 'node/bin'), { recursive: true });
    writeFileSync(join(work, 'node/bin/node'), "#!/bin/sh\n# placeholder for the release's Node.js\n", { mode: 0o755 });
    writeFileSync(join(work, 'node/LICENSE'), 'placeholder licence\n');
    writeFileSync(join(work, 'VERSION'), 'version=0.0.0-test\n');
    const sums = spawnSync('sh', ['-c', 'sha256sum appliance.cjs better_sqlite3.node node/bin/node node/LICENSE VERSION > SHA256SUMS'], { cwd: work });
    expect(sums.status).toBe(0);
    mkdirSync(dest);
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('lays every file with the right modes', () => {
    const r = install();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    for (const f of [
      'opt/netboot/appliance.cjs',
      'opt/netboot/better_sqlite3.node',
      'opt/netboot/VERSION',
      'etc/systemd/system/netboot-appliance.service',
      'etc/systemd/system/srv-netboot.mount',
      'etc/udev/rules.d/99-netboot-disk.rules',
      'usr/lib/sysusers.d/netboot.conf',
      'etc/netboot/config.json',
    ]) {
      expect(statSync(join(dest, f)).mode & 0o777, f).toBe(0o644);
    }
    expect(statSync(join(dest, 'usr/bin/netboot')).mode & 0o777).toBe(0o755);
    // The release's own Node.js: the unit and the netboot command run it, not an OS package.
    expect(readFileSync(join(dest, 'opt/netboot/node/bin/node'), 'utf8')).toContain('placeholder for the release');
    expect(statSync(join(dest, 'opt/netboot/node/bin/node')).mode & 0o777).toBe(0o755);
    expect(statSync(join(dest, 'opt/netboot/node/LICENSE')).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(dest, 'usr/bin/netboot'), 'utf8')).toContain('exec /opt/netboot/node/bin/node /opt/netboot/appliance.cjs');
    expect(statSync(join(dest, 'srv/netboot')).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, 'etc/systemd/system/netboot-appliance.service'), 'utf8')).toBe(unit);
  });

  it('is idempotent: a second run changes nothing, and keeps an edited config', () => {
    const cfgPath = join(dest, 'etc/netboot/config.json');
    const edited = readFileSync(cfgPath, 'utf8').replace('"eth0"', '"end0"');
    writeFileSync(cfgPath, edited);
    const before = statSync(join(dest, 'opt/netboot/appliance.cjs')).mtimeMs;
    const r = install();
    expect(r.status).toBe(0);
    expect(readFileSync(cfgPath, 'utf8')).toBe(edited);
    expect(r.stdout).toContain('kept your /etc/netboot/config.json');
    expect(JSON.parse(readFileSync(`${cfgPath}.dist`, 'utf8')).dhcp.interface).toBe('eth0');
    expect(statSync(join(dest, 'opt/netboot/appliance.cjs')).mtimeMs).toBe(before);
  });

  it('refuses a payload whose checksum does not match', () => {
    writeFileSync(join(work, 'appliance.cjs'), '// tampered\n');
    const r = install();
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('checksum mismatch');
  });
});
