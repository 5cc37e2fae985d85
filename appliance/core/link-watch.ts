/**
 * Watches the interface the appliance serves on (issue #14: a box that rides out its network).
 *
 * Node's os.networkInterfaces() lists only interfaces that are up *and* running, so a NIC without
 * carrier looks like a missing one. The watcher reads /sys/class/net/<if>/ instead (existence,
 * IFF_UP, carrier) and the IPv4 addresses from `ip -j -4 addr` (which also says whether an address
 * is dynamic, i.e. came from a DHCP lease), every `intervalMs` on the injected clock. Polling /sys
 * needs no privilege and no netlink child to supervise; a change is seen within one interval.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Clock } from './clock';
import type { Logger } from './log';
import type { Service, ServiceStatus } from './service';

/** Where the interface stands, worst first. */
export type LinkState = 'no-interface' | 'down' | 'no-carrier' | 'no-address' | 'up';

/** One IPv4 address of the interface. */
export interface LinkAddress {
  address: string;
  prefixlen: number;
  /** Interface it is on (matters when the watcher watches every interface). */
  ifname: string;
  /** Dynamic (a DHCP lease: finite valid lifetime), not a static configuration. */
  dynamic: boolean;
}

/** What GET /api/status shows as `network`. */
export interface LinkStatus {
  /** The configured dhcp.interface, or '' for "the first interface with an IPv4 address". */
  interface: string;
  state: LinkState;
  /** The address clients are told (the first IPv4 address), or '' while there is none. */
  address: string;
  prefixlen?: number;
  /** Every IPv4 address on the interface (an explicit serverAddress is served only when listed). */
  addresses: string[];
  /** When `state` or `address` last changed (ms since the epoch). */
  since: number;
  /** The address came from a DHCP lease: it may change under running clients. */
  dynamic: boolean;
}

/** Reads IPv4 addresses (of one interface, or all non-loopback ones for ''). Injected in tests. */
export type AddressReader = (ifname: string) => Promise<LinkAddress[]>;

/** Two's-complement lifetime `ip` prints for "forever". */
const FOREVER = 4294967295;

/** `ip -j -4 addr show [dev IF]`, parsed. Rejects when `ip` fails (e.g. no such device). */
export const ipAddressReader: AddressReader = (ifname) =>
  new Promise((resolve, reject) => {
    const args = ['-j', '-4', 'addr', 'show', ...(ifname ? ['dev', ifname] : [])];
    execFile('ip', args, { timeout: 5000 }, (err, stdout) => {
      // Without iproute2, Node's own list: it hides interfaces without carrier and cannot tell a
      // lease from a static address, but the box still serves.
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') return resolve(nodeAddresses(ifname));
      if (err) return reject(err);
      try {
        resolve(parseIpAddr(stdout, !ifname));
      } catch (e) {
        reject(e);
      }
    });
  });

/** IPv4 addresses from os.networkInterfaces() (fallback when `ip` is missing). */
export function nodeAddresses(ifname: string): LinkAddress[] {
  return Object.entries(networkInterfaces())
    .filter(([name]) => (ifname ? name === ifname : true))
    .flatMap(([name, list]) =>
      (list ?? [])
        .filter((a) => a.family === 'IPv4' && (ifname ? true : !a.internal))
        .map((a) => ({ address: a.address, prefixlen: Number(a.cidr?.split('/')[1] ?? 24), ifname: name, dynamic: false })),
    );
}

/**
 * Parses `ip -j -4 addr` output into IPv4 addresses; with `skipLoopback` (watching every
 * interface) loopback interfaces and host-scope addresses are left out.
 */
export function parseIpAddr(json: string, skipLoopback = true): LinkAddress[] {
  const links = JSON.parse(json || '[]') as { ifname: string; flags?: string[]; addr_info?: Record<string, unknown>[] }[];
  const out: LinkAddress[] = [];
  for (const l of links) {
    if (skipLoopback && l.flags?.includes('LOOPBACK')) continue;
    for (const a of l.addr_info ?? []) {
      if (a.family !== 'inet' || (skipLoopback && a.scope === 'host')) continue;
      const valid = a.valid_life_time as number | undefined;
      out.push({
        address: String(a.local),
        prefixlen: Number(a.prefixlen),
        ifname: l.ifname,
        dynamic: a.dynamic === true || (valid !== undefined && valid !== FOREVER),
      });
    }
  }
  return out;
}

