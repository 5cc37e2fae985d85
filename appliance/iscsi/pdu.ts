import { BHS_LENGTH, Op, RESERVED_TAG } from './constants';

/**
 * The iSCSI PDU codec (RFC 7143 §11): pure functions over Buffers, no sockets, no state.
 * Decoders take a whole header (BHS plus AHS, digest already stripped by the framer) and the
 * data segment (padding stripped), and return one typed variant per opcode. Encoders build
 * the 48-byte BHS of target PDUs; the data segment is written separately (writev) so read
 * payloads are never copied into a PDU buffer.
 */

/** A PDU that cannot be decoded: why, and the byte offset where the problem is. */
export class DecodeError extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`${reason} (at byte ${offset})`);
    this.name = 'DecodeError';
  }
}

/** LUN value used when the 8-byte LUN field is not a single-level address we can serve. */
export const INVALID_LUN = -1;

/**
 * Decodes the 8-byte SAM LUN field (SAM-5 §4.7): single-level peripheral (method 0, bus 0)
 * or flat space (method 1) addressing. Anything else (multi-level, extended) maps to
 * INVALID_LUN so the command gets LOGICAL UNIT NOT SUPPORTED rather than another disk.
 */
export function decodeLun(buf: Buffer, off: number): number {
  const b0 = buf[off];
  for (let i = 2; i < 8; i++) if (buf[off + i] !== 0) return INVALID_LUN;
  const method = b0 >> 6;
  if (method === 0) return b0 === 0 ? buf[off + 1] : INVALID_LUN;
  if (method === 1) return ((b0 & 0x3f) << 8) | buf[off + 1];
  return INVALID_LUN;
}

/** Writes a LUN in the addressing a SAM initiator expects: peripheral below 256, flat above. */
export function encodeLun(buf: Buffer, off: number, lun: number): void {
  buf.fill(0, off, off + 8);
  if (lun < 256) {
    buf[off + 1] = lun;
  } else {
    buf[off] = 0x40 | ((lun >> 8) & 0x3f);
    buf[off + 1] = lun & 0xff;
  }
}

interface Common {
  /** The I bit (§11.2.1.1): an immediate command, not subject to CmdSN ordering. */
  immediate: boolean;
  itt: number;
  /** BHS + AHS bytes as received (for Reject, which returns the rejected header). */
  header: Buffer;
  data: Buffer;
}

/** NOP-Out (§11.18): a ping from the initiator, or its answer to our NOP-In. */
export interface NopOut extends Common {
  op: 'nopOut';
  lun: number;
  ttt: number;
  cmdSN: number;
  expStatSN: number;
}

/** SCSI Command (§11.3). */
export interface ScsiCommand extends Common {
  op: 'scsiCommand';
  final: boolean;
  read: boolean;
  write: boolean;
  attr: number;
  lun: number;
  /** Expected Data Transfer Length in bytes. */
  edtl: number;
  cmdSN: number;
  expStatSN: number;
  /** The CDB: 16 bytes from the BHS, extended by an Extended CDB AHS (§11.2.2.3) when present. */
  cdb: Buffer;
}

/** Task Management Function Request (§11.5). */
export interface TaskMgmtRequest extends Common {
  op: 'taskMgmt';
  fn: number;
  lun: number;
  refTaskTag: number;
  cmdSN: number;
  expStatSN: number;
  refCmdSN: number;
  expDataSN: number;
}

