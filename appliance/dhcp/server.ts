/**
 * The DHCP service: sockets around the proxy or full responder.
 *
 * Sockets (Node's dgram has neither SO_BINDTODEVICE nor IP_PKTINFO):
 *  - `rx`: 0.0.0.0:67. On Linux only a wildcard socket receives broadcasts, so every request that
 *    was broadcast arrives here (from any interface: see docs/decisions.md, "DHCP and boot policy").
 *  - `tx`: <serverAddress>:67. Receives unicasts to us (that is how RENEWING is told apart from
 *    REBINDING) and sends every reply: Linux routes a limited broadcast out of the interface that
 *    owns the bound source address, so replies leave through dhcp.interface with its address.
 *  - `pxe`: 0.0.0.0:4011 in proxy mode, for PXE boot server requests.
 * Both port-67 sockets set SO_REUSEADDR to coexist, so start() first binds 67 exclusively for a
 * moment: that fails with EADDRINUSE when another local server (dnsmasq, ...) holds the port. It
 * does so again right before binding (after the conflict probe), and a process-wide record stops
 * a second DhcpServer of the same process: two services on one port both answer every broadcast.
 * A request whose bytes arrive twice within DUPLICATE_MS (one frame heard on two interfaces of
 * one LAN) is answered once.
 *
 * With a `network` watcher (issue #14) the service starts even while dhcp.interface is missing,
 * down, without carrier or without an address ('starting', detail says why), binds once an
 * address shows up and rebinds when it changes: `serverAddress: 'auto'` follows the interface's
 * first IPv4 address, an explicit one stays fixed (bound once the interface has an address).
 */
import { createSocket, type RemoteInfo, type Socket, type SocketOptions } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import type Database from 'better-sqlite3';
import type { Config } from '../core/config';
import type { Clock } from '../core/clock';
import type { LinkStatus } from '../core/link-watch';
import type { Logger } from '../core/log';
import type { BootEventSink, ClientDirectory } from '../core/model';
import { bindError, FatalError, type Service, type ServiceStatus, type ServiceState } from '../core/service';
import { probeForDhcpServers } from './conflict-probe';
import { newCounters, type PolicyPort, type Responder, type ResponderContext, type Via } from './engine';
import { EventBatch } from '../telemetry/event-batch';
import { FullResponder } from './full';
import { sameSubnet } from './ipv4';
import { LeaseStore } from './leases';
import { readRequest } from './options';
import { decodePacket, DecodeError, encodePacket, hardwareAddress } from './packet';
import { lockDhcpPort } from './port-lock';
import { ProxyResponder } from './proxy';

/** Constructor arguments of DhcpServer. */
export interface DhcpServerOptions {
  config: Readonly<Config['dhcp']>;
  /** The address clients reach us at, or 'auto' (dhcp.interface's first IPv4 address). */
  serverAddress: string;
  /** TFTP port the iPXE binaries are served on; PXE ROMs can only use 69 (warned otherwise). */
  tftpPort?: number;
  clients: ClientDirectory;
  /** Boot decisions (a BootPolicy from appliance/boot/boot-policy.ts). */
  policy: PolicyPort & { status?(): { missing: string[] } };
  db: Database.Database;
  clock: Clock;
  log: Logger;
  events?: BootEventSink;
  /** The port clients listen on (68; tests may change it together with config.port). */
  clientPort?: number;
  /** The interface watcher (core/link-watch.ts): serve when it has an address, follow changes. */
  network?: NetworkPort;
}

/** What the DHCP service needs from the interface watcher. */
export interface NetworkPort {
  link(): LinkStatus;
  onChange(fn: (s: LinkStatus) => void): () => void;
}

/** 24 -> 255.255.255.0 */
function prefixToMask(prefixlen: number): string {
  const m = prefixlen <= 0 ? 0 : (0xffffffff << (32 - Math.min(prefixlen, 32))) >>> 0;
  return [24, 16, 8, 0].map((s) => (m >>> s) & 0xff).join('.');
}

