import type { FastifyInstance } from 'fastify';
import type { Service } from '../../core/service';

/** What /api/status reports about where state lives. */
export interface StorageUsage {
  dataDir: string;
  filesystem: { totalBytes: number; freeBytes: number; availableBytes: number };
  store?: { capacityBytes: number; usedBytes: number; freeBytes: number };
}

export interface StatusDeps {
  version: string;
  startedAt: number;
  now: () => number;
  serverAddress: string;
  services: () => readonly Service[];
  storage: () => Promise<StorageUsage>;
  /**
   * The image store's health: 'degraded' once a failed fdatasync lost acknowledged writes
   * (image-store/README.md "A failed fdatasync"), until `appliance check --repair` clears it.
   */
  storeHealth?: () => StoreHealthView;
}

/** What /api/status reports as `storeHealth` (image-store's StoreHealth, kept structural here). */
export interface StoreHealthView {
  state: 'ok' | 'degraded';
  degraded?: { since: number; last: number; failures: number; reason: string; segments: number[]; disks: string[] };
}

/** Times as ISO strings, like startedAt. */
function storeHealthJson(h: StoreHealthView) {
  if (!h.degraded) return { state: h.state };
  const d = h.degraded;
  return { state: h.state, degraded: { ...d, since: new Date(d.since).toISOString(), last: new Date(d.last).toISOString() } };
}

/**
 * GET /api/status: version, uptime, every service with its listen address and state, storage
 * usage, and the image store's health (degraded after a failed fdatasync).
 */
export function statusRoutes(deps: StatusDeps) {
  return async (app: FastifyInstance) => {
    app.get('/api/status', async () => ({
      version: deps.version,
      startedAt: new Date(deps.startedAt).toISOString(),
      uptimeSeconds: Math.round((deps.now() - deps.startedAt) / 1000),
      serverAddress: deps.serverAddress,
      services: deps.services().map((s) => {
        const st = s.status();
        return { name: s.name, state: st.state, listen: st.listen, ...(st.detail ? { detail: st.detail } : {}), counters: st.counters };
      }),
      storage: await deps.storage(),
      ...(deps.storeHealth ? { storeHealth: storeHealthJson(deps.storeHealth()) } : {}),
    }));
  };
}
