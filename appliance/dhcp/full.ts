/**
 * Full DHCP server for an isolated network (RFC 2131): address pool, per-MAC reservations,
 * leases persisted through LeaseStore, DISCOVER/REQUEST (SELECTING, INIT-REBOOT, RENEWING,
 * REBINDING per section 4.3.2), DECLINE, RELEASE, INFORM. Boot options come from the boot policy.
 *
 * Allocation is ping-free (no ICMP echo before offering: Node has no raw sockets, and the
 * conflict probe at start guarantees we are the only server) but conflict-aware: declined
 * addresses are quarantined, addresses seen in use (ciaddr of another MAC) are skipped, and the
 * server's own address, the router and the subnet's network/broadcast addresses are never offered.
 */
import type { ClientDirectory } from '../core/model';
import { type Inbound, type Responder, type ResponderContext, emit, policyRequest } from './engine';
import { broadcastOf, intToIp, ipToInt, isNetworkOrBroadcast, sameSubnet, ZERO } from './ipv4';
import type { Lease, LeaseStore } from './leases';
import { build, Opt, type ClientRequestInfo } from './options';
import { FLAG_BROADCAST, type DhcpOption } from './packet';
import { applyBootAnswer, baseReply, bootFileOf, destinationFor, finishReply, type Outbound } from './replies';
import { isBootClient, isIpxe } from '../boot/policy';

/** config.dhcp as full mode reads it. */
export interface FullModeConfig {
  range: readonly string[];
  netmask: string;
  router: string;
  dns: readonly string[];
  domain: string;
  leaseSeconds: number;
  /** Static reservations besides ClientRecord.ip. */
  reservations?: readonly { mac: string; ip: string }[];
}

/** How long an OFFERed address is held for the client's REQUEST. */
export const OFFER_HOLD_MS = 60_000;
/** How long a DECLINEd address stays out of the pool (RFC 2131 section 4.3.3 leaves it to us). */
export const DECLINE_QUARANTINE_MS = 10 * 60_000;
/** An address another MAC was seen using (its ciaddr) is skipped this long. */
export const SEEN_IN_USE_MS = 10 * 60_000;

/** The full-mode responder. */
export class FullResponder implements Responder {
  private readonly first: number;
  private readonly last: number;
  /** dhcp.netmask and the subnet's network address as integers (parsed once, not per check). */
  private readonly mask: number;
  private readonly network: number;
  private readonly static = new Map<string, string>();
  /** When the last "pool exhausted" warning was logged (one a minute, not one per DISCOVER). */
  private exhaustedWarnedAt = -Infinity;
  /** ip -> { mac, at }: addresses seen in use as ciaddr. */
  private readonly seen = new Map<string, { mac: string; at: number }>();
  /** Options 51, 58, 59 and the network's options, built once from the frozen config (shared by every reply, read-only). */
  private readonly leaseOptions: readonly DhcpOption[];
  private readonly subnetOptions: readonly DhcpOption[];

  constructor(
    private readonly ctx: ResponderContext,
    private readonly cfg: FullModeConfig,
    private readonly leases: LeaseStore,
    private readonly clients: ClientDirectory,
  ) {
    if (cfg.range.length !== 2) throw new RangeError('full mode needs dhcp.range [first, last]');
    this.first = ipToInt(cfg.range[0]);
    this.last = ipToInt(cfg.range[1]);
    this.mask = ipToInt(cfg.netmask);
    this.network = (this.first & this.mask) >>> 0;
    if (this.first > this.last) throw new RangeError(`dhcp.range ${cfg.range[0]}..${cfg.range[1]} is empty`);
    if (!sameSubnet(cfg.range[0], cfg.range[1], cfg.netmask)) throw new RangeError('dhcp.range spans more than one subnet under dhcp.netmask');
    for (const r of cfg.reservations ?? []) this.static.set(r.mac, r.ip);
    this.leaseOptions = [
      build.u32(Opt.leaseTime, cfg.leaseSeconds),
      build.u32(Opt.renewalTime, Math.floor(cfg.leaseSeconds * 0.5)),
      build.u32(Opt.rebindingTime, Math.floor(cfg.leaseSeconds * 0.875)),
    ];
    const subnet = [build.ip(Opt.subnetMask, cfg.netmask), build.ip(Opt.broadcastAddress, broadcastOf(cfg.range[0], cfg.netmask))];
    if (cfg.router) subnet.push(build.ip(Opt.router, cfg.router));
    if (cfg.dns.length) subnet.push(build.ips(Opt.dns, cfg.dns));
    if (cfg.domain) subnet.push(build.text(Opt.domainName, cfg.domain));
    this.subnetOptions = subnet;
  }

