import type { FastifyInstance } from 'fastify';
import { createReadStream } from 'node:fs';
import type { IpxeBinaries } from '../../boot/binaries';
import { bootBinaryPath, bootScriptFor, type BootScriptContext } from '../../boot/http';
import type { ClientRegistry } from '../../clients/registry';
import { normaliseMac } from '../../core/model';

/**
 * GET /boot/<mac>.ipxe — the per-client iPXE script (no auth: firmware cannot send a token; the
 * script reveals the client's target and initiator name, which the iSCSI ACL and CHAP protect).
 * GET /boot/<binary> — iPXE binaries for UEFI HTTP-boot clients (only known names are served).
 */
export function bootRoutes(ctx: () => BootScriptContext, binaries: () => IpxeBinaries, clients: ClientRegistry) {
  return async (app: FastifyInstance) => {
    app.get<{ Params: { file: string } }>('/boot/:file', { config: { public: true, anyHost: true } }, async (req, reply) => {
      const { file } = req.params;
      if (/\.ipxe$/i.test(file)) {
        // A boot starts: the registry consumes a one-shot next-boot choice and answers which of
        // the client's disks this boot uses; the script names that disk's target.
        const base = ctx();
        const mac = normaliseMac(file.replace(/\.ipxe$/i, ''));
        let scriptCtx = base;
        if (mac && clients.byMac(mac)) {
          const sel = await clients.beginBoot(mac);
          if (sel.reason !== 'default') req.log.info({ mac, disk: sel.client.disk, reason: sel.reason }, 'one-shot boot selected');
          scriptCtx = { ...base, clients: { byMac: (m) => (normaliseMac(m) === mac ? sel.client : base.clients.byMac(m)) } };
        }
        const r = await bootScriptFor(file, scriptCtx);
        return reply.status(r.status).type(r.contentType).header('Cache-Control', 'no-store').send(r.body);
      }
      const path = bootBinaryPath(file, binaries());
      if (!path) return reply.status(404).type('text/plain').send('not found\n');
      return reply.type('application/octet-stream').send(createReadStream(path));
    });
  };
}
