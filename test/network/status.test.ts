/**
 * GET /api/status's `network` block (issue #14): the link watcher's reading, the address clients
 * are told now (it follows the interface), and the warning when that address is a DHCP lease.
 */
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import type { LinkStatus } from '../../appliance/core/link-watch';
import { LEASED_ADDRESS_WARNING, statusRoutes } from '../../appliance/http/routes/status';

describe('GET /api/status network block', () => {
  it('shows state, address, since and lease; serverAddress follows; the warning only for a leased address', async () => {
    let link: LinkStatus = { interface: 'eth0', state: 'no-carrier', address: '', addresses: [], since: Date.UTC(2026, 11, 3, 10), dynamic: false };
    const app = Fastify();
    await app.register(
      statusRoutes({
        version: 't',
        startedAt: 0,
        now: () => 0,
        serverAddress: () => link.address || '127.0.0.1',
        network: () => link,
        services: () => [],
        storage: async () => ({ dataDir: '/x', filesystem: { totalBytes: 1, freeBytes: 1, availableBytes: 1 } }),
        storeHealth: () => ({ state: 'ok' }),
      }),
    );
    const get = async () => (await app.inject({ method: 'GET', url: '/api/status' })).json();

    let body = await get();
    expect(body.network).toEqual({ interface: 'eth0', state: 'no-carrier', address: '', since: '2026-12-03T10:00:00.000Z', leased: false });
    expect(body.serverAddress).toBe('127.0.0.1');
    expect(body.storeHealth).toEqual({ state: 'ok' });

    link = {
      interface: 'eth0',
      state: 'up',
      address: '192.168.1.20',
      prefixlen: 24,
      addresses: ['192.168.1.20'],
      since: Date.UTC(2026, 11, 3, 10, 1),
      dynamic: true,
    };
    body = await get();
    expect(body.serverAddress).toBe('192.168.1.20');
    expect(body.network).toMatchObject({ state: 'up', address: '192.168.1.20', prefixlen: 24, leased: true, warning: LEASED_ADDRESS_WARNING });
    expect(body.network.warning).toMatch(/reserve the address for this box on the router/i);
    await app.close();
  });
});
