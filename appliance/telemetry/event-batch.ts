/**
 * Boot events from every service (DHCP, TFTP, iSCSI, the boot script route, the GRUB road),
 * written after the replies are on the wire, in batches (issue #18: one place, not the DHCP
 * service's alone). The composition root puts one EventBatch in front of the BootEventStore and
 * flushes it at shutdown.
 *
 * The appliance's sink (BootEventStore) inserts into SQLite, and each insert was its own commit
 * (an fsync with synchronous=FULL): recorded inside the responder, two of them stood between a
 * DISCOVER and its OFFER (about 0.5 ms each here, more on a USB disk), and a failing insert
 * dropped the reply. An EventBatch queues record() calls and writes them FLUSH_DELAY_MS later
 * (a timer, so always after the datagram handler that queued them has sent its replies), all
 * the events of that window in one transaction of `db`: a burst of booting clients costs one
 * fsync per window instead of two per packet, and a commit blocks the event loop (better-sqlite3
 * is synchronous) far less often. The price: the API shows an event up to FLUSH_DELAY_MS late,
 * and a crash loses at most that window of telemetry (leases are not written through here).
 */
import type Database from 'better-sqlite3';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { BootEvent, BootEventSink } from '../core/model';

/** How long events wait to be written with the ones that follow them. */
export const FLUSH_DELAY_MS = 100;
/** A batch this large is written on the next turn of the event loop instead (bounds memory in a flood). */
export const MAX_BATCH = 1000;

/** A BootEventSink that defers and batches the writes to another sink. */
export class EventBatch implements BootEventSink {
  private queue: BootEvent[] = [];
  private cancelTimer: (() => void) | undefined;
  private immediate: NodeJS.Immediate | undefined;
  /** When a failed write was last logged (one warning a minute, not one per packet). */
  private warnedAt = -Infinity;

  constructor(
    private readonly sink: BootEventSink,
    private readonly opts: {
      log: Logger;
      clock: Clock;
      /**
       * The database the sink writes to (the appliance's BootEventStore shares the DHCP
       * service's): a batch becomes one commit. Without it each event commits on its own.
       */
      db?: Database.Database;
    },
  ) {}

  record(event: BootEvent): void {
    this.queue.push(event);
    this.cancelTimer ??= this.opts.clock.setTimeout(() => this.flush(), FLUSH_DELAY_MS);
    if (this.queue.length >= MAX_BATCH) this.immediate ??= setImmediate(() => this.flush());
  }

  /** Events queued and not yet written. */
  get queued(): number {
    return this.queue.length;
  }

  /** Writes what is queued now (the service's stop() calls it so nothing queued is lost). */
  flush(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    let failed = 0;
    let lastError: unknown;
    const writeAll = () => {
      for (const e of batch) {
        try {
          this.sink.record(e);
        } catch (err) {
          failed += 1;
          lastError = err;
        }
      }
    };
    const { db, clock, log } = this.opts;
    try {
      if (db && batch.length > 1 && !db.inTransaction) db.transaction(writeAll)();
      else writeAll();
    } catch (err) {
      // The commit itself failed (disk full, I/O error): the whole batch is lost.
      failed = batch.length;
      lastError = err;
    }
    if (failed > 0 && clock.now() - this.warnedAt >= 60_000) {
      this.warnedAt = clock.now();
      log.warn({ err: lastError, failed, batch: batch.length }, 'recording DHCP boot events failed (replies were sent)');
    }
  }
}
