/**
 * Finds the iPXE binaries in boot.ipxeDir once at start. Debian's `ipxe` package ships x86 only
 * (undionly.kpxe, ipxe.efi, snponly.efi); ARM and ia32 builds must be added by hand, so their
 * absence is reported to the user (status + a log line), not treated as an error.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Paths relative to `dir` (the names TFTP/HTTP serve), or undefined when not installed. */
export interface IpxeBinaries {
  dir: string;
  bios?: string;
  efiX64?: string;
  efiIa32?: string;
  efiArm64?: string;
  efiArm32?: string;
}

/** Which x64 UEFI build to prefer: ipxe.efi (own drivers) or snponly.efi (firmware's NIC driver, for odd NICs). */
export type EfiBinaryChoice = 'ipxe.efi' | 'snponly.efi';

/** Candidate names, first found wins. The ARM names follow iPXE's build targets (bin-arm64-efi/). */
export const CANDIDATES = {
  bios: ['undionly.kpxe'],
  efiIa32: ['ipxe-ia32.efi', 'i386-efi/ipxe.efi', 'bin-i386-efi/ipxe.efi'],
  efiArm64: ['ipxe-arm64.efi', 'arm64-efi/ipxe.efi', 'bin-arm64-efi/ipxe.efi', 'arm64/ipxe.efi', 'snponly-arm64.efi', 'arm64-efi/snponly.efi'],
  efiArm32: ['ipxe-arm32.efi', 'arm32-efi/ipxe.efi', 'bin-arm32-efi/ipxe.efi'],
} as const;

/** Looks the binaries up in dir. `exists` is injectable for tests. */
export function findIpxeBinaries(dir: string, efi: EfiBinaryChoice = 'ipxe.efi', exists: (p: string) => boolean = existsSync): IpxeBinaries {
  const first = (names: readonly string[]) => names.find((n) => exists(join(dir, n)));
  const x64 = efi === 'snponly.efi' ? ['snponly.efi', 'ipxe.efi'] : ['ipxe.efi', 'snponly.efi'];
  return {
    dir,
    bios: first(CANDIDATES.bios),
    efiX64: first(x64),
    efiIa32: first(CANDIDATES.efiIa32),
    efiArm64: first(CANDIDATES.efiArm64),
    efiArm32: first(CANDIDATES.efiArm32),
  };
}

/** Human-readable list of what is missing, for status() and the start-up log. */
export function missingBinaries(b: IpxeBinaries): string[] {
  const out: string[] = [];
  if (!b.bios) out.push(`BIOS (undionly.kpxe) not found in ${b.dir}: install Debian package "ipxe"`);
  if (!b.efiX64) out.push(`UEFI x64 (ipxe.efi / snponly.efi) not found in ${b.dir}: install Debian package "ipxe"`);
  if (!b.efiArm64) out.push(`UEFI ARM64 iPXE not found in ${b.dir} (Debian ships x86 only): build bin-arm64-efi/ipxe.efi and copy it there as ipxe-arm64.efi`);
  return out;
}
