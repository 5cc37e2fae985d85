/**
 * Whom the appliance answers router solicitations for, and when it keeps quiet. Pure: the
 * service (responder.ts) passes in what it knows and the time.
 *
 * Why answer at all: iPXE configures IPv6 beside DHCPv4 and acts on neither until a router
 * advertisement comes or it gives up (~15-18 s per iPXE instance, twice per boot when a PXE ROM
 * chainloads iPXE). An RA with router lifetime 0 and no prefix ends the wait and configures
 * nothing (docs/decisions.md, "IPv6 router solicitations").
 */
import { macToLinkLocal } from './link-local';

/** An unknown network-boot client heard by DHCP (telemetry's unknown_clients row). */
export interface HeardClient {
  mac: string;
  lastSeen: number;
}

/** Unknown clients count as booting this long after DHCP last heard them (the wait screen re-asks every 30 s). */
export const UNKNOWN_BOOT_WINDOW_MS = 10 * 60_000;

/**
 * The MACs the appliance is booting: every registered client (their RS may come before the
 * appliance hears their DHCP: the ROM sends both at once), and, when the boot policy serves
 * unknown machines (boot.unknownClients wait, menu or enroll), the unknown ones DHCP heard in
 * the last UNKNOWN_BOOT_WINDOW_MS. Under "ignore" no unknown machine is answered: the appliance
 * never speeds up a boot it takes no part in. Sorted, unique.
 */
export function bootingMacs(known: Iterable<string>, heard: readonly HeardClient[], unknownMode: 'ignore' | 'menu' | 'enroll' | 'wait', now: number): string[] {
  const macs = new Set(known);
  if (unknownMode !== 'ignore') {
    for (const h of heard) if (now - h.lastSeen <= UNKNOWN_BOOT_WINDOW_MS) macs.add(h.mac);
  }
  return [...macs].sort();
}

/** The helper's allow-list holds at most this many addresses (ra-responder.c, MAX_CLIENTS). */
export const MAX_ALLOWED = 8192;

/** What the service knows when it decides. */
export interface RaState {
  now: number;
  /** Until then nobody is answered: the start-up solicitations are still looking for routers. */
  probeUntil: number;
  /** Other routers heard (RA source -> when last heard). */
  routers: ReadonlyMap<string, number>;
  /** A router counts as present this long after its last RA. */
  holdMs: number;
  /** bootingMacs(). */
  booting: readonly string[];
}

/** Answer these link-local addresses, or nobody and why. */
export type RaDecision = { answer: true; allow: string[]; macByAddress: Map<string, string> } | { answer: false; reason: string; router?: string };

/**
 * The decision. Quiet while probing, and while any other router is present: its own RAs end
 * iPXE's wait already, and a second router's empty RA on a LAN that has real IPv6 helps nobody.
 */
export function decideRa(s: RaState): RaDecision {
  if (s.now < s.probeUntil) return { answer: false, reason: 'looking for other routers on the link' };
  let newest: [string, number] | undefined;
  for (const [addr, at] of s.routers) if (s.now - at < s.holdMs && (!newest || at > newest[1])) newest = [addr, at];
  if (newest) return { answer: false, reason: `another router advertises on the link (${newest[0]})`, router: newest[0] };
  if (s.booting.length === 0) return { answer: false, reason: 'no client to answer' };
  const macByAddress = new Map(s.booting.slice(0, MAX_ALLOWED).map((mac) => [macToLinkLocal(mac), mac]));
  return { answer: true, allow: [...macByAddress.keys()], macByAddress };
}
