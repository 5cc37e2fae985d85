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
}

/** GET /api/status: version, uptime, every service with its listen address and state, storage usage. */
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
    }));
  };
}