/** Login Request (§11.12). */
export interface LoginRequest extends Common {
  op: 'loginRequest';
  transit: boolean;
  cont: boolean;
  csg: number;
  nsg: number;
  versionMax: number;
  versionMin: number;
  /** The 6-byte ISID as 12 hex digits (session identity with the initiator name, §4.4.3). */
  isid: string;
  tsih: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

/** Text Request (§11.10). */
export interface TextRequest extends Common {
  op: 'textRequest';
  final: boolean;
  cont: boolean;
  lun: number;
  ttt: number;
  cmdSN: number;
  expStatSN: number;
}

/** SCSI Data-Out (§11.7). */
export interface DataOut extends Common {
  op: 'dataOut';
  final: boolean;
  lun: number;
  ttt: number;
  expStatSN: number;
  dataSN: number;
  bufferOffset: number;
}

/** Logout Request (§11.14). */
export interface LogoutRequest extends Common {
  op: 'logoutRequest';
  reason: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

/** SNACK Request (§11.16): only meaningful at ErrorRecoveryLevel > 0, which we never negotiate. */
export interface SnackRequest extends Common {
  op: 'snack';
  type: number;
}

/** Any opcode an initiator may not send or that we do not know (answered with Reject). */
export interface UnknownPdu extends Common {
  op: 'unknown';
  opcode: number;
}

/** Every PDU an initiator can send us. */
export type InitiatorPdu = NopOut | ScsiCommand | TaskMgmtRequest | LoginRequest | TextRequest | DataOut | LogoutRequest | SnackRequest | UnknownPdu;

/** Total AHS length in bytes announced by a BHS (byte 4 counts 4-byte words). */
export function ahsLength(bhs: Buffer, off = 0): number {
  return bhs[off + 4] * 4;
}

/** Data segment length announced by a BHS (bytes 5..7), without padding. */
export function dataSegmentLength(bhs: Buffer, off = 0): number {
  return (bhs[off + 5] << 16) | (bhs[off + 6] << 8) | bhs[off + 7];
}

/** Bytes a data segment occupies on the wire: padded to a multiple of four (§11.2.3). */
export function padded(len: number): number {
  return (len + 3) & ~3;
}

function isidHex(buf: Buffer): string {
  return buf.toString('hex', 8, 14);
}

/** Pulls the CDB out of the BHS and, when present, an Extended CDB AHS (type 1). */
function decodeCdb(header: Buffer): Buffer {
  if (header.length === BHS_LENGTH) return header.subarray(32, 48);
  let off = BHS_LENGTH;
  while (off + 3 <= header.length) {
    const len = header.readUInt16BE(off);
    const type = header[off + 2];
    if (off + 4 + len > header.length + 3) throw new DecodeError('AHS runs past the header', off);
    if (type === 1) {
      // Extended CDB: AHSLength counts the reserved byte plus the CDB bytes beyond 16.
      const ext = header.subarray(off + 4, off + 4 + Math.max(0, len - 1));
      return Buffer.concat([header.subarray(32, 48), ext]);
    }
    off += padded(4 + len);
  }
  return header.subarray(32, 48);
}

/**
 * Decodes an initiator PDU. `header` is the BHS plus AHS; `data` the data segment. Throws
 * DecodeError on a header too short or inconsistent; fields are otherwise taken as sent and
 * judged by the session (which answers bad values with Reject or sense data).
 */
export function decodePdu(header: Buffer, data: Buffer): InitiatorPdu {
  if (header.length < BHS_LENGTH) throw new DecodeError('header shorter than 48 bytes', header.length);
  const b0 = header[0];
  const opcode = b0 & 0x3f;
  const immediate = (b0 & 0x40) !== 0;
  const flags = header[1];
  const itt = header.readUInt32BE(16);
  switch (opcode) {
    case Op.NopOut:
      return {
        op: 'nopOut',
        immediate,
        itt,
        header,
        data,
        lun: decodeLun(header, 8),
        ttt: header.readUInt32BE(20),
        cmdSN: header.readUInt32BE(24),
        expStatSN: header.readUInt32BE(28),
      };
    case Op.ScsiCommand:
      return {
        op: 'scsiCommand',
        immediate,
        itt,
        header,
        data,
        final: (flags & 0x80) !== 0,
        read: (flags & 0x40) !== 0,
        write: (flags & 0x20) !== 0,
        attr: flags & 0x07,
        lun: decodeLun(header, 8),
        edtl: header.readUInt32BE(20),
        cmdSN: header.readUInt32BE(24),
        expStatSN: header.readUInt32BE(28),
        cdb: decodeCdb(header),
      };
    case Op.TaskMgmtRequest:
      return {
        op: 'taskMgmt',
        immediate,
        itt,
        header,
        data,
        fn: flags & 0x7f,
        lun: decodeLun(header, 8),
        refTaskTag: header.readUInt32BE(20),
        cmdSN: header.readUInt32BE(24),
        expStatSN: header.readUInt32BE(28),
        refCmdSN: header.readUInt32BE(32),
        expDataSN: header.readUInt32BE(36),
      };
    case Op.LoginRequest:
      return {
        op: 'loginRequest',
        immediate,
        itt,
        header,
        data,
        transit: (flags & 0x80) !== 0,
        cont: (flags & 0x40) !== 0,
        csg: (flags >> 2) & 3,
        nsg: flags & 3,
        versionMax: header[2],
        versionMin: header[3],
        isid: isidHex(header),
        tsih: header.readUInt16BE(14),
        cid: header.readUInt16BE(20),
        cmdSN: header.readUInt32BE(24),
        expStatSN: header.readUInt32BE(28),
      };
    case Op.TextRequest:
      return {
        op: 'textRequest',
        immediate,
        itt,
        header,
        data,
        final: (flags & 0x80) !== 0,
        cont: (flags & 0x40) !== 0,
        lun: decodeLun(header, 8),
        ttt: header.readUInt32BE(20),
        cmdSN: header.readUInt32BE(24),
        expStatSN: header.readUInt32BE(28),
      };
    case Op.DataOut:
      return {
        op: 'dataOut',
        immediate,
        itt,
        header,
        data,
        final: (flags & 0x80) !== 0,
        lun: decodeLun(header, 8),
        ttt: header.readUInt32BE(20),
        expStatSN: header.readUInt32BE(28),
        dataSN: header.readUInt32BE(36),
        bufferOffset: header.readUInt32BE(40),
      };
    case Op.LogoutRequest:
      return {
        op: 'logoutRequest',
        immediate,
        itt,
        header,
        data,
        reason: flags & 0x7f,
        cid: header.readUInt16BE(20),
        cmdSN: header.readUInt32BE(24),
        expStatSN: header.readUInt32BE(28),
      };
    case Op.Snack:
      return { op: 'snack', immediate, itt, header, data, type: flags & 0x0f };
    default:
      return { op: 'unknown', immediate, itt, header, data, opcode };
  }
}

/** The sequence numbers every target PDU carries (§11.2.1.x: StatSN, ExpCmdSN, MaxCmdSN). */
export interface SeqNumbers {
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

function bhs(opcode: number, flags: number, dataLength: number): Buffer {
  const b = Buffer.allocUnsafe(BHS_LENGTH).fill(0);
  b[0] = opcode;
  b[1] = flags;
  b[5] = (dataLength >> 16) & 0xff;
  b[6] = (dataLength >> 8) & 0xff;
  b[7] = dataLength & 0xff;
  return b;
}

function seq(b: Buffer, s: SeqNumbers): void {
  b.writeUInt32BE(s.statSN >>> 0, 24);
  b.writeUInt32BE(s.expCmdSN >>> 0, 28);
  b.writeUInt32BE(s.maxCmdSN >>> 0, 32);
}

/** Login Response BHS (§11.13). */
export function encodeLoginResponse(
  f: {
    transit: boolean;
    cont: boolean;
    csg: number;
    nsg: number;
    versionMax: number;
    versionActive: number;
    isid: string;
    tsih: number;
    itt: number;
    status: number;
    dataLength: number;
  } & SeqNumbers,
): Buffer {
  const flags = (f.transit ? 0x80 : 0) | (f.cont ? 0x40 : 0) | ((f.csg & 3) << 2) | (f.nsg & 3);
  const b = bhs(Op.LoginResponse, flags, f.dataLength);
  b[2] = f.versionMax;
  b[3] = f.versionActive;
  b.write(f.isid, 8, 6, 'hex');
  b.writeUInt16BE(f.tsih, 14);
  b.writeUInt32BE(f.itt >>> 0, 16);
  seq(b, f);
  b[36] = f.status >> 8;
  b[37] = f.status & 0xff;
  return b;
}

/** Text Response BHS (§11.11). */
export function encodeTextResponse(
  f: {
    final: boolean;
    cont: boolean;
    lun: number;
    itt: number;
    ttt: number;
    dataLength: number;
  } & SeqNumbers,
): Buffer {
  const b = bhs(Op.TextResponse, (f.final ? 0x80 : 0) | (f.cont ? 0x40 : 0), f.dataLength);
  encodeLun(b, 8, Math.max(0, f.lun));
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  seq(b, f);
  return b;
}

/** NOP-In BHS (§11.19): an answer (itt from the NOP-Out) or a ping (itt reserved, ttt ours). */
export function encodeNopIn(f: { lun: number; itt: number; ttt: number; dataLength: number } & SeqNumbers): Buffer {
  const b = bhs(Op.NopIn, 0x80, f.dataLength);
  encodeLun(b, 8, Math.max(0, f.lun));
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  seq(b, f);
  return b;
}

/** SCSI Response BHS (§11.4). Residual flags: U underflow, O overflow. */
export function encodeScsiResponse(
  f: {
    itt: number;
    status: number;
    response: number;
    underflow: boolean;
    overflow: boolean;
    residual: number;
    expDataSN: number;
    dataLength: number;
  } & SeqNumbers,
): Buffer {
  const flags = 0x80 | (f.overflow ? 0x04 : 0) | (f.underflow ? 0x02 : 0);
  const b = bhs(Op.ScsiResponse, flags, f.dataLength);
  b[2] = f.response;
  b[3] = f.status;
  b.writeUInt32BE(f.itt >>> 0, 16);
  seq(b, f);
  b.writeUInt32BE(f.expDataSN >>> 0, 36);
  b.writeUInt32BE(f.residual >>> 0, 44);
  return b;
}

/**
 * SCSI Data-In BHS (§11.8), written into `b` at `off` (the session allocates one slab per
 * read burst). When `statusFlag` is set, status and residuals ride in this last PDU and no
 * separate SCSI Response follows (the S bit, §11.8.1).
 */
export function writeDataIn(
  b: Buffer,
  off: number,
  f: {
    final: boolean;
    statusFlag: boolean;
    status: number;
    underflow: boolean;
    overflow: boolean;
    residual: number;
    lun: number;
    itt: number;
    dataSN: number;
    bufferOffset: number;
    dataLength: number;
    statSN: number;
    expCmdSN: number;
    maxCmdSN: number;
  },
): void {
  b.fill(0, off, off + BHS_LENGTH);
  b[off] = Op.DataIn;
  b[off + 1] = (f.final ? 0x80 : 0) | (f.statusFlag ? 0x01 | (f.overflow ? 0x04 : 0) | (f.underflow ? 0x02 : 0) : 0);
  if (f.statusFlag) b[off + 3] = f.status;
  b[off + 5] = (f.dataLength >> 16) & 0xff;
  b[off + 6] = (f.dataLength >> 8) & 0xff;
  b[off + 7] = f.dataLength & 0xff;
  b.writeUInt32BE(f.itt >>> 0, off + 16);
  b.writeUInt32BE(RESERVED_TAG, off + 20);
  if (f.statusFlag) b.writeUInt32BE(f.statSN >>> 0, off + 24);
  b.writeUInt32BE(f.expCmdSN >>> 0, off + 28);
  b.writeUInt32BE(f.maxCmdSN >>> 0, off + 32);
  b.writeUInt32BE(f.dataSN >>> 0, off + 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, off + 40);
  if (f.statusFlag) b.writeUInt32BE(f.residual >>> 0, off + 44);
}

/** Ready To Transfer BHS (§11.9): asks for `length` bytes at `bufferOffset`. */
export function encodeR2T(
  f: {
    lun: number;
    itt: number;
    ttt: number;
    r2tSN: number;
    bufferOffset: number;
    length: number;
  } & SeqNumbers,
): Buffer {
  const b = bhs(Op.R2T, 0x80, 0);
  encodeLun(b, 8, Math.max(0, f.lun));
  b.writeUInt32BE(f.itt >>> 0, 16);
  b.writeUInt32BE(f.ttt >>> 0, 20);
  seq(b, f);
  b.writeUInt32BE(f.r2tSN >>> 0, 36);
  b.writeUInt32BE(f.bufferOffset >>> 0, 40);
  b.writeUInt32BE(f.length >>> 0, 44);
  return b;
}

/** Task Management Function Response BHS (§11.6). */
export function encodeTaskMgmtResponse(f: { itt: number; response: number } & SeqNumbers): Buffer {
  const b = bhs(Op.TaskMgmtResponse, 0x80, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  seq(b, f);
  return b;
}

/** Logout Response BHS (§11.15). Time2Wait/Time2Retain 0: ERL 0, nothing to recover. */
export function encodeLogoutResponse(f: { itt: number; response: number } & SeqNumbers): Buffer {
  const b = bhs(Op.LogoutResponse, 0x80, 0);
  b[2] = f.response;
  b.writeUInt32BE(f.itt >>> 0, 16);
  seq(b, f);
  return b;
}

/** Reject BHS (§11.17); the data segment is the rejected PDU's header. */
export function encodeReject(f: { reason: number; dataLength: number; dataSN?: number } & SeqNumbers): Buffer {
  const b = bhs(Op.Reject, 0x80, f.dataLength);
  b[2] = f.reason;
  b.writeUInt32BE(RESERVED_TAG, 16);
  seq(b, f);
  b.writeUInt32BE((f.dataSN ?? 0) >>> 0, 36);
  return b;
}
