import fs from 'node:fs';
import path from 'node:path';
import type { Metadata } from './metadata';
import { StoreError } from './errors';
import { fileIo, type SegmentIo } from './io';

/**
 * Physical space: fixed-size segment files (seg-000000.dat ...) made of chunks, each written in
 * full with zeros when created, so the layout needs no sparse files, holes, fallocate or files
 * over 4 GiB (works on exFAT and FAT32). Physical chunk p lives in segment
 * floor(p / chunksPerSegment) at byte (p % chunksPerSegment) * chunkBytes.
 *
 * The free map is in memory, rebuilt at open from the durable extents: a chunk is free when no
 * committed extent points at it and no in-memory volume holds it. Chunks freed by a metadata
 * change return through release(), which callers invoke only after that change is committed.
 */
export class SegmentSpace {
  readonly chunksPerSegment: number;
  private fds: number[] = [];
  /** 1 = allocated (durable or in flight), 0 = free. One byte per chunk. */
  private used = new Uint8Array(0);
  /**
   * Free chunks as a stack: O(1) allocation however fragmented the space is. Fresh segments are
   * pushed highest first so sequential allocation is contiguous (reads of it coalesce); freed
   * chunks are reused first.
   */
  private free = new Int32Array(0);
  private freeCount = 0;
  private growing: Promise<void> | null = null;
  private dirty = new Set<number>();
  private lastSync: Promise<unknown> = Promise.resolve();
  private lowChecks = 0;
  private lastDirty = -1;

  constructor(
    private readonly dir: string,
    private readonly meta: Metadata,
    readonly chunkBytes: number,
    readonly segmentBytes: number,
    private readonly limits: { capacityBytes?: number; reserveBytes: number },
    /** Segment data I/O (tests substitute a volatile cache). */
    readonly io: SegmentIo = fileIo,
  ) {
    this.chunksPerSegment = segmentBytes / chunkBytes;
  }

  /** Opens the recorded segment files and marks every chunk a committed extent uses. */
  load(): void {
    const segs = this.meta.q.segments.all() as { id: number; bytes: number }[];
    segs.forEach((s, i) => {
      if (s.id !== i) throw new Error(`segment ids are not contiguous at ${i}`);
      this.fds.push(fs.openSync(this.file(i), 'r+'));
    });
    this.used = new Uint8Array(segs.length * this.chunksPerSegment);
    for (const [p] of this.meta.q.allRealRaw.iterate() as Iterable<[number]>) {
      if (p < this.used.length) this.used[p] = 1;
    }
    this.free = new Int32Array(this.used.length);
    this.freeCount = 0;
    for (let p = this.used.length - 1; p >= 0; p--) if (this.used[p] === 0) this.free[this.freeCount++] = p;
  }

  /** Path of segment i. */
  file(i: number): string {
    return path.join(this.dir, `seg-${String(i).padStart(6, '0')}.dat`);
  }

  get segmentCount(): number {
    return this.fds.length;
  }

  get totalChunks(): number {
    return this.used.length;
  }

  get usedChunks(): number {
    return this.used.length - this.freeCount;
  }

  /** Bytes the store may grow to: the capacity limit, or what the filesystem has above the reserve. */
  capacityBytes(): number {
    const have = this.fds.length * this.segmentBytes;
    let cap = Number.MAX_SAFE_INTEGER;
    if (this.limits.capacityBytes !== undefined) cap = Math.floor(this.limits.capacityBytes / this.segmentBytes) * this.segmentBytes;
    try {
      const st = fs.statfsSync(this.dir);
      const avail = st.bavail * st.bsize - this.limits.reserveBytes;
      const grow = Math.max(0, Math.floor(avail / this.segmentBytes)) * this.segmentBytes;
      cap = Math.min(cap, have + grow);
    } catch {
      /* statfs unsupported: trust the capacity limit alone */
    }
    return Math.max(cap, have);
  }

  /** Takes one free chunk; grows by a segment when none is left; throws NO_SPACE when it cannot. */
  async alloc(): Promise<number> {
    for (;;) {
      const p = this.tryAlloc();
      if (p >= 0) {
        // Keep about a segment of zero-filled headroom so writes rarely wait for one to be made
        // (256 MiB of zeros takes a while on USB flash); statfs at most once per 256 allocations.
        if (this.freeCount < this.chunksPerSegment && !this.growing && (this.lowChecks++ & 255) === 0 && this.canGrow()) {
          void this.grow().catch(() => {});
        }
        return p;
      }
      if (this.growing) {
        await this.growing;
        continue;
      }
      if (!this.canGrow()) throw new StoreError('NO_SPACE', 'the image store is full');
      await this.grow();
    }
  }

