/** IPv4 address arithmetic on unsigned 32-bit integers. Pure. */
import { writeIp } from './packet';

const scratch = Buffer.alloc(4);

/** '198.18.0.1' -> 0xc6120001; throws RangeError on a malformed address. */
export function ipToInt(ip: string): number {
  writeIp(scratch, 0, ip);
  return scratch.readUInt32BE(0);
}

/** 0xc6120001 -> '198.18.0.1'. */
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** True when a and b are in the same subnet under mask. */
export function sameSubnet(a: string, b: string, mask: string): boolean {
  const m = ipToInt(mask);
  return (ipToInt(a) & m) >>> 0 === (ipToInt(b) & m) >>> 0;
}

/** The subnet's directed broadcast address (option 28). */
export function broadcastOf(ip: string, mask: string): string {
  return intToIp((ipToInt(ip) | ~ipToInt(mask)) >>> 0);
}

/** True for the all-zero and all-one host parts of the subnet (never handed out); integers from ipToInt. */
export function isNetworkOrBroadcast(ip: number, mask: number): boolean {
  const host = (ip & ~mask) >>> 0;
  return host === 0 || host === ~mask >>> 0;
}

export const ZERO = '0.0.0.0';
