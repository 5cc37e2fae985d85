import { realpath } from 'node:fs/promises';
import os from 'node:os';
import type si from 'systeminformation';
import { systemClock, type Clock } from '../core/clock';
import { buildHealthReport, type HealthReport } from './health';
import { buildStorageReport, type StorageReport } from './report';

/**
 * Collects storage and health facts with systeminformation and caches them: each call runs
 * lsblk, df, /proc and /sys reads (≈ 0.3–0.7 s on this machine kind, longer on a Pi), and the
 * dashboard polls. Concurrent callers share one in-flight collection.
 */
export interface CollectorOptions {
  /** How long a result is reused (default 5 s). */
  ttlMs?: number;
  clock?: Clock;
  /** Replaces systeminformation (tests). */
  source?: SystemSource;
}

/** The systeminformation calls we make, injectable for tests. */
export interface SystemSource {
  blockDevices(): Promise<si.Systeminformation.BlockDevicesData[]>;
  fsSize(): Promise<si.Systeminformation.FsSizeData[]>;
  currentLoad(): Promise<{ currentLoad: number }>;
  mem(): Promise<{ total: number; available: number }>;
  cpuTemperature(): Promise<{ main: number | null }>;
  networkInterfaces(): Promise<si.Systeminformation.NetworkInterfacesData[] | si.Systeminformation.NetworkInterfacesData>;
}

/** Options for a storage collection. */
export interface StorageQuery {
  /** Mount point the data directory must be on (the USB disk, e.g. /srv/netboot); '' = any. */
  expectedMount?: string;
}

interface Entry<T> {
  at: number;
  value?: T;
  pending?: Promise<T>;
}

/** Caching collector; one per appliance (main.ts builds it; routes call it). */
export class SystemCollector {
  private readonly ttl: number;
  private readonly clock: Clock;
  private src: SystemSource | undefined;
  private readonly cache = new Map<string, Entry<unknown>>();
  /** How many real collections ran (tests check the cache). */
  collections = 0;

  constructor(opts: CollectorOptions = {}) {
    this.ttl = opts.ttlMs ?? 5_000;
    this.clock = opts.clock ?? systemClock;
    this.src = opts.source;
  }

  /**
   * systeminformation, loaded when the first page asks: its many modules stay out of the memory
   * of a box whose dashboard is closed (issue #16).
   */
  private async source(): Promise<SystemSource> {
    this.src ??= (await import('systeminformation')).default;
    return this.src;
  }

  /** Disks, the data directory's filesystem and warnings (GET /api/storage). */
  storage(dataDir: string, query: StorageQuery = {}): Promise<StorageReport> {
    return this.cached(`storage\0${dataDir}\0${query.expectedMount ?? ''}`, async () => {
      const src = await this.source();
      const [blockDevices, fsSizes, realDataDir] = await Promise.all([src.blockDevices(), src.fsSize(), realpath(dataDir).catch(() => null)]);
      return buildStorageReport({
        dataDir,
        realDataDir,
        blockDevices,
        fsSizes,
        expectedMount: query.expectedMount || undefined,
        collectedAt: this.clock.now(),
      });
    });
  }

  /** CPU, memory, temperature and interfaces (the dashboard's health panel). */
  health(): Promise<HealthReport> {
    return this.cached('health', async () => {
      const src = await this.source();
      const [load, mem, temp, nets] = await Promise.all([
        src.currentLoad().catch(() => null),
        src.mem(),
        src.cpuTemperature().catch(() => ({ main: null })),
        src.networkInterfaces(),
      ]);
      const [l1, l5, l15] = os.loadavg();
      return buildHealthReport({
        loadAvg: [l1!, l5!, l15!],
        cpuCount: os.availableParallelism(),
        cpuPercent: load ? load.currentLoad : null,
        memTotal: mem.total,
        memAvailable: mem.available,
        temperatureC: typeof temp.main === 'number' && Number.isFinite(temp.main) ? temp.main : null,
        uptimeSeconds: Math.round(os.uptime()),
        interfaces: Array.isArray(nets) ? nets : [nets],
        collectedAt: this.clock.now(),
      });
    });
  }

  /** Forgets cached results (after preparing a disk, so the page shows it at once). */
  invalidate(): void {
    this.cache.clear();
  }

  private cached<T>(key: string, collect: () => Promise<T>): Promise<T> {
    const now = this.clock.now();
    const hit = this.cache.get(key) as Entry<T> | undefined;
    if (hit?.pending) return hit.pending;
    if (hit && hit.value !== undefined && now - hit.at < this.ttl) return Promise.resolve(hit.value);
    this.collections++;
    const entry: Entry<T> = { at: now };
    entry.pending = collect().then(
      (value) => {
        entry.value = value;
        entry.at = this.clock.now();
        entry.pending = undefined;
        return value;
      },
      (err: unknown) => {
        this.cache.delete(key); // do not cache failures
        throw err;
      },
    );
    this.cache.set(key, entry as Entry<unknown>);
    return entry.pending;
  }
}

let shared: SystemCollector | undefined;
const collector = () => (shared ??= new SystemCollector());

/** Storage report for dataDir from the process-wide cached collector. */
export function collectStorage(dataDir: string, query?: StorageQuery): Promise<StorageReport> {
  return collector().storage(dataDir, query);
}

/** Health report from the process-wide cached collector. */
export function collectHealth(): Promise<HealthReport> {
  return collector().health();
}
