// Long file: one disk's copy-on-write write path (reservations, destaging, the order that makes
// it crash-safe); its invariants are checked more easily in one place (README.md, "Crash safety").
import { VolumeError } from './block-volume';
import { StoreError } from './errors';
import { isZero } from './io';
import type { ChunkMap } from './chunk-map';
import { ZERO_EXTENT, type Metadata } from './metadata';
import type { ReservationHolder, SegmentSpace } from './segments';

const BLOCK = 512;
/** Uncommitted new mappings that trigger a background flush (1 GiB at 64 KiB chunks). */
export const DESTAGE_ENTRIES = 16384;

/**
 * The live state of one open view (a disk, or a read-only image/snapshot), shared by all its
 * handles. The whole resolved map is in memory (chunk-map.ts, pages shared with the image's):
 * map.at(l) is 0 (reads zeros) or physical chunk+1, and map.genAt(l) the layer that owns that
 * entry. A chunk may be overwritten in place only when its gen === top (the disk's own writable
 * layer); anything else (the golden image, a snapshot's frozen layer) is copied on write. So a
 * read is one map lookup and one pread, whatever the
 * number of snapshots, and taking a snapshot is just "top := new layer" (every gen goes stale).
 *
 * Writes record new mappings in `dirty`; flush() fdatasyncs the segments, then commits `dirty`
 * in one SQLite transaction (data durable before the metadata that points at it), then releases
 * the chunks that commit freed.
 */
export class VolumeCore implements ReservationHolder {
  readonly chunkBytes: number;
  readonly chunkBlocks: number;
  readonly blockCount: number;
  /** Physical chunk + 1 (0: zeros) and owning layer of every logical chunk (chunk-map.ts). */
  readonly map: ChunkMap;
  /** Handles open on this core (any mode), and how many of them may write. */
  handles = 0;
  writers = 0;
  private dirty = new Map<number, number>();
  private volatileFrees: number[] = [];
  private cow = new Map<number, Promise<void>>();
  private inflight = 0;
  private drainWaiters: (() => void)[] = [];
  private gate: Promise<void> | null = null;
  private flushing: Promise<void> | null = null;
  /** Reads in flight, and chunks whose release waits for them (a read must never see reused space). */
  private reading = 0;
  private heldFrees: number[] = [];
  /**
   * Set by ImageStore.close(): every later call fails with CLOSED instead of touching closed fds.
   * Also set when a failed fdatasync lost data this view wrote (`failure` then says so).
   */
  closed = false;
  /** Why the view stopped after a failed fdatasync (README.md "A failed fdatasync"), or null. */
  failure: VolumeError | null = null;
  /**
   * Data writes completed, and how many of them the last successful flush covered: when they
   * differ, some acknowledged data is not proven durable yet.
   */
  private writeSeq = 0;
  private syncedSeq = 0;
  private nextFlush: Promise<void> | null = null;
  /**
   * Group reservations (SegmentSpace.reserveGroup), by logical group of `space.groupChunks`
   * chunks: the first physical chunk reserved for it (-1: none), and a mask of its slots not
   * written yet. Made on the first copy on write; read-only views never have them.
   */
  private resBase: Int32Array | null = null;
  private resFree: Uint32Array | null = null;

  constructor(
    private readonly meta: Metadata,
    private readonly space: SegmentSpace,
    /** The writable layer (a disk's top), or the layer viewed read-only. */
    public top: number,
    readonly sizeBytes: number,
    readonly writable: boolean,
    /** The view's resolved map (ImageStore builds it), this core's own to keep and change. */
    resolved: ChunkMap,
  ) {
    this.chunkBytes = space.chunkBytes;
    this.chunkBlocks = this.chunkBytes / BLOCK;
    this.blockCount = Math.floor(sizeBytes / BLOCK);
    const chunks = Math.ceil(sizeBytes / this.chunkBytes);
    if (resolved.length !== chunks) throw new Error(`resolved map has ${resolved.length} entries, the view ${chunks}`);
    this.map = resolved;
  }

