import { preadFull, pwriteFull, type SegmentIo } from '../../image-store/io';

/** The sector a drive writes atomically: what a power cut may tear writes into. */
export const SECTOR = 512;

/**
 * A volatile write cache in front of the segment files: writes stay in memory (per 512-byte
 * sector) until sync(fd) writes them out. cut() is the power failure: each unsynced sector is
 * independently kept or lost (a drive destages its cache in any order, torn at sector size).
 */
export class VolatileCache implements SegmentIo {
  private pending = new Map<number, Map<number, Buffer>>();
  /** The power fails at the ioLeft-th call: that call and every later one never completes. */
  dead = false;
  readonly died: Promise<false>;
  private die!: () => void;

  constructor(private ioLeft: number) {
    this.died = new Promise<false>((r) => (this.die = () => r(false)));
  }

  private alive(): boolean {
    if (!this.dead && --this.ioLeft <= 0) {
      this.dead = true;
      this.die();
    }
    return !this.dead;
  }

  async read(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    if (!this.alive()) return new Promise(() => {});
    await preadFull(fd, buf, off, len, pos);
    const p = this.pending.get(fd);
    if (!p) return;
    for (let k = 0; k < len; k += SECTOR) p.get(pos + k)?.copy(buf, off + k);
  }

  async write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    if (!this.alive()) return new Promise(() => {});
    let p = this.pending.get(fd);
    if (!p) this.pending.set(fd, (p = new Map()));
    for (let k = 0; k < len; k += SECTOR) p.set(pos + k, Buffer.from(buf.subarray(off + k, off + k + SECTOR)));
    await new Promise((r) => setImmediate(r));
  }

  async sync(fd: number): Promise<void> {
    if (!this.alive()) return new Promise(() => {});
    const p = this.pending.get(fd);
    this.pending.delete(fd);
    if (!p) return;
    // Write contiguous sectors as one run (the test would otherwise spend its time in pwrite).
    const order = [...p.keys()].sort((a, b) => a - b);
    for (let i = 0; i < order.length; ) {
      let j = i + 1;
      while (j < order.length && order[j] === order[j - 1] + SECTOR) j++;
      await pwriteFull(fd, Buffer.concat(order.slice(i, j).map((pos) => p.get(pos)!)), 0, (j - i) * SECTOR, order[i]);
      i = j;
    }
  }

  /** Drops every unsynced sector of fd (a failed writeback: the data never reaches the disk). */
  lose(fd: number): number {
    const n = this.pending.get(fd)?.size ?? 0;
    this.pending.delete(fd);
    return n;
  }

  async cut(rnd: () => number): Promise<number> {
    let lost = 0;
    for (const [fd, p] of this.pending) {
      for (const [pos, b] of p) {
        if (rnd() < 0.5) await pwriteFull(fd, b, 0, SECTOR, pos);
        else lost++;
      }
    }
    this.pending.clear();
    return lost;
  }
}

/**
 * A volatile cache whose next fdatasync fails the way Linux fails it after a writeback error:
 * the call reports EIO and the dirty data it was to write is gone (the kernel marked the pages
 * clean), so the sync after it succeeds with nothing left to write ("fsyncgate").
 */
export class FailingSync extends VolatileCache {
  /** Syncs still to fail (each fails once, then the error is cleared). */
  failSyncs = 0;
  syncCalls = 0;

  constructor() {
    super(Infinity);
  }

  override async sync(fd: number): Promise<void> {
    this.syncCalls++;
    if (this.failSyncs > 0) {
      this.failSyncs--;
      this.lose(fd);
      await new Promise((r) => setImmediate(r));
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' });
    }
    return super.sync(fd);
  }
}
