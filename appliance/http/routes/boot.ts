import type { FastifyInstance } from 'fastify';
import { createReadStream } from 'node:fs';
import type { IpxeBinaries } from '../../boot/binaries';
import { bootBinaryPath, bootScriptFor, type BootScriptContext } from '../../boot/http';

/**
 * GET /boot/<mac>.ipxe — the per-client iPXE script (no auth: firmware cannot send a token; the
 * script reveals the client's target and initiator name, which the iSCSI ACL and CHAP protect).
 * GET /boot/<binary> — iPXE binaries for UEFI HTTP-boot clients (only known names are served).
 */
export function bootRoutes(ctx: () => BootScriptContext, binaries: () => IpxeBinaries) {
  return async (app: FastifyInstance) => {
    app.get<{ Params: { file: string } }>('/boot/:file', async (req, reply) => {
      const { file } = req.params;
      if (/\.ipxe$/i.test(file)) {
        const r = await bootScriptFor(file, ctx());
        return reply.status(r.status).type(r.contentType).header('Cache-Control', 'no-store').send(r.body);
      }
      const path = bootBinaryPath(file, binaries());
      if (!path) return reply.status(404).type('text/plain').send('not found\n');
      return reply.type('application/octet-stream').send(createReadStream(path));
    });
  };
}