  /**
   * Reads blocks [lba, lba+blocks) into `into` (exactly that long) or a fresh buffer. The common
   * case (inside one chunk, e.g. 4 KiB) is one pread with no async frame or closure array; longer
   * reads coalesce chunks adjacent on disk.
   */
  read(lba: number, blocks: number, into?: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(this.closedError());
    const len = blocks * BLOCK;
    const byte = lba * BLOCK;
    const l = Math.floor(byte / this.chunkBytes);
    const inChunk = byte - l * this.chunkBytes;
    if (inChunk + len > this.chunkBytes) return this.readSpan(lba, blocks, into);
    const out = into ?? Buffer.allocUnsafe(len);
    const v = this.map.at(l);
    if (v === 0) return Promise.resolve(out.fill(0));
    this.reading++;
    return this.space.io.read(this.space.fdOf(v - 1), out, 0, len, this.space.posOf(v - 1) + inChunk).then(
      () => {
        this.readDone();
        return out;
      },
      (err: Error) => {
        this.readDone();
        throw new VolumeError('IO', `read failed: ${err.message}`);
      },
    );
  }

  /** The error a stopped view answers with: its fdatasync failure, else CLOSED. */
  private closedError(): VolumeError {
    return this.failure ?? new VolumeError('CLOSED', 'the image store is closed');
  }

  /** A data write into physical chunk p completed: its segment needs a sync before a commit. */
  private written(p: number): void {
    this.space.markDirty(p);
    this.writeSeq++;
  }

  /**
   * An fdatasync failed (SegmentSpace.onSyncFailure): the kernel may have dropped any write not
   * yet proven durable, and a retried sync would succeed without it. When this view has such
   * writes it stops: its uncommitted entries are never committed (the durable extents keep the
   * old data), and every later read, write and flush fails with IO, so no initiator is told its
   * data is durable and none reads a dropped page back from the disk (for a fresh chunk that is
   * its previous owner's data). Returns true when it stopped. Which segment the failure hit is
   * not used: tracking the segments of each view's writes would be work on every write, and an
   * EIO from the store's one disk rarely concerns one segment alone.
   *
   * The chunks of the dropped entries stay allocated until the next open of the store (the free
   * map is rebuilt from durable extents) or check --repair: a write still in flight may land in
   * them, so handing them to another disk now could mix two disks' data.
   */
  syncFailed(reason: string): boolean {
    if (!this.writable || this.failure !== null || this.writeSeq === this.syncedSeq) return false;
    this.failure = new VolumeError(
      'IO',
      `data written since the last completed flush may be lost (${reason}); the disk fails all I/O until every handle is closed and it is opened again`,
    );
    this.closed = true;
    this.dirty.clear();
    this.volatileFrees = [];
    return true;
  }

  private readDone(): void {
    if (--this.reading === 0 && this.heldFrees.length > 0) this.space.release(this.heldFrees.splice(0));
  }

  private async readSpan(lba: number, blocks: number, into?: Buffer): Promise<Buffer> {
    const len = blocks * BLOCK;
    const out = into ?? Buffer.allocUnsafe(len);
    const cb = this.chunkBytes;
    let byte = lba * BLOCK;
    const end = byte + len;
    let o = 0;
    let runFd = -1;
    let runPos = 0;
    let runOff = 0;
    let runLen = 0;
    let first: Promise<void> | null = null;
    let more: Promise<void>[] | null = null;
    const issue = () => {
      const p = this.space.io.read(runFd, out, runOff, runLen, runPos);
      if (first === null) first = p;
      else (more ??= [first]).push(p);
      runFd = -1;
    };
    while (byte < end) {
      const l = Math.floor(byte / cb);
      const inChunk = byte - l * cb;
      const n = Math.min(cb - inChunk, end - byte);
      const v = this.map.at(l);
      if (v === 0) {
        if (runFd >= 0) issue();
        out.fill(0, o, o + n);
      } else {
        const fd = this.space.fdOf(v - 1);
        const pos = this.space.posOf(v - 1) + inChunk;
        if (runFd === fd && pos === runPos + runLen) {
          runLen += n;
        } else {
          if (runFd >= 0) issue();
          runFd = fd;
          runPos = pos;
          runOff = o;
          runLen = n;
        }
      }
      byte += n;
      o += n;
    }
    if (runFd >= 0) issue();
    if (first === null) return out;
    this.reading++;
    try {
      if (more) await Promise.all(more);
      else await first;
    } catch (err) {
      throw new VolumeError('IO', `read failed: ${(err as Error).message}`);
    } finally {
      this.readDone();
    }
    return out;
  }

