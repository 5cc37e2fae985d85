/**
 * Option negotiation for a read request (RFC 2347 framework; blksize RFC 2348, timeout and tsize
 * RFC 2349, windowsize RFC 7440). Pure: the transfer calls it once with the request's options.
 */
import type { TftpOption } from './packet';

/** The largest blksize RFC 2348 allows: a 65535-byte IPv4 datagram minus IP, UDP and TFTP headers. */
export const MAX_BLKSIZE = 65464;
/** The smallest blksize RFC 2348 allows. */
export const MIN_BLKSIZE = 8;
/** RFC 1350's fixed block size, used when blksize is not negotiated. */
export const DEFAULT_BLKSIZE = 512;

/** What the server allows; requests above these are answered with the smaller value (RFC 2348/7440). */
export interface NegotiationLimits {
  /** Upper bound for blksize, at most MAX_BLKSIZE (e.g. the path MTU minus 32). */
  maxBlksize: number;
  /** Upper bound for windowsize: a window's blocks are kept in memory for retransmission. */
  maxWindowsize: number;
  /**
   * Upper bound for windowsize x blksize. A window arrives as one burst: beyond the receiver's
   * socket buffer (Linux's default is 208 KiB; firmware has far less) its tail is dropped and
   * costs a timeout. Measured with atftp on loopback: blksize 8192 x 16 loses blocks, x 8 does not.
   */
  maxWindowBytes: number;
  /** Retransmission timeout when the client does not ask for one. */
  defaultTimeoutMs: number;
}

/** The agreed transfer parameters and the OACK options to send (empty: no OACK, send DATA 1). */
export interface Negotiated {
  ok: true;
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  /** The options to acknowledge, in the client's order and spelling, with our values. */
  oack: TftpOption[];
}

/** A request whose options we refuse: answer ERROR 8 (RFC 2347) with this message. */
export interface Refused {
  ok: false;
  message: string;
}

/** Parses a decimal option value; NaN for anything but 1..10 ASCII digits. */
function parseDecimal(value: string): number {
  return /^[0-9]{1,10}$/.test(value) ? Number(value) : NaN;
}

/**
 * Decides each option. Unknown options are ignored (RFC 2347: "the server ... should ignore
 * unrecognised options"); a repeated option is decided by its first occurrence. Malformed or
 * out-of-range values of options we know are refused with ERROR 8: a client that asked for
 * blksize 4 or timeout 0 cannot get what it asked for, and silently ignoring it would surprise it.
 * tsize is answered with the file's size, except in netascii mode, where the size on the wire
 * differs from the size on disk and is only known after conversion, so tsize is left out.
 */
export function negotiate(options: TftpOption[], fileSize: number, netascii: boolean, limits: NegotiationLimits): Negotiated | Refused {
  const result: Negotiated = {
    ok: true,
    blksize: DEFAULT_BLKSIZE,
    windowsize: 1,
    timeoutMs: limits.defaultTimeoutMs,
    oack: [],
  };
  const seen = new Set<string>();
  for (const { name, value } of options) {
    const key = name.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    const n = parseDecimal(value);
    switch (key) {
      case 'blksize': {
        if (!(n >= MIN_BLKSIZE)) return { ok: false, message: `blksize ${value} is invalid (RFC 2348: 8..65464)` };
        result.blksize = Math.min(n, limits.maxBlksize, MAX_BLKSIZE);
        result.oack.push({ name, value: String(result.blksize) });
        break;
      }
      case 'timeout': {
        if (!(n >= 1 && n <= 255)) return { ok: false, message: `timeout ${value} is invalid (RFC 2349: 1..255 seconds)` };
        result.timeoutMs = n * 1000;
        result.oack.push({ name, value: String(n) });
        break;
      }
      case 'tsize': {
        if (Number.isNaN(n)) return { ok: false, message: `tsize ${value} is not a number (RFC 2349)` };
        if (!netascii) result.oack.push({ name, value: String(fileSize) });
        break;
      }
      case 'windowsize': {
        if (!(n >= 1 && n <= 65535)) return { ok: false, message: `windowsize ${value} is invalid (RFC 7440: 1..65535)` };
        result.windowsize = Math.min(n, limits.maxWindowsize);
        result.oack.push({ name, value: String(result.windowsize) });
        break;
      }
      default:
        break; // unknown option: ignored, not acknowledged
    }
  }
  // blksize may come after windowsize in the request: cap the window's bytes once both are known.
  const byBytes = Math.max(1, Math.floor(limits.maxWindowBytes / result.blksize));
  if (result.windowsize > byBytes) {
    result.windowsize = byBytes;
    const w = result.oack.find((o) => o.name.toLowerCase() === 'windowsize');
    if (w) w.value = String(byBytes);
  }
  return result;
}
