/**
 * The kernel's IPv4 neighbour (ARP) table, read from /proc/net/arp: which link-layer address an
 * on-link peer has. The script route uses it to bind a one-time script link to the MAC the DHCP
 * answer went to (script-tokens.ts). /proc/net is per network namespace, so the appliance sees
 * the table of the namespace it serves in. No `ip neigh` child process: one small file read.
 *
 * /proc/net/arp columns: IP address, HW type, Flags, HW address, Mask, Device. Flags 0x2
 * (ATF_COM) marks a complete entry; an incomplete one shows 00:00:00:00:00:00 and is skipped.
 */
import { readFile } from 'node:fs/promises';

/** The link-layer address of an on-link IPv4 peer, or undefined (no complete entry, off-link, IPv6). */
export type NeighbourLookup = (ip: string) => Promise<string | undefined>;

const ATF_COM = 0x2;

/** Parses /proc/net/arp text into ip -> mac (lower case), complete entries only. */
export function parseArpTable(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n').slice(1)) {
    const [ip, , flags, mac] = line.trim().split(/\s+/);
    if (!ip || !mac || !flags) continue;
    if ((Number.parseInt(flags, 16) & ATF_COM) === 0) continue;
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac) || mac === '00:00:00:00:00:00') continue;
    out.set(ip, mac.toLowerCase());
  }
  return out;
}

/** The peer address as the neighbour table spells it: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) unwrapped. */
export function peerIPv4(remoteAddress: string | undefined): string | undefined {
  if (!remoteAddress) return undefined;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress);
  if (m) return m[1];
  return /^\d+\.\d+\.\d+\.\d+$/.test(remoteAddress) ? remoteAddress : undefined;
}

/** A lookup backed by /proc/net/arp (path injectable for tests). A read error answers undefined. */
export function procNeighbours(path = '/proc/net/arp', onError?: (err: unknown) => void): NeighbourLookup {
  return async (ip) => {
    try {
      return parseArpTable(await readFile(path, 'utf8')).get(ip);
    } catch (err) {
      onError?.(err);
      return undefined;
    }
  };
}
