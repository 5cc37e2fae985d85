/**
 * `make firmware` (os-overlay/build/firmware.sh): the arm64 release tarball. Runs the script with
 * DIST_DIR pointing at a temp dir holding a copy of dist/appliance.cjs (or a placeholder when
 * `make build` has not run), so the repository's dist/ is never touched. The arm64 addon comes from
 * .cache/firmware/ when present; the first run cross-compiles it (about 3 minutes on 2 cores).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['aarch64-linux-gnu-g++', 'aarch64-linux-gnu-strip', 'make', 'python3', 'tar', 'sha256sum'].filter((c) => !has(c));
const skipReason = missing.length ? `missing tools: ${missing.join(', ')} (apt-get install g++-aarch64-linux-gnu make)` : '';
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
      encoding: 'utf8', env: { ...process.env, DIST_DIR: dist, SOURCE_DATE_EPOCH: '1790000000' }, timeout: 15 * 60_000,
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

  afterAll(() => { if (work) rmSync(work, { recursive: true, force: true }); });

  it('is named after the version and holds one top directory with the expected files', () => {
    expect(tarball).toBe(join(work, 'dist', `${name}.tar.gz`));
    const list = spawnSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    expect(new Set(list.map((p) => p.split('/')[0]))).toEqual(new Set([name]));
    for (const f of ['appliance.cjs', 'better_sqlite3.node', 'VERSION', 'SHA256SUMS', 'os-overlay/install.sh', 'os-overlay/packages.txt',
      'os-overlay/rootfs/etc/systemd/system/netboot-appliance.service', 'os-overlay/rootfs/etc/systemd/system/srv-netboot.mount',
      'os-overlay/rootfs/etc/netboot/config.json', 'os-overlay/rootfs/etc/udev/rules.d/99-netboot-disk.rules', 'os-overlay/rootfs/usr/bin/netboot']) {
      expect(list, f).toContain(`${name}/${f}`);
    }
    // The build script itself is not part of the box.
    expect(list.some((p) => p.includes('os-overlay/build'))).toBe(false);
  });

  it('carries the bundle unchanged', () => {
    const src = existsSync(join(ROOT, 'dist/appliance.cjs')) ? join(ROOT, 'dist/appliance.cjs') : join(work, 'dist/appliance.cjs');
    expect(readFileSync(join(extracted, name, 'appliance.cjs')).equals(readFileSync(src))).toBe(true);
  });

  it('has an aarch64 shared object for better-sqlite3 (ELF e_machine 183), not the x86 one', () => {
    const addon = readFileSync(join(extracted, name, 'better_sqlite3.node'));
    const h = elfHeader(addon);
    expect(h).toEqual({ class64: true, littleEndian: true, type: 3 /* ET_DYN */, machine: 183 /* EM_AARCH64 */ });
    const x86 = elfHeader(readFileSync(join(ROOT, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node')));
    expect(x86.machine).toBe(62); // EM_X86_64: the test suite's own addon is untouched
    if (has('file')) {
      const f = spawnSync('file', ['-b', join(extracted, name, 'better_sqlite3.node')], { encoding: 'utf8' }).stdout;
      expect(f).toMatch(/ELF 64-bit LSB shared object, ARM aarch64/);
    }
  });

  it('needs no newer glibc than Debian 12 / Raspberry Pi OS bookworm ships (2.36)', () => {
    if (!has('aarch64-linux-gnu-objdump')) return;
    const syms = spawnSync('aarch64-linux-gnu-objdump', ['-T', join(extracted, name, 'better_sqlite3.node')], { encoding: 'utf8' }).stdout;
    const versions = [...syms.matchAll(/\bGLIBC_(\d+)\.(\d+)/g)].map((m) => Number(m[1]) * 1000 + Number(m[2]));
    expect(versions.length).toBeGreaterThan(0);
    expect(Math.max(...versions)).toBeLessThanOrEqual(2036);
  });

  it('VERSION names the version, the Node ABI the addon needs and the better-sqlite3 version', () => {
    const v = Object.fromEntries(readFileSync(join(extracted, name, 'VERSION'), 'utf8').trim().split('\n').map((l) => l.split('=') as [string, string]));
    const bsq = JSON.parse(readFileSync(join(ROOT, 'node_modules/better-sqlite3/package.json'), 'utf8')).version;
    expect(v).toMatchObject({ version: pkg.version, arch: 'arm64', node_module_version: process.versions.modules, better_sqlite3: bsq });
    expect(v.built).toBe('2026-09-21T14:13:20Z'); // SOURCE_DATE_EPOCH=1790000000
  });

  it('SHA256SUMS covers every other file and verifies', () => {
    const dir = join(extracted, name);
    const sums = readFileSync(join(dir, 'SHA256SUMS'), 'utf8').trim().split('\n').map((l) => l.split(/\s+/)[1]);
    const files = spawnSync('sh', ['-c', 'find . -type f ! -name SHA256SUMS | sed "s|^./||" | LC_ALL=C sort'], { cwd: dir, encoding: 'utf8' }).stdout.trim().split('\n');
    expect(sums).toEqual(files);
    const check = spawnSync('sha256sum', ['--quiet', '--check', 'SHA256SUMS'], { cwd: dir, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
  });

  it('is reproducible: a second build (from the cache) gives the same bytes', () => {
    const first = readFileSync(tarball);
    const r = spawnSync('bash', [join(ROOT, 'os-overlay/build/firmware.sh')], {
      encoding: 'utf8', env: { ...process.env, DIST_DIR: join(work, 'dist'), SOURCE_DATE_EPOCH: '1790000000' }, timeout: 5 * 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('using cached');
    expect(readFileSync(tarball).equals(first)).toBe(true);
  });
});
