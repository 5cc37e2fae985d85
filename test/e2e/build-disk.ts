/**
 * The e2e test client's disk, built at test time from Debian packages by build-disk.sh (syslinux
 * BIOS + syslinux.efi UEFI boot on a FAT partition, Debian's generic kernel, a busybox initramfs
 * that logs in from the iBFT and appends a line to /boot-log.txt on an ext4 root partition).
 *
 * Cached under test/.cache/e2e/ (gitignored) keyed by a hash of the recipe: the script, the
 * initramfs files and the kernel package's name and version. Run directly to (re)build:
 *   npx tsx test/e2e/build-disk.ts
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

// __dirname: tsx runs benches as CommonJS (no import.meta there); vitest provides it too.
const HERE = __dirname;
/** The repository root. */
export const REPO_ROOT = resolve(HERE, '../..');
const SCRIPT = join(HERE, 'build-disk.sh');
const FIXTURES = join(REPO_ROOT, 'test/fixtures/e2e');
const RECIPE_FILES = [SCRIPT, join(HERE, 'initramfs-lib.sh'), join(FIXTURES, 'initramfs-init.sh'), join(FIXTURES, 'udhcpc.script')];
/** Where built disks and downloaded .debs are kept between runs. */
export const CACHE_DIR = join(REPO_ROOT, 'test/.cache/e2e');

/** Host tools build-disk.sh runs. */
export const BUILD_TOOLS = [
  'apt-get',
  'apt-cache',
  'dpkg',
  'depmod',
  'modinfo',
  'modprobe',
  'cpio',
  'gzip',
  'mkfs.vfat',
  'mcopy',
  'mmd',
  'syslinux',
  'mkfs.ext4',
  'sfdisk',
  'dd',
  'debugfs',
  '/bin/busybox',
  '/usr/sbin/iscsistart',
  '/usr/lib/SYSLINUX/mbr.bin',
  '/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi',
  '/usr/lib/syslinux/modules/efi64/ldlinux.e64',
] as const;

