/**
 * The boot policy as the DHCP server uses it: decideBoot() plus the binaries found at start, a
 * rate-limited warning when a client needs a binary that is not installed, and a fresh one-time
 * token in every script URL it hands out (decideBoot stays pure; the minting happens here).
 */
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { ClientDirectory, ClientRecord } from '../core/model';
import { findIpxeBinaries, missingBinaries, type EfiBinaryChoice, type IpxeBinaries } from './binaries';
import {
  decideBoot,
  effectiveUnknownClients,
  onGrubRoad,
  scriptUrl,
  type BootAnswer,
  type BootFacts,
  type UnknownClientsMode,
  type UnknownClientsSetting,
} from './policy';
import type { TokenBinding } from './script-tokens';
import { findSignedBinaries, missingSigned, type SignedBinaries } from './signed-binaries';

export interface BootPolicyOptions {
  /** config.boot */
  boot: { ipxeDir: string; unknownClients: UnknownClientsSetting; efiBinary?: EfiBinaryChoice; uefiX64Road?: 'ipxe' | 'grub'; signedDir?: string };
  /** The DHCP mode in force (it can change at run time); decides boot.unknownClients 'auto'. */
  dhcpMode?: () => 'off' | 'proxy' | 'full';
  clients: ClientDirectory;
  httpPort: number;
  iscsiPort: number;
  log: Logger;
  clock: Clock;
  /** Pre-resolved binaries (tests); default: looked up in boot.ipxeDir now. */
  binaries?: IpxeBinaries;
  /** Pre-resolved signed shim + GRUB (tests); default: looked up in boot.signedDir / the packages now. */
  signed?: SignedBinaries;
  /** The bundle's folder: its `signed/` (the firmware tarball's) is looked in when boot.signedDir is empty. */
  bundleDir?: string;
  /**
   * Mints the one-time token of each script URL handed to iPXE (ScriptTokens). Without it the
   * URL is the static one, which serves no credentials (tests, tools that only want the URL).
   */
  tokens?: { mint(mac: string, binding?: TokenBinding): string };
}

/** Decides per request; remembers each MAC's last architecture (for enrollment at script time). */
export class BootPolicy {
  readonly binaries: IpxeBinaries;
  readonly signed: SignedBinaries;
  private readonly warnedAt = new Map<string, number>();
  private readonly archByMac = new Map<string, number | undefined>();

  constructor(private readonly opts: BootPolicyOptions) {
    this.binaries = opts.binaries ?? findIpxeBinaries(opts.boot.ipxeDir, opts.boot.efiBinary);
    for (const m of missingBinaries(this.binaries)) opts.log.warn({ ipxeDir: opts.boot.ipxeDir }, m);
    this.signed = opts.signed ?? findSignedBinaries(opts.boot.signedDir ?? '', undefined, opts.bundleDir);
    for (const m of missingSigned(this.signed)) opts.log.info({ signedDir: opts.boot.signedDir }, m);
  }

  /**
   * The answer for one request; `serverAddress` is the address on the interface the request came
   * in on; `binding` what the DHCP exchange knows of the client's address (bound into the token).
   */
  decide(req: BootFacts, serverAddress: string, binding?: TokenBinding): BootAnswer {
    if (this.archByMac.size > 10_000) this.archByMac.clear(); // bounded: a flood of fake MACs cannot grow it
    this.archByMac.set(req.mac, req.arch);
    const answer = decideBoot(req, {
      clients: this.opts.clients,
      serverAddress,
      httpPort: this.opts.httpPort,
      iscsiPort: this.opts.iscsiPort,
      unknownClients: this.unknownClients(),
      binaries: this.binaries,
      signed: this.signed,
      uefiX64Road: this.opts.boot.uefiX64Road,
    });
    if (answer.kind === 'missing-binary') {
      // A ROM retries DHCP many times a minute: one warning per MAC per minute.
      const now = this.opts.clock.now();
      if ((this.warnedAt.get(req.mac) ?? -Infinity) + 60_000 <= now) {
        this.warnedAt.set(req.mac, now);
        this.opts.log.warn({ mac: req.mac, arch: req.arch, family: answer.family }, answer.reason);
      }
    }
    // Every answer that hands iPXE its script gets its own token. Not for an unknown client under
    // "menu": its menu carries nothing secret, and minting for every MAC on the LAN would let a
    // flood of fake ones evict real clients' tokens.
    const wantsToken = answer.kind === 'ipxe' && answer.url !== undefined && (answer.client !== undefined || this.unknownClients() === 'enroll');
    if (wantsToken && this.opts.tokens) {
      const token = this.opts.tokens.mint(req.mac, binding);
      return { ...answer, url: scriptUrl(req.mac, serverAddress, this.opts.httpPort, token) };
    }
    return answer;
  }

  /**
   * Whether a client takes the GRUB road now, from the architecture of its last request: what the
   * TFTP server's GRUB files ask (the same seam DHCP's decide() and the script route use).
   */
  grubRoad(client: ClientRecord): boolean {
    return onGrubRoad(client, this.archOf(client.mac), this.opts.boot.uefiX64Road ?? 'ipxe', this.binaries.efiArm64 !== undefined);
  }

  /** What unknown clients get now (boot.unknownClients, 'auto' resolved by the DHCP mode). */
  unknownClients(): UnknownClientsMode {
    return effectiveUnknownClients(this.opts.boot.unknownClients, this.opts.dhcpMode?.());
  }

  /** Option 93 from this MAC's latest DHCP request, if seen. */
  archOf(mac: string): number | undefined {
    return this.archByMac.get(mac);
  }

  /** For the status page: which binaries exist, which are missing. */
  status(): { binaries: IpxeBinaries; missing: string[] } {
    return { binaries: this.binaries, missing: missingBinaries(this.binaries) };
  }
}