  private get now(): number {
    return this.ctx.clock.now();
  }

  private inSubnet(ip: string): boolean {
    return (ipToInt(ip) & this.mask) >>> 0 === this.network;
  }

  private inPool(ip: string): boolean {
    const n = ipToInt(ip);
    return n >= this.first && n <= this.last;
  }

  /** The reserved address of a MAC (registry first, then config), if any and in our subnet. */
  reservationFor(mac: string): string | undefined {
    const ip = this.clients.byMac(mac)?.ip ?? this.static.get(mac);
    return ip && this.inSubnet(ip) ? ip : undefined;
  }

  /** True when `ip` could be given to `mac` now. */
  available(ip: string, mac: string, reserved: string | undefined = this.reservationFor(mac)): boolean {
    const n = ipToInt(ip);
    if ((n & this.mask) >>> 0 !== this.network) return false;
    if (isNetworkOrBroadcast(n, this.mask)) return false;
    if (ip === this.ctx.serverAddress || ip === this.cfg.router) return false;
    const reservedBy = this.reservedOwner(ip);
    if (reservedBy && reservedBy !== mac) return false;
    if (reserved !== ip && (n < this.first || n > this.last)) return false;
    const l = this.leases.byIp(ip);
    if (l && l.mac !== mac) {
      if (l.state === 'declined' && l.expiresAt > this.now) return false;
      if ((l.state === 'bound' || l.state === 'offered') && l.expiresAt > this.now) return false;
    }
    if (l && l.mac === mac && l.state === 'declined' && l.expiresAt > this.now) return false;
    const s = this.seen.get(ip);
    if (s && s.mac !== mac && s.at + SEEN_IN_USE_MS > this.now) return false;
    return true;
  }

  private reservedOwner(ip: string): string | undefined {
    for (const [mac, r] of this.static) if (r === ip) return mac;
    // ClientDirectory has no reverse lookup, so registry reservations inside dhcp.range can be
    // handed to another client first (logged at allocation): put reservations outside the range.
    return undefined;
  }

  /** RFC 2131 section 4.3.1 order: reservation, current/previous binding, requested address, a free one. */
  allocate(mac: string, requested: string | undefined): string | undefined {
    const reserved = this.reservationFor(mac);
    if (reserved) {
      if (this.available(reserved, mac, reserved)) return reserved;
      this.ctx.log.warn(
        { mac, ip: reserved, holder: this.leases.byIp(reserved)?.mac },
        'reserved address is in use by another client; offering a pool address',
      );
    }
    const prev = this.leases.byMac(mac);
    if (prev && prev.state !== 'declined' && this.available(prev.ip, mac, reserved)) return prev.ip;
    if (requested && this.inPool(requested) && this.available(requested, mac, reserved)) return requested;
    // Never-used addresses first, then the one free the longest (least likely still configured somewhere).
    let oldest: Lease | undefined;
    for (let n = this.first; n <= this.last; n++) {
      const ip = intToIp(n);
      if (!this.available(ip, mac, reserved)) continue;
      const l = this.leases.byIp(ip);
      if (!l) return ip;
      if (!oldest || l.expiresAt < oldest.expiresAt) oldest = l;
    }
    return oldest?.ip;
  }

