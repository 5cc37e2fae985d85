/**
 * The TFTP service: one listening UDP socket for requests, and per RFC 1350 section 4 a fresh
 * ephemeral socket (the server's TID) for each transfer. Read-only: WRQ is refused with ERROR 2.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import { isIPv4, type AddressInfo } from 'node:net';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { BootEventSink, BootEvent } from '../core/model';
import { bindError, type Service, type ServiceStatus, type ServiceState } from '../core/service';
import { BufferPool } from './block-reader';
import { isRefusal, type FileSource } from './file-source';
import { MAX_BLKSIZE } from './negotiate';
import { DecodeError, ERR, decodePacket, encodeError, type RrqPacket } from './packet';
import { ReadTransfer, type TransferResult } from './transfer';

/** Constructor arguments; the integrator builds them from config.tftp and config.boot. */
export interface TftpServerOptions {
  host: string;
  port: number;
  files: FileSource;
  clock: Clock;
  log: Logger;
  /** Retransmission timeout when the client does not negotiate one (RFC 2349), seconds. */
  timeoutSeconds: number;
  /** Retransmissions without progress before a transfer is abandoned. */
  retries: number;
  /** Concurrent transfers; requests beyond it get ERROR 0 "server busy". */
  maxTransfers: number;
  /** Boot telemetry (tftp-start / tftp-done / tftp-error), recorded when the client's MAC is known. */
  events?: BootEventSink;
  /** The client's MAC for an IPv4 address (the DHCP service knows it; TFTP packets do not carry it). */
  macForAddress?: (ip: string) => string | undefined;
  /** Upper bound for negotiated blksize (default 65464, RFC 2348's maximum). */
  maxBlksize?: number;
  /** Upper bound for negotiated windowsize (default 64). */
  maxWindowsize?: number;
  /** Upper bound for windowsize x blksize (default 64 KiB; see NegotiationLimits). */
  maxWindowBytes?: number;
}

interface Active {
  transfer: ReadTransfer | null;
  socket: dgram.Socket | null;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * A UDP socket whose sends skip Node's per-send DNS lookup step for IP literals (all our
 * destinations are): the default lookup defers every send by a tick, which costs throughput in
 * lock-step. Names (a tftp.host such as "localhost") still go through dns.lookup.
 */
function udpSocket(): dgram.Socket {
  let literal = ''; // the last address seen to be an IPv4 literal: a transfer sends to one address
  return dgram.createSocket({
    type: 'udp4',
    lookup: (address: string, _family: unknown, cb: LookupCallback) => {
      if (address === literal) cb(null, address, 4);
      else if (isIPv4(address)) cb(null, (literal = address), 4);
      else dns.lookup(address, 4, cb);
    },
  } as dgram.SocketOptions);
}

/** The TFTP Service. */
export class TftpServer implements Service {
  readonly name = 'tftp';
  private socket: dgram.Socket | null = null;
  private state: ServiceState = 'stopped';
  private listen: string[] = [];
  private readonly active = new Map<string, Active>();
  private readonly pool = new BufferPool(64 * 1024, 64);
  private readonly counters = { requests: 0, transfers: 0, bytes: 0, errors: 0, retransmits: 0 };
  private readonly log: Logger;
  /** Rate limit for the "too many transfers" warning: a boot storm must not flood the journal. */
  private busyWarnedAt = -Infinity;
  private busySuppressed = 0;

  constructor(private readonly o: TftpServerOptions) {
    this.log = o.log;
  }

  /** The bound port (useful with port 0 in tests); 0 before start(). */
  get port(): number {
    return this.socket ? (this.socket.address() as AddressInfo).port : 0;
  }