export interface LinkWatcherOptions {
  /** dhcp.interface; '' watches every interface and uses the first IPv4 address found. */
  interface: string;
  clock: Clock;
  log: Logger;
  /** Poll period (default 1500 ms). */
  intervalMs?: number;
  /** Root of the sysfs net class (tests point it at a fake tree). */
  sysNet?: string;
  addresses?: AddressReader;
}

/**
 * Watches one interface's existence, carrier and addresses; tells listeners when they change.
 * A Service so the composition root starts it first (DHCP reads it in its own start()).
 */
export class LinkWatcher implements Service {
  readonly name = 'network';
  private current: LinkStatus;
  private cancel: (() => void) | undefined;
  private running = false;
  private polling: Promise<void> | undefined;
  private changes = 0;
  private readonly listeners = new Set<(s: LinkStatus, prev: LinkStatus) => void>();
  private readonly log: Logger;
  private readonly sysNet: string;
  private readonly addresses: AddressReader;

  constructor(private readonly opts: LinkWatcherOptions) {
    this.log = opts.log.child({ service: 'network' });
    this.sysNet = opts.sysNet ?? '/sys/class/net';
    this.addresses = opts.addresses ?? ipAddressReader;
    this.current = { interface: opts.interface, state: 'no-interface', address: '', addresses: [], since: opts.clock.now(), dynamic: false };
  }

  /** Reads the interface once (so callers start with the truth), then polls. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.poll();
    this.arm();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.cancel?.();
    this.cancel = undefined;
    await this.polling;
  }

  /** The latest reading. */
  link(): LinkStatus {
    return { ...this.current, addresses: [...this.current.addresses] };
  }

  /** For /api/status's service list and /metrics (the `network` block carries the details). */
  status(): ServiceStatus {
    const c = this.current;
    return {
      state: this.running ? 'running' : 'stopped',
      listen: [],
      counters: { changes: this.changes },
      detail: `${c.interface || 'any interface'}: ${c.state}${c.address ? ` ${c.address}` : ''}${c.dynamic ? ' (DHCP lease)' : ''}`,
    };
  }

  /** Calls fn after every change of state or address; returns an unsubscribe function. */
  onChange(fn: (s: LinkStatus, prev: LinkStatus) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** One reading now (tests; also what the timer runs). */
  poll(): Promise<void> {
    this.polling ??= this.read().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private arm(): void {
    if (!this.running) return;
    this.cancel = this.opts.clock.setTimeout(() => void this.poll().then(() => this.arm()), this.opts.intervalMs ?? 1500);
  }

  private sys(file: string): string | undefined {
    try {
      return readFileSync(join(this.sysNet, this.opts.interface, file), 'utf8').trim();
    } catch {
      return undefined; // carrier reads EINVAL while the interface is down
    }
  }

  private async read(): Promise<void> {
    const name = this.opts.interface;
    let state: LinkState = 'up';
    if (name) {
      const flags = this.sys('flags');
      if (flags === undefined) state = 'no-interface';
      else if ((parseInt(flags, 16) & 0x1) === 0)
        state = 'down'; // IFF_UP
      else if (this.sys('carrier') !== '1') state = 'no-carrier';
    }
    let addrs: LinkAddress[] = [];
    if (state !== 'no-interface') {
      try {
        addrs = await this.addresses(name);
      } catch (err) {
        // The interface vanished between the two reads, or `ip` is missing: no address.
        this.log.debug({ err, interface: name }, 'reading addresses failed');
      }
    }
    const first = addrs[0];
    // Carrier matters less than an address: a bridge without ports has an address but no carrier.
    if (state === 'up' && !first) state = 'no-address';
    const next: LinkStatus = {
      interface: name,
      state,
      address: first?.address ?? '',
      prefixlen: first?.prefixlen,
      addresses: addrs.map((a) => a.address),
      since: this.current.since,
      dynamic: first?.dynamic ?? false,
    };
    const prev = this.current;
    const same =
      next.state === prev.state &&
      next.address === prev.address &&
      next.dynamic === prev.dynamic &&
      next.prefixlen === prev.prefixlen &&
      next.addresses.join() === prev.addresses.join();
    if (same) return;
    next.since = this.opts.clock.now();
    this.current = next;
    this.changes += 1;
    this.log.info(
      { interface: name || '(any)', state, address: next.address || undefined, was: prev.address || undefined, dynamic: next.dynamic },
      'network changed',
    );
    for (const fn of [...this.listeners]) {
      try {
        fn(this.link(), prev);
      } catch (err) {
        this.log.error({ err }, 'network change listener failed');
      }
    }
  }
}