  /** Synchronous allocation from existing segments; -1 when none is free. */
  tryAlloc(): number {
    while (this.freeCount > 0) {
      const p = this.free[--this.freeCount];
      if (this.used[p] === 0) {
        this.used[p] = 1;
        return p;
      }
    }
    return -1;
  }

  /** Returns chunks to the free pool. Call only once the change that freed them is durable. */
  release(chunks: Iterable<number>): void {
    for (const p of chunks) {
      if (p >= 0 && p < this.used.length && this.used[p] === 1) {
        this.used[p] = 0;
        this.free[this.freeCount++] = p;
      }
    }
  }

  /** Index of the segment being created right now (its file exists but is not recorded yet), or -1. */
  get growingIndex(): number {
    return this.growing ? this.fds.length : -1;
  }

  /** Waits for a segment being created (close() uses it; the growth is harmless either way). */
  async idle(): Promise<void> {
    await this.growing?.catch(() => {});
  }

  private canGrow(): boolean {
    return (this.fds.length + 1) * this.segmentBytes <= this.capacityBytes();
  }

  /**
   * Adds a segment: write it full of zeros, fsync the file and the directory, and only then
   * record it in the metadata, so no committed extent ever points into space that might not
   * exist after a power cut.
   */
  grow(): Promise<void> {
    if (this.growing) return this.growing;
    const run = async () => {
      const i = this.fds.length;
      const file = this.file(i);
      const fh = await fs.promises.open(file, 'w+');
      try {
        const zero = Buffer.alloc(Math.min(this.segmentBytes, 4 << 20));
        for (let off = 0; off < this.segmentBytes; off += zero.length) {
          await fh.write(zero, 0, Math.min(zero.length, this.segmentBytes - off), off);
        }
        await fh.sync();
      } catch (err) {
        await fh.close();
        await fs.promises.rm(file, { force: true });
        throw (err as NodeJS.ErrnoException).code === 'ENOSPC' ? new StoreError('NO_SPACE', 'the filesystem is full') : err;
      }
      await fh.close();
      syncDir(this.dir);
      this.meta.q.addSegment.run(i, this.segmentBytes);
      this.fds.push(fs.openSync(file, 'r+'));
      const base = this.used.length;
      const grown = new Uint8Array(base + this.chunksPerSegment);
      grown.set(this.used);
      this.used = grown;
      const stack = new Int32Array(grown.length);
      // New chunks go under the existing free ones (freed chunks are reused first), lowest on top.
      for (let k = this.chunksPerSegment - 1; k >= 0; k--) stack[this.chunksPerSegment - 1 - k] = base + k;
      stack.set(this.free.subarray(0, this.freeCount), this.chunksPerSegment);
      this.free = stack;
      this.freeCount += this.chunksPerSegment;
    };
    this.growing = run().finally(() => {
      this.growing = null;
    });
    return this.growing;
  }

  /** fd and byte position of physical chunk p, plus an offset inside it. */
  fdOf(p: number): number {
    return this.fds[Math.floor(p / this.chunksPerSegment)];
  }

  posOf(p: number): number {
    return (p % this.chunksPerSegment) * this.chunkBytes;
  }

  /** Notes that a segment was written since the last sync. */
  markDirty(p: number): void {
    const seg = Math.floor(p / this.chunksPerSegment);
    if (seg !== this.lastDirty || !this.dirty.has(seg)) {
      this.dirty.add(seg);
      this.lastDirty = seg;
    }
  }

  /** fdatasyncs every segment written since the last call (one sync per segment per flush). */
  async syncDirty(): Promise<void> {
    // A sync already running may cover data another flush relies on (it took those segments
    // off the dirty set): wait for it too, or that flush could commit before its data is durable.
    const segs = [...this.dirty];
    this.dirty.clear();
    const mine = Promise.all(segs.map((s) => this.io.sync(this.fds[s])));
    const all = Promise.all([this.lastSync, mine]);
    this.lastSync = all.catch(() => {});
    try {
      await all;
    } catch (err) {
      for (const s of segs) this.dirty.add(s);
      throw err;
    }
  }

  /** Whether physical chunk p is allocated in memory (for check). */
  isUsed(p: number): boolean {
    return this.used[p] === 1;
  }

  close(): void {
    for (const fd of this.fds) fs.closeSync(fd);
    this.fds = [];
  }
}

/** fsyncs a directory so a newly created file's entry survives a power cut (no-op where unsupported). */
export function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* exFAT/FAT via some drivers refuse fsync on directories; the file fsync is what matters there */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
