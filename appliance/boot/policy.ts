/**
 * Who boots what: a pure decision from what a DHCP request says about the client (architecture,
 * vendor/user class, iPXE's option 175) plus the client registry and config, to the boot answer
 * the DHCP server encodes. No sockets, no clock, no file system (binaries are looked up once by
 * binaries.ts and passed in).
 *
 * The chain (docs/decisions.md, "DHCP and boot policy"): firmware PXE -> TFTP an iPXE binary -> iPXE DHCPs again and gets
 * a per-client script URL -> the script sanboots the client's iSCSI disk. An iPXE client is never
 * handed an iPXE binary again: that is the classic chainload loop.
 */
import type { BootRoadSetting, ClientDirectory, ClientRecord } from '../core/model';
import { archFamily, isHttpBootFamily, type ArchFamily } from './arch';
import type { IpxeBinaries } from './binaries';
import { type SignedArch, type SignedBinaries, signedNames } from './signed-binaries';

/** What the policy reads from a DHCP request (not the packet itself: that is dhcp/packet.ts BootRequest, RFC 951 BOOTREQUEST). */
export interface BootFacts {
  /** Normalised MAC (aa:bb:cc:dd:ee:ff). */
  mac: string;
  /** Option 93, first entry. */
  arch: number | undefined;
  /** Option 60. */
  vendorClass: string | undefined;
  /** Option 77 (iPXE sends "iPXE"). */
  userClass: string | undefined;
  /** Option 175 sub-options (present only when iPXE is asking). */
  ipxe: ReadonlyMap<number, Buffer> | undefined;
}

/**
 * What an unknown client gets (config boot.unknownClients): nothing; a menu; a new client disk of
 * boot.enrollImage; or a screen that says where to assign it an image and keeps asking until
 * one is (renderWaitScript).
 */
export type UnknownClientsMode = 'ignore' | 'menu' | 'enroll' | 'wait';
/** The config value: a mode, or 'auto' (decided by the DHCP mode: effectiveUnknownClients). */
export type UnknownClientsSetting = UnknownClientsMode | 'auto';

/**
 * The mode in force. 'auto' is 'wait' in full DHCP mode (the appliance owns an isolated network:
 * every machine that PXE-boots there is meant to boot from it) and 'ignore' in proxy mode or with
 * DHCP off (next to the office's own DHCP server, a PC that tries the network first must not be
 * taken over). An explicit setting always wins (docs/decisions.md, "Unknown clients").
 */
export function effectiveUnknownClients(setting: UnknownClientsSetting, dhcpMode: 'off' | 'proxy' | 'full' | undefined): UnknownClientsMode {
  if (setting !== 'auto') return setting;
  return dhcpMode === 'full' ? 'wait' : 'ignore';
}

/** The settings the decision depends on. */
export interface BootPolicyContext {
  clients: ClientDirectory;
  /** Address clients reach the appliance at (TFTP next-server, HTTP and iSCSI host). */
  serverAddress: string;
  httpPort: number;
  iscsiPort: number;
  unknownClients: UnknownClientsMode;
  binaries: IpxeBinaries;
  /** The GRUB road's signed shim + GRUB per architecture (issue #15); absent: no GRUB road. */
  signed?: SignedBinaries;
  /** config boot.uefiX64Road: what a UEFI x64 client with road 'auto' takes. */
  uefiX64Road?: 'ipxe' | 'grub';
}

/** The two roads a client's boot can take (docs/boot-roads.md). */
export type BootRoad = 'ipxe' | 'grub';

/** The signed-binary architecture of a firmware family, for families the GRUB road serves. */
export function signedArchOf(family: ArchFamily): SignedArch | undefined {
  if (family === 'efi-x64' || family === 'http-x64') return 'x64';
  if (family === 'efi-arm64' || family === 'http-arm64') return 'aa64';
  return undefined;
}

/**
 * The road for a client on a firmware family. BIOS and 32-bit UEFI have no signed shim here:
 * always iPXE. A client's explicit 'ipxe' or 'grub' wins. 'auto': ARM64 takes GRUB unless an
 * ARM64 iPXE is installed (Debian ships none); UEFI x64 takes boot.uefiX64Road.
 */
