import ciao, { type CiaoService, type Responder } from '@homebridge/ciao';
import { systemClock, type Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { Service, ServiceState, ServiceStatus } from '../core/service';
import { namesFor, type MdnsNames } from './names';

/** What the advertiser needs; main.ts fills it from cfg.mdns and the HTTP service. */
export interface MdnsAdvertiserOptions {
  /** Base DNS label (cfg.mdns.name): the box answers as `<name>.local`. */
  name: string;
  /** Port the web UI and API listen on. */
  httpPort: number;
  /** Appliance version, published in the `_netboot._tcp` TXT record. */
  version: string;
  /** Restrict to one interface name or address (default: every multicast-capable one). */
  interface?: string;
  log: Logger;
  clock?: Clock;
  /** Give up renaming after this many conflicts in a row (default 32). */
  maxAttempts?: number;
}

/** The names currently on the wire, for status() and the dashboard. */
export interface AdvertisedNames {
  /** e.g. "netboot.local" */
  host: string;
  /** e.g. 'netboot._http._tcp.local' */
  http: string;
  /** e.g. 'netboot._netboot._tcp.local' */
  api: string;
  /** Host behind the API's SRV record, e.g. "netboot-api.local". */
  apiHost: string;
}

/** API path published in TXT `api=` (RFC 6763 §6.3: short key=value pairs). */
const API_PATH = '/api';
/** Wait before retrying after a socket error from ciao; it retries probes itself every 2 s. */
const RETRY_MS = 5_000;

/**
 * Publishes the appliance over multicast DNS (RFC 6762) and DNS-SD (RFC 6763):
 *  - `<name>.local`, the host people type into a browser;
 *  - `_http._tcp` instance `<name>` with TXT `path=/` (browsers and avahi list the web UI);
 *  - `_netboot._tcp` instance `<name>` with TXT `version` and `api=/api` (our CLI finds boxes).
 * Probing and conflict detection (RFC 6762 §8.1, §9) are ciao's. When it reports a rename we
 * withdraw both services before they are announced and publish the whole set again as
 * `<name>-2`, `<name>-3`, ... so the UI and API names stay paired and readable.
 */
export class MdnsAdvertiser implements Service {
  readonly name = 'mdns';
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly maxAttempts: number;
  private responder?: Responder;
  private services: CiaoService[] = [];
  private index = 1;
  private state: ServiceState = 'stopped';
  private detail?: string;
  private current?: MdnsNames;
  private announced = false;
  private generation = 0;
  private cancelRetry?: () => void;
  private readonly counters = { conflicts: 0, publishes: 0, errors: 0, refreshes: 0 };
  private waiters: { resolve: (n: AdvertisedNames) => void; reject: (e: Error) => void }[] = [];

  constructor(private readonly opts: MdnsAdvertiserOptions) {
    this.log = opts.log.child({ service: 'mdns' });
    this.clock = opts.clock ?? systemClock;
    this.maxAttempts = opts.maxAttempts ?? 32;
  }

  /**
   * Opens the mDNS sockets and starts probing. Resolves at once: probing takes about a second
   * and must not hold up the protocol servers. whenAdvertised() waits for the names.
   */
  async start(): Promise<void> {
    if (this.state !== 'stopped' && this.state !== 'failed') return;
    this.state = 'starting';
    this.detail = undefined;
    this.index = 1;
    // ciao shares one responder per distinct options object; ours is released in stop().
    this.responder = ciao.getResponder(this.opts.interface ? { interface: this.opts.interface } : undefined);
    void this.publish();
  }

  /** Sends goodbye packets (TTL 0, RFC 6762 §10.1) and closes the sockets. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopping';
    this.generation++;
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    await this.withdraw();
    const responder = this.responder;
    this.responder = undefined;
    await responder?.shutdown().catch((err: unknown) => this.log.warn({ err }, 'mdns shutdown failed'));
    this.state = 'stopped';
    this.announced = false;
    this.rejectWaiters(new Error('mdns advertiser stopped'));
  }

  /**
   * Announces again after the box's address changed (issue #14). ciao notices new interface
   * addresses only on its own 15 s poll and would keep answering with the old A record meanwhile:
   * the responder is rebuilt (goodbyes for the old records, RFC 6762 section 10.1), and the
   * names probed and announced again with the current address.
   */
  async refresh(): Promise<void> {
    if (this.state !== 'running' && this.state !== 'starting') return;
    this.counters.refreshes++;
    this.log.info('network changed: announcing the mdns names again');
    await this.stop();
    await this.start();
  }

  status(): ServiceStatus {
    const names = this.names();
    return {
      state: this.state,
      listen: this.responder ? [`udp ${this.opts.interface ?? '*'} 224.0.0.251:5353`] : [],
      counters: { ...this.counters },
      detail: this.detail ?? (names ? `${names.host} · ${names.http} · ${names.api}` : this.current ? `probing ${this.current.host}.local` : undefined),
    };
  }

  /** The names on the wire once announced; undefined while probing or stopped. */
  names(): AdvertisedNames | undefined {
    if (!this.announced || !this.current) return undefined;
    const n = this.current;
    return {
      host: `${n.host}.local`,
      http: `${n.instance}._http._tcp.local`,
      api: `${n.instance}._netboot._tcp.local`,
      apiHost: `${n.apiHost}.local`,
    };
  }

  /** Resolves with the final names once both services are probed unique. */
  whenAdvertised(): Promise<AdvertisedNames> {
    const names = this.names();
    if (names) return Promise.resolve(names);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** One attempt: probe and announce both services under namesFor(index). */
  private async publish(): Promise<void> {
    const responder = this.responder;
    if (!responder) return;
    const generation = ++this.generation;
    const names = namesFor(this.opts.name, this.index);
    this.current = names;
    this.announced = false;
    const http = responder.createService({
      name: names.instance,
      type: 'http',
      hostname: names.host,
      port: this.opts.httpPort,
      txt: { path: '/' },
    });
    const api = responder.createService({
      name: names.instance,
      type: 'netboot',
      hostname: names.apiHost,
      port: this.opts.httpPort,
      // txtvers first (RFC 6763 §6.7) so clients can tell future TXT layouts apart.
      txt: { txtvers: '1', version: this.opts.version, api: API_PATH },
    });
    this.services = [http, api];
    for (const svc of this.services) {
      // ciao emits these after probing found a name taken, before it announces the renamed
      // service. Destroying the service here (synchronously) stops that announcement; ciao
      // also re-probes and renames when a conflict shows up later (RFC 6762 §9).
      const onRename = (to: string) => this.onConflict(generation, to);
      svc.on('name-change', onRename);
      svc.on('hostname-change', onRename);
    }
    this.log.debug({ host: names.host, attempt: this.index }, 'probing mdns names');
    try {
      // Serialised: ciao probes one service at a time anyway (one Prober per responder).
      await http.advertise();
      if (generation !== this.generation) return;
      await api.advertise();
      if (generation !== this.generation) return;
    } catch (err) {
      if (generation !== this.generation) return;
      this.counters.errors++;
      this.log.warn({ err, host: names.host }, 'mdns advertising failed; retrying');
      await this.withdraw();
      if (generation !== this.generation) return;
      this.cancelRetry = this.clock.setTimeout(() => void this.publish(), RETRY_MS);
      return;
    }
    this.announced = true;
    this.state = 'running';
    this.counters.publishes++;
    const advertised = this.names()!;
    this.log.info({ ...advertised, port: this.opts.httpPort }, 'mdns names announced');
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve(advertised);
  }

  private onConflict(generation: number, renamedTo: string): void {
    if (generation !== this.generation || !this.current) return;
    this.counters.conflicts++;
    const lost = this.current.host;
    this.generation++; // the running publish() attempt ignores whatever ciao resolves next
    const services = this.services;
    this.services = [];
    this.announced = false;
    // Synchronous destroy(): ciao checks isDestroyed() before announcing the renamed service.
    const withdrawn = Promise.allSettled(services.map((s) => s.destroy()));
    if (this.index >= this.maxAttempts) {
      this.state = 'failed';
      this.detail = `gave up after ${this.index} mdns name conflicts (last: ${lost}.local)`;
      this.log.error({ lost, attempts: this.index }, 'mdns: no free name found');
      this.rejectWaiters(new Error(this.detail));
      return;
    }
    this.index++;
    this.log.warn(
      { lost: `${lost}.local`, ciaoSuggested: renamedTo, next: `${namesFor(this.opts.name, this.index).host}.local` },
      'mdns name in use by another device; trying the next one',
    );
    void withdrawn.then(() => this.publish());
  }

  private async withdraw(): Promise<void> {
    const services = this.services;
    this.services = [];
    await Promise.allSettled(services.map((s) => s.destroy()));
  }

  private rejectWaiters(err: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }
}
