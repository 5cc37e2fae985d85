import type { FastifyInstance } from 'fastify';
import { createReadStream } from 'node:fs';
import type { IpxeBinaries } from '../../boot/binaries';
import { answerScript, bootBinaryPath, type BootScriptContext, type ScriptAccess } from '../../boot/http';
import { peerIPv4, type NeighbourLookup } from '../../boot/neighbours';
import type { ScriptTokens } from '../../boot/script-tokens';
import type { ClientRegistry } from '../../clients/registry';
import { normaliseMac } from '../../core/model';

/** The one-time script links (issue #13): the store the DHCP answers mint into, and the kernel's neighbour table. */
export interface BootLinkCheck {
  tokens: ScriptTokens;
  neighbours: NeighbourLookup;
  /** The injected clock's now() (rate-limits the refusal warnings). */
  now: () => number;
}

/** Tokens are base64url; anything else is not one of ours (and is not looked up). */
const TOKEN = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * GET /boot/<mac>.ipxe[?t=<token>] — the per-client iPXE script (no auth: firmware cannot send a
 * credential). Only a one-time link minted by a DHCP answer and fetched by that machine gets a
 * script with the client's CHAP secret, starts its one-shot boot or enrols it; the static
 * address serves no secret and changes nothing (boot/http.ts, boot/script-tokens.ts).
 * GET /boot/<binary> — iPXE binaries for UEFI HTTP-boot clients (only known names are served).
 */
export function bootRoutes(
  ctx: () => BootScriptContext,
  binaries: () => IpxeBinaries,
  clients: Pick<ClientRegistry, 'byMac' | 'beginBoot'>,
  links?: BootLinkCheck,
) {
  /** Refusals logged at most once per MAC per 10 s: a flood of wrong fetches must not flood the log. */
  const warnedAt = new Map<string, number>();
  return async (app: FastifyInstance) => {
    app.get<{ Params: { file: string }; Querystring: { t?: string } }>('/boot/:file', { config: { public: true, anyHost: true } }, async (req, reply) => {
      const { file } = req.params;
      if (/\.ipxe$/i.test(file)) {
        const base = ctx();
        const mac = normaliseMac(file.replace(/\.ipxe$/i, ''));
        let access: ScriptAccess = { trusted: false };
        const token = typeof req.query.t === 'string' ? req.query.t : undefined;
        // fastify answers HEAD with the GET handler: a HEAD never spends a link.
        if (mac && token !== undefined && req.method === 'GET') {
          const peer = peerIPv4(req.socket.remoteAddress);
          // Looked up before the (synchronous) redeem, so no await sits between check and spend.
          const neighbourMac = peer && links ? await links.neighbours(peer) : undefined;
          const r =
            !links || !peer || !TOKEN.test(token) ? ({ ok: false, reason: 'unknown' } as const) : links.tokens.redeem(token, { mac, peer, neighbourMac });
          if (r.ok) {
            access = { trusted: true };
            req.log.info({ mac, peer, neighbourMac }, 'one-time boot link redeemed');
          } else {
            access = { trusted: false, refused: true };
            const now = links?.now() ?? 0;
            if ((warnedAt.get(mac) ?? -Infinity) + 10_000 <= now) {
              if (warnedAt.size > 1024) warnedAt.clear();
              warnedAt.set(mac, now);
              req.log.warn({ mac, peer, neighbourMac, reason: r.reason }, 'one-time boot link refused');
            }
          }
        }
        const r = await answerScript(file, base, access, (m) => clients.beginBoot(m));
        return reply.status(r.status).type(r.contentType).header('Cache-Control', 'no-store').send(r.body);
      }
      const path = bootBinaryPath(file, binaries());
      if (!path) return reply.status(404).type('text/plain').send('not found\n');
      return reply.type('application/octet-stream').send(createReadStream(path));
    });
  };
}
