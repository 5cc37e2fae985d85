/**
 * One-time boot-script links (issue #13). The script that carries a client's CHAP secret is
 * served only at `/boot/<mac>.ipxe?t=<token>`, where the token was minted for one DHCP answer
 * that handed iPXE its script URL, and only to the machine that answer was for:
 *
 *  - short-lived (boot.scriptTokenSeconds, default 120 s; iPXE fetches its script seconds after
 *    the DHCP answer, ~20 s under TCG including its IPv6 wait) and single use;
 *  - bound to the MAC the DHCP answer went to: on fetch, the HTTP peer's address must map to that
 *    MAC in the kernel's neighbour table (the kernel has the entry: it just completed a TCP
 *    handshake with the peer, whose SYN-ACK needed the peer's link-layer address);
 *  - bound to the address the exchange gave the client where we know it (full mode's yiaddr,
 *    the ciaddr of a port-4011 request): the peer must come from that address.
 *
 * A fetch from the wrong machine does not spend the token (a sniffer racing the real client
 * must not be able to burn its link); an expired or spent token is refused with its reason.
 * Tokens live in memory only (a restart just means the client re-DHCPs), bounded per MAC and
 * overall; time comes from the injected clock. No timers: expired entries are swept on mint.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock';

/** What the DHCP exchange knew about the client when it minted a token. */
export interface TokenBinding {
  /** The address the client was given (full mode yiaddr) or already had (ciaddr of a 4011 request). */
  address?: string;
}

/** What a fetch presents: the MAC named in the URL, the TCP peer and what the neighbour table says about it. */
export interface TokenClaim {
  mac: string;
  /** The HTTP peer's IPv4 address. */
  peer: string;
  /** The peer's link-layer address from the kernel's neighbour table; undefined when it has no complete entry (off-link peer). */
  neighbourMac: string | undefined;
}

/** Why a token was refused. `spent`/`expired`/`unknown` also cover replays. */
export type TokenRefusal =
  | 'unknown' // never minted here, evicted by the bounds, or minted before a restart
  | 'expired'
  | 'spent' // already redeemed: a replay
  | 'other-mac' // minted for another client than the URL names
  | 'wrong-address' // the peer is not the address DHCP gave the client
  | 'wrong-neighbour' // the peer's link-layer address is another machine's
  | 'no-neighbour'; // off-link peer, and no DHCP address to check it against

export type RedeemResult = { ok: true } | { ok: false; reason: TokenRefusal };

export interface ScriptTokenOptions {
  clock: Clock;
  /** Lifetime in ms (boot.scriptTokenSeconds * 1000). */
  ttlMs: number;
  /** Live tokens kept per MAC (a full-mode exchange mints two: OFFER and ACK). Default 4. */
  maxPerMac?: number;
  /** Live tokens overall. Default 4096 (a flood of fake MACs evicts the oldest first). */
  maxTotal?: number;
  /** Token source (tests); default 128 random bits, base64url (22 characters, nothing to escape in a URL or an iPXE script). */
  generate?: () => string;
}

interface Entry {
  mac: string;
  address: string | undefined;
  expiresAt: number;
  spent: boolean;
}

/** The in-memory token store the DHCP side mints from and the script route redeems against. */
export class ScriptTokens {
  /** Insertion order = mint order = expiry order (one TTL), so the oldest entries are at the front. */
  private readonly byToken = new Map<string, Entry>();
  private readonly perMac = new Map<string, string[]>();
  private readonly maxPerMac: number;
  private readonly maxTotal: number;
  private readonly generate: () => string;

  constructor(private readonly opts: ScriptTokenOptions) {
    this.maxPerMac = Math.max(1, opts.maxPerMac ?? 4);
    this.maxTotal = Math.max(1, opts.maxTotal ?? 4096);
    this.generate = opts.generate ?? (() => randomBytes(16).toString('base64url'));
  }

  /** A fresh token for one DHCP answer to `mac` (normalised). */
  mint(mac: string, binding: TokenBinding = {}): string {
    const now = this.opts.clock.now();
    this.sweep(now);
    let token = this.generate();
    while (this.byToken.has(token)) token = this.generate();
    const list = this.perMac.get(mac) ?? [];
    while (list.length >= this.maxPerMac) this.drop(list[0]!);
    while (this.byToken.size >= this.maxTotal) this.drop(this.byToken.keys().next().value!);
    this.byToken.set(token, { mac, address: binding.address, expiresAt: now + this.opts.ttlMs, spent: false });
    const fresh = this.perMac.get(mac) ?? [];
    fresh.push(token);
    this.perMac.set(mac, fresh);
    return token;
  }

  /**
   * Checks a fetch against a token and spends it when every check passes. Synchronous, so two
   * concurrent fetches cannot both spend one token (the neighbour lookup happens before).
   * A successful redeem also retires the MAC's other tokens (the OFFER's token of the same
   * exchange, older answers): one boot, one script.
   */
  redeem(token: string, claim: TokenClaim): RedeemResult {
    const e = this.byToken.get(token);
    if (!e) return { ok: false, reason: 'unknown' };
    if (e.spent) return { ok: false, reason: 'spent' };
    if (this.opts.clock.now() >= e.expiresAt) {
      this.drop(token);
      return { ok: false, reason: 'expired' };
    }
    if (e.mac !== claim.mac) return { ok: false, reason: 'other-mac' };
    if (e.address !== undefined && e.address !== claim.peer) return { ok: false, reason: 'wrong-address' };
    if (claim.neighbourMac !== undefined) {
      if (claim.neighbourMac !== e.mac) return { ok: false, reason: 'wrong-neighbour' };
    } else if (e.address === undefined) {
      // Off-link (routed) peer: its frames carry the router's address, so only the DHCP-given
      // address could vouch for it, and this token has none.
      return { ok: false, reason: 'no-neighbour' };
    }
    for (const other of [...(this.perMac.get(e.mac) ?? [])]) if (other !== token) this.drop(other);
    // Kept (spent) until it expires so a replay is reported as one.
    e.spent = true;
    return { ok: true };
  }

  /** Live (unexpired) tokens, for status and tests. */
  size(): number {
    this.sweep(this.opts.clock.now());
    return this.byToken.size;
  }

  private sweep(now: number): void {
    for (const [token, e] of this.byToken) {
      if (e.expiresAt > now) break; // ordered by expiry
      this.drop(token);
    }
  }

  private drop(token: string): void {
    const e = this.byToken.get(token);
    if (!e) return;
    this.byToken.delete(token);
    const list = this.perMac.get(e.mac);
    if (!list) return;
    const i = list.indexOf(token);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.perMac.delete(e.mac);
  }
}
