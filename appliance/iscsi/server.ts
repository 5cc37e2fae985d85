import { createServer, type Server, type Socket } from 'node:net';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { GcPacer } from '../core/gc-pacer';
import type { BootEventSink } from '../core/model';
import { bindError, type Service, type ServiceState, type ServiceStatus } from '../core/service';
import { IscsiConnection, type ConnectionContext, type SessionStats } from './connection';
import { BufferPool } from './buffer-pool';
import { LoginStatus } from './constants';
import { authRank, type AdmitRequest, type LoginOutcome } from './login';
import { DEFAULT_LIMITS, type TargetLimits } from './params';
import { LuShared } from './scsi/logical-unit';
import type { TargetDirectory, TargetEntry } from './target-directory';

/** Options of the iSCSI target service. */
export interface IscsiServerOptions {
  host: string;
  port: number;
  directory: TargetDirectory;
  clock: Clock;
  log: Logger;
  events?: BootEventSink;
  maxConnections: number;
  /** NOP-In ping interval (0 = off); never used to drop initiators that do not answer pings (iPXE). */
  nopInIntervalSeconds: number;
  /** The address initiators reach us at, for SendTargets' TargetAddress (e.g. the server address). */
  portalAddress: string;
  /** Negotiation limits (tests shrink them). */
  limits?: Partial<TargetLimits>;
  /** Connections one source address may hold at once (default 8; config iscsi.maxConnectionsPerAddress). */
  maxConnectionsPerAddress?: number;
  /** A connection not in full-feature phase of a normal session by then is closed (default 15). */
  loginTimeoutSeconds?: number;
  /** A discovery session is closed this long after its login, whatever it does (default 30). */
  discoveryTimeoutSeconds?: number;
  /** Data-In queued on one connection before it stops taking new commands (default 16). */
  maxQueuedDataInMiB?: number;
  /** Told every byte that arrives, so dead socket read buffers are collected sooner (core/gc-pacer.ts). */
  gcPacer?: GcPacer;
}

/** Defaults of the optional limits: the same as config.iscsi's (appliance/core/config.ts). */
export const DEFAULT_ABUSE_LIMITS = {
  maxConnectionsPerAddress: 8,
  loginTimeoutSeconds: 15,
  discoveryTimeoutSeconds: 30,
  maxQueuedDataInMiB: 16,
} as const;

/** Per-address warnings: at most one per address per this interval. */
const WARN_INTERVAL_MS = 60_000;
/** Addresses remembered for warning rate limits (oldest forgotten first): bounded state per attempt. */
const WARN_ADDRESSES = 256;

/** One session as the target knows it (the API's SessionView is built from it). */
export interface IscsiSessionInfo extends SessionStats {
  id: number;
  initiatorName: string;
  address: string;
  target: string | null;
  since: number;
}

/** The portal group every portal of this target belongs to (one portal group, §13.9). */
const PORTAL_GROUP_TAG = 1;

/**
 * The iSCSI target (RFC 7143) as an appliance service: accepts connections, runs logins
 * against the TargetDirectory, keeps the session table (TSIH, reinstatement, exclusive
 * writers), shares per-LU state between sessions, reports telemetry and counters.
 */
export class IscsiServer implements Service {
  readonly name = 'iscsi';
  private server: Server | null = null;
  private state: ServiceState = 'stopped';
  private readonly conns = new Set<IscsiConnection>();
  private readonly sessionsByTsih = new Map<number, IscsiConnection>();
  /** Open connections per source address (entries removed at zero, so at most maxConnections). */
  private readonly perAddress = new Map<string, number>();
  /** Last warning time per address and message (WARN_ADDRESSES entries at most, oldest dropped). */
  private readonly warnedAt = new Map<string, number>();
  private readonly shared = new Map<string, LuShared>();
  private nextTsih = 1;
  private boundPort = 0;
  private readonly log: Logger;
  private readonly limits: TargetLimits;
  private readonly counters = {
    connections: 0,
    logins: 0,
    loginFailures: 0,
    pdusIn: 0,
    pdusOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    commands: 0,
    errors: 0,
    rejects: 0,
    connectionsRefused: 0,
  };

  constructor(private readonly opts: IscsiServerOptions) {
    this.log = opts.log.child({ service: 'iscsi' });
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
  }

