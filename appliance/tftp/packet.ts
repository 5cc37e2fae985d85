/**
 * TFTP packet codec (RFC 1350, options per RFC 2347). Pure functions over Buffers: no sockets,
 * no logger, no clock. One typed variant per opcode; decoders check every length and throw
 * DecodeError(reason, offset).
 */

/** Opcodes, RFC 1350 section 5 and RFC 2347 (OACK). */
export const OP = { rrq: 1, wrq: 2, data: 3, ack: 4, error: 5, oack: 6 } as const;

/** Error codes, RFC 1350 appendix and RFC 2347 (8). */
export const ERR = {
  notDefined: 0,
  fileNotFound: 1,
  accessViolation: 2,
  diskFull: 3,
  illegalOperation: 4,
  unknownTid: 5,
  fileExists: 6,
  noSuchUser: 7,
  optionRefused: 8,
} as const;

/** One option of a request or OACK, in wire order and spelling (RFC 2347: names are case-insensitive). */
export interface TftpOption {
  name: string;
  value: string;
}

/** Read request: filename, transfer mode, options (RFC 2347 appends them after the mode). */
export interface RrqPacket {
  op: 'rrq';
  filename: string;
  mode: string;
  options: TftpOption[];
}

/** Write request: decoded only so the server can refuse it clearly. */
export interface WrqPacket {
  op: 'wrq';
  filename: string;
  mode: string;
  options: TftpOption[];
}

/** DATA: 16-bit block number (wraps past 65535) and 0..blksize bytes. */
export interface DataPacket {
  op: 'data';
  block: number;
  data: Buffer;
}

/** ACK of a 16-bit block number (0 acknowledges an OACK, RFC 2347). */
export interface AckPacket {
  op: 'ack';
  block: number;
}

/** ERROR: code (ERR) and a human-readable message. Terminates the transfer. */
export interface ErrorPacket {
  op: 'error';
  code: number;
  message: string;
}

/** Option acknowledgement, RFC 2347: the options the server accepted, with its values. */
export interface OackPacket {
  op: 'oack';
  options: TftpOption[];
}

/** Any TFTP packet, discriminated by `op`. */
export type TftpPacket = RrqPacket | WrqPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

/** A packet that cannot be decoded: why, and the byte offset where decoding stopped. */
export class DecodeError extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`${reason} at offset ${offset}`);
    this.name = 'DecodeError';
  }
}

/** Finds the NUL ending a string that starts at `from`; -1 when there is none. */
function nulAt(buf: Buffer, from: number): number {
  return buf.indexOf(0, from);
}

/**
 * Decodes one datagram. Strict where RFC 1350 is (opcode, NUL-terminated filename and mode,
 * 4-byte headers); lax where real clients are sloppy: bytes after the last complete option of a
 * request (some PXE ROMs pad requests with NULs), bytes after an ACK's block number, and an
 * ERROR message without its final NUL are ignored.
 */
export function decodePacket(buf: Buffer): TftpPacket {
  if (buf.length < 2) throw new DecodeError('packet shorter than an opcode', 0);
  const opcode = buf.readUInt16BE(0);
  switch (opcode) {
    case OP.rrq:
    case OP.wrq: {
      const fEnd = nulAt(buf, 2);
      if (fEnd < 0) throw new DecodeError('filename not NUL-terminated', 2);
      const mEnd = nulAt(buf, fEnd + 1);
      if (mEnd < 0) throw new DecodeError('mode not NUL-terminated', fEnd + 1);
      const filename = buf.toString('utf8', 2, fEnd);
      const mode = buf.toString('latin1', fEnd + 1, mEnd);
      const options = decodeOptions(buf, mEnd + 1);
      return { op: opcode === OP.rrq ? 'rrq' : 'wrq', filename, mode, options };
    }
    case OP.data:
      if (buf.length < 4) throw new DecodeError('DATA shorter than its header', 2);
      return { op: 'data', block: buf.readUInt16BE(2), data: buf.subarray(4) };
    case OP.ack:
      if (buf.length < 4) throw new DecodeError('ACK shorter than 4 bytes', 2);
      return { op: 'ack', block: buf.readUInt16BE(2) };
    case OP.error: {
      if (buf.length < 4) throw new DecodeError('ERROR shorter than its header', 2);
      const end = nulAt(buf, 4);
      return {
        op: 'error',
        code: buf.readUInt16BE(2),
        message: buf.toString('utf8', 4, end < 0 ? buf.length : end),
      };
    }
    case OP.oack:
      return { op: 'oack', options: decodeOptions(buf, 2) };
    default:
      throw new DecodeError(`unknown opcode ${opcode}`, 0);
  }
}

