/**
 * Block-range locks for one logical unit, shared by every session that reaches it.
 *
 * COMPARE AND WRITE must read, compare and write "as an uninterrupted series of actions"
 * (SBC-3 §5.2): no other write to those LBAs may land between its read and its write, from
 * this session or another path to the same LU (VMware ATS heartbeats race on exactly that).
 * So every command that changes the medium holds its range while it runs: plain writes
 * hold it shared (they may overlap each other, as SCSI allows), COMPARE AND WRITE, ORWRITE
 * and SANITIZE hold it exclusive. Reads take no lock: a read racing an exclusive holder
 * sees the medium before or after its one write, both of which are valid orders.
 *
 * Fairness: requests are granted in arrival order among those that conflict (a waiting
 * exclusive request holds back later overlapping writes), so nothing starves, and a request
 * only ever waits for earlier ones, so there is no deadlock. A command must take one range
 * (the envelope of everything it writes), never two in turn.
 */

/** Gives the range back; call exactly once. */
export type Release = () => void;

interface Hold {
  start: number;
  end: number;
  exclusive: boolean;
  /** Settles when released; made only when someone waits for this hold. */
  done: Promise<void> | null;
  wake: (() => void) | null;
}

export class RangeLock {
  private readonly holds = new Set<Hold>();
  private exclusiveHolds = 0;

  /** Number of holds granted or waiting (for tests and diagnostics). */
  get size(): number {
    return this.holds.size;
  }

  /**
   * Takes [lba, lba + blocks) at once when nothing earlier conflicts; returns null otherwise
   * (the caller then awaits acquire()). The fast path for plain writes: no promise at all.
   */
  tryAcquire(lba: number, blocks: number, exclusive: boolean): Release | null {
    if (!exclusive && this.exclusiveHolds === 0) return this.add(lba, blocks, false);
    return this.conflicts(lba, lba + blocks, exclusive).length === 0 ? this.add(lba, blocks, exclusive) : null;
  }

  /** Takes [lba, lba + blocks), waiting for earlier conflicting holds to be released. */
  async acquire(lba: number, blocks: number, exclusive: boolean): Promise<Release> {
    const before = this.conflicts(lba, lba + blocks, exclusive);
    // Registered now, before waiting: later arrivals that overlap queue behind this one.
    const release = this.add(lba, blocks, exclusive);
    if (before.length > 0) await Promise.all(before.map((h) => waitFor(h)));
    return release;
  }

  /** Runs fn while holding the range. */
  async with<T>(lba: number, blocks: number, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(lba, blocks, exclusive);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private conflicts(start: number, end: number, exclusive: boolean): Hold[] {
    const out: Hold[] = [];
    for (const h of this.holds) {
      if ((exclusive || h.exclusive) && h.start < end && start < h.end) out.push(h);
    }
    return out;
  }

  private add(lba: number, blocks: number, exclusive: boolean): Release {
    // A zero-length range still orders against its neighbours' LBA (e.g. a 0-block command).
    const h: Hold = { start: lba, end: lba + Math.max(1, blocks), exclusive, done: null, wake: null };
    this.holds.add(h);
    if (exclusive) this.exclusiveHolds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds.delete(h);
      if (h.exclusive) this.exclusiveHolds--;
      h.wake?.();
    };
  }
}

function waitFor(h: Hold): Promise<void> {
  if (!h.done) h.done = new Promise<void>((resolve) => (h.wake = resolve));
  return h.done;
}