/** A built disk image and where its partitions are (512-byte sectors). */
export interface TestDisk {
  /** The cached image: never boot it directly, copy it (copyDisk) or import it. */
  path: string;
  kernelPackage: string;
  kernelVersion: string;
  bootStart: number;
  bootSectors: number;
  rootStart: number;
  rootSectors: number;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/**
 * The kernel package to use: what Debian's `linux-image-amd64` metapackage currently depends on
 * (the generic flavour: e1000 and ext4 are modules there; the cloud flavour lacks e1000), with
 * the candidate version, which goes into the cache key.
 */
export function currentKernelPackage(): { name: string; version: string } {
  const deps = sh('apt-cache', ['depends', 'linux-image-amd64']);
  const name = /Depends: (linux-image-[0-9][^\s]*-amd64)\b/.exec(deps)?.[1];
  if (!name) throw new Error(`cannot find the kernel package linux-image-amd64 depends on:\n${deps}`);
  const policy = sh('apt-cache', ['policy', name]);
  const version = /Candidate: (\S+)/.exec(policy)?.[1] ?? 'unknown';
  return { name, version };
}

function readLayout(dir: string, kernelPackage: string): TestDisk {
  const env = Object.fromEntries(
    readFileSync(join(dir, 'layout.env'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
  return {
    path: join(dir, 'disk.img'),
    kernelPackage,
    kernelVersion: env.KERNEL_VERSION!,
    bootStart: Number(env.BOOT_START),
    bootSectors: Number(env.BOOT_SECTORS),
    rootStart: Number(env.ROOT_START),
    rootSectors: Number(env.ROOT_SECTORS),
  };
}

/** Builds the test disk, or returns the cached one for the same recipe. Takes ~25 s when building. */
export function buildTestDisk(opts: { log?: (msg: string) => void } = {}): TestDisk {
  const kernel = currentKernelPackage();
  const h = createHash('sha256');
  for (const f of RECIPE_FILES) h.update(readFileSync(f));
  h.update(`${kernel.name}=${kernel.version}`);
  const key = h.digest('hex').slice(0, 16);
  const dir = join(CACHE_DIR, `disk-${key}`);
  if (existsSync(join(dir, 'layout.env'))) return readLayout(dir, kernel.name);

  mkdirSync(CACHE_DIR, { recursive: true });
  // Build into a private directory and rename it into place, so a concurrent build (a bench
  // and a test started together) never sees half a disk.
  const tmp = mkdtempSync(join(CACHE_DIR, `building-${key}-`));
  const out = join(tmp, 'out');
  opts.log?.(`building the e2e disk (${kernel.name} ${kernel.version}) into ${dir}`);
  const r = spawnSync('bash', [SCRIPT, out, join(CACHE_DIR, 'debs'), kernel.name, FIXTURES], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`build-disk.sh failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  }
  opts.log?.(r.stdout.trim());
  try {
    renameSync(out, dir);
  } catch (err) {
    if (!existsSync(join(dir, 'layout.env'))) throw err;
  }
  rmSync(tmp, { recursive: true, force: true });
  pruneOldDisks(dir);
  return readLayout(dir, kernel.name);
}

/** Removes disks of older recipes (unused for an hour, so a run still importing one keeps it). */
function pruneOldDisks(keep: string): void {
  const hourAgo = Date.now() - 3600_000;
  for (const name of readdirSync(CACHE_DIR)) {
    const p = join(CACHE_DIR, name);
    if (p === keep || !/^(disk|building)-/.test(name)) continue;
    if (statSync(p).mtimeMs < hourAgo) rmSync(p, { recursive: true, force: true });
  }
}

/** Copies the cached disk to `dest` (a file a peer target or the appliance may write to). */
export function copyDisk(disk: TestDisk, dest: string): string {
  copyFileSync(disk.path, dest);
  return dest;
}

/**
 * Reads a file from the ext4 root partition of a raw disk image (the peer's LUN file or the
 * appliance's export) with `debugfs -R "cat FILE"` on the extracted partition: no mounting.
 * Returns undefined when the file does not exist.
 */
export function readRootFile(image: string, disk: Pick<TestDisk, 'rootStart' | 'rootSectors'>, file: string): string | undefined {
  const tmp = mkdtempSync(join(CACHE_DIR, 'read-'));
  try {
    const part = join(tmp, 'root.part');
    sh('dd', [`if=${image}`, `of=${part}`, 'bs=512', `skip=${disk.rootStart}`, `count=${disk.rootSectors}`, 'status=none']);
    const r = spawnSync('debugfs', ['-R', `cat ${file}`, part], { encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0 || /File not found/.test(r.stderr)) return undefined;
    return r.stdout;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The lines of /boot-log.txt on a disk image ([] when absent). */
export function bootLogLines(image: string, disk: TestDisk): string[] {
  return (readRootFile(image, disk, '/boot-log.txt') ?? '').split('\n').filter(Boolean);
}

if (process.argv[1] && /build-disk\.ts$/.test(process.argv[1])) {
  const disk = buildTestDisk({ log: (m) => console.log(m) });
  console.log(JSON.stringify(disk, null, 2));
}

/**
 * Makes the rescue variant of the test disk at `dest`: the same disk whose syslinux.cfg (BIOS
 * and UEFI copies) adds `e2e.rescue` to the kernel command line, so its initramfs repairs the
 * client's own disk (LUN 1, /dev/sdb) instead of booting. Edited in place with mtools.
 */
export function makeRescueDisk(disk: TestDisk, dest: string): string {
  copyFileSync(disk.path, dest);
  const fat = `${dest}@@${disk.bootStart * 512}`;
  for (const cfg of ['::/syslinux.cfg', '::/EFI/BOOT/syslinux.cfg']) {
    const text = sh('mtype', ['-i', fat, cfg]);
    if (!/APPEND /.test(text)) throw new Error(`no APPEND line in ${cfg}`);
    const tmp = `${dest}.cfg`;
    writeFileSync(tmp, text.replace(/APPEND (.*)/, 'APPEND $1 e2e.rescue'));
    sh('mcopy', ['-o', '-i', fat, tmp, cfg]);
  }
  return dest;
}
