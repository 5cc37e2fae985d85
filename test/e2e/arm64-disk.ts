/**
 * The ARM64 e2e client's disk (issue #15): built by build-disk-arm64.sh from Debian's arm64
 * packages (unpacked, not installed), cached under test/.cache/e2e/arm64-disk-<hash of the
 * recipe>/ with the signed shimaa64.efi + grubaa64.efi beside it. The unpacked packages are kept
 * in the same folder; a new recipe (script or initramfs change) fetches them again.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CACHE_DIR, REPO_ROOT, type TestDisk } from './build-disk';

const SCRIPT = join(__dirname, 'build-disk-arm64.sh');
const FIXTURES = join(REPO_ROOT, 'test/fixtures/e2e');
const RECIPE = [SCRIPT, join(__dirname, 'initramfs-lib.sh'), join(FIXTURES, 'initramfs-init.sh'), join(FIXTURES, 'udhcpc.script')];

/** Host tools the build needs besides the x64 disk's. */
export const ARM64_BUILD_TOOLS = [
  'mmdebstrap',
  'readelf',
  'modinfo',
  'depmod',
  'modprobe',
  'cpio',
  'mkfs.vfat',
  'mcopy',
  'mmd',
  'mkfs.ext4',
  'sfdisk',
] as const;

export interface Arm64Disk extends TestDisk {
  /** Folder with shimaa64.efi and grubaa64.efi (boot.signedDir for the appliance). */
  signedDir: string;
}

export function buildArm64Disk(opts: { log?: (m: string) => void } = {}): Arm64Disk {
  const h = createHash('sha256');
  for (const f of RECIPE) h.update(readFileSync(f));
  const key = h.digest('hex').slice(0, 16);
  const dir = join(CACHE_DIR, `arm64-disk-${key}`);
  if (!existsSync(join(dir, 'layout.env'))) {
    mkdirSync(CACHE_DIR, { recursive: true });
    const tmp = mkdtempSync(join(CACHE_DIR, `building-arm64-${key}-`));
    opts.log?.(`building the arm64 e2e disk into ${dir}`);
    const r = spawnSync('bash', [SCRIPT, join(tmp, 'out'), join(CACHE_DIR, `arm64-packages-${key}`), FIXTURES], { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0) {
      rmSync(tmp, { recursive: true, force: true });
      throw new Error(`build-disk-arm64.sh failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
    }
    opts.log?.(r.stdout.trim());
    try {
      renameSync(join(tmp, 'out'), dir);
    } catch (err) {
      if (!existsSync(join(dir, 'layout.env'))) throw err;
    }
    rmSync(tmp, { recursive: true, force: true });
  }
  const env = Object.fromEntries(
    readFileSync(join(dir, 'layout.env'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
  return {
    path: join(dir, 'disk.img'),
    kernelPackage: 'linux-image-arm64',
    kernelVersion: env.KERNEL_VERSION!,
    bootStart: Number(env.BOOT_START),
    bootSectors: Number(env.BOOT_SECTORS),
    rootStart: Number(env.ROOT_START),
    rootSectors: Number(env.ROOT_SECTORS),
    signedDir: join(dir, 'signed'),
  };
}