/** The interface's MAC from sysfs (zeros when unreadable: the conflict probe then sends a zero chaddr). */
function sysMac(ifname: string): string {
  try {
    return readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim();
  } catch {
    return '00:00:00:00:00:00';
  }
}

/**
 * How long an identical request is treated as a second copy of one already answered. The same
 * frame can reach the wildcard socket twice when it enters the host on two interfaces of one
 * L2 segment; a client's own retransmission comes a second or more later (RFC 2131 section 4.1).
 */
const DUPLICATE_MS = 250;

interface IfaceInfo {
  name: string;
  address: string;
  netmask: string;
  mac: string;
}

/** Finds the interface to serve on and our address on it. Throws FatalError with the reason. */
function resolveInterface(name: string, configured: string, needInterface: boolean): IfaceInfo | undefined {
  const all = networkInterfaces();
  const candidates = name
    ? (all[name] ?? []).map((a) => ({ ...a, iface: name }))
    : Object.entries(all).flatMap(([n, list]) => (list ?? []).filter((a) => !a.internal).map((a) => ({ ...a, iface: n })));
  if (name && !all[name]) throw new FatalError(`dhcp.interface "${name}" does not exist (interfaces: ${Object.keys(all).join(', ')})`);
  const v4 = candidates.filter((a) => a.family === 'IPv4');
  if (name && v4.length === 0) throw new FatalError(`dhcp.interface "${name}" has no IPv4 address`);
  const pick = configured !== 'auto' ? v4.find((a) => a.address === configured) : v4[0];
  if (!pick) {
    if (needInterface) {
      throw new FatalError(
        configured !== 'auto'
          ? `serverAddress ${configured} is not an address of ${name || 'any interface'}`
          : 'full DHCP needs dhcp.interface (no IPv4 interface found)',
      );
    }
    return undefined;
  }
  const ifaces = new Set(v4.map((a) => a.iface));
  if (needInterface && !name && ifaces.size > 1) {
    throw new FatalError(`full DHCP needs dhcp.interface: this machine has several interfaces (${[...ifaces].join(', ')})`);
  }
  return { name: pick.iface, address: pick.address, netmask: pick.netmask, mac: pick.mac };
}

/**
 * A UDP socket whose sends skip Node's per-send DNS lookup (destinations are always IP literals;
 * the default lookup defers each send by a tick, which shows in DISCOVER->OFFER latency).
 */
function udpSocket(reuseAddr: boolean): Socket {
  return createSocket({
    type: 'udp4',
    reuseAddr,
    lookup: (address: string, _opts: unknown, cb: (err: Error | null, address: string, family: number) => void) => cb(null, address, 4),
  } as SocketOptions);
}

function bindSocket(sock: Socket, port: number, address: string, exclusive = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const onErr = (err: Error) => reject(bindError('udp', address, port, err));
    sock.once('error', onErr);
    sock.bind({ port, address, exclusive }, () => {
      sock.off('error', onErr);
      resolve();
    });
  });
}

/**
 * Which DhcpServer of this process holds each port, from start() to stop(). Two instances on one
 * port both receive every broadcast (SO_REUSEADDR) and both answer it: that happened when two
 * DHCP mode changes ran at once (each started a full server; 2 OFFERs and 2 ACKs per request,
 * every boot event recorded twice). The exclusive bind in start() cannot see a sibling that is
 * still in its conflict probe, so the process keeps its own record.
 */
const portHolders = new Map<number, DhcpServer>();

