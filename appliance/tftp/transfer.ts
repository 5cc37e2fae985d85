/**
 * One read transfer's state machine (RFC 1350 with RFC 2347/2348/2349 options and RFC 7440
 * windows). No sockets: it is given the client's packets and a send function, and a Clock for
 * its single retransmission timer.
 *
 * Blocks are numbered absolutely inside (1, 2, ... past 65535) and modulo 65536 on the wire;
 * ACKs are mapped back relative to the last ACKed block, so rollover and stale ACKs from an
 * earlier lap are handled the same way.
 */
import type { Clock } from '../core/clock';
import { BlockReader, type BufferPool } from './block-reader';
import type { TftpFile } from './file-source';
import { negotiate, type NegotiationLimits } from './negotiate';
import { DecodeError, ERR, decodePacket, encodeError, encodePacket, peekAckBlock, writeDataHeader, type TftpOption } from './packet';

/** How a transfer ended: for logs, counters and boot telemetry. */
export type TransferResult =
  | { ok: true; bytes: number; ms: number; retransmits: number }
  | {
      ok: false;
      reason: string;
      /** The ERROR code we sent the client, or undefined when we sent none (it sent one, or vanished). */
      code?: number;
      /**
       * The client ended the transfer with an ERROR right after our OACK. PXE ROMs do this to
       * learn a file's size (RRQ with tsize, read the OACK, abort, request again): not a failure.
       */
      probe?: boolean;
      bytes: number;
      ms: number;
      retransmits: number;
    };

/** Everything a read transfer needs; the server provides the socket side through send. */
export interface ReadTransferOptions {
  filename: string;
  mode: string;
  options: TftpOption[];
  file: TftpFile;
  clock: Clock;
  /** Sends one datagram to the client's TID. The buffer may be reused after the client ACKs it. */
  send: (packet: Buffer) => void;
  limits: NegotiationLimits;
  /** Retransmissions of the same window (or OACK) before giving up. */
  retries: number;
  pool: BufferPool;
  onEnd: (result: TransferResult) => void;
}

/**
 * Floor of the adaptive retransmission timeout. A retransmission earlier than the configured
 * timeout costs at most one duplicate window; waiting the full timeout after a lost window tail
 * (a burst overflowing the receiver's buffer) stalls the transfer for seconds.
 */
export const MIN_RTO_MS = 50;

/** Read-ahead chunk bounds: big enough that one fs read serves a window, small enough for many transfers. */
const MIN_CHUNK = 64 * 1024;
const MAX_CHUNK = 1024 * 1024;

/** Serves one RRQ to one client TID. Call start() once, handle() per client packet, stop() to abort. */
export class ReadTransfer {
  /** Negotiated parameters (valid after start()). */
  blksize = 512;
  windowsize = 1;
  timeoutMs: number;
  retransmits = 0;

  private phase: 'new' | 'oack' | 'data' | 'ended' = 'new';
  private oack: Buffer | null = null;
  private slots: Buffer[] = [];
  private views: Buffer[] = [];
  private reader: BlockReader | null = null;
  /** Highest block ACKed by the client (0 = none, or the OACK). */
  private acked = 0;
  /** Next block to (re)send. */
  private nextToSend = 1;
  /** Highest block whose data has been read into a slot (and sent at least once). */
  private produced = 0;
  /** The last block (shorter than blksize), once read. */
  private final = Infinity;
  private bytes = 0;
  private waitingData = false;
  /** Retransmissions at the full timeout since the last progress (bounded by retries). */
  private attempts = 0;
  private deadline = 0;
  /** When the armed timer fires (it may be later than deadline after the timeout shrank). */
  private timerAt = 0;
  /**
   * Current retransmission interval. Adaptive (RFC 6298-style estimate, Karn's rule, doubling on
   * each expiry up to timeoutMs) unless the client negotiated a timeout (RFC 2349), which is then
   * used as is. Only expiries at the full timeout count against `retries`.
   */
  private rto = 0;
  private adaptive = true;
  private haveRtt = false;
  private srtt = 0;
  private rttvar = 0;
  /** The block whose ACK times the round trip (0 = the OACK); -1 when no sample is running. */
  private sampleBlock = -1;
  private sampleAt = 0;
  private cancelTimer: (() => void) | null = null;
  private readonly started: number;

