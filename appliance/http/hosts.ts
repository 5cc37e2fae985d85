import type { FastifyInstance, FastifyRequest } from 'fastify';
import { networkInterfaces } from 'node:os';

/** Which names the appliance answers to, besides localhost and its loopback addresses. */
export interface HostPolicy {
  /** `<mdns.name>.local`, the configured server address, config `http.allowedHosts`. */
  names?: readonly string[];
  /** The box's own addresses, read per request (DHCP may change them); default: every interface's. */
  addresses?: () => readonly string[];
}

const ALWAYS = ['localhost', '127.0.0.1', '::1'];

/** Every interface address of this machine, without IPv6 zone ids. */
export function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .map((a) => a?.address.toLowerCase().replace(/%.*$/, '') ?? '')
    .filter(Boolean);
}

/**
 * The host part of a Host header or URL authority, lower-cased, without port, brackets or a
 * trailing dot; undefined when it is not a plausible host (RFC 3986 §3.2.2).
 */
export function hostName(authority: string | undefined): string | undefined {
  if (!authority) return undefined;
  const a = authority.trim().toLowerCase();
  const m = /^\[([0-9a-f:.]+)(?:%25[^\]]*)?\](?::\d{1,5})?$/.exec(a) ?? /^([a-z0-9._-]+?)\.?(?::\d{1,5})?$/.exec(a);
  return m?.[1] || undefined;
}

/** Builds the Host test: fixed names first, then the interface addresses as they are now. */
export function hostMatcher(policy: HostPolicy = {}): (name: string | undefined) => boolean {
  const fixed = new Set([...ALWAYS, ...(policy.names ?? []).map((n) => hostName(n) ?? n.toLowerCase())]);
  const addresses = policy.addresses ?? interfaceAddresses;
  return (name) => name !== undefined && (fixed.has(name) || addresses().includes(name));
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The authority of an absolute-form request target (`GET http://host/path`), if it is one. */
function targetAuthority(request: FastifyRequest): string | undefined {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(request.raw.url ?? '');
  return m ? m[1].replace(/^.*@/, '') : undefined;
}

/**
 * DNS-rebinding defence: a page at `http://evil.example` whose name an attacker re-points at
 * the appliance is same-origin with it in the browser, but its requests say `Host:
 * evil.example`. Routes answer only to the appliance's own names and addresses (421
 * otherwise), except those marked `config: { anyHost: true }` (/boot). A state-changing
 * request that carries an Origin must come from the very origin it is sent to.
 */
export function installHostCheck(app: FastifyInstance, policy: HostPolicy = {}): void {
  const allowed = hostMatcher(policy);
  app.addHook('onRequest', async (request, reply) => {
    if (!request.is404 && request.routeOptions.config.anyHost === true) return;
    const host = request.headers.host;
    const absolute = targetAuthority(request);
    const name = hostName(host);
    if (!allowed(name) || (absolute !== undefined && !allowed(hostName(absolute)))) {
      return reply.status(421).send({
        error: {
          code: 'MISDIRECTED_REQUEST',
          message: 'this appliance does not answer to that host name; use its address, localhost or <name>.local, or add the name to http.allowedHosts',
        },
      });
    }
    const origin = request.headers.origin;
    if (origin !== undefined && !SAFE_METHODS.has(request.method)) {
      const m = /^https?:\/\/([^/]+)$/i.exec(origin);
      if (!m || m[1].toLowerCase() !== String(host).toLowerCase()) {
        return reply.status(403).send({ error: { code: 'CROSS_ORIGIN', message: "state-changing requests must come from the appliance's own pages" } });
      }
    }
  });
}
