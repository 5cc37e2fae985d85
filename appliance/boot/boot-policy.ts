/**
 * The boot policy as the DHCP server uses it: decideBoot() plus the binaries found at start and
 * a rate-limited warning when a client needs a binary that is not installed.
 */
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { ClientDirectory } from '../core/model';
import { findIpxeBinaries, missingBinaries, type EfiBinaryChoice, type IpxeBinaries } from './binaries';
import { decideBoot, type BootAnswer, type BootRequest } from './policy';

export interface BootPolicyOptions {
  /** config.boot */
  boot: { ipxeDir: string; unknownClients: 'ignore' | 'menu' | 'enroll'; efiBinary?: EfiBinaryChoice };
  clients: ClientDirectory;
  httpPort: number;
  iscsiPort: number;
  log: Logger;
  clock: Clock;
  /** Pre-resolved binaries (tests); default: looked up in boot.ipxeDir now. */
  binaries?: IpxeBinaries;
}

/** Decides per request; remembers each MAC's last architecture (for enrollment at script time). */
export class BootPolicy {
  readonly binaries: IpxeBinaries;
  private readonly warnedAt = new Map<string, number>();
  private readonly archByMac = new Map<string, number | undefined>();

  constructor(private readonly opts: BootPolicyOptions) {
    this.binaries = opts.binaries ?? findIpxeBinaries(opts.boot.ipxeDir, opts.boot.efiBinary);
    for (const m of missingBinaries(this.binaries)) opts.log.warn({ ipxeDir: opts.boot.ipxeDir }, m);
  }

  /** The answer for one request; `serverAddress` is the address on the interface the request came in on. */
  decide(req: BootRequest, serverAddress: string): BootAnswer {
    if (this.archByMac.size > 10_000) this.archByMac.clear(); // bounded: a flood of fake MACs cannot grow it
    this.archByMac.set(req.mac, req.arch);
    const answer = decideBoot(req, {
      clients: this.opts.clients,
      serverAddress,
      httpPort: this.opts.httpPort,
      iscsiPort: this.opts.iscsiPort,
      unknownClients: this.opts.boot.unknownClients,
      binaries: this.binaries,
    });
    if (answer.kind === 'missing-binary') {
      // A ROM retries DHCP many times a minute: one warning per MAC per minute.
      const now = this.opts.clock.now();
      if ((this.warnedAt.get(req.mac) ?? -Infinity) + 60_000 <= now) {
        this.warnedAt.set(req.mac, now);
        this.opts.log.warn({ mac: req.mac, arch: req.arch, family: answer.family }, answer.reason);
      }
    }
    return answer;
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
