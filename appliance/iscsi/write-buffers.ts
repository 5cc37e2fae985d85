/**
 * Reusable buffers for the data of WRITE commands. A write's Data-Out is gathered into one
 * buffer of EDTL bytes; allocating a fresh one per command (1 MiB for a 1 MiB write) makes V8
 * account megabytes of external memory per millisecond, and the garbage waits for a major GC:
 * measured, 12% of the target's CPU went to marking and sweeping, and RSS grew by what the GC
 * had not caught up with. Buffers come in power-of-two sizes from MIN_CLASS; an idle buffer is
 * kept for reuse while the idle total stays under `maxIdleBytes`.
 *
 * Ownership: whoever acquires a buffer releases it once nothing can read or write it any more
 * (the connection does so when the command has executed and been answered; an aborted or
 * abandoned command's buffer is simply left to the GC).
 */
const MIN_CLASS = 64 * 1024;

export class WriteBuffers {
  private readonly idle = new Map<number, ArrayBuffer[]>();
  private idleBytes = 0;

  constructor(private readonly maxIdleBytes: number) {}

  /** A buffer of exactly `len` bytes (contents undefined). Small lengths are plain allocations. */
  acquire(len: number): Buffer {
    if (len < MIN_CLASS) return Buffer.allocUnsafe(len);
    const size = classOf(len);
    const ab = this.idle.get(size)?.pop();
    if (ab) {
      this.idleBytes -= size;
      return Buffer.from(ab, 0, len);
    }
    return Buffer.from(new ArrayBuffer(size), 0, len);
  }

  /**
   * Takes back a buffer acquire() returned, which nothing may touch afterwards. Small ones, and
   * any beyond the idle limit, are left to the GC.
   */
  release(buf: Buffer): void {
    const ab = buf.buffer;
    const size = ab.byteLength;
    if (buf.byteOffset !== 0 || size < MIN_CLASS || size !== classOf(size) || !(ab instanceof ArrayBuffer)) return;
    if (this.idleBytes + size > this.maxIdleBytes) return;
    let list = this.idle.get(size);
    if (!list) this.idle.set(size, (list = []));
    list.push(ab);
    this.idleBytes += size;
  }

  /** Bytes held idle (for tests and status). */
  get idleTotal(): number {
    return this.idleBytes;
  }
}

/** The smallest power of two ≥ len (len ≥ MIN_CLASS). */
function classOf(len: number): number {
  return 2 ** Math.ceil(Math.log2(len));
}