  async start(): Promise<void> {
    this.state = 'starting';
    const sock = udpSocket();
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind({ address: this.o.host, port: this.o.port, exclusive: true }, () => {
          sock.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      sock.close();
      this.state = 'failed';
      throw bindError('udp', this.o.host, this.o.port, err);
    }
    sock.on('error', (err) => this.log.error({ err }, 'tftp listening socket error'));
    sock.on('message', (msg, rinfo) => this.onRequest(msg, rinfo));
    this.socket = sock;
    this.listen = [`udp ${this.o.host}:${this.port}`];
    this.state = 'running';
    this.log.info({ host: this.o.host, port: this.port }, 'tftp listening');
  }

  async stop(): Promise<void> {
    this.state = 'stopping';
    const sock = this.socket;
    this.socket = null;
    if (sock) await new Promise<void>((resolve) => sock.close(() => resolve()));
    for (const a of [...this.active.values()]) a.transfer?.stop();
    // Transfers still resolving their file are dropped when the lookup returns (state check).
    // Let the transfer sockets send their ERROR and close (finished() closes on the next turn).
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.state = 'stopped';
  }

  status(): ServiceStatus {
    return {
      state: this.state,
      listen: this.listen,
      counters: { ...this.counters },
      gauges: { activeTransfers: this.active.size },
    };
  }

  private record(ip: string, stage: BootEvent['stage'], detail: BootEvent['detail']): void {
    if (!this.o.events || !this.o.macForAddress) return;
    const mac = this.o.macForAddress(ip);
    if (mac) this.o.events.record({ mac, stage, detail });
  }

  private refuse(rinfo: dgram.RemoteInfo, file: string, code: number, message: string): void {
    this.counters.errors++;
    this.socket?.send(encodeError(code, message), rinfo.port, rinfo.address);
    this.record(rinfo.address, 'tftp-error', { file, code, reason: message });
  }

  private onRequest(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let p;
    try {
      p = decodePacket(msg);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.log.debug({ ip: rinfo.address, port: rinfo.port, reason: err.message }, 'malformed request dropped');
      return;
    }
    if (p.op === 'wrq') {
      this.counters.requests++;
      this.log.info({ ip: rinfo.address, file: p.filename }, 'write request refused');
      this.refuse(rinfo, p.filename, ERR.accessViolation, 'this server is read-only: write requests are refused');
      return;
    }
    if (p.op !== 'rrq') {
      // Not a request: a stray packet for a finished transfer, or noise. Answering would let
      // anyone make us send packets at a spoofed address, so drop it.
      this.log.debug({ ip: rinfo.address, port: rinfo.port, op: p.op }, 'non-request on the listening port dropped');
      return;
    }
    this.counters.requests++;
    const key = `${rinfo.address}:${rinfo.port}`;
    if (this.active.has(key)) {
      // The client resent its RRQ because our first reply was slow or lost; the transfer's own
      // timer retransmits, so a second transfer to the same TID would only confuse the client.
      this.log.debug({ ip: rinfo.address, port: rinfo.port, file: p.filename }, 'duplicate request dropped');
      return;
    }
    if (this.active.size >= this.o.maxTransfers) {
      const now = this.o.clock.now();
      if (now - this.busyWarnedAt >= 10_000) {
        this.log.warn(
          { ip: rinfo.address, file: p.filename, active: this.active.size, suppressed: this.busySuppressed },
          'request refused: too many transfers',
        );
        this.busyWarnedAt = now;
        this.busySuppressed = 0;
      } else this.busySuppressed++;
      this.refuse(rinfo, p.filename, ERR.notDefined, 'server busy: too many transfers, retry later');
      return;
    }
    const slot: Active = { transfer: null, socket: null };
    this.active.set(key, slot);
    void this.begin(key, slot, p, rinfo);
  }

  private async begin(key: string, slot: Active, req: RrqPacket, rinfo: dgram.RemoteInfo): Promise<void> {
    const ip = rinfo.address;
    const file = req.filename;
    let resolved;
    try {
      resolved = await this.o.files.resolve(file, { address: ip });
    } catch (err) {
      this.log.error({ err, ip, file }, 'file lookup failed');
      resolved = { refused: 'accessViolation' as const, message: 'server error looking up the file' };
    }
    if (this.state !== 'running') {
      this.active.delete(key);
      if (!isRefusal(resolved)) await resolved.close().catch(() => {});
      return;
    }
    if (isRefusal(resolved)) {
      this.active.delete(key);
      this.log.info({ ip, file, reason: resolved.message }, 'request refused');
      this.refuse(rinfo, file, resolved.refused === 'notFound' ? ERR.fileNotFound : ERR.accessViolation, resolved.message);
      return;
    }
    const sock = udpSocket();
    slot.socket = sock;
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        // Bind to the listening address so replies leave from the address the client asked
        // (with 0.0.0.0 the kernel picks the route's source address, right on a single-homed box).
        sock.bind({ address: this.o.host, port: 0 }, () => {
          sock.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      this.active.delete(key);
      sock.close();
      await resolved.close().catch(() => {});
      this.log.error({ err, ip, file }, 'cannot open a transfer socket');
      this.refuse(rinfo, file, ERR.notDefined, 'server error: no transfer socket');
      return;
    }
    if (this.state !== 'running') {
      // stop() ran while the socket was being bound.
      this.active.delete(key);
      sock.close();
      await resolved.close().catch(() => {});
      return;
    }
    const log = this.log.child({ ip, port: rinfo.port, file });
    const transfer = new ReadTransfer({
      filename: file,
      mode: req.mode,
      options: req.options,
      file: resolved,
      clock: this.o.clock,
      send: (buf) => sock.send(buf, rinfo.port, ip),
      limits: {
        maxBlksize: this.o.maxBlksize ?? MAX_BLKSIZE,
        maxWindowsize: this.o.maxWindowsize ?? 64,
        maxWindowBytes: this.o.maxWindowBytes ?? 64 * 1024,
        defaultTimeoutMs: this.o.timeoutSeconds * 1000,
      },
      retries: this.o.retries,
      pool: this.pool,
      onEnd: (r) => this.finished(key, sock, log, ip, file, r),
    });
    slot.transfer = transfer;
    sock.on('error', (err) => {
      log.warn({ err }, 'transfer socket error');
      transfer.stop('server socket error');
    });
    sock.on('message', (msg, from) => {
      if (from.port !== rinfo.port || from.address !== ip) {
        // RFC 1350 section 4: a packet from another TID gets ERROR 5 and the transfer goes on.
        log.debug({ from: `${from.address}:${from.port}` }, 'packet from unknown TID');
        sock.send(encodeError(ERR.unknownTid, 'unknown transfer ID'), from.port, from.address);
        return;
      }
      const why = transfer.handle(msg);
      if (why !== undefined) log.debug({ reason: why }, 'client packet ignored');
    });
    this.counters.transfers++;
    this.record(ip, 'tftp-start', { file, size: resolved.size });
    transfer.start();
    if (slot.transfer === transfer && this.active.has(key)) {
      log.debug({ blksize: transfer.blksize, windowsize: transfer.windowsize, timeoutMs: transfer.timeoutMs, size: resolved.size }, 'transfer started');
    }
  }

  private finished(key: string, sock: dgram.Socket, log: Logger, ip: string, file: string, r: TransferResult): void {
    this.active.delete(key);
    this.counters.bytes += r.bytes;
    this.counters.retransmits += r.retransmits;
    // Close after the final datagrams (an ERROR) have left: send() is queued on the socket.
    setImmediate(() => sock.close());
    if (r.ok) {
      log.info({ bytes: r.bytes, ms: r.ms, retransmits: r.retransmits }, 'transfer done');
      this.record(ip, 'tftp-done', { file, bytes: r.bytes, ms: r.ms });
    } else if (r.probe) {
      log.debug({ reason: r.reason }, 'client aborted after the OACK (size probe)');
    } else {
      this.counters.errors++;
      log.info({ reason: r.reason, code: r.code, bytes: r.bytes, ms: r.ms, retransmits: r.retransmits }, 'transfer failed');
      this.record(ip, 'tftp-error', { file, reason: r.reason, bytes: r.bytes });
    }
  }
}