export function roadFor(family: ArchFamily, setting: BootRoadSetting | undefined, uefiX64Road: BootRoad = 'ipxe', arm64Ipxe = false): BootRoad {
  const arch = signedArchOf(family);
  if (!arch) return 'ipxe';
  if (setting === 'ipxe' || setting === 'grub') return setting;
  if (arch === 'aa64') return arm64Ipxe ? 'ipxe' : 'grub';
  return uefiX64Road;
}

/** The answer for one request. The DHCP server turns it into options; `ignore` means no boot options. */
export type BootAnswer =
  | { kind: 'ignore'; reason: string }
  /** Firmware PXE: TFTP this iPXE binary (siaddr + file, options 66/67, option 60 PXEClient). */
  | { kind: 'chainload'; family: ArchFamily; file: string }
  /** UEFI HTTP boot: option 60 HTTPClient and this URL as the boot file. */
  | { kind: 'http-boot'; family: ArchFamily; url: string }
  /**
   * iPXE: fetch this script (url undefined when the build lacks HTTP); for a known client also
   * option 203 (initiator name), and option 17 (root-path) when there is no script, so an iPXE
   * without HTTP still sanboots.
   */
  | { kind: 'ipxe'; url: string | undefined; client: ClientRecord | undefined; rootPath: string | undefined; initiatorName: string | undefined }
  /** Firmware we should chainload, but its iPXE binary is not installed: nothing to offer. */
  | { kind: 'missing-binary'; family: ArchFamily; reason: string };

/** iPXE feature sub-option 0x13 (HTTP) in option 175; see options.ts IpxeFeature. */
const IPXE_FEATURE_HTTP = 0x13;

/** True when the request comes from iPXE (user class "iPXE", or its option 175). */
export function isIpxe(req: Pick<BootFacts, 'userClass' | 'ipxe'>): boolean {
  return req.ipxe !== undefined || (req.userClass ?? '').includes('iPXE');
}

/** True when the request is a network-boot request at all (PXE ROM, HTTP boot firmware, or iPXE). */
export function isBootClient(req: Pick<BootFacts, 'vendorClass' | 'userClass' | 'ipxe'>): boolean {
  const vc = req.vendorClass ?? '';
  return vc.startsWith('PXEClient') || vc.startsWith('HTTPClient') || isIpxe(req);
}

/** The per-client script's path on the appliance's HTTP server: /boot/aa-bb-cc-dd-ee-ff.ipxe. */
export function scriptPath(mac: string): string {
  return `/boot/${mac.replace(/:/g, '-')}.ipxe`;
}

/**
 * `http://server:port/boot/aa-bb-...ipxe`, with `?t=<token>` for a one-time link that carries the
 * client's CHAP credentials (script-tokens.ts). The token is base64url: nothing in it needs
 * escaping in a URL, a DHCP option or an iPXE script.
 */
export function scriptUrl(mac: string, serverAddress: string, httpPort: number, token?: string): string {
  return `http://${serverAddress}:${httpPort}${scriptPath(mac)}${token ? `?t=${token}` : ''}`;
}

/**
 * The one RFC 4173 iSCSI root path builder (issue #18: the registry had a second one that
 * disagreed): iscsi:<server>:<protocol>:<port>:<LUN>:<targetname>, protocol empty (TCP), the port
 * always written (an empty one means 3260 to some parsers and nothing to others), the LUN in
 * hexadecimal as RFC 4173 §5 and iPXE's scsi_parse_lun read it. DHCP's option 17, the iPXE
 * script's sanboot and the API's client view all use it.
 */
export function iscsiRootPath(client: Pick<ClientRecord, 'target' | 'lun'>, serverAddress: string, iscsiPort: number): string {
  return `iscsi:${serverAddress}::${iscsiPort}:${client.lun.toString(16)}:${client.target}`;
}

/**
 * Whether a client takes the GRUB road, from the architecture of its last DHCP request. Without
 * one (the appliance restarted since), its explicit setting, or boot.uefiX64Road for 'auto'.
 */
