import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../core/log';
import { installBodyTypeCheck, installRouteAuth, type RequestAuthenticator } from './auth';
import { installErrorHandler } from './errors';
import { installHostCheck, type HostPolicy } from './hosts';

/** A feature's routes, registered by the core with their own dependencies closed over. */
export type RoutePlugin = (app: FastifyInstance) => Promise<void> | void;

export interface HttpAppOptions {
  log: Logger;
  token: string;
  routes: RoutePlugin[];
  authenticators?: RequestAuthenticator[];
  /** The names the app answers to besides localhost (DNS-rebinding defence, hosts.ts). */
  hosts?: HostPolicy;
  /** Largest JSON body accepted (uploads stream and are not bound by this). */
  bodyLimit?: number;
}

/** One registered route as the door tests walk them. */
export interface RouteEntry {
  method: string;
  url: string;
  public: boolean;
  anyHost: boolean;
}

/**
 * The routes whose body is a raw stream (application/octet-stream) rather than JSON, as
 * `"<METHOD> <route url>"`: the image upload, which is too big to buffer.
 */
export const STREAM_BODY_ROUTES: ReadonlySet<string> = new Set(['PUT /api/images/:name/upload']);

const routeTables = new WeakMap<FastifyInstance, RouteEntry[]>();

/** Every route registered on an app built by buildHttpApp (fastify's own table, via onRoute). */
export function registeredRoutes(app: FastifyInstance): readonly RouteEntry[] {
  return routeTables.get(app) ?? [];
}

/**
 * Builds the fastify app: error handler, the doors (Host check, then auth decided on the
 * matched route, then body type), then each feature's routes. Tests call `app.inject()` on it
 * without opening a port.
 */
export async function buildHttpApp(opts: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.log as unknown as FastifyBaseLogger,
    // Requests are logged once, in onResponse below, with the fields we want.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    trustProxy: false,
  });
  const table: RouteEntry[] = [];
  routeTables.set(app, table);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) table.push({ method, url: r.url, public: r.config?.public === true, anyHost: r.config?.anyHost === true });
  });
  installErrorHandler(app);
  // Hooks run in the order added: a misdirected request is refused before its credentials are
  // even looked at, and an unauthenticated one before its body is judged.
  installHostCheck(app, opts.hosts);
  installRouteAuth(app, opts.token, opts.authenticators);
  installBodyTypeCheck(app, STREAM_BODY_ROUTES);
  app.addHook('onResponse', async (request, reply) => {
    // API calls at info; boot-script and UI asset fetches at debug (they are frequent).
    const level = request.url.startsWith('/api/') && request.method !== 'GET' ? 'info' : 'debug';
    request.log[level]({ method: request.method, url: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'http request');
  });
  for (const r of opts.routes) await app.register(async (scope) => r(scope));
  return app;
}
