import type { FastifyInstance } from 'fastify';
import type { SnapshotScheduler } from '../../backups/snapshot-scheduler';
import type { DiskStore } from '../../clients/disk-store';
import type { ClientRegistry } from '../../clients/registry';
import { badRequest, notFound } from '../../core/errors';
import type { NextBoot } from '../../core/model';
import { checkImageName } from '../../images/import-jobs';
import type { ImageFlagStore } from '../../images/image-flags';

export interface ClientUseDeps {
  clients: ClientRegistry;
  store: DiskStore;
  flags: ImageFlagStore;
  scheduler: SnapshotScheduler;
}

const macParam = { type: 'object', required: ['mac'], properties: { mac: { type: 'string', maxLength: 32 } } } as const;
const diskParams = {
  type: 'object',
  required: ['mac', 'disk'],
  properties: { mac: { type: 'string', maxLength: 32 }, disk: { type: 'string', maxLength: 32 } },
} as const;
const nameProp = { type: 'string', minLength: 1, maxLength: 64 } as const;

/**
 * The uses that make netboot worth it (issue 8): named disks per client and the default boot
 * disk, a one-shot next boot (an image on a throw-away clone, a named disk, or a rescue image
 * with the client's own disk as LUN 1), moving/copying a disk to another MAC, scheduled
 * snapshots, promoting a snapshot to a golden image, and rescue marks on images.
 */
