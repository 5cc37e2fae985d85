/**
 * The real-distribution client of the e2e tests: a Debian 12 golden image built by
 * os-overlay/golden/build-debian-image.sh (mmdebstrap: kernel, systemd, open-iscsi,
 * initramfs-tools with ISCSI_AUTO; GRUB for BIOS and UEFI) plus test/e2e/debian-customize.sh (a
 * unit that records each boot on the iSCSI root and powers off).
 *
 * Building takes minutes and downloads ~150 MiB, so the image is cached under
 * test/.cache/e2e/debian12-<key>/ (gitignored; an import directory of the lab appliance) where the
 * key hashes the recipe (both scripts, the options) and the versions apt would install now:
 * `apt-cache policy` candidates of the packages the script names and of the build host's GRUB.
 * A new Debian point release or security update of one of them makes a new key (the old
 * images are deleted then). Run directly to build or show the cached image:
 *   npx tsx test/e2e/debian-image.ts [--network MODE]
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CACHE_DIR, REPO_ROOT } from './build-disk';

/** The admin tool that builds the image. */
export const GOLDEN_SCRIPT = join(REPO_ROOT, 'os-overlay/golden/build-debian-image.sh');
const CUSTOMIZE = join(REPO_ROOT, 'test/e2e/debian-customize.sh');

/** Host tools build-debian-image.sh needs (the test skips, naming them, when one is missing). */
export const DEBIAN_BUILD_TOOLS = [
  'mmdebstrap',
  'grub-install',
  'grub-mkimage',
  'sfdisk',
  'losetup',
  'partx',
  'mkfs.ext4',
  'mkfs.vfat',
  'mcopy',
  'blkid',
  'apt-cache',
  '/usr/lib/grub/i386-pc/boot.img',
  '/usr/lib/grub/x86_64-efi/normal.mod',
] as const;

/**
 * Packages whose candidate versions go into the cache key: what the script installs, and the
 * host's GRUB (its modules are copied into the image).
 */
const KEY_PACKAGES = [
  'linux-image-amd64',
  'systemd',
  'systemd-sysv',
  'udev',
  'open-iscsi',
  'initramfs-tools',
  'kmod',
  'e2fsprogs',
  'iproute2',
  'zstd',
  'ifupdown',
  'isc-dhcp-client',
  'libc6',
  'grub-pc-bin',
  'grub-efi-amd64-bin',
  'mmdebstrap',
];

/** Which network configuration the image carries (build-debian-image.sh --network). */
export type DebianNetwork = 'networkd' | 'none' | 'ifupdown-noauto' | 'ifupdown-hotplug';

/** A built (or cached) Debian image. */
export interface DebianImage {
  /** The raw image: import it, never boot it in place. */
  path: string;
  key: string;
  network: DebianNetwork;
  /** True when this call built it; false when it came from the cache. */
  built: boolean;
  /** Seconds the build took (this call), or the recorded time of the cached build. */
  buildSeconds: number;
}

/** Candidate versions (`apt-cache policy`) of `packages`, one `name=version` per line. */
export function candidateVersions(packages: readonly string[]): string {
  const r = spawnSync('apt-cache', ['policy', ...packages], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`apt-cache policy failed: ${r.stderr}`);
  const lines: string[] = [];
  let pkg = '';
  for (const line of r.stdout.split('\n')) {
    const name = /^(\S+):$/.exec(line);
    if (name) pkg = name[1]!;
    const cand = /^\s+Candidate: (\S+)/.exec(line);
    if (cand && pkg) lines.push(`${pkg}=${cand[1]}`);
  }
  return lines.sort().join('\n');
}

/** The cache key: the recipe and the package versions it would install now. */
export function debianImageKey(network: DebianNetwork, size: string): string {
  const h = createHash('sha256');
  for (const f of [GOLDEN_SCRIPT, CUSTOMIZE]) h.update(readFileSync(f));
  h.update(`network=${network} size=${size}\n`);
  h.update(candidateVersions(KEY_PACKAGES));
  return h.digest('hex').slice(0, 16);
}

/**
 * Returns the cached image for this recipe, building it first when there is none (bounded by
 * 20 minutes). Build output goes to `log` line by line once it ends, and to build.log beside it.
 */
export function buildDebianImage(opts: { network?: DebianNetwork; size?: string; log?: (m: string) => void } = {}): DebianImage {
  const network = opts.network ?? 'networkd';
  const size = opts.size ?? '2G';
  const log = opts.log ?? (() => {});
  const key = debianImageKey(network, size);
  const prefix = `debian12-${network}-`;
  const dir = join(CACHE_DIR, prefix + key);
  const path = join(dir, 'disk.img');
  const stamp = join(dir, 'build.json');
  if (existsSync(path) && existsSync(stamp)) {
    const info = JSON.parse(readFileSync(stamp, 'utf8')) as { seconds: number };
    log(`debian image: cached ${path} (key ${key}, built in ${info.seconds} s)`);
    return { path, key, network, built: false, buildSeconds: info.seconds };
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  // Older keys of this variant: superseded, ~700 MiB each.
  for (const old of readdirSync(CACHE_DIR)) {
    if (old.startsWith(prefix) && old !== prefix + key) rmSync(join(CACHE_DIR, old), { recursive: true, force: true });
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  log(`debian image: building ${path} (key ${key}, network ${network}); takes a few minutes`);
  const start = Date.now();
  const r = spawnSync(GOLDEN_SCRIPT, ['--size', size, '--network', network, '--customize', CUSTOMIZE, path], {
    encoding: 'utf8',
    timeout: 20 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  writeFileSync(join(dir, 'build.log'), `${r.stdout}\n${r.stderr}`);
  if (r.status !== 0 || !existsSync(path)) {
    throw new Error(`build-debian-image.sh failed (${r.status ?? r.error?.message}); log ${join(dir, 'build.log')}:\n${(r.stderr ?? '').slice(-3000)}`);
  }
  const seconds = Math.round((Date.now() - start) / 1000);
  writeFileSync(stamp, JSON.stringify({ key, network, size, seconds, versions: candidateVersions(KEY_PACKAGES).split('\n') }, null, 2));
  log(`debian image: built in ${seconds} s (${Math.round((statSync(path).blocks * 512) / 2 ** 20)} MiB allocated)`);
  return { path, key, network, built: true, buildSeconds: seconds };
}

if (require.main === module) {
  const i = process.argv.indexOf('--network');
  const network = (i > 0 ? process.argv[i + 1] : 'networkd') as DebianNetwork;
  const img = buildDebianImage({ network, log: (m) => console.log(m) });
  console.log(JSON.stringify(img, null, 2));
}