/**
 * Option pairs "name\0value\0" (RFC 2347). Stops at an empty name (NUL padding) or at an
 * incomplete pair at the end of the packet.
 */
function decodeOptions(buf: Buffer, offset: number): TftpOption[] {
  const options: TftpOption[] = [];
  let at = offset;
  while (at < buf.length) {
    const nEnd = nulAt(buf, at);
    if (nEnd <= at) break; // no terminator, or an empty name: padding
    const vEnd = nulAt(buf, nEnd + 1);
    if (vEnd < 0) break;
    options.push({ name: buf.toString('latin1', at, nEnd), value: buf.toString('latin1', nEnd + 1, vEnd) });
    at = vEnd + 1;
  }
  return options;
}

function optionsLength(options: TftpOption[]): number {
  let n = 0;
  for (const o of options) n += Buffer.byteLength(o.name, 'latin1') + Buffer.byteLength(o.value, 'latin1') + 2;
  return n;
}

function writeOptions(buf: Buffer, at: number, options: TftpOption[]): number {
  for (const o of options) {
    at += buf.write(o.name, at, 'latin1');
    buf[at++] = 0;
    at += buf.write(o.value, at, 'latin1');
    buf[at++] = 0;
  }
  return at;
}

/** Encodes any packet: computes the length first, allocates once, writes at offsets. */
export function encodePacket(p: TftpPacket): Buffer {
  switch (p.op) {
    case 'rrq':
    case 'wrq': {
      const fLen = Buffer.byteLength(p.filename, 'utf8');
      const mLen = Buffer.byteLength(p.mode, 'latin1');
      const buf = Buffer.alloc(2 + fLen + 1 + mLen + 1 + optionsLength(p.options));
      buf.writeUInt16BE(p.op === 'rrq' ? OP.rrq : OP.wrq, 0);
      let at = 2 + buf.write(p.filename, 2, 'utf8');
      buf[at++] = 0;
      at += buf.write(p.mode, at, 'latin1');
      buf[at++] = 0;
      writeOptions(buf, at, p.options);
      return buf;
    }
    case 'data': {
      const buf = Buffer.allocUnsafe(4 + p.data.length);
      writeDataHeader(buf, p.block);
      p.data.copy(buf, 4);
      return buf;
    }
    case 'ack': {
      const buf = Buffer.alloc(4);
      buf.writeUInt16BE(OP.ack, 0);
      buf.writeUInt16BE(p.block & 0xffff, 2);
      return buf;
    }
    case 'error':
      return encodeError(p.code, p.message);
    case 'oack': {
      const buf = Buffer.alloc(2 + optionsLength(p.options));
      buf.writeUInt16BE(OP.oack, 0);
      writeOptions(buf, 2, p.options);
      return buf;
    }
  }
}

/** Encodes an ERROR packet (RFC 1350: code, message, NUL). */
export function encodeError(code: number, message: string): Buffer {
  const mLen = Buffer.byteLength(message, 'utf8');
  const buf = Buffer.alloc(4 + mLen + 1);
  buf.writeUInt16BE(OP.error, 0);
  buf.writeUInt16BE(code, 2);
  buf.write(message, 4, 'utf8');
  return buf;
}

/**
 * Writes a DATA header into a preallocated packet buffer (the transfer's hot path: no allocation).
 * The block number is taken modulo 65536: transfers past block 65535 roll over to 0, as tftp-hpa,
 * curl, atftp and iPXE expect.
 */
export function writeDataHeader(buf: Buffer, block: number): void {
  buf[0] = 0;
  buf[1] = OP.data;
  buf[2] = (block >>> 8) & 0xff;
  buf[3] = block & 0xff;
}

/** Reads the opcode and block of an ACK without allocating; -1 when buf is not an ACK. */
export function peekAckBlock(buf: Buffer): number {
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== OP.ack) return -1;
  return (buf[2]! << 8) | buf[3]!;
}
