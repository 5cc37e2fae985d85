import type { FastifyInstance } from 'fastify';
import type { DiskStore } from '../../clients/disk-store';
import { iscsiRootPath } from '../../boot/policy';
import type { ClientInput, ClientRegistry } from '../../clients/registry';
import { ApiError, notFound } from '../../core/errors';
import type { ClientRecord } from '../../core/model';
import type { BootEventStore } from '../../telemetry/boot-events';
import { parseByteRange, volumeByteStream } from '../volume-range';
import type { BootEventView, ClientView, SessionRow, SessionView, UnknownClientsView } from '../api-types';

/** One live iSCSI session, as GET /api/sessions shows it. */
export type { SessionView };

export interface ClientRouteDeps {
  clients: ClientRegistry;
  store: DiskStore;
  events: BootEventStore;
  sessions: () => SessionView[];
  serverAddress: string;
  /** The iSCSI port clients are told (the bound one when configured as 0). */
  iscsiPort: () => number;
  /** Drops the iSCSI sessions of these targets (restore/reset with force). */
  disconnect: (targets: string[]) => Promise<number>;
  /** Called after a client is removed (e.g. to drop DHCP reservations). */
  onDeleted?: (mac: string) => void;
  /** What unknown clients get now, and why (GET /api/unknown-clients says it beside the list). */
  unknownMode?: () => UnknownModeView;
}

/** The boot.unknownClients setting, what it means under the current DHCP mode, and that mode. */
export interface UnknownModeView {
  /** What unknown clients get now: 'ignore' (listed, not answered), 'menu', 'enroll' or 'wait'. */
  mode: 'ignore' | 'menu' | 'enroll' | 'wait';
  /** The configured value ('auto' = decided by the DHCP mode). */
  setting: string;
  dhcpMode: string;
}

const macParam = { type: 'object', required: ['mac'], properties: { mac: { type: 'string', maxLength: 32 } } } as const;
const chapSchema = {
  type: ['object', 'null'],
  additionalProperties: false,
  required: ['user', 'secret'],
  properties: {
    user: { type: 'string', minLength: 1, maxLength: 255 },
    secret: { type: 'string', minLength: 12, maxLength: 255 },
    targetUser: { type: 'string', minLength: 1, maxLength: 255 },
    targetSecret: { type: 'string', minLength: 12, maxLength: 255 },
  },
} as const;
const clientProps = {
  name: { type: 'string', maxLength: 64 },
  initiators: { type: 'array', maxItems: 16, items: { type: 'string', minLength: 1, maxLength: 223 } },
  chap: chapSchema,
  ip: { anyOf: [{ type: 'string', format: 'ipv4' }, { type: 'null' }] },
  road: { type: 'string', enum: ['auto', 'ipxe', 'grub'] },
} as const;

/**
 * Clients: CRUD, boot timeline, snapshots, reset. CHAP secrets are accepted, never returned; new
 * clients get generated ones unless `chap: null` (or boot.chapByDefault false).
 */