/** The DHCP service (proxy or full per config.mode; 'off' = disabled). */
export class DhcpServer implements Service {
  readonly name = 'dhcp';
  private state: ServiceState = 'stopped';
  private detail: string | undefined;
  private readonly counters = newCounters();
  private sockets: { sock: Socket; via: Via }[] = [];
  private tx: Socket | undefined;
  private responder: Responder | undefined;
  private leases: LeaseStore | undefined;
  private address = '';
  private readonly listen: string[] = [];
  /** ip -> mac from ciaddr/requested addresses seen, bounded. */
  private readonly addressOwners = new Map<string, string>();
  private cancelProbe: (() => void) | undefined;
  /** Drops the process-wide DHCP port lock (port-lock.ts) this instance took. */
  private unlockPort: (() => void) | undefined;
  private ctx: ResponderContext | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Rebinds run one at a time, in order of the changes that caused them. */
  private rebinding: Promise<void> = Promise.resolve();
  /** Recent request payloads, for dropping a second copy of one frame (DUPLICATE_MS). */
  private recent: { at: number; msg: Buffer }[] = [];
  private readonly log: Logger;
  /** Boot events, written after the replies are sent (telemetry/event-batch.ts). */
  private readonly events: EventBatch | undefined;
  /** True when this server made its own batch (a bare sink was given): it flushes it at stop. */
  private readonly ownsBatch: boolean;

  constructor(private readonly opts: DhcpServerOptions) {
    this.log = opts.log.child({ service: 'dhcp' });
    // The appliance hands in its shared batch; a bare sink (tests, tools) gets one of its own, so
    // a reply never waits on (or dies with) a telemetry write.
    this.ownsBatch = opts.events !== undefined && !(opts.events instanceof EventBatch);
    this.events =
      opts.events instanceof EventBatch ? opts.events : opts.events && new EventBatch(opts.events, { log: this.log, clock: opts.clock, db: opts.db });
  }

  async start(): Promise<void> {
    const cfg = this.opts.config;
    if (cfg.mode === 'off') {
      this.state = 'disabled';
      this.detail = 'dhcp.mode is "off"';
      return;
    }
    this.state = 'starting';
    try {
      await this.startMode(cfg);
      // With a watcher, follow() has set 'running' or 'starting' (waiting for an address).
      if (!this.opts.network) this.state = 'running';
    } catch (err) {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
      this.releasePort();
      // stop() during start (e.g. while probing) is not a failure: it ends stopped.
      const now = this.state as ServiceState; // stop() may have changed it meanwhile
      const cancelled = now === 'stopping' || now === 'stopped';
      this.state = cancelled ? 'stopped' : 'failed';
      if (!cancelled) this.detail = (err as Error).message;
      await this.closeSockets();
      throw err;
    }
  }

  private async startMode(cfg: Readonly<Config['dhcp']>): Promise<void> {
    const full = cfg.mode === 'full';
    // Synchronously, before any await: a concurrent start() must see the claim.
    const holder = portHolders.get(cfg.port);
    if (cfg.port !== 0 && holder && holder !== this) {
      throw new FatalError(
        `DHCP port ${cfg.port} is already served by another DHCP service of this appliance (${holder.opts.config.mode} mode, ${holder.state}): stop it first`,
      );
    }
    if (cfg.port !== 0) portHolders.set(cfg.port, this);
    if (cfg.port !== 0 && !this.unlockPort) this.unlockPort = await lockDhcpPort(cfg.port);
    if (this.opts.tftpPort !== undefined && this.opts.tftpPort !== 69) {
      this.log.warn(
        { tftpPort: this.opts.tftpPort },
        'PXE firmware fetches iPXE from TFTP port 69 only: set tftp.port to 69 or firmware clients will not boot',
      );
    }

    // Port 67 held by another local server? Checked now, so a busy port fails start() at once,
    // and again right before our own sockets bind (serve()): another appliance process that
    // started meanwhile, while this one probed, is caught there.
    await this.checkPortFree(cfg.port);

    this.ctx = {
      serverAddress: '',
      serverPort: cfg.port,
      clientPort: this.opts.clientPort ?? 68,
      policy: this.opts.policy,
      clock: this.opts.clock,
      log: this.log,
      events: this.events,
      counters: this.counters,
      noteAddress: (ip, mac) => this.noteAddress(ip, mac),
    };
    if (this.opts.network) {
      if (full && !cfg.interface) throw new FatalError('full DHCP needs dhcp.interface');
      this.unsubscribe = this.opts.network.onChange(() => void this.follow(false).catch(() => undefined));
      await this.follow(true);
      return;
    }
    const iface = resolveInterface(cfg.interface, this.opts.serverAddress, full);
    const address = iface?.address ?? this.opts.serverAddress;
    if (address === 'auto') throw new FatalError('proxy DHCP found no IPv4 address to announce: set serverAddress or dhcp.interface');
    await this.serve(cfg, iface, address);
  }

