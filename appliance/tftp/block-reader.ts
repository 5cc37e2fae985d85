/**
 * Sequential block source for one read transfer: reads the file in large chunks with one chunk
 * of read-ahead (so a 32 MiB file is never held whole, and one fs read serves many blocks), and
 * converts to netascii when asked (RFC 1350 / RFC 764: LF -> CR LF, CR -> CR NUL).
 * Blocks are copied out into the caller's packet buffers; chunk buffers are never handed out,
 * because they are reused for the next read.
 */
import type { TftpFile } from './file-source';

/** A bounded free list of equally sized buffers, shared by all transfers of one server. */
export class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(
    readonly size: number,
    private readonly max: number,
  ) {}
  /** A buffer of at least `size` bytes: pooled when `size` is the pool's size, fresh otherwise. */
  acquire(size: number): Buffer {
    if (size === this.size) return this.free.pop() ?? Buffer.allocUnsafe(this.size);
    return Buffer.allocUnsafe(size);
  }
  /** Returns a buffer; the caller must not touch it afterwards. */
  release(buf: Buffer): void {
    if (buf.length === this.size && this.free.length < this.max) this.free.push(buf);
  }
}

interface Chunk {
  /** The bytes to send (a view of raw, or a converted copy in netascii mode). */
  data: Buffer;
  /** The read buffer to give back once data is consumed; null when already given back. */
  raw: Buffer | null;
}

/** Netascii conversion of one chunk (each byte maps independently, so chunks convert alone). */
export function toNetascii(src: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < src.length; i++) if (src[i] === 0x0a || src[i] === 0x0d) extra++;
  if (extra === 0) return Buffer.from(src);
  const out = Buffer.allocUnsafe(src.length + extra);
  let o = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x0a) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    } else if (c === 0x0d) {
      out[o++] = 0x0d;
      out[o++] = 0x00;
    } else out[o++] = c;
  }
  return out;
}

/** Reads a file front to back and hands out blocks. */
export class BlockReader {
  private cur: Chunk | null = null;
  private curPos = 0;
  private next: Chunk | null = null;
  private readonly free: Buffer[];
  private filePos = 0;
  private reading = false;
  private eof = false;
  private closed = false;
  private failure: Error | null = null;
  private waiting = false;

  /**
   * chunkSize must be at least the block size, so a block spans at most two chunks.
   * onReady is called (asynchronously) when take() returned -1 and data has arrived since.
   */
  constructor(
    private readonly file: TftpFile,
    chunkSize: number,
    private readonly netascii: boolean,
    private readonly pool: BufferPool,
    private readonly onReady: () => void,
  ) {
    this.free = [pool.acquire(chunkSize), pool.acquire(chunkSize)];
    this.kick();
  }

  /**
   * Copies the next block (up to len bytes) into dst at off and returns its length; a length
   * below len means this was the last block. Returns -1 when the data is not read yet (onReady
   * follows). Throws the read error if the file could not be read.
   */
  take(dst: Buffer, off: number, len: number): number {
    if (this.failure) throw this.failure;
    const avail = (this.cur ? this.cur.data.length - this.curPos : 0) + (this.next ? this.next.data.length : 0);
    if (avail < len && !(this.eof && !this.reading)) {
      this.waiting = true;
      this.kick();
      return -1;
    }
    let got = 0;
    while (got < len) {
      if (!this.cur || this.curPos >= this.cur.data.length) {
        if (this.cur) this.giveBack(this.cur);
        this.cur = this.next;
        this.next = null;
        this.curPos = 0;
        if (!this.cur) break;
      }
      const n = Math.min(len - got, this.cur.data.length - this.curPos);
      this.cur.data.copy(dst, off + got, this.curPos, this.curPos + n);
      this.curPos += n;
      got += n;
    }
    this.kick();
    return got;
  }

  /** Stops reading and returns the buffers to the pool (a read in flight returns its own when done). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.cur) this.giveBack(this.cur);
    if (this.next) this.giveBack(this.next);
    this.cur = this.next = null;
    for (const b of this.free.splice(0)) this.pool.release(b);
  }

  private giveBack(chunk: Chunk): void {
    if (!chunk.raw) return;
    if (this.closed) this.pool.release(chunk.raw);
    else this.free.push(chunk.raw);
    chunk.raw = null;
  }

  /** Starts the next read when a buffer is free and nothing is queued ahead. */
  private kick(): void {
    if (this.closed || this.reading || this.eof || this.next || this.free.length === 0) return;
    const raw = this.free.pop()!;
    const length = Math.min(raw.length, this.file.size - this.filePos);
    if (length <= 0) {
      this.eof = true;
      this.free.push(raw);
      return;
    }
    this.reading = true;
    this.readInto(raw, 0, length);
  }

  /**
   * Fills raw[0..length) from the file, reading again after a short read: a chunk must hold
   * whole blocks' worth of data, or a block could span more chunks than the two we keep.
   */
  private readInto(raw: Buffer, filled: number, length: number): void {
    this.file.read(raw, filled, length - filled, this.filePos + filled).then(
      (n) => {
        if (n > 0 && filled + n < length && !this.closed) this.readInto(raw, filled + n, length);
        else this.landed(raw, filled + Math.max(0, n), n <= 0);
      },
      (err: unknown) => this.landed(raw, filled, false, err instanceof Error ? err : new Error(String(err))),
    );
  }

  private landed(raw: Buffer, n: number, hitEnd: boolean, err?: Error): void {
    this.reading = false;
    if (this.closed) {
      this.pool.release(raw);
      return;
    }
    if (err) {
      this.failure = err;
      this.free.push(raw);
    } else if (n <= 0) {
      this.eof = true; // the file shrank since it was opened: end the transfer here
      this.free.push(raw);
    } else {
      this.filePos += n;
      // A read that returned 0 before the expected size: the file shrank; end after this chunk.
      if (this.filePos >= this.file.size || hitEnd) this.eof = true;
      const view = raw.subarray(0, n);
      if (this.netascii) {
        this.next = { data: toNetascii(view), raw: null };
        this.free.push(raw);
      } else {
        this.next = { data: view, raw };
      }
      if (!this.cur || this.curPos >= this.cur.data.length) {
        if (this.cur) this.giveBack(this.cur);
        this.cur = this.next;
        this.next = null;
        this.curPos = 0;
        this.kick();
      }
    }
    if (this.waiting) {
      this.waiting = false;
      this.onReady();
    }
  }
}
