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
  /** 1 = allocated (durable, in flight, or held in a reservation), 0 = free. One byte per chunk. */
  private used = new Uint8Array(0);
  /**
   * Free chunks as a stack: O(1) allocation however fragmented the space is. Fresh segments are
   * pushed highest first so sequential allocation is contiguous (reads of it coalesce); freed
   * chunks are reused first. An entry may be stale (its chunk was taken as part of a group
   * reservation): allocation skips it. `stacked` keeps every chunk in the stack at most once.
   */
  private free = new Int32Array(0);
  private stacked = new Uint8Array(0);
  private stackTop = 0;
  /** Truly free chunks (not allocated, not reserved). */
  private freeChunks = 0;
  /**
   * Groups: `groupChunks` chunks aligned in one segment file (1 MiB worth). A volume reserves a
   * whole free group for a group of its logical chunks (reserveGroup), so chunks that are
   * neighbours on the client's disk are neighbours in the file: a sequential write or read over
   * them is one pwrite/pread, whatever order the client first wrote them in.
   */
  readonly groupChunks: number;
  private groupFree = new Uint16Array(0);
  private groups = new Int32Array(0);
  private groupStacked = new Uint8Array(0);
  private groupTop = 0;
  /** Chunks held in volumes' reservations and not yet written: free for the purposes of accounting and reclaim. */
  private reserved = 0;
  private holders = new Set<ReservationHolder>();
  private growing: Promise<void> | null = null;
  private dirty = new Set<number>();
  private lastSync: Promise<unknown> = Promise.resolve();
  private lowChecks = 0;
  private lastDirty = -1;
  /** Idle scratch buffers (scratch()), at most SPARE_BYTES of them. */
  private spare: Buffer[] = [];
  /**
   * Called when an fdatasync of segment `segment` fails. Linux reports a writeback error once and
   * drops the dirty pages (they are marked clean, the data is not on the disk), so the next
   * fdatasync of the file succeeds: the caller must treat every write not yet proven durable as
   * lost, never retry its way to a commit (README.md "A failed fdatasync").
   */
  onSyncFailure: ((segment: number, err: Error) => void) | null = null;

  constructor(
    private readonly dir: string,
    private readonly meta: Metadata,
    readonly chunkBytes: number,
    readonly segmentBytes: number,
    private readonly limits: { capacityBytes?: number; reserveBytes: number; reservationBytes: number },
    /** Segment data I/O (tests substitute a volatile cache). */
    readonly io: SegmentIo = fileIo,
  ) {
    this.chunksPerSegment = segmentBytes / chunkBytes;
    const g = Math.min(MAX_GROUP_CHUNKS, Math.max(1, Math.floor(GROUP_BYTES / chunkBytes)));
    this.groupChunks = this.chunksPerSegment % g === 0 ? g : 1;
  }

  /** Opens the recorded segment files and marks every chunk a committed extent uses. */
  load(): void {
    const segs = this.meta.q.segments.all() as { id: number; bytes: number }[];
    segs.forEach((s, i) => {
      if (s.id !== i) throw new Error(`segment ids are not contiguous at ${i}`);
      this.fds.push(fs.openSync(this.file(i), 'r+'));
    });
    const used = new Uint8Array(segs.length * this.chunksPerSegment);
    for (const [p] of this.meta.q.allRealRaw.iterate() as Iterable<[number]>) {
      if (p < used.length) used[p] = 1;
    }
    this.rebuild(used);
  }

  /** Sets the used map and builds every derived structure from it (at load). */
  private rebuild(used: Uint8Array<ArrayBuffer>): void {
    const n = used.length;
    const G = this.groupChunks;
    this.used = used;
    this.free = new Int32Array(n);
    this.stacked = new Uint8Array(n);
    this.stackTop = 0;
    this.freeChunks = 0;
    for (let p = n - 1; p >= 0; p--) {
      if (used[p] === 0) {
        this.free[this.stackTop++] = p;
        this.stacked[p] = 1;
        this.freeChunks++;
      }
    }
    const ng = n / G;
    this.groupFree = new Uint16Array(ng);
    for (let p = 0; p < n; p++) if (used[p] === 0) this.groupFree[(p / G) | 0]++;
    this.groups = new Int32Array(ng);
    this.groupStacked = new Uint8Array(ng);
    this.groupTop = 0;
    for (let g = ng - 1; g >= 0; g--) {
      if (this.groupFree[g] === G) {
        this.groups[this.groupTop++] = g;
        this.groupStacked[g] = 1;
      }
    }
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

  /** Chunks holding data or being written (reservations not yet written count as free). */
  get usedChunks(): number {
    return this.used.length - this.freeChunks - this.reserved;
  }

  /** Chunks held in reservations and not yet written (for status and tests). */
  get reservedChunks(): number {
    return this.reserved;
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

  /**
   * Takes one free chunk. When none is left: waits for (or starts) a new segment; when the store
   * cannot grow, takes back the volumes' unwritten reservations; else throws NO_SPACE.
   */
  async alloc(): Promise<number> {
    let reclaimed = false;
    for (;;) {
      const p = this.tryAlloc();
      if (p >= 0) return p;
      if (this.growing) {
        await this.growing.catch(() => {});
        continue;
      }
      let failure: unknown = new StoreError('NO_SPACE', 'the image store is full');
      if (this.canGrow()) {
        try {
          await this.grow();
          continue;
        } catch (err) {
          failure = err;
        }
      }
      if (this.reserved > 0 && !reclaimed) {
        reclaimed = true;
        this.reclaim();
        continue;
      }
      throw failure;
    }
  }

  /** Synchronous allocation from existing segments; -1 when none is free. */
  tryAlloc(): number {
    while (this.stackTop > 0) {
      const p = this.free[--this.stackTop];
      this.stacked[p] = 0;
      if (this.used[p] === 0) {
        this.take(p);
        this.keepHeadroom();
        return p;
      }
    }
    return -1;
  }

  /** Takes chunk p when it is free (a volume's preferred place for a chunk); false when it is not. */
  tryTake(p: number): boolean {
    if (p < 0 || p >= this.used.length || this.used[p] !== 0) return false;
    this.take(p);
    this.keepHeadroom();
    return true;
  }

  /**
   * Keeps about a segment of zero-filled headroom so writes rarely wait for one to be made (256
   * MiB of zeros takes a while on USB flash); statfs at most once per 256 allocations. Chunks in
   * reservations do not count: while the store can grow, reservations never go short of whole
   * free groups; once it cannot, they are handed back before anyone is refused (alloc()).
   */
  private keepHeadroom(): void {
    if (this.freeChunks < this.chunksPerSegment && !this.growing && (this.lowChecks++ & 255) === 0 && this.canGrow()) {
      void this.grow().catch(() => {});
    }
  }

  private take(p: number): void {
    this.used[p] = 1;
    this.freeChunks--;
    this.groupFree[(p / this.groupChunks) | 0]--;
  }

  /** Returns chunks to the free pool. Call only once the change that freed them is durable. */
  release(chunks: Iterable<number>): void {
    const G = this.groupChunks;
    for (const p of chunks) {
      if (p >= 0 && p < this.used.length && this.used[p] === 1) {
        this.used[p] = 0;
        this.freeChunks++;
        if (this.stacked[p] === 0) {
          this.stacked[p] = 1;
          this.free[this.stackTop++] = p;
        }
        const g = (p / G) | 0;
        if (++this.groupFree[g] === G && this.groupStacked[g] === 0) {
          this.groupStacked[g] = 1;
          this.groups[this.groupTop++] = g;
        }
      }
    }
  }

  /**
   * Takes a whole free group for a volume's reservation and returns its first chunk, or -1 when
   * groups are off (chunks of 1 MiB or more), fewer than two whole groups' worth of chunks are
   * free (the last ones go to single allocations), or the unwritten reserved chunks would pass
   * `limits.reservationBytes` (reservations make the store grow: each new segment is written
   * full of zeros, on USB storage that I/O competes with the clients'). The holder writes slots
   * as it needs them (useReserved) and gives back the rest (unreserve) when it closes or
   * reclaim() asks.
   */
  reserveGroup(holder: ReservationHolder): number {
    const G = this.groupChunks;
    if (G === 1 || this.freeChunks < 2 * G) return -1;
    if ((this.reserved + G) * this.chunkBytes > this.limits.reservationBytes) return -1;
    while (this.groupTop > 0) {
      const g = this.groups[--this.groupTop];
      this.groupStacked[g] = 0;
      if (this.groupFree[g] !== G) continue;
      const base = g * G;
      for (let p = base; p < base + G; p++) this.take(p);
      this.reserved += G;
      this.holders.add(holder);
      this.keepHeadroom();
      return base;
    }
    return -1;
  }

  /** A reserved chunk is being written: it now counts as used. */
  useReserved(): void {
    this.reserved--;
  }

  /** Gives back reserved chunks that were never written. */
  unreserve(chunks: number[]): void {
    this.reserved -= chunks.length;
    this.release(chunks);
  }

  /** A holder with no reservation left. */
  forget(holder: ReservationHolder): void {
    this.holders.delete(holder);
  }

  /** Space is short: every volume gives back the reserved chunks it has not written. */
  private reclaim(): void {
    for (const h of [...this.holders]) h.dropReservations();
    this.holders.clear();
  }

  /**
   * Adds a fresh segment's chunks (all free, in whole free groups) to the free map. They go at
   * the bottom of both stacks, lowest on top, under the entries already stacked: freed chunks and
   * groups are reused first, then the new segment is handed out in order.
   */
  private addSegmentChunks(): void {
    const base = this.used.length;
    const cps = this.chunksPerSegment;
    const G = this.groupChunks;
    this.used = grownCopy(this.used, cps);
    const stacked = grownCopy(this.stacked, cps);
    stacked.fill(1, base);
    this.stacked = stacked;
    const free = new Int32Array(base + cps);
    for (let k = 0; k < cps; k++) free[k] = base + cps - 1 - k;
    free.set(this.free.subarray(0, this.stackTop), cps);
    this.free = free;
    this.stackTop += cps;
    this.freeChunks += cps;
    const g0 = base / G;
    const ng = cps / G;
    const groupFree = grownCopy(this.groupFree, ng);
    groupFree.fill(G, g0);
    this.groupFree = groupFree;
    const groupStacked = grownCopy(this.groupStacked, ng);
    groupStacked.fill(1, g0);
    this.groupStacked = groupStacked;
    const groups = new Int32Array(g0 + ng);
    for (let k = 0; k < ng; k++) groups[k] = g0 + ng - 1 - k;
    groups.set(this.groups.subarray(0, this.groupTop), ng);
    this.groups = groups;
    this.groupTop += ng;
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
      this.addSegmentChunks();
    };
    this.growing = run().finally(() => {
      this.growing = null;
      // The next time space runs low, look at once (statfs is rate-limited only while the store cannot grow).
      this.lowChecks = 0;
    });
    return this.growing;
  }

  /**
   * A chunk-sized scratch buffer (a copy on write merges a chunk's old contents with new data in
   * one). Give it back with returnScratch once no I/O uses it any more; one in doubt (an I/O
   * that may still be running) is left to the GC. Reusing them matters on a small board: a
   * clone's first 4 KiB writes each merge a whole chunk, and 64 KiB of garbage per write piles
   * up between GCs (issue #16: +27 MiB RSS over a run of them).
   */
  scratch(): Buffer {
    return this.spare.pop() ?? Buffer.allocUnsafe(this.chunkBytes);
  }

  returnScratch(b: Buffer): void {
    if (b.length === this.chunkBytes && this.spare.length * this.chunkBytes < SPARE_BYTES) this.spare.push(b);
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

  /**
   * fdatasyncs every segment written since the last call (one sync per segment per flush), one
   * after another: a sync on USB storage can take a long time, and it must never hold every
   * thread of the small I/O pool (appliance/core/io-threads.ts) while other disks wait to read.
   */
  async syncDirty(): Promise<void> {
    // A sync already running may cover data another flush relies on (it took those segments
    // off the dirty set): wait for it too, or that flush could commit before its data is durable.
    const segs = [...this.dirty];
    this.dirty.clear();
    const mine = (async () => {
      for (const s of segs) {
        try {
          await this.io.sync(this.fds[s]);
        } catch (err) {
          // Told before any flush waiting on this sync resumes, so none of them can commit.
          this.onSyncFailure?.(s, err as Error);
          throw err;
        }
      }
    })();
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

/** Idle scratch buffers kept for copy-on-write merges: a QD32 burst of 64 KiB chunks. */
const SPARE_BYTES = 2 * 1024 * 1024;

/** A copy of `a` with `extra` zeroed entries after its own. */
function grownCopy<T extends Uint8Array<ArrayBuffer> | Uint16Array<ArrayBuffer>>(a: T, extra: number): T {
  const b = new (a.constructor as new (n: number) => T)(a.length + extra);
  b.set(a);
  return b;
}

/** Bytes a reservation group covers, and the most chunks one may hold (a 32-bit slot mask). */
const GROUP_BYTES = 1 << 20;
const MAX_GROUP_CHUNKS = 32;

/** A volume that holds group reservations (VolumeCore). */
export interface ReservationHolder {
  /** Gives back every reserved chunk not yet written (SegmentSpace.unreserve). */
  dropReservations(): void;
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
