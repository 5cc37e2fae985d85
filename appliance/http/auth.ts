import type { FastifyInstance, FastifyRequest } from 'fastify';
import { tokenMatches } from '../core/admin-token';

declare module 'fastify' {
  /** The door flags a route may carry in its options' `config` (read by the hooks in auth.ts and hosts.ts). */
  interface FastifyContextConfig {
    /** Reachable without the admin token or a UI session: login, session probe, UI shell, /boot, /metrics. */
    public?: boolean;
    /** Answered whatever the Host header names (/boot: firmware asks by the address DHCP gave it). */
    anyHost?: boolean;
  }
}

/**
 * A way other than the bearer token to authenticate an API request (the UI's session cookie).
 * Returns true when the request is authenticated; it may also reject (e.g. a missing CSRF token).
 */
export type RequestAuthenticator = (request: FastifyRequest) => boolean | Promise<boolean>;

/** The body every refused request gets: no hint which part was wrong. */
const UNAUTHORIZED = { error: { code: 'UNAUTHORIZED', message: 'authentication required' } } as const;

/**
 * Default deny, decided on the route the router matched (never on the URL text, which the
 * router decodes: `/%61pi/x`, `//api/x` and `http://host/api/x` all reach `/api/x`). Every
 * route needs `Authorization: Bearer <admin token>` or an extra authenticator's approval,
 * unless its options say `config: { public: true }`. Unmatched requests fall through to the
 * not-found handler, which runs no route code and names nothing.
 */
export function installRouteAuth(app: FastifyInstance, token: string, extra: RequestAuthenticator[] = []): void {
  app.addHook('onRequest', async (request, reply) => {
    if (request.is404) return;
    if (request.routeOptions.config.public === true) return;
    const header = request.headers.authorization;
    if (header?.startsWith('Bearer ') && tokenMatches(header.slice(7).trim(), token)) return;
    for (const auth of extra) if (await auth(request)) return;
    reply.header('WWW-Authenticate', 'Bearer realm="netboot"');
    return reply.status(401).send(UNAUTHORIZED);
  });
}

/**
 * Request bodies are JSON only: a web page can send text/plain, form and multipart bodies
 * cross-site without a CORS preflight, but not application/json. `streamRoutes`
 * (`"PUT /api/images/:name/upload"`) may also take application/octet-stream. Anything else
 * with a body gets 415 before any parser or handler sees it.
 */
export function installBodyTypeCheck(app: FastifyInstance, streamRoutes: ReadonlySet<string>): void {
  app.removeContentTypeParser('text/plain');
  app.addHook('onRequest', async (request, reply) => {
    if (request.is404) return;
    const length = request.headers['content-length'];
    // Anything but a plain zero length counts as a body (Node has already refused malformed ones).
    const hasBody = request.headers['transfer-encoding'] !== undefined || (length !== undefined && Number(length) !== 0);
    if (!hasBody) return;
    const type = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type === 'application/json') return;
    if (type === 'application/octet-stream' && streamRoutes.has(`${request.method} ${request.routeOptions.url}`)) return;
    return reply.status(415).send({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send request bodies as application/json' } });
  });
}