  /**
   * Writes data at lba; chunks the disk owns are overwritten in place, others copied on write.
   * Fast path (no gate, inside one owned chunk, no copy in progress): one pwrite, no async frame.
   */
  write(lba: number, data: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    if (this.gate === null) {
      const byte = lba * BLOCK;
      const l = Math.floor(byte / this.chunkBytes);
      const inChunk = byte - l * this.chunkBytes;
      const v = this.map.at(l);
      if (inChunk + data.length <= this.chunkBytes && this.ownedIdle(l, v)) {
        const p = v - 1;
        this.inflight++;
        return this.space.io.write(this.space.fdOf(p), data, 0, data.length, this.space.posOf(p) + inChunk).then(
          () => {
            this.written(p);
            this.writeDone();
          },
          (err: Error) => {
            this.writeDone();
            throw new VolumeError('IO', `write failed: ${err.message}`);
          },
        );
      }
    }
    return this.writeSlow(lba, data);
  }

  private writeDone(): void {
    if (--this.inflight === 0 && this.drainWaiters.length > 0) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  private async writeSlow(lba: number, data: Buffer): Promise<void> {
    while (this.gate) await this.gate;
    this.inflight++;
    try {
      const cb = this.chunkBytes;
      let byte = lba * BLOCK;
      const end = byte + data.length;
      let o = 0;
      let single: Promise<void> | null = null;
      let many: Promise<void>[] | null = null;
      const add = (p: Promise<void>) => {
        if (single === null) single = p;
        else (many ??= [single]).push(p);
      };
      // Chunks that lie one after another in the same segment file take one pwrite: owned ones,
      // and fresh ones for whole chunks not owned yet (a group reservation puts a disk's
      // neighbouring chunks side by side): a sequential 1 MiB write is 1 call, not 16.
      let runChunk = -1;
      let runFd = -1;
      let runPos = 0;
      let runOff = 0;
      let runLen = 0;
      let fresh: number[] | null = null;
      const issueRun = () => {
        if (runChunk < 0) return;
        add(
          fresh
            ? this.writeFreshRun(runChunk, runFd, runOff, runLen, runPos, data, fresh)
            : this.writeInPlaceRun(runChunk, runFd, runOff, runLen, runPos, data),
        );
        runChunk = -1;
        fresh = null;
      };
      while (byte < end) {
        const l = Math.floor(byte / cb);
        const inChunk = byte - l * cb;
        const n = Math.min(cb - inChunk, end - byte);
        const v = this.map.at(l);
        let p = -1;
        let isFresh = false;
        if (this.ownedIdle(l, v)) {
          p = v - 1;
        } else if (n === cb && !this.copying(l) && !isZero(data, o, n)) {
          p = this.allocFor(l);
          isFresh = p >= 0;
        }
        if (p >= 0) {
          const fd = this.space.fdOf(p);
          const pos = this.space.posOf(p) + inChunk;
          if (runChunk < 0 || fd !== runFd || pos !== runPos + runLen) {
            issueRun();
            runChunk = p;
            runFd = fd;
            runPos = pos;
            runOff = o;
            runLen = 0;
          }
          runLen += n;
          if (isFresh) (fresh ??= []).push(l, p);
        } else {
          issueRun();
          add(this.writeChunkSlow(l, inChunk, data, o, n));
        }
        byte += n;
        o += n;
      }
      issueRun();
      if (many) {
        // Every part settles before the write does, failed or not: the caller may reuse `data`
        // as soon as this resolves or rejects (the iSCSI target recycles write buffers).
        const settled = await Promise.allSettled(many as Promise<void>[]);
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      } else if (single) await single;
    } catch (err) {
      throw writeError(err);
    } finally {
      this.writeDone();
    }
  }

  /**
   * One pwrite over chunks contiguous in one segment file, some of them fresh: `fresh` lists
   * (logical, physical) pairs of whole chunks this write copies on write. They are held in
   * `cow` while the write runs (other writes to them wait), and switched to their new chunk
   * only once it holds the data; on a failure they go back to the pool and the map is untouched.
   */
  private writeFreshRun(p0: number, fd: number, o: number, n: number, pos: number, data: Buffer, fresh: number[]): Promise<void> {
    const job = this.space.io.write(fd, data, o, n, pos).then(
      () => {
        this.written(p0);
        for (let i = 0; i < fresh.length; i += 2) this.setEntry(fresh[i], fresh[i + 1]);
      },
      (err: Error) => {
        const chunks: number[] = [];
        for (let i = 1; i < fresh.length; i += 2) chunks.push(fresh[i]);
        this.space.release(chunks);
        throw err;
      },
    );
    const settled = job.catch(() => {});
    for (let i = 0; i < fresh.length; i += 2) this.cow.set(fresh[i], settled);
    void settled.then(() => {
      for (let i = 0; i < fresh.length; i += 2) if (this.cow.get(fresh[i]) === settled) this.cow.delete(fresh[i]);
    });
    return job;
  }

  /**
   * A fresh chunk for logical chunk l, placed so that chunks which are neighbours on the disk are
   * neighbours in the segment file, whatever order they are first written in:
   * 1. its slot in the reservation of l's group, when that slot was never written;
   * 2. else its slot next to the chunks the group already has (written in an earlier session, or
   *    before a snapshot), when that chunk is free;
   * 3. else its slot in a whole free group reserved now (a first write to the group);
   * 4. else any free chunk. -1 when none is free without waiting (the caller awaits space.alloc()).
   */
  private allocFor(l: number): number {
    const G = this.space.groupChunks;
    if (G > 1 && this.writable) {
      const g = (l / G) | 0;
      const slot = l - g * G;
      if (this.resBase === null) {
        this.resBase = new Int32Array(Math.ceil(this.map.length / G)).fill(-1);
        this.resFree = new Uint32Array(this.resBase.length);
      }
      let base = this.resBase[g];
      if (base >= 0) {
        if ((this.resFree![g] & (1 << slot)) !== 0) {
          this.resFree![g] &= ~(1 << slot);
          this.space.useReserved();
          return base + slot;
        }
      } else {
        const home = this.homeOf(g);
        if (home >= 0) {
          if (this.space.tryTake(home + slot)) return home + slot;
        } else if ((base = this.space.reserveGroup(this)) >= 0) {
          this.resBase[g] = base;
          this.resFree![g] = (G === 32 ? 0xffffffff : (1 << G) - 1) & ~(1 << slot);
          this.space.useReserved();
          return base + slot;
        }
      }
    }
    return this.space.tryAlloc();
  }

  /** First chunk of the aligned physical group where the disk's own chunks of group g sit, or -1. */
  private homeOf(g: number): number {
    const G = this.space.groupChunks;
    const end = Math.min(this.map.length, (g + 1) * G);
    for (let l = g * G; l < end; l++) {
      const v = this.map.at(l);
      if (v === 0 || this.map.genAt(l) !== this.top) continue;
      const base = v - 1 - (l - g * G);
      if (base >= 0 && base % G === 0) return base;
    }
    return -1;
  }

  /** Gives back every reserved chunk not written yet (the volume closes, or space is short). */
  dropReservations(): void {
    const base = this.resBase;
    const free = this.resFree;
    if (base === null || free === null) return;
    const G = this.space.groupChunks;
    const back: number[] = [];
    for (let g = 0; g < base.length; g++) {
      if (base[g] < 0) continue;
      for (let k = 0; k < G; k++) if ((free[g] & (1 << k)) !== 0) back.push(base[g] + k);
      base[g] = -1;
      free[g] = 0;
    }
    this.space.unreserve(back);
    this.space.forget(this);
  }

  /** An owned chunk with no copy in progress is one pwrite; others go through writeChunkSlow. */
  private writeChunk(l: number, inChunk: number, data: Buffer, o: number, n: number): Promise<void> {
    const v = this.map.at(l);
    if (this.ownedIdle(l, v)) return this.writeInPlace(v - 1, inChunk, data, o, n);
    return this.writeChunkSlow(l, inChunk, data, o, n);
  }

  /** True when chunk l (map entry v) is the disk's own and no copy-on-write of it is running: writable in place. */
  private ownedIdle(l: number, v: number): boolean {
    return v !== 0 && this.map.genAt(l) === this.top && !this.copying(l);
  }

  /** True while a copy on write of chunk l (or a fresh run holding it) is running. */
  private copying(l: number): boolean {
    return this.cow.size !== 0 && this.cow.has(l);
  }

  /** One pwrite over owned chunks contiguous in one segment file (see writeInPlace on marking). */
  private writeInPlaceRun(p: number, fd: number, o: number, n: number, pos: number, data: Buffer): Promise<void> {
    return this.space.io.write(fd, data, o, n, pos).then(() => this.written(p));
  }

  /**
   * One pwrite into owned chunk p. The segment is marked dirty when the write has completed, not
   * before: a flush whose fdatasync ran while the write was in flight may not have covered it,
   * and the next flush (which must, the write having resolved) syncs only segments marked dirty.
   */
  private writeInPlace(p: number, inChunk: number, data: Buffer, o: number, n: number): Promise<void> {
    return this.writeInPlaceRun(p, this.space.fdOf(p), o, n, this.space.posOf(p) + inChunk, data);
  }

  private async writeChunkSlow(l: number, inChunk: number, data: Buffer, o: number, n: number): Promise<void> {
    for (;;) {
      const pending = this.cow.get(l);
      if (pending) {
        await pending.catch(() => {});
        continue;
      }
      const v = this.map.at(l);
      if (v !== 0 && this.map.genAt(l) === this.top) return this.writeInPlace(v - 1, inChunk, data, o, n);
      const job = this.copyOnWrite(l, inChunk, data, o, n);
      this.cow.set(l, job);
      try {
        await job;
      } finally {
        this.cow.delete(l);
      }
      return;
    }
  }

  /**
   * Chunk l's contents with data[o, o+n) written at inChunk, as [buffer, offset]: data itself
   * when it covers the whole chunk, else a copy of the old contents (zeros when unmapped) with
   * data merged in.
   */
  private async merged(l: number, inChunk: number, data: Buffer, o: number, n: number): Promise<[Buffer, number]> {
    const cb = this.chunkBytes;
    if (inChunk === 0 && n === cb) return [data, o];
    // A scratch buffer: the caller gives it back (doneWith) once its write settled.
    const buf = this.space.scratch();
    const old = this.map.at(l);
    if (old === 0) buf.fill(0);
    else {
      try {
        await this.space.io.read(this.space.fdOf(old - 1), buf, 0, cb, this.space.posOf(old - 1));
      } catch (err) {
        this.space.returnScratch(buf); // the read settled: nothing writes into it any more
        throw err;
      }
    }
    data.copy(buf, inChunk, o, o + n);
    return [buf, 0];
  }

  /** Gives back merged()'s scratch buffer (not the caller's data) once no I/O uses it. */
  private doneWith(buf: Buffer, data: Buffer): void {
    if (buf !== data) this.space.returnScratch(buf);
  }

  /** Gives chunk l a private copy in the top layer holding the old contents merged with data. */
  private async copyOnWrite(l: number, inChunk: number, data: Buffer, o: number, n: number): Promise<void> {
    const cb = this.chunkBytes;
    const full = inChunk === 0 && n === cb;
    // Zeros onto a chunk that reads as zeros (never written, unmapped, or zeros in the image)
    // change nothing: no chunk, no extent, no I/O. What an OS writes when it makes a file system
    // or swap on a fresh clone of a sparse image (issue #16).
    if (this.map.at(l) === 0 && isZero(data, o, n)) return;
    if (full && isZero(data, o, n)) {
      this.setEntry(l, ZERO_EXTENT);
      return;
    }
    let p = this.allocFor(l);
    if (p < 0) p = await this.space.alloc();
    try {
      const [buf, bo] = await this.merged(l, inChunk, data, o, n);
      try {
        await this.space.io.write(this.space.fdOf(p), buf, bo, cb, this.space.posOf(p));
      } finally {
        this.doneWith(buf, data);
      }
      this.written(p);
    } catch (err) {
      this.space.release([p]);
      throw err;
    }
    this.setEntry(l, p);
  }

  /**
   * Writes data at lba all or nothing (SBC-4 WRITE ATOMIC), for concurrent readers and across a
   * power cut (README.md "Atomic writes"). Every chunk the range touches gets a fresh chunk
   * holding its old contents merged with the data, written while no other write runs (the gate
   * holds new writes and waits for those in flight, so none is lost or half-merged); only once
   * every chunk write succeeded are all the entries switched, in one synchronous step, so a read
   * or a flush's commit sees all of them or none. Until the commit that records them the durable
   * extents still point at the old chunks, which nothing writes any more. On a failure the fresh
   * chunks go back to the pool and the map is untouched.
   */
  async writeAtomic(lba: number, data: Buffer): Promise<void> {
    if (this.closed) throw this.closedError();
    if (data.length === 0) return;
    await this.exclusive(async () => {
      const cb = this.chunkBytes;
      const byte = lba * BLOCK;
      const first = Math.floor(byte / cb);
      const last = Math.floor((byte + data.length - 1) / cb);
      const target: number[] = new Array<number>(last - first + 1);
      const fresh: number[] = [];
      const jobs: Promise<void>[] = [];
      for (let l = first; l <= last; l++) {
        const start = Math.max(byte, l * cb);
        const n = Math.min((l + 1) * cb, byte + data.length) - start;
        jobs.push(this.atomicChunk(l, start - l * cb, data, start - byte, n, fresh).then((p) => void (target[l - first] = p)));
      }
      // Wait for every job, failed or not: a chunk is released only once nothing writes into it.
      const settled = await Promise.allSettled(jobs);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        this.space.release(fresh);
        throw writeError(failed.reason);
      }
      if (this.closed) {
        this.space.release(fresh);
        throw this.closedError();
      }
      // The switch: no await from here to the end, so no reader, destage or flush sees half of it.
      for (let l = first; l <= last; l++) {
        const p = target[l - first];
        if (p !== ZERO_EXTENT || this.map.at(l) !== 0) this.setEntry(l, p, false);
      }
      this.destageIfFull();
    }, false);
  }

