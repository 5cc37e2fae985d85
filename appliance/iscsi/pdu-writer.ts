/**
 * The write side of a connection, the framer's counterpart (issue #18, step 3): PDUs produced
 * during one turn of the event loop are gathered and handed to the socket together after the poll
 * phase (setImmediate). Small batches are joined into one buffer (one socket.write, one syscall,
 * far less stream bookkeeping than a write per header and payload); large ones go out corked as a
 * single writev without copying. Header and data digests (CRC32C) are appended when negotiated,
 * the data segment padded to 4 bytes (RFC 7143 §11.2).
 *
 * Buffer ownership (appliance/iscsi/README.md, "Buffers"): a pooled Data-In buffer handed to
 * releaseAfterWrite() goes back to the pool only once the batch holding it was written without
 * error; a destroyed socket may still hold what it was given, so its buffers go to the GC.
 */
import type { Socket } from 'node:net';
import { BHS_LENGTH } from './constants';
import { crc32c } from './crc32c';
import { padded } from './pdu';

/** Output batches up to this size are joined into one buffer before the socket sees them. */
const SMALL_BATCH = 64 * 1024;
const PAD: Buffer[] = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)];

export interface PduWriterHost {
  /** Counts bytes written and PDUs queued (the server's counters). */
  countBytes(n: number): void;
  countPdu(): void;
  /** Gives a pooled buffer back. */
  release(b: Buffer): void;
  /** A batch reached the kernel: commands waiting for output room may start. */
  taken(): void;
  /** After each batch was handed to the socket (input throttling looks at the backlog). */
  flushed(): void;
  /** The digests in force now (none during login). */
  digests(): { header: boolean; data: boolean } | null;
}

export class PduWriter {
  private queue: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  private toRelease: Buffer[] = [];

  constructor(
    private readonly socket: Socket,
    private readonly host: PduWriterHost,
  ) {}

  /** Bytes queued and not yet handed to the socket. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /** A pooled buffer queued in this batch: released once the batch is written. */
  releaseAfterWrite(b: Buffer): void {
    this.toRelease.push(b);
  }

  /**
   * Queues one PDU: its header (digest appended when negotiated; written into `slab` at
   * `slabOff` when the caller reserved room there, else into a fresh buffer) and its padded data.
   */
  send(header: Buffer, data: Buffer | null, slab: Buffer | null = null, slabOff = 0): void {
    if (this.socket.destroyed) return;
    const d = this.host.digests();
    this.host.countPdu();
    if (d?.header) {
      let hd: Buffer;
      if (slab) {
        hd = slab.subarray(slabOff, slabOff + BHS_LENGTH + 4);
      } else {
        hd = Buffer.allocUnsafe(BHS_LENGTH + 4);
        header.copy(hd, 0);
      }
      hd.writeUInt32LE(crc32c(header), BHS_LENGTH);
      this.push(hd);
    } else {
      this.push(header);
    }
    if (!data || data.length === 0) return;
    this.push(data);
    const pad = padded(data.length) - data.length;
    if (pad) this.push(PAD[pad]);
    if (d?.data) {
      let crc = crc32c(data);
      if (pad) crc = crc32c(PAD[pad], crc);
      const dd = Buffer.allocUnsafe(4);
      dd.writeUInt32LE(crc, 0);
      this.push(dd);
    }
  }

  private push(b: Buffer): void {
    this.queue.push(b);
    this.bytes += b.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Hands the queued batch to the socket now. */
  readonly flush = (): void => {
    this.scheduled = false;
    const q = this.queue;
    const n = this.bytes;
    const release = this.toRelease;
    this.queue = [];
    this.bytes = 0;
    if (release.length > 0) this.toRelease = [];
    if (q.length === 0 || this.socket.destroyed) return;
    this.host.countBytes(n);
    // The last write's callback runs once the batch reached the kernel (writes complete in
    // order): commands waiting for Data-In room may start then, without waiting for the whole
    // buffer to drain, and the batch's pooled Data-In buffers go back (not after a failed write).
    const taken =
      release.length === 0
        ? this.host.taken
        : (err?: Error | null) => {
            if (!err) for (const b of release) this.host.release(b);
            this.host.taken();
          };
    if (q.length === 1) {
      this.socket.write(q[0], taken);
    } else if (n <= SMALL_BATCH) {
      this.socket.write(Buffer.concat(q, n), taken);
    } else {
      this.socket.cork();
      for (let i = 0; i < q.length - 1; i++) this.socket.write(q[i]);
      this.socket.write(q[q.length - 1], taken);
      this.socket.uncork();
    }
    this.host.flushed();
  };
}