export function clientRoutes(deps: ClientRouteDeps) {
  /** What every client's view needs, gathered once per request (the dashboard lists them all every few seconds). */
  const snapshot = () => ({ latest: deps.events.latestByClient(), sessions: deps.sessions() });
  const view = (c: ClientRecord, now = snapshot()): ClientView => {
    const disks = deps.clients.disks(c.mac);
    const targets = new Set(disks.map((d) => d.target));
    const sessions = now.sessions.filter((s) => targets.has(s.target));
    const last = now.latest.get(c.mac);
    const disk = deps.store.getDisk(c.disk);
    return {
      mac: c.mac,
      name: c.name,
      image: c.image,
      disk: c.disk,
      target: c.target,
      lun: c.lun,
      rootPath: iscsiRootPath(c, deps.serverAddress, deps.iscsiPort()),
      initiatorName: c.initiatorName,
      initiators: c.initiators,
      chap: c.chap ? { user: c.chap.user, mutual: !!c.chap.targetUser } : null,
      // Issue #13: a client without CHAP is protected by its guessable initiator name alone.
      warnings: c.chap
        ? []
        : ["CHAP is off: any machine on the LAN that uses this client's initiator name (<prefix>:initiator-<mac>) can log in to its disk. Set chap to fix it."],
      ip: c.ip,
      createdAt: c.createdAt,
      online: sessions.length > 0,
      sessions: sessions.length,
      lastEvent: last ? { stage: last.stage, at: last.at } : null,
      diskUsedBytes: disk?.usedBytes ?? 0,
      diskSizeBytes: disk?.sizeBytes ?? 0,
      bootDisk: c.bootDisk ?? 'default',
      nextBoot: c.nextBoot ?? null,
      schedule: c.schedule ?? null,
      road: c.road ?? 'auto',
      disks: disks.map((d) => ({ name: d.name, image: d.image, target: d.target, throwaway: d.throwaway, inUse: deps.store.isOpen(d.disk) })),
      // Who holds the disk now (the UI shows it; a second read-write login is refused).
      holders: sessions.map((s) => ({ initiatorName: s.initiatorName, address: s.address, since: s.since })),
    };
  };

  const inUse = (c: ClientRecord, what: string) => {
    const holders = deps.sessions().filter((s) => s.target === c.target);
    if (holders.length || deps.store.isOpen(c.disk)) {
      throw new ApiError(
        'DISK_IN_USE',
        409,
        `cannot ${what} while the disk of ${c.mac} is in use${holders.length ? ` by ${holders.map((h) => `${h.initiatorName} (${h.address})`).join(', ')}` : ''}: shut the client down first (or add ?force=true to drop its sessions)`,
      );
    }
  };

  return async (app: FastifyInstance) => {
    app.get('/api/clients', async () => {
      const now = snapshot();
      return { clients: deps.clients.list().map((c) => view(c, now)) };
    });

    app.post<{ Body: ClientInput & { mac: string; image: string } }>(
      '/api/clients',
      {
        schema: {
          body: {
            type: 'object',
            required: ['mac', 'image'],
            additionalProperties: false,
            properties: { mac: { type: 'string', maxLength: 32 }, image: { type: 'string', maxLength: 64 }, ...clientProps },
          },
        },
      },
      async (req, reply) => {
        const { mac, image, ...rest } = req.body;
        return reply.status(201).send(view(deps.clients.create(mac, image, rest)));
      },
    );

    // Zero-touch enrolment (issue #14): network-boot clients heard that are not clients yet, most
    // recent first. POST /api/clients with one's MAC gives it a disk; it then leaves this list.
    app.get(
      '/api/unknown-clients',
      async (): Promise<UnknownClientsView> => ({
        ...(deps.unknownMode?.() ?? { mode: 'ignore', setting: 'ignore', dhcpMode: 'off' }),
        clients: deps.events.unknownClients(),
      }),
    );

    app.get<{ Params: { mac: string } }>('/api/clients/:mac', { schema: { params: macParam } }, async (req) => view(deps.clients.get(req.params.mac)));

    app.patch<{ Params: { mac: string }; Body: ClientInput }>(
      '/api/clients/:mac',
      { schema: { params: macParam, body: { type: 'object', additionalProperties: false, properties: clientProps } } },
      async (req) => view(deps.clients.update(req.params.mac, req.body)),
    );

    app.delete<{ Params: { mac: string } }>('/api/clients/:mac', { schema: { params: macParam } }, async (req, reply) => {
      const c = deps.clients.get(req.params.mac);
      inUse(c, 'delete the client');
      deps.clients.delete(c.mac);
      deps.events.forget(c.mac);
      deps.onDeleted?.(c.mac);
      return reply.status(204).send();
    });

    app.get<{ Params: { mac: string }; Querystring: { limit?: number } }>(
      '/api/clients/:mac/events',
      { schema: { params: macParam, querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 500 } } } } },
      async (req) => {
        const c = deps.clients.byMac(req.params.mac);
        // Unknown MACs have timelines too (a machine PXE-booting that nobody added yet).
        const mac = c?.mac ?? deps.clients.get(req.params.mac).mac;
        const events: BootEventView[] = deps.events.list(mac, req.query.limit ?? 200);
        return { events };
      },
    );

    app.get<{ Params: { mac: string } }>('/api/clients/:mac/snapshots', { schema: { params: macParam } }, async (req) => {
      const c = deps.clients.get(req.params.mac);
      return { snapshots: deps.store.listSnapshots(c.disk) };
    });

    app.post<{ Params: { mac: string }; Body: { name?: string } }>(
      '/api/clients/:mac/snapshots',
      {
        schema: {
          params: macParam,
          body: { type: 'object', additionalProperties: false, properties: { name: { type: 'string', minLength: 1, maxLength: 128 } } },
        },
      },
      async (req, reply) => {
        const c = deps.clients.get(req.params.mac);
        const name = req.body?.name ?? new Date().toISOString();
        return reply.status(201).send(await deps.store.createSnapshot(c.disk, name));
      },
    );

    const snapParams = {
      type: 'object',
      required: ['mac', 'id'],
      properties: { mac: { type: 'string', maxLength: 32 }, id: { type: 'integer', minimum: 0 } },
    } as const;
    const snapshotOf = (c: ClientRecord, id: number) => {
      const s = deps.store.listSnapshots(c.disk).find((x) => x.id === id);
      if (!s) throw notFound('SNAPSHOT_NOT_FOUND', `client ${c.mac} has no snapshot ${id}`);
      return s;
    };

    const forceQuery = { type: 'object', properties: { force: { type: 'boolean' } } } as const;
    /** With ?force=true, first drops the client's sessions (a powered-off client's stale ones). */
    const maybeForce = async (c: ClientRecord, force: boolean | undefined) => {
      if (force) await deps.disconnect([c.target]);
    };

    app.post<{ Params: { mac: string; id: number }; Querystring: { force?: boolean } }>(
      '/api/clients/:mac/snapshots/:id/restore',
      { schema: { params: snapParams, querystring: forceQuery } },
      async (req) => {
        const c = deps.clients.get(req.params.mac);
        const s = snapshotOf(c, req.params.id);
        await maybeForce(c, req.query.force);
        inUse(c, 'restore a snapshot');
        await deps.store.restoreSnapshot(c.disk, s.id);
        return { restored: s };
      },
    );

    app.delete<{ Params: { mac: string; id: number } }>('/api/clients/:mac/snapshots/:id', { schema: { params: snapParams } }, async (req, reply) => {
      const c = deps.clients.get(req.params.mac);
      const s = snapshotOf(c, req.params.id);
      await deps.store.deleteSnapshot(c.disk, s.id);
      return reply.status(204).send();
    });

    app.post<{ Params: { mac: string }; Body: { image?: string }; Querystring: { force?: boolean } }>(
      '/api/clients/:mac/reset',
      {
        schema: {
          params: macParam,
          querystring: forceQuery,
          body: { type: ['object', 'null'], additionalProperties: false, properties: { image: { type: 'string', maxLength: 64 } } },
        },
      },
      async (req) => {
        const c = deps.clients.get(req.params.mac);
        const image = req.body?.image ?? c.image;
        deps.clients.requireImage(image);
        await maybeForce(c, req.query.force);
        inUse(c, 'reset the disk');
        await deps.store.resetDisk(c.disk, image);
        return view(image === c.image ? c : deps.clients.setImage(c.mac, image));
      },
    );

    // Export a disk (or one of its snapshots). Raw downloads are resumable (Range, RFC 9110 §14);
    // qcow2 is generated as a stream and is sent whole.
    app.get<{ Params: { mac: string }; Querystring: { format?: 'raw' | 'qcow2'; snapshot?: number } }>(
      '/api/clients/:mac/export',
      {
        schema: {
          params: macParam,
          querystring: { type: 'object', properties: { format: { enum: ['raw', 'qcow2'] }, snapshot: { type: 'integer', minimum: 0 } } },
        },
      },
      async (req, reply) => {
        const c = deps.clients.get(req.params.mac);
        const format = req.query.format ?? 'raw';
        const snapshot = req.query.snapshot;
        if (snapshot !== undefined) snapshotOf(c, snapshot);
        reply.header('Content-Type', 'application/octet-stream');
        reply.header(
          'Content-Disposition',
          `attachment; filename="${c.disk}${snapshot !== undefined ? `-snap${snapshot}` : ''}.${format === 'raw' ? 'img' : 'qcow2'}"`,
        );
        if (format === 'qcow2') return reply.send(deps.store.exportVolume(c.disk, { format, snapshot }));
        const vol = deps.store.openVolume(c.disk, { readOnly: true, ...(snapshot !== undefined ? { snapshot } : {}) });
        const size = vol.blockCount * vol.blockSize;
        reply.header('Accept-Ranges', 'bytes');
        const range = parseByteRange(req.headers.range, size);
        if (range === 'unsatisfiable') {
          await vol.close?.();
          return reply.status(416).header('Content-Range', `bytes */${size}`).send();
        }
        const { start, end } = range ?? { start: 0, end: size - 1 };
        if (range) reply.status(206).header('Content-Range', `bytes ${start}-${end}/${size}`);
        reply.header('Content-Length', end - start + 1);
        return reply.send(volumeByteStream(vol, start, end));
      },
    );

    app.get(
      '/api/sessions',
      async (): Promise<{ sessions: SessionRow[] }> => ({
        sessions: deps.sessions().map((s) => ({ ...s, clientMac: deps.clients.byTarget(s.target)?.mac ?? null })),
      }),
    );
  };
}