  /**
   * One chunk of an atomic write: the old contents merged with data[o, o+n) at inChunk, written
   * into a fresh chunk (recorded in `fresh` as soon as it is allocated); resolves to that chunk,
   * or ZERO_EXTENT when the result is all zeros (no space needed).
   */
  private async atomicChunk(l: number, inChunk: number, data: Buffer, o: number, n: number, fresh: number[]): Promise<number> {
    const cb = this.chunkBytes;
    // Writes are held and none is in flight (writeAtomic's gate): the old chunk is stable.
    const [buf, bo] = await this.merged(l, inChunk, data, o, n);
    try {
      if (isZero(buf, bo, cb)) return ZERO_EXTENT;
      let p = this.allocFor(l);
      if (p < 0) p = await this.space.alloc();
      fresh.push(p);
      await this.space.io.write(this.space.fdOf(p), buf, bo, cb, this.space.posOf(p));
      this.written(p);
      return p;
    } finally {
      this.doneWith(buf, data);
    }
  }

  /**
   * Points chunk l of the top layer at p (or ZERO_EXTENT), remembering it for the next commit.
   * `destage: false` when the caller switches several entries that must commit together.
   */
  private setEntry(l: number, p: number, destage = true): void {
    const old = this.map.at(l);
    // A chunk allocated since the last commit is referenced by nothing durable: it can go back
    // to the pool after that commit. A durable one is found and freed by the commit itself.
    if (old !== 0 && this.map.genAt(l) === this.top && this.dirty.get(l) === old - 1) this.volatileFrees.push(old - 1);
    this.map.set(l, p < 0 ? 0 : p + 1, this.top);
    this.dirty.set(l, p);
    if (destage) this.destageIfFull();
  }

