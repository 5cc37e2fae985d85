/**
 * The HTTP side of booting, framework-free so the integrator can mount it on fastify:
 *   GET /boot/:file  ->  file ends in .ipxe ? bootScriptFor(file, ctx, access) : bootBinaryPath(file, binaries)
 * Every script served is recorded as a `script-fetched` boot event.
 *
 * Issue #13: a script with CHAP credentials, an enrolment or a one-shot boot is served only to a
 * fetch that presented a valid one-time link (`access.trusted`, checked by the route against
 * script-tokens.ts). Anyone can ask for the static address, so it serves no secret and changes
 * no state: it tells the client to fetch a fresh link through DHCP (renderRetryScript).
 */
import { join } from 'node:path';
import type { Logger } from '../core/log';
import { normaliseMac, type BootEventSink, type ClientDirectory, type ClientRecord } from '../core/model';
import type { IpxeBinaries } from './binaries';
import { renderIpxeScript, renderMenuScript, renderRetryScript, renderWaitScript } from './ipxe-script';
import { effectiveUnknownClients, scriptUrl, type UnknownClientsSetting } from './policy';

/** Everything bootScriptFor needs. */
export interface BootScriptContext {
  clients: ClientDirectory;
  serverAddress: string;
  httpPort: number;
  iscsiPort: number;
  /** config boot.unknownClients; 'auto' is resolved with dhcpMode (effectiveUnknownClients). */
  unknownClients: UnknownClientsSetting;
  /** The DHCP mode in force, for unknownClients 'auto'. */
  dhcpMode?: 'off' | 'proxy' | 'full';
  /** The appliance's mDNS host name (`netboot.local`), shown on the "wait" screen; '' or absent when mDNS is off. */
  mdnsHost?: string;
  /** Creates a client (clone of boot.enrollImage) for an unknown MAC; needed for 'enroll'. */
  enroll?: (mac: string, arch: number | undefined) => Promise<ClientRecord>;
  /** The client's architecture from its last DHCP request (BootPolicy.archOf: boot asks boot, not DHCP). */
  archOf?: (mac: string) => number | undefined;
  events?: BootEventSink;
  log?: Logger;
}

/** What the fetch proved. The default (nothing) is the static address: no credentials, no state change. */
export interface ScriptAccess {
  /** A valid one-time link was presented (and spent) by the machine it was minted for. */
  trusted: boolean;
  /** A link was presented and refused: the user is told so on screen. */
  refused?: boolean;
}

/** An HTTP answer: iPXE runs a body only with status 200. */
export interface BootHttpResponse {
  status: number;
  contentType: string;
  body: string;
}

const TEXT = 'text/plain; charset=utf-8';
/** In-flight enrolments per enroll callback, so two fetches of one MAC create one client. */
const pending = new WeakMap<object, Map<string, Promise<ClientRecord>>>();

/**
 * The script for `file` ("aa-bb-cc-dd-ee-ff.ipxe", any MAC spelling normaliseMac accepts):
 * the sanboot script for a registered client; for an unknown one the menu, an enrolment (then
 * its sanboot script), the waiting screen, or 404 when unknownClients is "ignore". 400 for a name that is not a MAC.
 * Without `access.trusted`, a client with CHAP or a pending one-shot boot, and an enrolment, get
 * the retry script instead (see the file comment); a client without CHAP gets its name-only
 * sanboot script. Async because enrolment clones a disk.
 */
