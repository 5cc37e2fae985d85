import type { FastifyError, FastifyInstance } from 'fastify';
import { ApiError } from '../core/errors';

/** The body of every API error. */
export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

/**
 * Turns every thrown error into `{ error: { code, message } }`. ApiErrors and errors carrying a
 * `code` + `status` (e.g. the image store's StoreError) keep theirs; schema failures are 400
 * VALIDATION; anything else is a 500 whose text is hidden from the client and logged with the
 * request.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError & { status?: number; details?: unknown }, request, reply) => {
    if (err instanceof ApiError) {
      return reply.status(err.statusCode).send({ error: { code: err.code, message: err.message, details: err.details } });
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.status(415).send({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send request bodies as application/json' } });
    }
    if (err.validation) {
      return reply.status(400).send({ error: { code: 'VALIDATION', message: err.message } });
    }
    const status = typeof err.status === 'number' ? err.status : err.statusCode;
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