  /**
   * An initiator that never flushes must not grow the uncommitted set without bound: destage in
   * the background, like a disk emptying its write cache. (flush() takes the dirty entries
   * synchronously, so whatever was set before this call commits together.)
   */
  private destageIfFull(): void {
    if (this.dirty.size >= DESTAGE_ENTRIES && !this.flushing) this.flush().catch(() => {});
  }

  /** Deallocates whole chunks in the range (they read as zeros); zero-fills partial edges. */
  async unmap(lba: number, blocks: number): Promise<void> {
    if (this.closed) throw this.closedError();
    await this.exclusive(async () => {
      const cb = this.chunkBytes;
      let byte = lba * BLOCK;
      const end = byte + blocks * BLOCK;
      while (byte < end) {
        const l = Math.floor(byte / cb);
        const inChunk = byte - l * cb;
        const n = Math.min(cb - inChunk, end - byte);
        const lastPartial = (l + 1) * cb > this.blockCount * BLOCK && inChunk === 0 && byte + n === this.blockCount * BLOCK;
        if ((n === cb || lastPartial) && inChunk === 0) {
          if (this.map.at(l) !== 0) this.setEntry(l, ZERO_EXTENT);
        } else if (this.map.at(l) !== 0) {
          await this.writeChunk(l, inChunk, Buffer.alloc(n), 0, n);
        }
        byte += n;
      }
    }, false);
  }

