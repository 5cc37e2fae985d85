import type { FastifyInstance } from 'fastify';
import type { ImageView } from '../api-types';
import { closeSync, createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import type { ClientRegistry } from '../../clients/registry';
import type { DiskStore } from '../../clients/disk-store';
import { badRequest, conflict, notFound } from '../../core/errors';
import { checkImageName, type ImportJobs } from '../../images/import-jobs';
import type { ImageFlagStore } from '../../images/image-flags';
import { openImportFile } from '../../images/import-paths';
import { inspectImageFile } from '../../../image-store/import';

export interface ImageRouteDeps {
  store: DiskStore;
  clients: ClientRegistry;
  jobs: ImportJobs;
  flags: ImageFlagStore;
  uploadDir: string;
  /** Where `POST /api/images {path}` may read (images/import-paths.ts). */
  importDirs: readonly string[];
  /** qemu-img, for checking formats we do not read natively (default: from PATH). */
  qemuImg?: string;
}

const nameParam = { type: 'object', required: ['name'], properties: { name: { type: 'string', maxLength: 64 } } } as const;

/**
 * Golden images: list, import from a path inside an import directory or by upload, inspect,
 * delete. Either way the file is checked before the 202: an image that names another file
 * (backing file, extent) is refused with 400 IMAGE_REFERENCES_FILE.
 */
export function imageRoutes(deps: ImageRouteDeps) {
  const inspect = (file: string, sourceName: string) => inspectImageFile(file, { qemuImg: deps.qemuImg ?? 'qemu-img', sourceName });

  const view = (name: string): ImageView | undefined => {
    const img = deps.store.getImage(name);
    const job = deps.jobs.get(name);
    if (img) return { ...img, ...deps.flags.get(name), state: 'ready' as const, clients: deps.clients.list().filter((c) => c.image === name).length };
    if (job) return { name, state: job.state, progress: job.progress, sizeBytes: job.totalBytes, error: job.error, createdAt: job.startedAt, clients: 0 };
    return undefined;
  };

  return async (app: FastifyInstance) => {
    app.get('/api/images', async () => {
      const names = new Set([...deps.store.listImages().map((i) => i.name), ...deps.jobs.list().map((j) => j.name)]);
      return { images: [...names].sort().map(view).filter(Boolean) };
    });

    app.get<{ Params: { name: string } }>('/api/images/:name', { schema: { params: nameParam } }, async (req) => {
      const v = view(req.params.name);
      if (!v) throw notFound('IMAGE_NOT_FOUND', `no image "${req.params.name}"`);
      return v;
    });

    app.post<{ Body: { name: string; path: string } }>(
      '/api/images',
      {
        schema: {
          body: {
            type: 'object',
            required: ['name', 'path'],
            additionalProperties: false,
            properties: { name: { type: 'string', maxLength: 64 }, path: { type: 'string', minLength: 1, maxLength: 4096 } },
          },
        },
      },
      async (req, reply) => {
        const { name, path } = req.body;
        checkImageName(name);
        if (!isAbsolute(path)) throw badRequest('BAD_PATH', 'path must be absolute (a file on the appliance)');
        // The descriptor opened here is the file imported: the job reads /proc/self/fd/N, not the path.
        const opened = openImportFile(path, deps.importDirs);
        let job;
        try {
          await inspect(opened.procPath, basename(opened.realPath));
          job = deps.jobs.start(name, opened.procPath, () => closeSync(opened.fd), { sourceName: basename(opened.realPath) });
        } catch (err) {
          closeSync(opened.fd);
          throw err;
        }
        return reply.status(202).send({ name, state: job.state, progress: job.progress });
      },
    );

    // Uploads stream to a file under dataDir first (the store needs random access for qcow2).
    app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    app.put<{ Params: { name: string }; Body: Readable }>(
      '/api/images/:name/upload',
      { schema: { params: nameParam }, bodyLimit: 1024 ** 4 },
      async (req, reply) => {
        const { name } = req.params;
        checkImageName(name);
        if (deps.store.getImage(name)) throw conflict('IMAGE_EXISTS', `image "${name}" already exists`);
        if (!req.body || typeof (req.body as Readable).pipe !== 'function') throw badRequest('BAD_UPLOAD', 'send the image as application/octet-stream');
        mkdirSync(deps.uploadDir, { recursive: true });
        const tmp = join(deps.uploadDir, `${name}.${randomBytes(4).toString('hex')}.upload`);
        try {
          await pipeline(req.body, createWriteStream(tmp, { mode: 0o600 }));
        } catch (err) {
          rmSync(tmp, { force: true });
          throw badRequest('UPLOAD_FAILED', `upload interrupted: ${(err as Error).message}`);
        }
        let job;
        try {
          await inspect(tmp, `upload of ${name}`);
          // Our own 0600 file: qemu-img may read it in place (no private copy needed).
          job = deps.jobs.start(name, tmp, () => rmSync(tmp, { force: true }), { exclusive: true });
        } catch (err) {
          rmSync(tmp, { force: true });
          throw err;
        }
        return reply.status(202).send({ name, state: job.state, progress: job.progress });
      },
    );

    app.delete<{ Params: { name: string } }>('/api/images/:name', { schema: { params: nameParam } }, async (req, reply) => {
      const { name } = req.params;
      if (deps.jobs.get(name)) {
        deps.jobs.dismiss(name);
        return reply.status(204).send();
      }
      if (!deps.store.getImage(name)) throw notFound('IMAGE_NOT_FOUND', `no image "${name}"`);
      const users = deps.clients.list().filter((c) => c.image === name);
      if (users.length) throw conflict('IMAGE_IN_USE', `image "${name}" is the base of ${users.length} client disk(s): ${users.map((c) => c.mac).join(', ')}`);
      deps.store.deleteImage(name);
      deps.flags.forget(name);
      return reply.status(204).send();
    });
  };
}
