import type { FastifyError, FastifyInstance } from 'fastify';
import { StoreError, type StoreErrorCode } from '../../image-store/errors';
import { ApiError } from '../core/errors';

/** The HTTP status of each image-store failure (the store itself knows nothing of HTTP). */
const STORE_STATUS: Record<StoreErrorCode, number> = {
  IMAGE_NOT_FOUND: 404,
  DISK_NOT_FOUND: 404,
  SNAPSHOT_NOT_FOUND: 404,
  IMAGE_EXISTS: 409,
  DISK_EXISTS: 409,
  SNAPSHOT_EXISTS: 409,
  IMAGE_IN_USE: 409,
  DISK_IN_USE: 409,
  BAD_NAME: 400,
  BAD_IMAGE: 422,
  IMAGE_REFERENCES_FILE: 400, // an import naming another file (backing file, extent): refused, see image-store/import.ts
  NO_SPACE: 507,
  ABORTED: 499,
  NO_QEMU_IMG: 501,
  STORE_CLOSED: 503,
};

/**
 * Turns every thrown error into `{ error: { code, message } }`. ApiErrors keep their status, the
 * image store's StoreErrors get theirs from STORE_STATUS (its own words: they name the user's
 * images and disks, nothing of the host); fastify's own 4xx keep theirs; schema failures are 400
 * VALIDATION; anything else is a 500 whose text is hidden from the client and logged with the
 * request.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError & { details?: unknown }, request, reply) => {
    if (err instanceof ApiError) {
      return reply.status(err.statusCode).send({ error: { code: err.code, message: err.message, details: err.details } });
    }
    if (err instanceof StoreError) {
      return reply.status(STORE_STATUS[err.code]).send({ error: { code: err.code, message: err.message } });
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.status(415).send({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send request bodies as application/json' } });
    }
    if (err.validation) {
      return reply.status(400).send({ error: { code: 'VALIDATION', message: err.message } });
    }
    const status = err.statusCode;
    if (typeof err.code === 'string' && typeof status === 'number' && status >= 400 && status < 500) {
      return reply.status(status).send({ error: { code: err.code, message: err.message } });
    }
    request.log.error({ err, request: { method: request.method, url: request.url } }, 'request failed');
    return reply.status(500).send({ error: { code: 'INTERNAL', message: 'internal error' } });
  });
  // The same answer for every unmatched request, whatever it asked: nothing to probe.
  app.setNotFoundHandler((_request, reply) => {
    reply.status(404).send({ error: { code: 'NOT_FOUND', message: 'no such route' } });
  });
}