  /** Runs of mapped (allocated, non-zero) chunks, for GET LBA STATUS. */
  mapping(lba: number, blocks: number): { lba: number; blocks: number; mapped: boolean }[] {
    const out: { lba: number; blocks: number; mapped: boolean }[] = [];
    let b = lba;
    const end = lba + blocks;
    while (b < end) {
      const l = Math.floor(b / this.chunkBlocks);
      const n = Math.min((l + 1) * this.chunkBlocks, end) - b;
      const mapped = this.map.at(l) !== 0;
      const last = out[out.length - 1];
      if (last && last.mapped === mapped) last.blocks += n;
      else out.push({ lba: b, blocks: n, mapped });
      b += n;
    }
    return out;
  }

  /** Makes every write that resolved before this call durable. Concurrent calls are grouped. */
  flush(): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    if (!this.flushing) {
      this.flushing = this.runFlush().finally(() => {
        this.flushing = null;
      });
      return this.flushing;
    }
    if (!this.nextFlush) {
      this.nextFlush = this.flushing
        .catch(() => {})
        .then(() => {
          this.nextFlush = null;
          return this.flush();
        });
    }
    return this.nextFlush;
  }

  private async runFlush(): Promise<void> {
    // Writes completed before this point are covered by the sync below (their segments are in
    // the dirty set or in a sync already running); later ones may not be.
    const seq = this.writeSeq;
    const entries = [...this.dirty];
    this.dirty.clear();
    const volatile = this.volatileFrees;
    this.volatileFrees = [];
    const freed: number[] = [];
    try {
      await this.space.syncDirty();
      // Some sync failed while ours ran (ours succeeding proves nothing: the failure was told
      // to this view first, and a view that stopped commits nothing).
      if (this.failure) throw this.failure;
      if (entries.length > 0) {
        const top = this.top;
        const q = this.meta.q;
        this.meta.db.transaction(() => {
          for (const [l, p] of entries) {
            const old = q.extent.get(top, l) as { pchunk: number } | undefined;
            if (old && old.pchunk >= 0 && old.pchunk !== p) freed.push(old.pchunk);
            q.upsertExtent.run(top, l, p);
          }
        })();
      }
    } catch (err) {
      // A failed sync stopped this view (syncFailed ran before this catch): nothing to retry.
      if (this.failure) throw this.failure;
      // Put back what was not committed (newer entries win) so a later flush retries it. Only
      // a failure that lost no data gets here (a SQLite error, or a sync failure that found
      // this view with every write already durable).
      for (const [l, p] of entries) if (!this.dirty.has(l)) this.dirty.set(l, p);
      this.volatileFrees.push(...volatile);
      throw new VolumeError('IO', `flush failed: ${(err as Error).message}`);
    }
    this.syncedSeq = seq;
    this.releaseWhenUnread(freed);
    this.releaseWhenUnread(volatile);
  }

  /** Frees chunks now, or once the reads in flight (which may still be reading them) finish. */
  private releaseWhenUnread(chunks: number[]): void {
    if (chunks.length === 0) return;
    if (this.reading === 0) this.space.release(chunks);
    else this.heldFrees.push(...chunks);
  }

  /** True when writes are waiting for a flush (for status and tests). */
  get dirtyChunks(): number {
    return this.dirty.size;
  }

  /**
   * Runs fn with writes held back and none in flight, after a flush when `flushFirst`: what a
   * snapshot of a live disk needs so that the snapshot holds every write acknowledged before it.
   */
  async exclusive<T>(fn: () => T | Promise<T>, flushFirst: boolean): Promise<T> {
    while (this.gate) await this.gate;
    let open!: () => void;
    this.gate = new Promise<void>((r) => (open = r));
    try {
      if (this.inflight > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
      if (flushFirst) await this.flush();
      return await fn();
    } finally {
      this.gate = null;
      open();
    }
  }

  /** After layer `from` was merged into `into`: entries it owned now belong to `into`. */
  onMerged(from: number, into: number): void {
    this.map.replaceGen(from, into);
    if (this.top === from) this.top = into;
  }
}

/** A write's failure as the VolumeError the iSCSI layer maps to sense data. */
function writeError(err: unknown): VolumeError {
  if (err instanceof VolumeError) return err;
  if (err instanceof StoreError && err.code === 'NO_SPACE') return new VolumeError('NO_SPACE', err.message);
  return new VolumeError('IO', `write failed: ${(err as Error).message}`);
}
