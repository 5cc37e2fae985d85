import type { FastifyInstance } from 'fastify';
import { ApiError } from '../../core/errors';
import type { HealthReport } from '../../storage/health';
import type { StorageReport } from '../../storage/report';

export interface SystemRouteDeps {
  storage: () => Promise<StorageReport>;
  health: () => Promise<HealthReport>;
  storeUsage: () => unknown;
  settings: () => { dhcp: { mode: 'off' | 'proxy' | 'full'; interface: string; canServeFull: boolean } };
  /** Switches DHCP mode live; rejects (and keeps the old mode) when the new one cannot start. */
  setDhcpMode: (mode: 'off' | 'proxy' | 'full') => Promise<void>;
}

/** GET /api/storage (disks, data dir, health, store usage) and GET/PATCH /api/settings. */
export function systemRoutes(deps: SystemRouteDeps) {
  return async (app: FastifyInstance) => {
    app.get('/api/storage', async () => {
      const [storage, health] = await Promise.all([deps.storage(), deps.health()]);
      return { ...storage, health, store: deps.storeUsage() };
    });

    app.get('/api/settings', async () => deps.settings());

    app.patch<{ Body: { dhcp?: { mode?: 'off' | 'proxy' | 'full' } } }>(
      '/api/settings',
      {
        schema: {
          body: {
            type: 'object',
            additionalProperties: false,
            properties: { dhcp: { type: 'object', additionalProperties: false, properties: { mode: { enum: ['off', 'proxy', 'full'] } } } },
          },
        },
      },
      async (req) => {
        const mode = req.body.dhcp?.mode;
        if (mode) {
          try {
            await deps.setDhcpMode(mode);
          } catch (err) {
            throw new ApiError('DHCP_MODE_FAILED', 409, `DHCP stays as it was: ${(err as Error).message}`);
          }
        }
        return deps.settings();
      },
    );
  };
}
