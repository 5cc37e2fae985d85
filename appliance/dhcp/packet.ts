/**
 * DHCP/BOOTP packet codec (RFC 951 layout, RFC 2131 section 2, RFC 2132 options, RFC 3396 long
 * options). Pure functions over Buffers: no sockets, no logger, no clock.
 *
 * The decoder is strict on lengths (the fixed header, every option's length byte) and lax where
 * the RFCs allow it: unknown options are kept as raw bytes, a missing END option ends at the
 * buffer's end, bytes after END are ignored. Decoded Buffers are copies, never slices of the
 * input, so a caller may reuse its receive buffer.
 */

/** Thrown by every decoder here: what was wrong and at which byte offset of the packet. */
export class DecodeError extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`${reason} (at byte ${offset})`);
    this.name = 'DecodeError';
  }
}

/** RFC 2131 section 3: the four bytes that start the options field. */
export const MAGIC_COOKIE = 0x63825363;
/** Fixed BOOTP header before the options field (RFC 2131 figure 1). */
export const HEADER_LENGTH = 236;
/** RFC 1542 section 2.1: BOOTP relays and old clients expect at least 300 bytes. */
export const MIN_PACKET_LENGTH = 300;
/** BOOTP flags bit 15 (RFC 2131 section 2): the client cannot receive unicast before configuration. */
export const FLAG_BROADCAST = 0x8000;

const OPT_PAD = 0;
const ZERO_IP = '0.0.0.0';
const OPT_END = 255;
const OPT_OVERLOAD = 52;

/** One option as it appeared on the wire (an option split by RFC 3396 appears several times). */
export interface DhcpOption {
  code: number;
  data: Buffer;
}

/** Fields both directions share. Addresses are dotted quads; '0.0.0.0' means unset. */
interface BootpFields {
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The 16-byte chaddr field as sent; the hardware address is its first hlen bytes. */
  chaddr: Buffer;
  /** Server host name, up to the first NUL ('' when the field carries overloaded options). */
  sname: string;
  /** Boot file name, up to the first NUL ('' when the field carries overloaded options). */
  file: string;
  /** Options in wire order, PAD and END excluded; options from overloaded file/sname follow. */
  options: DhcpOption[];
  /** False for plain BOOTP packets whose vendor area has no magic cookie. */
  hasCookie: boolean;
}

/** op = 1: sent by a client (or a relay on its behalf). */
export interface BootRequest extends BootpFields {
  op: 'request';
}

/** op = 2: sent by a server. */
export interface BootReply extends BootpFields {
  op: 'reply';
}

export type DhcpPacket = BootRequest | BootReply;

function readIp(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/**
 * Writes a dotted quad as 4 bytes at off; throws RangeError on anything else (encoder input is
 * ours). Hand-rolled: it runs several times per reply, and a split/regex parse showed in profiles.
 */
export function writeIp(buf: Buffer, off: number, ip: string): void {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= ip.length; i++) {
    const c = i < ip.length ? ip.charCodeAt(i) : 46; // '.' terminates the last part
    if (c >= 48 && c <= 57) {
      value = value * 10 + (c - 48);
      digits += 1;
      if (digits > 3 || value > 255) break;
    } else if (c === 46 && digits > 0 && part < 4) {
      buf[off + part] = value;
      part += 1;
      value = 0;
      digits = 0;
    } else {
      break;
    }
    if (i === ip.length && part === 4) return;
  }
  throw new RangeError(`not an IPv4 address: ${ip}`);
}

/** A dotted quad as a new 4-byte Buffer; RangeError on anything else. */
export function ipToBytes(ip: string): Buffer {
  const out = Buffer.allocUnsafe(4);
  writeIp(out, 0, ip);
  return out;
}

function readCString(buf: Buffer, off: number, len: number): string {
  if (buf[off] === 0) return ''; // the usual case: clients leave sname and file empty
  const field = buf.subarray(off, off + len);
  const nul = field.indexOf(0);
  return field.toString('latin1', 0, nul < 0 ? len : nul);
}

/** Walks the options in buf[start, end); appends to `out`; returns whether END was seen. */
function readOptions(buf: Buffer, start: number, end: number, out: DhcpOption[]): boolean {
  let i = start;
  while (i < end) {
    const code = buf[i];
    if (code === OPT_END) return true;
    if (code === OPT_PAD) {
      i += 1;
      continue;
    }
    if (i + 1 >= end) throw new DecodeError(`option ${code} has no length byte`, i);
    const len = buf[i + 1];
    if (i + 2 + len > end) {
      throw new DecodeError(`option ${code} length ${len} overruns the packet`, i + 1);
    }
    out.push({ code, data: buf.subarray(i + 2, i + 2 + len) });
    i += 2 + len;
  }
  return false;
}

/**
 * Decodes one UDP payload. Throws DecodeError when the header is short, op/hlen are invalid, or
 * an option's length runs past its area.
 */