  /** The port actually bound (useful with port 0). */
  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    this.state = 'starting';
    const server = createServer({ noDelay: true }, (s) => this.onConnection(s));
    server.maxConnections = this.opts.maxConnections;
    server.on('drop', () => this.counters.connectionsRefused++);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.port, this.opts.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.state = 'failed';
      throw bindError('tcp', this.opts.host, this.opts.port, err);
    }
    server.on('error', (err) => this.log.error({ err }, 'listener error'));
    this.server = server;
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr ? addr.port : this.opts.port;
    this.state = 'running';
    this.log.info({ host: this.opts.host, port: this.boundPort }, 'iSCSI target listening');
  }

  /** Stops accepting, lets in-flight commands finish, flushes and closes volumes, closes sockets. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopping';
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    await Promise.all([...this.conns].map((c) => c.shutdown()));
    await closed;
    this.state = 'stopped';
  }

  status(): ServiceStatus {
    let sessions = 0;
    for (const c of this.conns) if (c.phase === 'full') sessions++;
    return {
      state: this.state,
      listen: this.state === 'running' ? [`tcp ${this.opts.host}:${this.boundPort}`] : [],
      counters: { ...this.counters },
      gauges: { connections: this.conns.size, sessions },
    };
  }

  /** Live normal sessions, for GET /api/sessions. */
  /**
   * Drops every session logged in to one of `targets` (an operator's "force" after a client
   * powered off without logging out: its session would otherwise linger until NOP-In or TCP
   * keepalive notice). Resolves once their volumes are flushed and closed; returns how many.
   */
  async disconnect(targets: readonly string[]): Promise<number> {
    const names = new Set(targets);
    const victims = [...this.conns].filter((c) => c.outcome?.target && names.has(c.outcome.target.name));
    for (const c of victims) {
      this.log.info({ initiator: c.outcome!.initiatorName, target: c.outcome!.target!.name }, 'session dropped by an operator');
      c.destroy();
    }
    await Promise.all(victims.map((c) => c.closed));
    return victims.length;
  }

  sessions(): IscsiSessionInfo[] {
    const out: IscsiSessionInfo[] = [];
    for (const c of this.conns) {
      if (c.phase !== 'full' || !c.outcome || c.outcome.sessionType !== 'Normal') continue;
      out.push({
        id: c.tsih,
        initiatorName: c.outcome.initiatorName,
        address: c.address,
        target: c.outcome.target?.name ?? null,
        since: c.since,
        ...c.stats,
      });
    }
    return out;
  }

  private onConnection(socket: Socket): void {
    if (this.state !== 'running') {
      socket.destroy();
      return;
    }
    // One host must not hold every connection slot (issue #13): count open connections per
    // source address and refuse beyond the cap. The count drops when the socket closes.
    const host = normaliseAddress(socket.remoteAddress ?? '');
    const cap = this.opts.maxConnectionsPerAddress ?? DEFAULT_ABUSE_LIMITS.maxConnectionsPerAddress;
    const held = this.perAddress.get(host) ?? 0;
    if (held >= cap) {
      this.counters.connectionsRefused++;
      this.warn(host, { address: host, cap }, 'too many connections from one address, refusing');
      socket.destroy();
      return;
    }
    this.perAddress.set(host, held + 1);
    socket.once('close', () => {
      const n = (this.perAddress.get(host) ?? 1) - 1;
      if (n > 0) this.perAddress.set(host, n);
      else this.perAddress.delete(host);
    });
    this.counters.connections++;
    const address = `${socket.remoteAddress}:${socket.remotePort}`;
    const conn = new IscsiConnection(socket, address, this.context());
    this.conns.add(conn);
    conn.onFirstRead = () => this.record(conn.target, 'iscsi-first-read', { initiator: conn.initiatorName });
    void conn.closed.then(() => this.conns.delete(conn));
  }

  private ctxCache: ConnectionContext | null = null;
  /**
   * Large commands' write data and Data-In, kept for reuse: up to 8 MiB idle, what QD8 of 1 MiB
   * reads and writes keep in flight (issue #16: RSS is what a 1 GiB board can spare).
   */
  private readonly buffers = new BufferPool(8 * 1024 * 1024);

  private context(): ConnectionContext {
    if (this.ctxCache) return this.ctxCache;
    const counters = this.counters;
    const opts = this.opts;
    const pacer = opts.gcPacer;
    const port = () => this.boundPort;
    this.ctxCache = {
      clock: this.opts.clock,
      log: this.log,
      directory: this.opts.directory,
      limits: this.limits,
      portalGroupTag: PORTAL_GROUP_TAG,
      // Read per request: the appliance's portalAddress follows the box's address (issue #14).
      get portal() {
        return `${opts.portalAddress}:${port()},${PORTAL_GROUP_TAG}`;
      },
      nopInIntervalMs: this.opts.nopInIntervalSeconds * 1000,
      loginTimeoutMs: (this.opts.loginTimeoutSeconds ?? DEFAULT_ABUSE_LIMITS.loginTimeoutSeconds) * 1000,
      discoveryTimeoutMs: (this.opts.discoveryTimeoutSeconds ?? DEFAULT_ABUSE_LIMITS.discoveryTimeoutSeconds) * 1000,
      maxQueuedDataIn: (this.opts.maxQueuedDataInMiB ?? DEFAULT_ABUSE_LIMITS.maxQueuedDataInMiB) * 1024 * 1024,
      warn: (conn, fields, msg) => this.warn(normaliseAddress(conn.socket.remoteAddress ?? ''), fields, msg),
      admit: (conn, req) => this.admit(conn, req),
      admitSession: (conn, outcome) => this.admitSession(conn, outcome),
      sessionStarted: (conn, outcome) => this.sessionStarted(conn, outcome),
      sessionEnded: (conn) => this.sessionEnded(conn),
      luShared: (volumeId) => {
        let s = this.shared.get(volumeId);
        if (!s) this.shared.set(volumeId, (s = new LuShared()));
        return s;
      },
      buffers: this.buffers,
      loginRefused: (_conn, target, initiator, reason, status) => {
        counters.loginFailures++;
        this.record(target, 'iscsi-login-refused', { initiator, reason, status: `0x${status.toString(16).padStart(4, '0')}` });
      },
      count: (name, n = 1) => {
        counters[name] += n;
        if (name === 'bytesIn') pacer?.received(n);
      },
    };
    return this.ctxCache;
  }

  /** Session-level admission (RFC 7143 §6.3.1, §11.12.3): TSIH rules and exclusive writers. */
  private admit(conn: IscsiConnection, req: AdmitRequest): { status: number; reason?: string } {
    if (req.tsih !== 0) {
      // Adding a connection to an existing session: MaxConnections is 1.
      const s = this.sessionsByTsih.get(req.tsih);
      if (!s) return { status: LoginStatus.SessionDoesNotExist, reason: `no session with TSIH ${req.tsih}` };
      return { status: LoginStatus.TooManyConnections, reason: 'MaxConnections=1' };
    }
    const target = req.target;
    if (target?.exclusiveWriter && target.luns.some((l) => !l.readOnly)) {
      for (const other of this.conns) {
        if (other === conn || !other.holdsWritable || other.outcome?.target?.name !== target.name) continue;
        if (other.outcome.initiatorName !== req.initiatorName) {
          return { status: LoginStatus.ServiceUnavailable, reason: `disk in use by ${other.outcome.initiatorName}` };
        }
      }
    }
    return { status: LoginStatus.Success };
  }

  /**
   * The live sessions a login would replace. Session reinstatement (§6.3.5): same initiator +
   * ISID with TSIH 0 replaces the old session. An exclusive writer's own initiator also takes
   * over its older session (iPXE never logs out; the OS logs in with the iBFT's name and a new
   * ISID).
   */
  private replacedBy(conn: IscsiConnection, outcome: LoginOutcome): IscsiConnection[] {
    const out: IscsiConnection[] = [];
    for (const other of this.conns) {
      if (other === conn || other.phase === 'closed' || !other.outcome) continue;
      const sameInitiator = other.outcome.initiatorName === outcome.initiatorName;
      const sameIsid = other.outcome.isid === outcome.isid;
      const sameTarget = other.outcome.target?.name === outcome.target?.name;
      if (sameInitiator && sameTarget && (sameIsid || (outcome.target?.exclusiveWriter && other.holdsWritable))) out.push(other);
    }
    return out;
  }

  /**
   * A live session is never taken over by a login that authenticated less strongly than it did
   * (issue #13): an initiator name is no secret (it is derived from the client's name, and iPXE
   * sends it in clear), so a login without CHAP of a CHAP session's name, or a one-way CHAP login
   * against a mutual-CHAP session, is refused and the live session keeps its disk. Equal or
   * stronger logins still take over: iscsistart after switch-root logs in with the iBFT's CHAP.
   * 0x0301 SERVICE UNAVAILABLE (§11.13.5) as for a busy exclusive writer: transient, it ends
   * with the live session.
   */
  private admitSession(conn: IscsiConnection, outcome: LoginOutcome): { status: number; reason?: string } {
    if (outcome.sessionType !== 'Normal') return { status: LoginStatus.Success };
    for (const other of this.replacedBy(conn, outcome)) {
      if (authRank(other.outcome!.auth) > authRank(outcome.auth)) {
        this.warn(
          normaliseAddress(conn.socket.remoteAddress ?? ''),
          { initiator: outcome.initiatorName, auth: outcome.auth, liveAuth: other.outcome!.auth },
          'login would take over a more strongly authenticated session, refused',
        );
        return { status: LoginStatus.ServiceUnavailable, reason: `live session authenticated with ${other.outcome!.auth}, login with ${outcome.auth}` };
      }
    }
    return { status: LoginStatus.Success };
  }

  /**
   * Warns at most once per WARN_INTERVAL_MS per address and message (a flood of refused
   * connections must not hide a refused takeover); the table is bounded (WARN_ADDRESSES).
   */
  private warn(address: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.opts.clock.now();
    const key = `${address} ${msg}`;
    const last = this.warnedAt.get(key);
    if (last !== undefined && now - last < WARN_INTERVAL_MS) return;
    this.warnedAt.delete(key);
    this.warnedAt.set(key, now);
    if (this.warnedAt.size > WARN_ADDRESSES) this.warnedAt.delete(this.warnedAt.keys().next().value!);
    this.log.warn(fields, msg);
  }

  private sessionStarted(conn: IscsiConnection, outcome: LoginOutcome): number {
    // admitSession() has checked, in this same synchronous step, that each may be replaced.
    for (const other of this.replacedBy(conn, outcome)) {
      this.log.info({ initiator: outcome.initiatorName, isid: outcome.isid, old: other.tsih, auth: outcome.auth }, 'session reinstated, closing the old one');
      other.destroy();
    }
    let tsih = this.nextTsih;
    while (tsih === 0 || this.sessionsByTsih.has(tsih)) tsih = (tsih + 1) & 0xffff;
    this.nextTsih = (tsih + 1) & 0xffff || 1;
    this.sessionsByTsih.set(tsih, conn);
    this.counters.logins++;
    if (outcome.sessionType === 'Normal') {
      this.record(outcome.target, 'iscsi-login', { initiator: outcome.initiatorName, address: conn.address });
    }
    return tsih;
  }

  private sessionEnded(conn: IscsiConnection): void {
    if (conn.tsih && this.sessionsByTsih.get(conn.tsih) === conn) this.sessionsByTsih.delete(conn.tsih);
    if (conn.outcome?.sessionType === 'Normal') {
      this.record(conn.outcome.target, conn.loggedOut ? 'iscsi-logout' : 'iscsi-disconnect', {
        initiator: conn.outcome.initiatorName,
        readBytes: conn.stats.readBytes,
        writtenBytes: conn.stats.writtenBytes,
      });
    }
  }

  private record(
    target: TargetEntry | null,
    stage: 'iscsi-login' | 'iscsi-login-refused' | 'iscsi-first-read' | 'iscsi-logout' | 'iscsi-disconnect',
    detail: Record<string, string | number | boolean>,
  ): void {
    if (!this.opts.events || !target?.clientMac) return;
    try {
      this.opts.events.record({ mac: target.clientMac, stage, detail: { target: target.name, ...detail } });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'boot event not recorded');
    }
  }
}

/** "::ffff:10.0.0.5" (an IPv4 peer on a dual-stack socket) and "10.0.0.5" are one host. */
function normaliseAddress(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
