import { Asc, invalidCdb, invalidParam, ScsiError, SenseKey } from './sense';

/**
 * MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 §6.11-6.14) with the pages initiators ask
 * for: 0x08 caching (WCE=1: we have a volatile cache that SYNCHRONIZE CACHE empties),
 * 0x0A control, 0x1C informational exceptions, 0x3F all. Page 0x00 (asked by old Windows)
 * returns the header and block descriptor only. No parameter is changeable: MODE SELECT
 * accepts a page only when it restates the current values.
 */

function caching(pc: number): Buffer {
  const b = Buffer.alloc(20);
  b[0] = 0x08;
  b[1] = 0x12;
  if (pc !== 1) b[2] = 0x04; // WCE
  return b;
}

function control(pc: number): Buffer {
  const b = Buffer.alloc(12);
  b[0] = 0x0a;
  b[1] = 0x0a;
  if (pc === 1) return b;
  b[2] = 0x00; // TST 0, D_SENSE 0: fixed-format sense
  b[3] = 0x10; // queue algorithm modifier 1: unrestricted reordering allowed
  b[5] = 0x00;
  b.writeUInt16BE(0xffff, 8); // busy timeout: unlimited
  return b;
}

function informationalExceptions(pc: number): Buffer {
  const b = Buffer.alloc(12);
  b[0] = 0x1c;
  b[1] = 0x0a;
  if (pc === 1) return b;
  return b; // MRIE 0: no reporting
}

const PAGES: Record<number, (pc: number) => Buffer> = { 0x08: caching, 0x0a: control, 0x1c: informationalExceptions };

/** Geometry the block descriptor and header need. */
export interface ModeContext {
  blockCount: number;
  blockSize: number;
  writeProtected: boolean;
}

function pagesFor(pageCode: number, subpage: number, pc: number, cdbByte: number): Buffer[] {
  if (subpage !== 0 && !(pageCode === 0x3f && subpage === 0xff)) throw invalidCdb(3);
  if (pageCode === 0x3f) return [0x08, 0x0a, 0x1c].map((c) => PAGES[c](pc));
  if (pageCode === 0x00) return [];
  const f = PAGES[pageCode];
  if (!f) throw invalidCdb(cdbByte, 5);
  return [f(pc)];
}

/** Builds MODE SENSE(6) or (10) data, untruncated. */
export function modeSense(cdb: Buffer, ctx: ModeContext): Buffer {
  const ten = cdb[0] === 0x5a;
  const dbd = (cdb[1] & 0x08) !== 0;
  const llbaa = ten && (cdb[1] & 0x10) !== 0;
  const pc = cdb[2] >> 6;
  const pageCode = cdb[2] & 0x3f;
  const subpage = cdb[3];
  if (pc === 3) throw new ScsiError(SenseKey.IllegalRequest, Asc.SavingParametersNotSupported, { inCdb: true, byte: 2, bit: 7 });
  const pages = pagesFor(pageCode, subpage, pc, 2);
  let desc = Buffer.alloc(0);
  if (!dbd) {
    if (llbaa) {
      desc = Buffer.alloc(16);
      desc.writeBigUInt64BE(BigInt(ctx.blockCount), 0);
      desc.writeUInt32BE(ctx.blockSize, 12);
    } else {
      desc = Buffer.alloc(8);
      desc.writeUInt32BE(Math.min(ctx.blockCount, 0xffffffff), 0);
      desc.writeUInt32BE(ctx.blockSize & 0xffffff, 4);
    }
  }
  const deviceSpecific = (ctx.writeProtected ? 0x80 : 0) | 0x10; // WP, DPOFUA
  const body = Buffer.concat([desc, ...pages]);
  if (ten) {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(6 + body.length, 0);
    h[3] = deviceSpecific;
    h[4] = llbaa && !dbd ? 0x01 : 0;
    h.writeUInt16BE(desc.length, 6);
    return Buffer.concat([h, body]);
  }
  const h = Buffer.alloc(4);
  h[0] = Math.min(255, 3 + body.length);
  h[2] = deviceSpecific;
  h[3] = desc.length;
  return Buffer.concat([h, body]);
}

/**
 * MODE SELECT: checks the parameter list and accepts it only when each page repeats the
 * current values (nothing here is changeable). SP=1 (save) is refused: no saved pages.
 */
export function modeSelect(cdb: Buffer, data: Buffer, ctx: ModeContext): void {
  const ten = cdb[0] === 0x55;
  if (cdb[1] & 0x01) throw invalidCdb(1, 0); // SP
  const listLength = ten ? cdb.readUInt16BE(7) : cdb[4];
  if (listLength === 0) return;
  const headerLen = ten ? 8 : 4;
  if (data.length < headerLen) throw new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  const descLen = ten ? data.readUInt16BE(6) : data[3];
  let off = headerLen + descLen;
  if (off > data.length) throw new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  while (off + 2 <= data.length) {
    const code = data[off] & 0x3f;
    const spf = (data[off] & 0x40) !== 0;
    if (spf) throw invalidParam(off, 6);
    const len = data[off + 1];
    const f = PAGES[code];
    if (!f) throw invalidParam(off);
    const current = f(0);
    if (len !== current[1] || off + 2 + len > data.length) throw invalidParam(off + 1);
    for (let i = 2; i < current.length; i++) {
      if (data[off + i] !== current[i]) throw invalidParam(off + i);
    }
    off += 2 + len;
  }
  void ctx;
}
