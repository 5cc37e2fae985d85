import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../core/log';
import { installApiAuth, type RequestAuthenticator } from './auth';
import { installErrorHandler } from './errors';

/** A feature's routes, registered by the core with their own dependencies closed over. */
export type RoutePlugin = (app: FastifyInstance) => Promise<void> | void;

export interface HttpAppOptions {
  log: Logger;
  token: string;
  routes: RoutePlugin[];
  authenticators?: RequestAuthenticator[];
  /** /api paths reachable without auth (the UI login). */
  publicPaths?: string[];
  /** Largest JSON body accepted (uploads stream and are not bound by this). */
  bodyLimit?: number;
}

/**
 * Builds the fastify app: error handler, API auth, then each feature's routes. Tests call
 * `app.inject()` on it without opening a port.
 */
export async function buildHttpApp(opts: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.log as unknown as FastifyBaseLogger,
    // Requests are logged once, in onResponse below, with the fields we want.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    trustProxy: false,
  });
  installErrorHandler(app);
  installApiAuth(app, opts.token, opts.authenticators, opts.publicPaths);
  app.addHook('onResponse', async (request, reply) => {
    // API calls at info; boot-script and UI asset fetches at debug (they are frequent).
    const level = request.url.startsWith('/api/') && request.method !== 'GET' ? 'info' : 'debug';
    request.log[level]({ method: request.method, url: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'http request');
  });
  for (const r of opts.routes) await app.register(async (scope) => r(scope));
  return app;
}