  /** Network options every OFFER/ACK carries. */
  private networkOptions(reply: ReturnType<typeof baseReply>, info: ClientRequestInfo, withLease: boolean): void {
    if (withLease) reply.options.push(...this.leaseOptions);
    reply.options.push(...this.subnetOptions);
    const name = this.clients.byMac(info.mac)?.name;
    const host = name
      ?.toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63);
    if (host) reply.options.push(build.text(Opt.hostName, host));
  }

  /** Boot options when the client is a boot client the policy answers; returns the boot file. */
  private bootOptions(reply: ReturnType<typeof baseReply>, info: ClientRequestInfo): string | undefined {
    if (!isBootClient(info)) return undefined;
    // The address this answer gives (yiaddr) or confirms (INFORM's ciaddr): the one-time script
    // link minted for it is valid only from there.
    const address = reply.yiaddr !== ZERO ? reply.yiaddr : reply.ciaddr !== ZERO ? reply.ciaddr : undefined;
    const answer = this.ctx.policy.decide(policyRequest(info), this.ctx.serverAddress, { address });
    applyBootAnswer(reply, answer, info, this.ctx.serverAddress);
    return bootFileOf(answer);
  }

  handle(inb: Inbound): Outbound[] {
    const { info, packet } = inb;
    if (inb.via === 'pxe') return [];
    if (packet.giaddr !== ZERO && !this.inSubnet(packet.giaddr)) {
      // One pool, one subnet: a relay from elsewhere needs a pool we do not have.
      this.ctx.log.debug({ mac: info.mac, giaddr: packet.giaddr }, 'relayed request from another subnet ignored');
      this.ctx.counters.ignored += 1;
      return [];
    }
    if (packet.ciaddr !== ZERO) this.noteSeen(packet.ciaddr, info.mac);
    switch (info.type) {
      case 'discover':
        return this.discover(inb);
      case 'request':
        return this.request(inb);
      case 'decline':
        return this.decline(inb);
      case 'release':
        return this.release(inb);
      case 'inform':
        return this.inform(inb);
      default:
        this.ctx.counters.ignored += 1;
        return [];
    }
  }

  private noteSeen(ip: string, mac: string): void {
    if (this.seen.size > 65_536) this.seen.clear();
    this.seen.set(ip, { mac, at: this.now });
  }

  private discover({ info, packet }: Inbound): Outbound[] {
    const ctx = this.ctx;
    ctx.counters.discovers += 1;
    const boot = isBootClient(info);
    // vc and ipxe let the "waiting to boot" list say what asked and how far it got (telemetry).
    if (boot) emit(ctx, info.mac, 'dhcp-discover', { xid: info.xid, arch: info.arch, vc: info.vendorClass, ipxe: isIpxe(info) || undefined });
    const ip = this.allocate(info.mac, info.requestedIp);
    if (!ip) {
      if (this.exhaustedWarnedAt + 60_000 <= this.now) {
        this.exhaustedWarnedAt = this.now;
        ctx.log.warn({ mac: info.mac, range: this.cfg.range }, 'address pool exhausted: no offer');
      }
      ctx.counters.ignored += 1;
      return [];
    }
    const prev = this.leases.byIp(ip);
    // Keep a bound lease bound (a client re-discovering keeps its address); otherwise hold it.
    if (!(prev && prev.mac === info.mac && prev.state === 'bound' && prev.expiresAt > this.now)) {
      this.leases.put({ ip, mac: info.mac, state: 'offered', expiresAt: this.now + OFFER_HOLD_MS, hostName: info.hostName ?? '', updatedAt: this.now }, false);
    }
    const reply = baseReply(packet, 'offer', ctx.serverAddress);
    reply.yiaddr = ip;
    this.networkOptions(reply, info, true);
    const file = this.bootOptions(reply, info);
    finishReply(reply, info);
    ctx.counters.offers += 1;
    if (boot) emit(ctx, info.mac, 'dhcp-offer', { xid: info.xid, ip, arch: info.arch, file });
    const note = { msg: 'offer', fields: { mac: info.mac, xid: info.xid, ip, arch: info.arch, file } };
    return [{ packet: reply, to: destinationFor(packet, 'offer', ctx.serverPort, ctx.clientPort), note }];
  }

  private nak(packet: Inbound['packet'], info: ClientRequestInfo, why: string): Outbound[] {
    const reply = baseReply(packet, 'nak', this.ctx.serverAddress);
    reply.options.push(build.text(Opt.message, why));
    // RFC 2131 section 4.3.2: a NAK through a relay has the broadcast bit set.
    if (packet.giaddr !== ZERO) reply.flags |= FLAG_BROADCAST;
    finishReply(reply, info);
    this.ctx.counters.naks += 1;
    const note = { msg: 'nak', fields: { mac: info.mac, xid: info.xid, ip: info.requestedIp ?? packet.ciaddr, why } };
    return [{ packet: reply, to: destinationFor(packet, 'nak', this.ctx.serverPort, this.ctx.clientPort), note }];
  }

  private ack(inb: Inbound, ip: string): Outbound[] {
    const { info, packet } = inb;
    const ctx = this.ctx;
    this.leases.put({
      ip,
      mac: info.mac,
      state: 'bound',
      expiresAt: this.now + this.cfg.leaseSeconds * 1000,
      hostName: info.hostName ?? '',
      updatedAt: this.now,
    });
    ctx.noteAddress(ip, info.mac);
    const reply = baseReply(packet, 'ack', ctx.serverAddress);
    reply.ciaddr = packet.ciaddr;
    reply.yiaddr = ip;
    this.networkOptions(reply, info, true);
    const file = this.bootOptions(reply, info);
    finishReply(reply, info);
    ctx.counters.acks += 1;
    if (isBootClient(info)) emit(ctx, info.mac, 'dhcp-ack', { xid: info.xid, ip, file });
    const note = { msg: 'ack', fields: { mac: info.mac, xid: info.xid, ip, file } };
    return [{ packet: reply, to: destinationFor(packet, 'ack', ctx.serverPort, ctx.clientPort), note }];
  }

  /** True when `ip` may be (re)bound to `mac`: it is its lease, or free for it, and matches its reservation. */
  private acceptable(ip: string, mac: string): boolean {
    const reserved = this.reservationFor(mac);
    // A client with a reservation elsewhere is moved there (NAK, then DISCOVER gets the reservation),
    // unless the reserved address is taken (then it keeps a pool address).
    if (reserved && reserved !== ip && this.available(reserved, mac)) return false;
    const l = this.leases.byIp(ip);
    if (l && l.mac === mac && l.state !== 'declined') return this.inSubnet(ip) && (this.inPool(ip) || reserved === ip);
    return this.available(ip, mac);
  }

  private request(inb: Inbound): Outbound[] {
    const { info, packet } = inb;
    const ctx = this.ctx;
    ctx.counters.requests += 1;
    const boot = isBootClient(info);
    if (info.serverId !== undefined) {
      // SELECTING: the client answers one server's offer.
      if (info.serverId !== ctx.serverAddress) {
        const l = this.leases.byMac(info.mac);
        if (l && l.state === 'offered') this.leases.put({ ...l, state: 'released', expiresAt: this.now, updatedAt: this.now }, false);
        ctx.counters.ignored += 1;
        return [];
      }
      const ip = info.requestedIp ?? (packet.ciaddr !== ZERO ? packet.ciaddr : undefined);
      if (boot) emit(ctx, info.mac, 'dhcp-request', { xid: info.xid, ip, state: 'selecting' });
      if (!ip) return this.nak(packet, info, 'no requested address');
      return this.acceptable(ip, info.mac) ? this.ack(inb, ip) : this.nak(packet, info, `address ${ip} is not available`);
    }
    if (info.requestedIp && packet.ciaddr === ZERO) {
      // INIT-REBOOT: the client verifies an address it remembers. We are the only server on this
      // network (the start-up probe checked), so we answer authoritatively rather than stay silent.
      const ip = info.requestedIp;
      if (boot) emit(ctx, info.mac, 'dhcp-request', { xid: info.xid, ip, state: 'init-reboot' });
      if (!this.inSubnet(ip)) return this.nak(packet, info, `wrong network: ${ip}`);
      return this.acceptable(ip, info.mac) ? this.ack(inb, ip) : this.nak(packet, info, `address ${ip} is not yours`);
    }
    if (packet.ciaddr !== ZERO) {
      // RENEWING (unicast to us) or REBINDING (broadcast): extend the lease on ciaddr.
      const ip = packet.ciaddr;
      const state = inb.via === 'unicast' ? 'renewing' : 'rebinding';
      if (boot) emit(ctx, info.mac, 'dhcp-request', { xid: info.xid, ip, state });
      if (!this.inSubnet(ip)) {
        // A rebinding client on a foreign subnet is another server's business.
        if (state === 'rebinding') return [];
        return this.nak(packet, info, `wrong network: ${ip}`);
      }
      return this.acceptable(ip, info.mac) ? this.ack(inb, ip) : this.nak(packet, info, `address ${ip} is not yours`);
    }
    ctx.log.debug({ mac: info.mac, xid: info.xid }, 'request with neither server id, requested address nor ciaddr');
    ctx.counters.ignored += 1;
    return [];
  }

  private decline({ info }: Inbound): Outbound[] {
    this.ctx.counters.declines += 1;
    const ip = info.requestedIp;
    if (!ip || info.serverId !== this.ctx.serverAddress) return [];
    const l = this.leases.byIp(ip);
    if (l && l.mac !== info.mac) return [];
    // RFC 2131 section 4.3.3: the address is in use by someone else; take it out of the pool.
    this.leases.put({ ip, mac: '', state: 'declined', expiresAt: this.now + DECLINE_QUARANTINE_MS, hostName: '', updatedAt: this.now });
    this.ctx.log.warn({ mac: info.mac, ip }, 'client declined an address (another host uses it): quarantined');
    return [];
  }

  private release({ info, packet }: Inbound): Outbound[] {
    this.ctx.counters.releases += 1;
    const l = this.leases.byIp(packet.ciaddr);
    if (l && l.mac === info.mac && l.state === 'bound') {
      // Keep the MAC on the record so the client gets the same address back (RFC 2131 section 4.3.4).
      this.leases.put({ ...l, state: 'released', expiresAt: this.now, updatedAt: this.now });
      this.ctx.log.info({ mac: info.mac, ip: l.ip }, 'released');
    }
    return [];
  }

  private inform(inb: Inbound): Outbound[] {
    const { info, packet } = inb;
    this.ctx.counters.informs += 1;
    // RFC 2131 section 4.3.5: configuration only; no lease time, no yiaddr; to ciaddr.
    const reply = baseReply(packet, 'ack', this.ctx.serverAddress);
    reply.ciaddr = packet.ciaddr;
    this.networkOptions(reply, info, false);
    this.bootOptions(reply, info);
    finishReply(reply, info);
    this.ctx.counters.acks += 1;
    const to =
      packet.giaddr !== ZERO
        ? { address: packet.giaddr, port: this.ctx.serverPort }
        : packet.ciaddr !== ZERO
          ? { address: packet.ciaddr, port: this.ctx.clientPort }
          : { address: inb.from.address, port: inb.from.port };
    return [{ packet: reply, to }];
  }
}
