import type { DiskStore } from '../clients/disk-store';
import type { ClientRegistry } from '../clients/registry';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { Service, ServiceStatus } from '../core/service';

/** Scheduled snapshots are named with this prefix; only they are pruned. */
export const SCHEDULED_PREFIX = 'scheduled-';

/**
 * Takes each client's scheduled snapshots (every N minutes, keep the newest K) of its boot
 * disk. Checks once a minute on the injected clock; a snapshot is due when the newest
 * scheduled one is at least `everyMinutes` old. Snapshots of a disk in use are fine (the store
 * flushes first). A failure for one client is logged and retried at the next check, never
 * stopping the others.
 */
export class SnapshotScheduler implements Service {
  readonly name = 'scheduler';
  private cancel: (() => void) | null = null;
  private state: ServiceStatus['state'] = 'stopped';
  private readonly counters = { snapshots: 0, pruned: 0, failures: 0 };
  private running: Promise<void> | null = null;

  constructor(
    private readonly clients: ClientRegistry,
    private readonly store: DiskStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly checkMs = 60_000,
  ) {}

  async start(): Promise<void> {
    this.state = 'running';
    this.arm();
  }

  async stop(): Promise<void> {
    this.cancel?.();
    this.cancel = null;
    await this.running;
    this.state = 'stopped';
  }

  status(): ServiceStatus {
    return { state: this.state, listen: [], counters: { ...this.counters } };
  }

  private arm(): void {
    this.cancel = this.clock.setTimeout(() => {
      this.running = this.runDue().finally(() => {
        this.running = null;
        if (this.state === 'running') this.arm();
      });
    }, this.checkMs);
  }

  /** Takes every due snapshot and prunes old ones; exposed for tests and the API. */
  async runDue(): Promise<void> {
    const now = this.clock.now();
    for (const c of this.clients.list()) {
      if (!c.schedule) continue;
      try {
        const scheduled = this.store
          .listSnapshots(c.disk)
          .filter((s) => s.name.startsWith(SCHEDULED_PREFIX))
          .sort((a, b) => a.createdAt - b.createdAt || a.id - b.id);
        const newest = scheduled[scheduled.length - 1];
        if (newest && now - newest.createdAt < c.schedule.everyMinutes * 60_000) continue;
        const snap = await this.store.createSnapshot(c.disk, `${SCHEDULED_PREFIX}${new Date(now).toISOString()}`);
        scheduled.push(snap);
        this.counters.snapshots++;
        this.log.info({ mac: c.mac, snapshot: snap.id }, 'scheduled snapshot taken');
        for (const old of scheduled.slice(0, Math.max(0, scheduled.length - c.schedule.keep))) {
          await this.store.deleteSnapshot(c.disk, old.id);
          this.counters.pruned++;
        }
      } catch (err) {
        this.counters.failures++;
        this.log.warn({ mac: c.mac, err: (err as Error).message }, 'scheduled snapshot failed');
      }
    }
  }
}
