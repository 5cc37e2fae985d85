import type { FastifyInstance } from 'fastify';
import type { LinkStatus } from '../../core/link-watch';
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
  /** The address clients are told now (it follows the interface when configured 'auto'). */
  serverAddress: string | (() => string);
  /** The served interface as the link watcher sees it (issue #14). */
  network?: () => LinkStatus;
  services: () => readonly Service[];
  storage: () => Promise<StorageUsage>;
  /**
   * The image store's health: 'degraded' once a failed fdatasync lost acknowledged writes
   * (image-store/README.md "A failed fdatasync"), until `appliance check --repair` clears it.
   */
  storeHealth?: () => StoreHealthView;
  /** The appliance's own memory (process.memoryUsage()): a 1 GiB board has little to spare (issue #16). */
  memory?: () => NodeJS.MemoryUsage;
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

/** Why a leased address matters, for the dashboard (issue #14). */
export const LEASED_ADDRESS_WARNING =
  'This address came from a DHCP lease: if the router hands the box another one, every running client loses its disk ' +
  '(its root file system lives behind this address, and the iSCSI session cannot follow it). ' +
  'Reserve the address for this box on the router, or give it a fixed one (sudo netboot-fixed-address on the box).';

/** The `network` block: the link watcher's reading, times as ISO strings, and the warning. */
function networkJson(n: LinkStatus) {
  return {
    interface: n.interface,
    state: n.state,
    address: n.address,
    ...(n.prefixlen !== undefined ? { prefixlen: n.prefixlen } : {}),
    since: new Date(n.since).toISOString(),
    leased: n.dynamic,
    ...(n.dynamic ? { warning: LEASED_ADDRESS_WARNING } : {}),
  };
}

/** The `memory` block in bytes: RSS, and V8's heap and the memory outside it (socket buffers, disk blocks). */
function memoryJson(m: NodeJS.MemoryUsage) {
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external };
}

/**
 * GET /api/status: version, uptime, every service with its listen address and state, storage
 * usage, the image store's health (degraded after a failed fdatasync), the served network
 * interface (`network`: state no-interface/down/no-carrier/no-address/up, address, since when,
 * whether the address is a DHCP lease, with a warning when it is), and the process's memory.
 */
export function statusRoutes(deps: StatusDeps) {
  return async (app: FastifyInstance) => {
    app.get('/api/status', async () => ({
      version: deps.version,
      startedAt: new Date(deps.startedAt).toISOString(),
      uptimeSeconds: Math.round((deps.now() - deps.startedAt) / 1000),
      serverAddress: typeof deps.serverAddress === 'function' ? deps.serverAddress() : deps.serverAddress,
      ...(deps.network ? { network: networkJson(deps.network()) } : {}),
      services: deps.services().map((s) => {
        const st = s.status();
        return { name: s.name, state: st.state, listen: st.listen, ...(st.detail ? { detail: st.detail } : {}), counters: st.counters };
      }),
      storage: await deps.storage(),
      ...(deps.storeHealth ? { storeHealth: storeHealthJson(deps.storeHealth()) } : {}),
      ...(deps.memory ? { memory: memoryJson(deps.memory()) } : {}),
    }));
  };
}
