/**
 * The signed shim and GRUB network image of the GRUB road (issue #15), per UEFI architecture:
 * from `boot.signedDir` when set, else `signed/` beside the bundle (the firmware tarball carries
 * both architectures' pairs there: an arm64 box's own packages have only the arm64 one), else
 * Debian's packages (`shim-signed`, `grub-efi-amd64-signed`, `grub-efi-arm64-signed`). File names
 * in a folder: shimx64.efi/grubx64.efi, shimaa64.efi/grubaa64.efi. Looked up once at start.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export type SignedArch = 'x64' | 'aa64';

export interface SignedPair {
  /** Absolute paths of the files to serve. */
  shim: string;
  grub: string;
}

export type SignedBinaries = Partial<Record<SignedArch, SignedPair>>;

/** What the client asks for over TFTP: shim is the boot file; shim then loads grub<arch>.efi beside it. */
export function signedNames(arch: SignedArch): { shim: string; grub: string } {
  return { shim: `shim${arch}.efi`, grub: `grub${arch}.efi` };
}

const PACKAGE_PATHS: Record<SignedArch, SignedPair> = {
  x64: { shim: '/usr/lib/shim/shimx64.efi.signed', grub: '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed' },
  aa64: { shim: '/usr/lib/shim/shimaa64.efi.signed', grub: '/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed' },
};

export function findSignedBinaries(signedDir: string, exists: (p: string) => boolean = existsSync, bundleDir?: string): SignedBinaries {
  const out: SignedBinaries = {};
  const dirs = signedDir ? [signedDir] : bundleDir ? [join(bundleDir, 'signed')] : [];
  for (const arch of ['x64', 'aa64'] as const) {
    const names = signedNames(arch);
    const candidates = [...dirs.map((d) => ({ shim: join(d, names.shim), grub: join(d, names.grub) })), PACKAGE_PATHS[arch]];
    const hit = candidates.find((c) => exists(c.shim) && exists(c.grub));
    if (hit) out[arch] = hit;
  }
  return out;
}

/** Warnings for architectures the GRUB road cannot serve, naming the packages that would fix it. */
export function missingSigned(b: SignedBinaries): string[] {
  const out: string[] = [];
  if (!b.x64) out.push('GRUB road for UEFI x64 unavailable: install shim-signed and grub-efi-amd64-signed (or set boot.signedDir)');
  if (!b.aa64)
    out.push('GRUB road for UEFI ARM64 unavailable: put shimaa64.efi and grubaa64.efi (from shim-signed:arm64, grub-efi-arm64-signed) in boot.signedDir');
  return out;
}
