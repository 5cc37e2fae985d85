/**
 * What the proxy and full responders share: the inbound request shape, counters, telemetry.
 * Responders are synchronous functions of (request, state, clock) -> replies, with no sockets,
 * so tests drive them directly.
 */
import type { BootAnswer, BootFacts as PolicyRequest } from '../boot/policy';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { BootEventSink, BootStage } from '../core/model';
import type { ClientRequestInfo } from './options';
import type { BootRequest } from './packet';
import type { Destination, Outbound } from './replies';

/** How a request reached us: the wildcard socket (a broadcast), our address (unicast), or the PXE port 4011. */
export type Via = 'broadcast' | 'unicast' | 'pxe';

/** One decoded request and where it came from. */
export interface Inbound {
  packet: BootRequest;
  info: ClientRequestInfo;
  via: Via;
  from: Destination;
}

/**
 * The boot decision as the responders need it (BootPolicy implements it). `binding.address` is the
 * client's address when the exchange knows it (full mode's yiaddr, a 4011 request's ciaddr): the
 * policy binds the one-time script link it mints for this answer to it (boot/script-tokens.ts).
 */
export interface PolicyPort {
  decide(req: PolicyRequest, serverAddress: string, binding?: { address?: string }): BootAnswer;
}

/** status() counters of the DHCP service. */
export interface DhcpCounters {
  discovers: number;
  offers: number;
  requests: number;
  acks: number;
  naks: number;
  declines: number;
  releases: number;
  informs: number;
  /** Malformed packets (DecodeError). */
  dropped: number;
  /** Well-formed requests not answered (not a boot client in proxy mode, another server's REQUEST, ...). */
  ignored: number;
}

/** Fresh zeroed counters. */
export function newCounters(): DhcpCounters {
  return { discovers: 0, offers: 0, requests: 0, acks: 0, naks: 0, declines: 0, releases: 0, informs: 0, dropped: 0, ignored: 0 };
}

/** Everything a responder needs. */
export interface ResponderContext {
  serverAddress: string;
  serverPort: number;
  clientPort: number;
  policy: PolicyPort;
  clock: Clock;
  log: Logger;
  events?: BootEventSink;
  counters: DhcpCounters;
  /** Remembers which MAC uses an address (for TFTP attribution). */
  noteAddress(ip: string, mac: string): void;
}

/** A responder: proxy or full. */
export interface Responder {
  handle(inb: Inbound): Outbound[];
}

/** The policy's view of a request. */
export function policyRequest(info: ClientRequestInfo): PolicyRequest {
  return { mac: info.mac, arch: info.arch, vendorClass: info.vendorClass, userClass: info.userClass, ipxe: info.ipxe };
}

/** Records a boot event when a sink is wired. */
export function emit(ctx: ResponderContext, mac: string, stage: BootStage, detail: Record<string, string | number | boolean | undefined>): void {
  if (!ctx.events) return;
  const clean: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(detail)) if (v !== undefined) clean[k] = v;
  ctx.events.record({ mac, stage, detail: clean });
}