export async function bootScriptFor(file: string, ctx: BootScriptContext, access: ScriptAccess = { trusted: false }): Promise<BootHttpResponse> {
  const stem = file.replace(/\.ipxe$/i, '');
  const mac = normaliseMac(stem);
  if (!mac) return { status: 400, contentType: TEXT, body: `not a MAC address: ${stem}\n` };
  const url = scriptUrl(mac, ctx.serverAddress, ctx.httpPort);
  const opts = { serverAddress: ctx.serverAddress, iscsiPort: ctx.iscsiPort };
  const known = ctx.clients.byMac(mac);
  const retry = (name: string | undefined, why: 'static' | 'enrol') => {
    const reason = access.refused ? 'refused' : why;
    ctx.events?.record({ mac, stage: 'script-fetched', detail: { kind: 'retry', reason } });
    return { status: 200, contentType: TEXT, body: renderRetryScript({ mac, name, reason }) };
  };
  if (known) {
    if (!access.trusted && (access.refused || known.chap || known.nextBoot)) return retry(known.name, 'static');
    ctx.events?.record({ mac, stage: 'script-fetched', detail: { kind: 'sanboot', target: known.target, ...(access.trusted ? { link: 'one-time' } : {}) } });
    return { status: 200, contentType: TEXT, body: renderIpxeScript(known, opts) };
  }
  const mode = effectiveUnknownClients(ctx.unknownClients, ctx.dhcpMode);
  if (mode === 'enroll' && !access.trusted) return retry(undefined, 'enrol');
  switch (mode) {
    case 'ignore':
      return { status: 404, contentType: TEXT, body: `unknown client ${mac}\n` };
    case 'menu':
      ctx.events?.record({ mac, stage: 'script-fetched', detail: { kind: 'menu' } });
      return { status: 200, contentType: TEXT, body: renderMenuScript(mac, { scriptUrl: url }) };
    case 'wait':
      // Nothing secret and no state change: the poll ends when an admin assigns an image.
      ctx.events?.record({ mac, stage: 'script-fetched', detail: { kind: 'wait' } });
      return {
        status: 200,
        contentType: TEXT,
        body: renderWaitScript(mac, { mdnsHost: ctx.mdnsHost ?? '', uiUrl: `http://${ctx.serverAddress}:${ctx.httpPort}` }),
      };
    case 'enroll': {
      if (!ctx.enroll) {
        ctx.log?.error({ mac }, 'boot.unknownClients is "enroll" but no enroll callback is wired');
        return { status: 200, contentType: TEXT, body: renderMenuScript(mac, { scriptUrl: url, message: 'enrolment is not available' }) };
      }
      let inflight = pending.get(ctx.enroll);
      if (!inflight) pending.set(ctx.enroll, (inflight = new Map()));
      let job = inflight.get(mac);
      if (!job) {
        job = ctx.enroll(mac, ctx.archOf?.(mac));
        inflight.set(mac, job);
        void job.finally(() => inflight.delete(mac)).catch(() => undefined);
      }
      try {
        const client = await job;
        ctx.log?.info({ mac, client: client.name, disk: client.disk }, 'enrolled unknown client');
        ctx.events?.record({ mac, stage: 'script-fetched', detail: { kind: 'enrolled', target: client.target } });
        return { status: 200, contentType: TEXT, body: renderIpxeScript(client, opts) };
      } catch (err) {
        ctx.log?.error({ mac, err }, 'enrolment failed');
        ctx.events?.record({ mac, stage: 'script-fetched', detail: { kind: 'menu', reason: 'enrol-failed' } });
        const why = err instanceof Error ? err.message : String(err);
        return { status: 200, contentType: TEXT, body: renderMenuScript(mac, { scriptUrl: url, message: `enrolment failed: ${why}` }) };
      }
    }
  }
}

/**
 * The script route's one question to boot policy (issue #18: the one-shot choice is made here,
 * in boot/, not in the HTTP route). For a fetch through a redeemed one-time link of a registered
 * client, `beginBoot` (the registry's) consumes a one-shot next-boot choice and says which of the
 * client's disks this boot uses; the script then names that disk's target. Never for a replayed,
 * expired or foreign fetch: they must not spend the choice. Enrolment and the wait screen are
 * bootScriptFor's.
 */
export async function answerScript(
  file: string,
  ctx: BootScriptContext,
  access: ScriptAccess,
  beginBoot?: (mac: string) => Promise<{ client: ClientRecord; reason: string }>,
): Promise<BootHttpResponse> {
  const mac = normaliseMac(file.replace(/\.ipxe$/i, ''));
  if (!access.trusted || !mac || !beginBoot || !ctx.clients.byMac(mac)) return bootScriptFor(file, ctx, access);
  const sel = await beginBoot(mac);
  if (sel.reason !== 'default') ctx.log?.info({ mac, disk: sel.client.disk, reason: sel.reason }, 'one-shot boot selected');
  const clients = { byMac: (m: string) => (normaliseMac(m) === mac ? sel.client : ctx.clients.byMac(m)) };
  return bootScriptFor(file, { ...ctx, clients }, access);
}

/**
 * The absolute path of an iPXE binary served over HTTP (UEFI HTTP boot fetches ipxe.efi this
 * way), or undefined when `file` is not one of the binaries found. Only known names are served,
 * so no path from the URL ever reaches the file system.
 */
export function bootBinaryPath(file: string, binaries: IpxeBinaries): string | undefined {
  const known = [binaries.bios, binaries.efiX64, binaries.efiIa32, binaries.efiArm64, binaries.efiArm32].filter(Boolean) as string[];
  const hit = known.find((k) => k === file || k.replace(/\//g, '-') === file);
  return hit ? join(binaries.dir, hit) : undefined;
}
