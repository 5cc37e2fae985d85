/**
 * Reusable buffers for the data of large commands: a WRITE's Data-Out (and its immediate data)
 * gathered into one buffer of EDTL bytes, and a READ's Data-In. Allocating a fresh one per
 * command (1 MiB for a 1 MiB write) makes V8 account megabytes of external memory per
 * millisecond, and the garbage waits for a GC that external memory triggers only every 64 MiB:
 * measured, 12% of the target's CPU went to marking and sweeping, and RSS grew by what the GC
 * had not caught up with (issue #16: +36 MiB in a run of 1 MiB writes, +32 MiB of 1 MiB reads,
 * glibc keeping the freed memory). Buffers come in power-of-two sizes from MIN_CLASS; an idle
 * buffer is kept for reuse while the idle total stays under `maxIdleBytes`.
 *
 * Ownership: whoever acquires a buffer releases it once nothing can read or write it any more
 * (the connection: a write's when the command has executed and been answered, a read's when its
 * Data-In reached the kernel). A buffer in doubt (an aborted command, a failed read whose other
 * parts may still be landing in it) is never released, only left to the GC.
 */
export const MIN_CLASS = 64 * 1024;

export class BufferPool {
  private readonly idle = new Map<number, ArrayBuffer[]>();
  /**
   * The ArrayBuffers this pool made: only those ever come back. A small buffer comes from Node's
   * shared allocation slab (Buffer.allocUnsafe), which holds other live buffers; on Node 24 that
   * slab is 64 KiB (Buffer.poolSize), a size class of its own, so telling them apart by size and
   * offset put the slab into the pool, to be handed out whole to the next 64 KiB write
   * (issue #16, found by the fuzz test on Node 24).
   */
  private readonly mine = new WeakSet<ArrayBuffer>();
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
    // Uninitialised, as a pooled buffer is anyway (it holds the last command's data, whoever's
    // it was): every user fills the length it asked for before anything reads it. A zeroed
    // allocation (new ArrayBuffer) costs a page fault per 4 KiB under jemalloc, which zeroes a
    // large extent by handing its pages back to the kernel (issue #16: 110 faults per 1 MiB
    // read, CPU per read +50-100%).
    const fresh = Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer;
    this.mine.add(fresh);
    return Buffer.from(fresh, 0, len);
  }

  /**
   * Takes back a buffer acquire() returned, which nothing may touch afterwards. Small or foreign
   * ones are left to the GC; one beyond the idle limit is freed at once where the runtime can.
   */
  release(buf: Buffer): void {
    const ab = buf.buffer;
    const size = ab.byteLength;
    if (!(ab instanceof ArrayBuffer) || !this.mine.has(ab) || buf.byteOffset !== 0) return;
    if (this.idleBytes + size > this.maxIdleBytes) {
      // Not kept: free its memory now rather than at a GC. Nothing dropped here is garbage
      // V8 would soon collect: a buffer that went round the pool is old, and V8 collects old
      // ArrayBuffers only at a full GC, which external memory triggers every 64 MiB (a burst of
      // 1 MiB reads with their Data-In queued on the socket needs more buffers than are kept
      // idle: measured, +40 MiB RSS). Detaching the buffer (ES2024 transfer(), Node 21+) frees
      // its backing store at once; a holder that broke the ownership rule above would find it
      // empty, never reused. Older runtimes leave it to the GC.
      (ab as ArrayBuffer & { transfer?: (n: number) => ArrayBuffer }).transfer?.(0);
      return;
    }
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