  constructor(private readonly o: ReadTransferOptions) {
    this.timeoutMs = o.limits.defaultTimeoutMs;
    this.started = o.clock.now();
  }

  /** Negotiates options and sends the OACK or DATA 1 (or an ERROR and ends). */
  start(): void {
    const mode = this.o.mode.toLowerCase();
    if (mode !== 'octet' && mode !== 'netascii') {
      // RFC 1350 defines "mail", but it is obsolete and meaningless for a read.
      this.fail(ERR.illegalOperation, `transfer mode '${this.o.mode}' is not supported (use octet)`);
      return;
    }
    const n = negotiate(this.o.options, this.o.file.size, mode === 'netascii', this.o.limits);
    if (!n.ok) {
      this.fail(ERR.optionRefused, n.message); // RFC 2347: ERROR 8 terminates the transfer
      return;
    }
    this.blksize = n.blksize;
    this.windowsize = n.windowsize;
    this.timeoutMs = n.timeoutMs;
    this.rto = n.timeoutMs;
    this.adaptive = !n.oack.some((o) => o.name.toLowerCase() === 'timeout');
    // One preallocated packet per window position; a slot is refilled only after its block is ACKed.
    for (let i = 0; i < this.windowsize; i++) {
      this.slots.push(Buffer.allocUnsafe(4 + this.blksize));
      this.views.push(this.slots[i]!);
    }
    let chunk = Math.max(this.blksize, Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, this.blksize * this.windowsize)));
    if (this.o.file.size < chunk) chunk = Math.max(this.blksize, this.o.file.size);
    this.reader = new BlockReader(this.o.file, chunk, mode === 'netascii', this.o.pool, () => {
      this.waitingData = false;
      if (this.phase === 'data') this.pump();
    });
    if (n.oack.length > 0) {
      this.phase = 'oack';
      this.oack = encodePacket({ op: 'oack', options: n.oack });
      this.o.send(this.oack);
      this.startSample(0);
      this.touch();
    } else {
      this.phase = 'data';
      this.pump();
    }
  }

  /**
   * One datagram from the client's TID. Returns why it was ignored (for a debug log), or
   * undefined when it was used.
   */
  handle(packet: Buffer): string | undefined {
    if (this.phase === 'ended' || this.phase === 'new') return 'transfer not running';
    const wire = peekAckBlock(packet); // the hot path: no decode, no allocation
    if (wire >= 0) return this.onAck(wire);
    let p;
    try {
      p = decodePacket(packet);
    } catch (err) {
      if (err instanceof DecodeError) return `malformed packet: ${err.message}`;
      throw err;
    }
    if (p.op === 'error') {
      // A client ERROR ends the transfer; it is not answered (RFC 1350 section 7).
      // ERROR 8 here is the client refusing our OACK (RFC 2347).
      const probe = this.phase === 'oack';
      this.end({ ok: false, reason: `client sent ERROR ${p.code}: ${p.message}`, ...(probe ? { probe } : {}) });
      return undefined;
    }
    return `unexpected ${p.op.toUpperCase()} during a read transfer`;
  }

  /** Aborts the transfer (server shutdown): tells the client, cancels the timer, closes the file. */
  stop(reason = 'server shutting down'): void {
    if (this.phase === 'ended') return;
    this.fail(ERR.notDefined, reason);
  }

  private onAck(wire: number): string | undefined {
    if (this.phase === 'oack') {
      if (wire !== 0) return `ACK ${wire} while waiting for the OACK's ACK 0`;
      this.phase = 'data';
      this.progress(0);
      this.pump();
      return undefined;
    }
    const abs = this.acked + ((wire - (this.acked & 0xffff)) & 0xffff);
    if (abs === this.acked) {
      // A duplicate ACK must not trigger a retransmission: answering every duplicate doubles
      // the traffic for the rest of the transfer (Sorcerer's Apprentice, RFC 1123 4.2.3.1).
      return `duplicate ACK ${wire}`;
    }
    if (abs > this.produced) return `ACK ${wire} for a block not sent (stale or bogus)`;
    this.acked = abs;
    this.progress(abs);
    if (this.acked >= this.final) {
      this.end({ ok: true });
      return undefined;
    }
    // An ACK short of the last block sent means the client saw a gap (RFC 7440 section 4):
    // resend from the block after it. Otherwise carry on from where we are.
    if (this.nextToSend - 1 > this.acked || this.nextToSend <= this.acked) this.nextToSend = this.acked + 1;
    this.pump();
    return undefined;
  }

  /** Sends blocks until the window past the last ACK is full (or the data is not read yet). */
  private pump(): void {
    const limit = Math.min(this.acked + this.windowsize, this.final);
    let sent = false;
    while (this.nextToSend <= limit) {
      const b = this.nextToSend;
      const i = b % this.windowsize;
      if (b > this.produced) {
        if (this.waitingData) break;
        let len: number;
        try {
          len = this.reader!.take(this.slots[i]!, 4, this.blksize);
        } catch {
          this.fail(ERR.notDefined, 'read error on the server');
          return;
        }
        if (len < 0) {
          this.waitingData = true;
          break;
        }
        writeDataHeader(this.slots[i]!, b);
        this.views[i] = len === this.blksize ? this.slots[i]! : this.slots[i]!.subarray(0, 4 + len);
        this.produced = b;
        this.bytes += len;
        if (len < this.blksize) this.final = b;
        if (this.sampleBlock < 0) this.startSample(b);
      } else {
        this.retransmits++;
        this.sampleBlock = -1; // Karn: an ACK after a retransmission does not time the round trip
      }
      this.o.send(this.views[i]!);
      this.nextToSend = b + 1;
      sent = true;
      if (b === this.final) break;
    }
    if (sent) this.touch();
  }

  private startSample(block: number): void {
    if (!this.adaptive) return;
    this.sampleBlock = block;
    this.sampleAt = this.o.clock.now();
  }

  /** The client ACKed up to `block`: reset the retry count and update the round-trip estimate. */
  private progress(block: number): void {
    this.attempts = 0;
    if (this.sampleBlock < 0 || block < this.sampleBlock) return;
    const sample = this.o.clock.now() - this.sampleAt;
    this.sampleBlock = -1;
    if (!this.haveRtt) {
      this.srtt = sample;
      this.rttvar = sample / 2;
      this.haveRtt = true;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - sample);
      this.srtt = 0.875 * this.srtt + 0.125 * sample;
    }
    this.rto = Math.min(this.timeoutMs, Math.max(MIN_RTO_MS, this.srtt + 4 * this.rttvar));
  }

  /** Pushes the retransmission deadline out; keeps at most one timer armed (no timer churn per ACK). */
  private touch(): void {
    const now = this.o.clock.now();
    this.deadline = now + this.rto;
    if (this.cancelTimer && this.timerAt <= this.deadline) return; // it fires first and re-arms
    this.arm(now, this.rto);
  }

  private arm(now: number, ms: number): void {
    this.cancelTimer?.();
    this.timerAt = now + ms;
    this.cancelTimer = this.o.clock.setTimeout(() => this.onTimer(), ms);
  }

  private onTimer(): void {
    this.cancelTimer = null;
    if (this.phase === 'ended') return;
    const now = this.o.clock.now();
    if (now < this.deadline) {
      this.arm(now, this.deadline - now);
      return;
    }
    this.sampleBlock = -1;
    if (this.rto < this.timeoutMs) {
      this.rto = Math.min(this.timeoutMs, this.rto * 2); // early retry: back off, not counted
    } else if (++this.attempts > this.o.retries) {
      this.fail(ERR.notDefined, `timed out after ${this.o.retries} retransmissions`);
      return;
    }
    if (this.phase === 'oack') {
      this.retransmits++;
      this.o.send(this.oack!);
      this.touch();
      return;
    }
    // RFC 7440 section 4: on timeout, resend the whole unacknowledged window.
    this.nextToSend = this.acked + 1;
    this.pump();
    this.touch(); // also when nothing could be sent (waiting for the disk): keep counting attempts
  }

  private fail(code: number, message: string): void {
    this.o.send(encodeError(code, message));
    this.end({ ok: false, reason: message, code });
  }

  private end(r: { ok: true } | { ok: false; reason: string; code?: number; probe?: boolean }): void {
    if (this.phase === 'ended') return;
    this.phase = 'ended';
    this.cancelTimer?.();
    this.cancelTimer = null;
    this.reader?.close();
    this.o.file.close().catch(() => {});
    const common = { bytes: this.bytes, ms: this.o.clock.now() - this.started, retransmits: this.retransmits };
    this.o.onEnd(r.ok ? { ok: true, ...common } : { ...r, ...common });
  }
}