export function decodePacket(input: Buffer): DhcpPacket {
  const buf = Buffer.from(input); // the private copy every returned view points into
  if (buf.length < HEADER_LENGTH) {
    throw new DecodeError(`packet is ${buf.length} bytes, shorter than the ${HEADER_LENGTH}-byte BOOTP header`, buf.length);
  }
  const opByte = buf[0];
  if (opByte !== 1 && opByte !== 2) throw new DecodeError(`op ${opByte} is neither BOOTREQUEST nor BOOTREPLY`, 0);
  const hlen = buf[2];
  if (hlen > 16) throw new DecodeError(`hlen ${hlen} exceeds the 16-byte chaddr field`, 2);

  const options: DhcpOption[] = [];
  let hasCookie = false;
  if (buf.length >= HEADER_LENGTH + 4 && buf.readUInt32BE(HEADER_LENGTH) === MAGIC_COOKIE) {
    hasCookie = true;
    readOptions(buf, HEADER_LENGTH + 4, buf.length, options);
  }
  // RFC 2132 section 9.3: option 52 moves further options into file (1), sname (2) or both (3);
  // file is read before sname.
  const overload = options.find((o) => o.code === OPT_OVERLOAD);
  const mode = overload && overload.data.length === 1 ? overload.data[0] : 0;
  if (mode & 1) readOptions(buf, 108, 236, options);
  if (mode & 2) readOptions(buf, 44, 108, options);

  // One object literal (not header fields spread into a second one): this runs per packet.
  return {
    op: opByte === 1 ? 'request' : 'reply',
    htype: buf[1],
    hlen,
    hops: buf[3],
    xid: buf.readUInt32BE(4),
    secs: buf.readUInt16BE(8),
    flags: buf.readUInt16BE(10),
    ciaddr: readIp(buf, 12),
    yiaddr: readIp(buf, 16),
    siaddr: readIp(buf, 20),
    giaddr: readIp(buf, 24),
    chaddr: buf.subarray(28, 44),
    sname: mode & 2 ? '' : readCString(buf, 44, 64),
    file: mode & 1 ? '' : readCString(buf, 108, 128),
    options,
    hasCookie,
  };
}

export interface EncodeOptions {
  /** Pad with zeros after END up to this many bytes (default 300, RFC 1542 section 2.1). */
  minLength?: number;
}

/**
 * Encodes a packet: header, cookie, options in the given order, END, zero padding. Options longer
 * than 255 bytes are split into consecutive instances (RFC 3396). Never overloads file/sname; a
 * file or sname too long for its field is a RangeError (the caller chose it).
 */
export function encodePacket(p: DhcpPacket, opts: EncodeOptions = {}): Buffer {
  // latin1 is one byte per character, so a string's length is its encoded length.
  if (p.file.length > 128) throw new RangeError(`boot file name is ${p.file.length} bytes, the field holds 128`);
  if (p.sname.length > 64) throw new RangeError(`server name is ${p.sname.length} bytes, the field holds 64`);
  if (p.chaddr.length > 16) throw new RangeError('chaddr longer than 16 bytes');

  // Length first, then one allocation.
  let optLen = 0;
  for (const o of p.options) optLen += o.data.length <= 255 ? 2 + o.data.length : Math.ceil(o.data.length / 255) * 2 + o.data.length;
  const body = HEADER_LENGTH + (p.hasCookie ? 4 + optLen + 1 : 0);
  const buf = Buffer.alloc(Math.max(body, opts.minLength ?? MIN_PACKET_LENGTH));

  buf[0] = p.op === 'request' ? 1 : 2;
  buf[1] = p.htype;
  buf[2] = p.hlen;
  buf[3] = p.hops;
  buf.writeUInt32BE(p.xid >>> 0, 4);
  buf.writeUInt16BE(p.secs, 8);
  buf.writeUInt16BE(p.flags, 10);
  // The buffer is zero-filled: unset addresses (most of them in a reply) need no parsing.
  if (p.ciaddr !== ZERO_IP) writeIp(buf, 12, p.ciaddr);
  if (p.yiaddr !== ZERO_IP) writeIp(buf, 16, p.yiaddr);
  if (p.siaddr !== ZERO_IP) writeIp(buf, 20, p.siaddr);
  if (p.giaddr !== ZERO_IP) writeIp(buf, 24, p.giaddr);
  // TypedArray set(), not Buffer copy(): copy() is JS around set(), and this runs before V8 has
  // optimised it for weeks on a quiet LAN (the interpreter pays for every extra call).
  buf.set(p.chaddr, 28);
  if (p.sname) buf.write(p.sname, 44, 64, 'latin1');
  if (p.file) buf.write(p.file, 108, 128, 'latin1');
  if (!p.hasCookie) return buf;

  buf.writeUInt32BE(MAGIC_COOKIE, HEADER_LENGTH);
  let off = HEADER_LENGTH + 4;
  for (const o of p.options) {
    if (o.code === OPT_PAD || o.code === OPT_END) throw new RangeError(`option ${o.code} is a delimiter, not an option`);
    // RFC 3396: a value longer than 255 bytes goes out as consecutive instances (an empty one as one).
    for (let at = 0; at === 0 || at < o.data.length; at += 255) {
      const len = Math.min(255, o.data.length - at);
      buf[off] = o.code;
      buf[off + 1] = len;
      buf.set(len === o.data.length ? o.data : o.data.subarray(at, at + len), off + 2);
      off += 2 + len;
    }
  }
  buf[off] = OPT_END;
  return buf;
}

const HEX_BYTE = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** The client's hardware address as aa:bb:.. (first hlen bytes of chaddr). */
export function hardwareAddress(p: DhcpPacket): string {
  const n = Math.min(p.hlen, 16, p.chaddr.length);
  let mac = '';
  for (let i = 0; i < n; i++) mac += i === 0 ? HEX_BYTE[p.chaddr[i]] : `:${HEX_BYTE[p.chaddr[i]]}`;
  return mac;
}