export function clientUseRoutes(deps: ClientUseDeps) {
  return async (app: FastifyInstance) => {
    app.get<{ Params: { mac: string } }>('/api/clients/:mac/disks', { schema: { params: macParam } }, async (req) => {
      const c = deps.clients.get(req.params.mac);
      return {
        bootDisk: c.bootDisk ?? 'default',
        disks: deps.clients.disks(c.mac).map((d) => {
          const info = deps.store.getDisk(d.disk);
          return { ...d, inUse: deps.store.isOpen(d.disk), sizeBytes: info?.sizeBytes ?? 0, usedBytes: info?.usedBytes ?? 0 };
        }),
      };
    });

    app.post<{ Params: { mac: string }; Body: { name: string; image?: string; copyOf?: string; snapshot?: number } }>(
      '/api/clients/:mac/disks',
      {
        schema: {
          params: macParam,
          body: {
            type: 'object',
            required: ['name'],
            additionalProperties: false,
            properties: {
              name: { type: 'string', maxLength: 32 },
              image: nameProp,
              copyOf: { type: 'string', maxLength: 32 },
              snapshot: { type: 'integer', minimum: 0 },
            },
          },
        },
      },
      async (req, reply) => {
        const { name, image, copyOf, snapshot } = req.body;
        if ((image === undefined) === (copyOf === undefined))
          throw badRequest('VALIDATION', 'give either image (a new clone) or copyOf (a copy of another disk)');
        const d = await deps.clients.addDisk(req.params.mac, name, image !== undefined ? { image } : { copyOf: copyOf!, snapshot });
        return reply.status(201).send(d);
      },
    );

    app.delete<{ Params: { mac: string; disk: string } }>('/api/clients/:mac/disks/:disk', { schema: { params: diskParams } }, async (req, reply) => {
      deps.clients.removeDisk(req.params.mac, req.params.disk);
      return reply.status(204).send();
    });

    app.put<{ Params: { mac: string }; Body: { disk: string } }>(
      '/api/clients/:mac/boot-disk',
      {
        schema: {
          params: macParam,
          body: { type: 'object', required: ['disk'], additionalProperties: false, properties: { disk: { type: 'string', maxLength: 32 } } },
        },
      },
      async (req) => {
        const c = deps.clients.setBootDisk(req.params.mac, req.body.disk);
        return { bootDisk: c.bootDisk };
      },
    );

    app.get<{ Params: { mac: string } }>('/api/clients/:mac/next-boot', { schema: { params: macParam } }, async (req) => {
      const c = deps.clients.get(req.params.mac);
      return { nextBoot: c.nextBoot ?? null, bootDisk: c.bootDisk ?? 'default' };
    });

    app.put<{ Params: { mac: string }; Body: { image?: string; disk?: string; rescue?: string } }>(
      '/api/clients/:mac/next-boot',
      {
        schema: {
          params: macParam,
          body: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            maxProperties: 1,
            properties: { image: nameProp, disk: { type: 'string', maxLength: 32 }, rescue: nameProp },
          },
        },
      },
      async (req) => {
        const b = req.body;
        let next: NextBoot;
        if (b.rescue !== undefined) {
          deps.clients.requireImage(b.rescue);
          if (!deps.flags.get(b.rescue).rescue)
            throw badRequest('NOT_A_RESCUE_IMAGE', `image "${b.rescue}" is not marked as a rescue image (PATCH /api/images/${b.rescue} {"rescue": true})`);
          next = { kind: 'rescue', image: b.rescue };
        } else if (b.image !== undefined) next = { kind: 'image', image: b.image };
        else next = { kind: 'disk', disk: b.disk! };
        return { nextBoot: deps.clients.setNextBoot(req.params.mac, next).nextBoot };
      },
    );

    app.delete<{ Params: { mac: string } }>('/api/clients/:mac/next-boot', { schema: { params: macParam } }, async (req, reply) => {
      deps.clients.setNextBoot(req.params.mac, null);
      return reply.status(204).send();
    });

    app.post<{ Params: { mac: string }; Body: { to: string; copy?: boolean; snapshot?: number; name?: string } }>(
      '/api/clients/:mac/move',
      {
        schema: {
          params: macParam,
          body: {
            type: 'object',
            required: ['to'],
            additionalProperties: false,
            properties: { to: { type: 'string', maxLength: 32 }, copy: { type: 'boolean' }, snapshot: { type: 'integer', minimum: 0 }, name: nameProp },
          },
        },
      },
      async (req, reply) => {
        const { to, copy = false, snapshot, name } = req.body;
        const from = deps.clients.get(req.params.mac);
        if (snapshot !== undefined && !deps.store.listSnapshots(from.disk).some((s) => s.id === snapshot)) {
          throw notFound('SNAPSHOT_NOT_FOUND', `client ${from.mac} has no snapshot ${snapshot}`);
        }
        const moved = await deps.clients.moveDisk(from.mac, to, { copy, snapshot, name });
        return reply
          .status(201)
          .send({ mac: moved.mac, name: moved.name, target: moved.target, initiatorName: moved.initiatorName, from: from.mac, copied: copy });
      },
    );

    app.put<{ Params: { mac: string }; Body: { everyMinutes: number; keep: number } }>(
      '/api/clients/:mac/schedule',
      {
        schema: {
          params: macParam,
          body: {
            type: 'object',
            required: ['everyMinutes', 'keep'],
            additionalProperties: false,
            properties: { everyMinutes: { type: 'integer', minimum: 1, maximum: 525600 }, keep: { type: 'integer', minimum: 1, maximum: 1000 } },
          },
        },
      },
      async (req) => ({ schedule: deps.clients.setSchedule(req.params.mac, req.body).schedule }),
    );

    app.delete<{ Params: { mac: string } }>('/api/clients/:mac/schedule', { schema: { params: macParam } }, async (req, reply) => {
      deps.clients.setSchedule(req.params.mac, null);
      return reply.status(204).send();
    });

    app.post<{ Params: { mac: string; id: number }; Body: { name: string } }>(
      '/api/clients/:mac/snapshots/:id/promote',
      {
        schema: {
          params: { type: 'object', required: ['mac', 'id'], properties: { mac: { type: 'string', maxLength: 32 }, id: { type: 'integer', minimum: 0 } } },
          body: { type: 'object', required: ['name'], additionalProperties: false, properties: { name: nameProp } },
        },
      },
      async (req, reply) => {
        const c = deps.clients.get(req.params.mac);
        checkImageName(req.body.name);
        if (!deps.store.listSnapshots(c.disk).some((s) => s.id === req.params.id))
          throw notFound('SNAPSHOT_NOT_FOUND', `client ${c.mac} has no snapshot ${req.params.id}`);
        return reply.status(201).send(deps.store.promoteSnapshot(c.disk, req.params.id, req.body.name));
      },
    );

    app.patch<{ Params: { name: string }; Body: { rescue: boolean } }>(
      '/api/images/:name',
      {
        schema: {
          params: { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 64 } } },
          body: { type: 'object', required: ['rescue'], additionalProperties: false, properties: { rescue: { type: 'boolean' } } },
        },
      },
      async (req) => {
        deps.clients.requireImage(req.params.name);
        const img = deps.store.getImage(req.params.name)!;
        deps.flags.set(img.name, { rescue: req.body.rescue });
        return { ...img, ...deps.flags.get(img.name) };
      },
    );

    app.post('/api/backups/run', async () => {
      await deps.scheduler.runDue();
      return { ok: true };
    });
  };
}