  /**
   * Serves on the watcher's current address, closing the sockets of the previous one first.
   * At start (`initial`) a FatalError (another DHCP server, a range outside the subnet) rejects
   * start(); later it leaves the service 'failed' with the reason until the next change.
   */
  private follow(initial: boolean): Promise<void> {
    const step = this.rebinding.then(async () => {
      if (this.state === 'stopping' || this.state === 'stopped') return;
      const cfg = this.opts.config;
      const full = cfg.mode === 'full';
      const link = this.opts.network!.link();
      const fixed = this.opts.serverAddress !== 'auto' ? this.opts.serverAddress : '';
      // An explicit address that is not the interface's (behind NAT) is announced, not bound: in
      // proxy mode replies then leave by the routing table; full mode waits for it to be ours.
      const local = !fixed || link.addresses.includes(fixed);
      const want = link.address && (local || !full) ? fixed || link.address : '';
      const waitingFor =
        fixed && link.address && !local
          ? `serverAddress ${fixed} to be an address of ${link.interface}`
          : `an IPv4 address on ${link.interface || 'any interface'}`;
      if (want === this.address && this.sockets.length > 0) return;
      if (this.sockets.length > 0) {
        this.log.info(
          { from: this.address, to: want || undefined, state: link.state },
          want ? 'server address changed: rebinding' : 'interface lost its address: not serving',
        );
        await this.closeSockets();
      }
      this.address = want;
      if (!want) {
        this.state = 'starting';
        this.detail = `waiting for ${waitingFor} (${link.state})`;
        if (initial) this.log.warn({ interface: link.interface, state: link.state }, 'no IPv4 address yet: DHCP will serve once the interface has one');
        return;
      }
      const name = cfg.interface || link.interface;
      const iface: IfaceInfo | undefined = local
        ? { name, address: want, netmask: prefixToMask(link.prefixlen ?? 24), mac: name ? sysMac(name) : '00:00:00:00:00:00' }
        : undefined;
      // Not serving until the new sockets are bound (and, in full mode, the probe came back clean).
      this.state = 'starting';
      this.detail = full && cfg.conflictProbeSeconds > 0 ? `checking for another DHCP server before serving on ${want}` : undefined;
      try {
        await this.serve(cfg, iface, want);
        this.state = 'running';
        this.detail = undefined;
      } catch (err) {
        await this.closeSockets();
        if (initial || (this.state as ServiceState) === 'stopping' || (this.state as ServiceState) === 'stopped') throw err;
        this.state = 'failed';
        this.detail = (err as Error).message;
        this.log.error({ err, address: want }, 'cannot serve on the new address');
      }
    });
    this.rebinding = step.catch(() => undefined);
    return step;
  }

