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

/** A granted (or queued) range; give it back with RangeLock.release(). */
export interface Hold {
  readonly start: number;
  readonly end: number;
  readonly exclusive: boolean;
}

interface Entry extends Hold {
  /** Arrival-ordered intrusive list: O(1) insert and remove, no hashing on the write path. */
  prev: Entry | null;
  next: Entry | null;
  released: boolean;
  /** Settles when released; made only when someone waits for this hold. */
  done: Promise<void> | null;
  wake: (() => void) | null;
}

export class RangeLock {
  private head: Entry | null = null;
  private tail: Entry | null = null;
  private count = 0;
  private exclusiveHolds = 0;

  /** Number of holds granted or waiting (for tests and diagnostics). */
  get size(): number {
    return this.count;
  }

  /**
   * Takes [lba, lba + blocks) at once when nothing earlier conflicts; returns null otherwise
   * (the caller then awaits acquire()). The fast path for plain writes: no promise at all.
   */
  tryAcquire(lba: number, blocks: number, exclusive: boolean): Hold | null {
    if (!exclusive && this.exclusiveHolds === 0) return this.add(lba, blocks, false);
    return this.conflicts(lba, lba + Math.max(1, blocks), exclusive).length === 0 ? this.add(lba, blocks, exclusive) : null;
  }

  /** Takes [lba, lba + blocks), waiting for earlier conflicting holds to be released. */
  async acquire(lba: number, blocks: number, exclusive: boolean): Promise<Hold> {
    const before = this.conflicts(lba, lba + Math.max(1, blocks), exclusive);
    // Registered now, before waiting: later arrivals that overlap queue behind this one.
    const hold = this.add(lba, blocks, exclusive);
    if (before.length > 0) await Promise.all(before.map((h) => waitFor(h)));
    return hold;
  }

  /** Gives a hold back (a second call does nothing). */
  release(hold: Hold): void {
    const e = hold as Entry;
    if (e.released) return;
    e.released = true;
    if (e.prev) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next) e.next.prev = e.prev;
    else this.tail = e.prev;
    this.count--;
    if (e.exclusive) this.exclusiveHolds--;
    e.wake?.();
  }

  /** Runs fn while holding the range. */
  async with<T>(lba: number, blocks: number, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    const hold = await this.acquire(lba, blocks, exclusive);
    try {
      return await fn();
    } finally {
      this.release(hold);
    }
  }

  private conflicts(start: number, end: number, exclusive: boolean): Entry[] {
    const out: Entry[] = [];
    for (let h = this.head; h; h = h.next) {
      if ((exclusive || h.exclusive) && h.start < end && start < h.end) out.push(h);
    }
    return out;
  }

  private add(lba: number, blocks: number, exclusive: boolean): Entry {
    // A zero-length range still orders against its neighbours' LBA (e.g. a 0-block command).
    const e: Entry = { start: lba, end: lba + Math.max(1, blocks), exclusive, prev: this.tail, next: null, released: false, done: null, wake: null };
    if (this.tail) this.tail.next = e;
    else this.head = e;
    this.tail = e;
    this.count++;
    if (exclusive) this.exclusiveHolds++;
    return e;
  }
}

function waitFor(h: Entry): Promise<void> {
  if (h.released) return Promise.resolve();
  if (!h.done) h.done = new Promise<void>((resolve) => (h.wake = resolve));
  return h.done;
}
