/**
 * Client architectures from DHCP option 93 (RFC 4578 section 2.1, IANA "Processor Architecture
 * Types", errata 4624) and what each one needs to run iPXE.
 */

/** The families the appliance distinguishes. */
export type ArchFamily = 'bios' | 'efi-ia32' | 'efi-x64' | 'efi-arm32' | 'efi-arm64' | 'http-x64' | 'http-arm64' | 'unknown';

/**
 * Maps an option 93 value to a family. Missing option 93 means a legacy BIOS PXE ROM (the PXE
 * 2.1 spec predates the option). 9 is "EFI BC": x64 firmware sends it (RFC 4578 errata), so it is x64.
 */
export function archFamily(arch: number | undefined): ArchFamily {
  switch (arch) {
    case undefined:
    case 0:
      return 'bios';
    case 6:
      return 'efi-ia32';
    case 7:
    case 9:
      return 'efi-x64';
    case 10:
      return 'efi-arm32';
    case 11:
      return 'efi-arm64';
    case 16:
      return 'http-x64';
    case 19:
      return 'http-arm64';
    default:
      return 'unknown';
  }
}

/** True for UEFI HTTP boot clients (they expect a URL as the boot file, UEFI 2.5+ section 24.7). */
export function isHttpBootFamily(f: ArchFamily): boolean {
  return f === 'http-x64' || f === 'http-arm64';
}
