import type { FastifyInstance, FastifyRequest } from 'fastify';
import { tokenMatches } from '../core/admin-token';

/**
 * A way other than the bearer token to authenticate an API request (the UI's session cookie).
 * Returns true when the request is authenticated; it may also reject (e.g. a missing CSRF token).
 */
export type RequestAuthenticator = (request: FastifyRequest) => boolean | Promise<boolean>;

/**
 * Every route under /api needs `Authorization: Bearer <admin token>` (or an extra
 * authenticator's approval). A wrong or missing token gets a bare 401: no hint which part
 * was wrong. `publicPaths` (the UI's login route) are exempt.
 */
export function installApiAuth(
  app: FastifyInstance,
  token: string,
  extra: RequestAuthenticator[] = [],
  publicPaths: readonly string[] = [],
): void {
  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/api/') && request.url !== '/api') return;
    if (publicPaths.includes(request.url.split('?')[0])) return;
    const header = request.headers.authorization;
    if (header?.startsWith('Bearer ') && tokenMatches(header.slice(7).trim(), token)) return;
    for (const auth of extra) if (await auth(request)) return;
    reply.header('WWW-Authenticate', 'Bearer realm="netboot"');
    return reply.status(401).send({ error: { code: 'UNAUTHORIZED', message: 'authentication required' } });
  });
}