export function onGrubRoad(client: ClientRecord, arch: number | undefined, uefiX64Road: BootRoad, arm64Ipxe = false): boolean {
  if (arch !== undefined) return roadFor(archFamily(arch), client.road, uefiX64Road, arm64Ipxe) === 'grub';
  return client.road === 'grub' || (client.road !== 'ipxe' && uefiX64Road === 'grub');
}

/** The one decision. Pure: the same inputs give the same answer. */
export function decideBoot(req: BootFacts, ctx: BootPolicyContext): BootAnswer {
  if (!isBootClient(req)) return { kind: 'ignore', reason: 'not a network-boot client (no PXEClient/HTTPClient/iPXE)' };
  const client = ctx.clients.byMac(req.mac);
  if (!client && ctx.unknownClients === 'ignore') {
    return { kind: 'ignore', reason: 'unknown client and boot.unknownClients is "ignore"' };
  }

  if (isIpxe(req)) {
    // iPXE builds without HTTP announce it by leaving out feature 0x13; they still sanboot root-path.
    const hasHttp = req.ipxe === undefined || req.ipxe.has(IPXE_FEATURE_HTTP);
    const url = hasHttp ? scriptUrl(req.mac, ctx.serverAddress, ctx.httpPort) : undefined;
    if (client) {
      // Root-path only without a script: iPXE treats root-path + filename as "hook this SAN, then
      // run the file" and aborts when the hook fails (seen with Debian's iPXE 1.0.0+git-20190125:
      // "Could not open SAN device"); with a script, the script's sanboot does it with error handling.
      const rootPath = url ? undefined : iscsiRootPath(client, ctx.serverAddress, ctx.iscsiPort);
      return { kind: 'ipxe', url, client, rootPath, initiatorName: client.initiatorName };
    }
    if (!url) return { kind: 'ignore', reason: 'unknown client on an iPXE without HTTP: no menu possible' };
    return { kind: 'ipxe', url, client: undefined, rootPath: undefined, initiatorName: undefined };
  }

  const family = archFamily(req.arch);
  const arch = signedArchOf(family);
  if (client && arch && roadFor(family, client.road, ctx.uefiX64Road, ctx.binaries.efiArm64 !== undefined) === 'grub') {
    const pair = ctx.signed?.[arch];
    if (!pair) return { kind: 'missing-binary', family, reason: `no signed shim + GRUB for ${family} (the GRUB road): see docs/boot-roads.md` };
    if (isHttpBootFamily(family) || (req.vendorClass ?? '').startsWith('HTTPClient')) {
      // Served over TFTP only: GRUB 2.06's http cannot name a port, so a GRUB loaded by HTTP boot
      // could not fetch its configs from us. Firmware that does HTTP boot does PXE too.
      return { kind: 'ignore', reason: 'the GRUB road is served by PXE/TFTP only, not UEFI HTTP boot: the firmware falls back to PXE' };
    }
    return { kind: 'chainload', family, file: signedNames(arch).shim };
  }
  const file = binaryFor(family, ctx.binaries);
  if (!file) {
    return { kind: 'missing-binary', family, reason: `no iPXE binary for ${family} (arch ${req.arch ?? 'absent'}) in ${ctx.binaries.dir}` };
  }
  if (isHttpBootFamily(family) || (req.vendorClass ?? '').startsWith('HTTPClient')) {
    return { kind: 'http-boot', family, url: `http://${ctx.serverAddress}:${ctx.httpPort}/boot/${file.replace(/\//g, '-')}` };
  }
  return { kind: 'chainload', family, file };
}

/** The iPXE binary (path relative to ipxeDir, as TFTP serves it) for a firmware family. */
export function binaryFor(family: ArchFamily, b: IpxeBinaries): string | undefined {
  switch (family) {
    case 'bios':
      return b.bios;
    case 'efi-x64':
    case 'http-x64':
      return b.efiX64;
    case 'efi-ia32':
      return b.efiIa32;
    case 'efi-arm64':
    case 'http-arm64':
      return b.efiArm64;
    case 'efi-arm32':
      return b.efiArm32;
    default:
      return undefined;
  }
}