  /** Binds the sockets for `address` (in full mode after the conflict probe); builds the responder once. */
  private async serve(cfg: Readonly<Config['dhcp']>, iface: IfaceInfo | undefined, address: string): Promise<void> {
    const full = cfg.mode === 'full';
    const ctx = this.ctx!;
    if (full && cfg.range.length === 2 && !sameSubnet(address, cfg.range[0], cfg.netmask)) {
      throw new FatalError(`dhcp.range ${cfg.range[0]}-${cfg.range[1]} is not in the subnet of ${iface!.name} (${address}/${cfg.netmask})`);
    }
    this.address = address;
    // Responders read ctx.serverAddress per request: siaddr, option 54, script URLs follow it.
    ctx.serverAddress = address;
    // Full mode probes before serving on every new address: a box that moved (or whose router
    // changed) may now sit on a network that has a DHCP server of its own.
    if (full) {
      if (cfg.conflictProbeSeconds > 0) {
        this.log.info({ interface: iface!.name, seconds: cfg.conflictProbeSeconds }, 'listening for another DHCP server before serving');
        const heard = await probeForDhcpServers(
          {
            address,
            mac: iface!.mac,
            seconds: cfg.conflictProbeSeconds,
            clock: this.opts.clock,
            log: this.log,
            serverPort: cfg.port,
            clientPort: ctx.clientPort,
          },
          (cancel) => (this.cancelProbe = cancel),
        );
        this.cancelProbe = undefined;
        if (this.state === 'stopping' || this.state === 'stopped') throw new FatalError('DHCP start cancelled');
        if (heard.length > 0) {
          const who = heard.map((h) => (h.from === h.serverId ? h.serverId : `${h.serverId} (from ${h.from})`)).join(', ');
          throw new FatalError(
            `another DHCP server answers on ${iface!.name}: ${who}. Full DHCP refuses to run on a network that has one (nothing was sent to clients); use dhcp.mode "proxy" or an isolated network`,
          );
        }
      } else {
        this.log.warn('dhcp.conflictProbeSeconds is 0: not checking for another DHCP server');
      }
    }
    if (!this.responder) {
      if (full) {
        this.leases = new LeaseStore(this.opts.db);
        this.responder = new FullResponder(ctx, { ...cfg, reservations: cfg.reservations }, this.leases, this.opts.clients);
      } else {
        this.responder = new ProxyResponder(ctx);
      }
    }

    await this.checkPortFree(cfg.port);
    const rx = udpSocket(true);
    this.sockets.push({ sock: rx, via: 'broadcast' });
    await bindSocket(rx, cfg.port, '0.0.0.0');
    rx.setBroadcast(true);
    // Port 0 (tests): the unicast socket must share the port the wildcard one got.
    const port = rx.address().port;
    ctx.serverPort = port;
    this.listen.push(`udp 0.0.0.0:${port}`);
    if (iface) {
      const tx = udpSocket(true);
      this.sockets.push({ sock: tx, via: 'unicast' });
      await bindSocket(tx, port, address);
      tx.setBroadcast(true);
      this.tx = tx;
      this.listen.push(`udp ${address}:${port}`);
    } else {
      // serverAddress is not local (e.g. behind NAT): replies leave by the routing table.
      this.tx = rx;
    }
    if (!full) {
      const pxe = udpSocket(true);
      this.sockets.push({ sock: pxe, via: 'pxe' });
      await bindSocket(pxe, cfg.proxyPort, '0.0.0.0');
      this.listen.push(`udp 0.0.0.0:${pxe.address().port}`);
    }
    for (const { sock, via } of this.sockets) {
      sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo, via, sock));
      sock.on('error', (err) => this.log.error({ err, via }, 'socket error'));
    }
    this.log.info({ mode: cfg.mode, interface: iface?.name ?? '(all)', address, listen: this.listen }, 'DHCP serving');
  }

  /** True when these bytes were answered moments ago (a second copy of one frame). */
  private duplicate(msg: Buffer): boolean {
    const now = this.opts.clock.now();
    this.recent = this.recent.filter((r) => now - r.at < DUPLICATE_MS);
    if (this.recent.some((r) => r.msg.equals(msg))) return true;
    // Copied: dgram may hand out a buffer it reuses later.
    if (this.recent.length < 64) this.recent.push({ at: now, msg: Buffer.from(msg) });
    return false;
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo, via: Via, sock: Socket): void {
    const from = { address: rinfo.address, port: rinfo.port };
    if (via === 'broadcast' && this.duplicate(msg)) {
      this.counters.ignored += 1;
      this.log.debug({ from, bytes: msg.length }, 'dropped: second copy of a request just answered');
      return;
    }
    let outs;
    try {
      const packet = decodePacket(msg);
      if (packet.op !== 'request') return; // another server's reply relayed to us, or our own
      if (packet.htype !== 1 || packet.hlen !== 6) {
        this.counters.ignored += 1;
        this.log.debug({ from, htype: packet.htype, hlen: packet.hlen }, 'dropped: not Ethernet');
        return;
      }
      const info = readRequest(packet, hardwareAddress(packet));
      if (!info.type) {
        this.counters.ignored += 1;
        this.log.debug({ from, mac: info.mac }, 'dropped: BOOTP request (not served)');
        return;
      }
      outs = this.responder!.handle({ packet, info, via, from });
    } catch (err) {
      if (err instanceof DecodeError) {
        this.counters.dropped += 1;
        this.log.debug({ from, reason: err.message, bytes: msg.length }, 'dropped malformed packet');
        return;
      }
      this.log.error({ err, from }, 'failed to handle a DHCP packet');
      return;
    }
    for (const out of outs) {
      // The PXE port answers from the socket the request came in on (source port 4011).
      const s = via === 'pxe' ? sock : this.tx!;
      s.send(encodePacket(out.packet), out.to.port, out.to.address, (err) => {
        if (err) this.log.warn({ err, to: out.to }, 'sending a DHCP reply failed');
      });
    }
    // Logged once the replies are handed to the kernel (the sends above are synchronous when the
    // socket buffer has room): formatting a log line costs more than building the reply did.
    for (const out of outs) if (out.note) this.log.info(out.note.fields, out.note.msg);
  }

  private noteAddress(ip: string, mac: string): void {
    if (this.addressOwners.size > 65_536) this.addressOwners.clear();
    this.addressOwners.delete(ip);
    this.addressOwners.set(ip, mac);
  }

  /** The MAC behind an address (its lease, else the last client seen using or requesting it), for TFTP attribution. */
  macForAddress(ip: string): string | undefined {
    const l = this.leases?.byIp(ip);
    if (l && l.mac && (l.state === 'bound' || l.state === 'offered')) return l.mac;
    return this.addressOwners.get(ip) ?? (l?.mac || undefined);
  }

  /** The address announced to clients (resolved from dhcp.interface when configured 'auto'); '' before start(). */
  get serverAddress(): string {
    return this.address;
  }

  /**
   * Binds the port exclusively for a moment (no SO_REUSEADDR): fails with EADDRINUSE while any
   * other socket holds it (dnsmasq, another appliance). Our own sockets share it with
   * SO_REUSEADDR, so it runs only while none of ours is bound.
   */
  private async checkPortFree(port: number): Promise<void> {
    if (port === 0) return;
    const probe = udpSocket(false);
    await bindSocket(probe, port, '0.0.0.0', true);
    await new Promise<void>((r) => probe.close(() => r()));
  }

  private releasePort(): void {
    if (portHolders.get(this.opts.config.port) === this) portHolders.delete(this.opts.config.port);
    this.unlockPort?.();
    this.unlockPort = undefined;
  }

  private async closeSockets(): Promise<void> {
    this.cancelProbe?.();
    this.cancelProbe = undefined;
    await Promise.all(
      this.sockets.map(
        ({ sock }) =>
          new Promise<void>((r) => {
            try {
              sock.close(() => r());
            } catch {
              r();
            }
          }),
      ),
    );
    this.sockets = [];
    this.tx = undefined;
    this.listen.length = 0;
    if (this.ownsBatch) this.events?.flush();
  }

  async stop(): Promise<void> {
    if (this.state === 'disabled') return;
    this.state = 'stopping';
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.cancelProbe?.();
    await this.rebinding;
    await this.closeSockets();
    this.releasePort();
    this.state = 'stopped';
  }

  status(): ServiceStatus {
    return {
      state: this.state,
      listen: [...this.listen],
      counters: { ...this.counters },
      gauges: this.leases ? { leases: this.leases.activeCount(this.opts.clock.now()) } : undefined,
      // Missing iPXE binaries (e.g. ARM64 on Debian) are shown to the user here while running.
      detail: this.detail ?? (this.state === 'running' ? this.opts.policy.status?.().missing.join('; ') || undefined : undefined),
    };
  }
}
