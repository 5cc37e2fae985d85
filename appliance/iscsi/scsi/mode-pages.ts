import { Asc, invalidCdb, invalidParam, ScsiError, SenseKey } from './sense';

/**
 * MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 §6.11-6.14) with the pages initiators ask
 * for: 0x08 caching (WCE=1: we have a volatile cache that SYNCHRONIZE CACHE empties),
 * 0x0A control, 0x1C informational exceptions, 0x3F all. Page 0x00 (asked by old Windows)
 * returns the header and block descriptor only. The one changeable parameter is SWP
 * (software write protect, control page): MODE SELECT accepts a page when it restates the
 * current values apart from that bit. Pages are shared by every I_T nexus of the LU (one
 * task set, TST=0) and not savable.
 */

/** Page control values (SPC-4 §6.11.1). */
const PC_CHANGEABLE = 1;
function caching(pc: number, _ctx: ModeContext): Buffer {
  const b = Buffer.alloc(20);
  b[0] = 0x08;
  b[1] = 0x12;
  if (pc !== 1) b[2] = 0x04; // WCE
  return b;
}

/** SWP: byte 4, bit 3 of the control page. */
const SWP = 0x08;

function control(pc: number, ctx: ModeContext): Buffer {
  const b = Buffer.alloc(12);
  b[0] = 0x0a;
  b[1] = 0x0a;
  if (pc === PC_CHANGEABLE) {
    b[4] = SWP;
    return b;
  }
  b[2] = 0x00; // TST 0, D_SENSE 0: fixed-format sense
  b[3] = 0x10; // queue algorithm modifier 1: unrestricted reordering allowed
  // Current: what MODE SELECT set; default (pc 2): off.
  b[4] = pc === 0 && ctx.softwareWriteProtect ? SWP : 0;
  b[5] = 0x00;
  b.writeUInt16BE(0xffff, 8); // busy timeout: unlimited
  return b;
}

function informationalExceptions(pc: number, _ctx: ModeContext): Buffer {
  const b = Buffer.alloc(12);
  b[0] = 0x1c;
  b[1] = 0x0a;
  if (pc === 1) return b;
  return b; // MRIE 0: no reporting
}

const PAGES: Record<number, (pc: number, ctx: ModeContext) => Buffer> = { 0x08: caching, 0x0a: control, 0x1c: informationalExceptions };

/** What the header, block descriptor and pages report. */
export interface ModeContext {
  blockCount: number;
  blockSize: number;
  /** Read-only LUN or volume (the WP bit). */
  writeProtected: boolean;
  /** SWP in the control page (also reported through WP). */
  softwareWriteProtect: boolean;
}

/** The changeable parameters after a MODE SELECT. */
export interface ModeChanges {
  softwareWriteProtect: boolean;
}

function pagesFor(pageCode: number, subpage: number, pc: number, cdbByte: number, ctx: ModeContext): Buffer[] {
  if (subpage !== 0 && !(pageCode === 0x3f && subpage === 0xff)) throw invalidCdb(3);
  if (pageCode === 0x3f) return [0x08, 0x0a, 0x1c].map((c) => PAGES[c](pc, ctx));
  if (pageCode === 0x00) return [];
  const f = PAGES[pageCode];
  if (!f) throw invalidCdb(cdbByte, 5);
  return [f(pc, ctx)];
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
  const pages = pagesFor(pageCode, subpage, pc, 2, ctx);
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
  const deviceSpecific = (ctx.writeProtected || ctx.softwareWriteProtect ? 0x80 : 0) | 0x10; // WP, DPOFUA
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
 * current values outside the changeable bits; returns the changeable parameters it sets.
 * SP=1 (save) is refused: no saved pages. Nothing changes unless the whole list is valid.
 */
export function modeSelect(cdb: Buffer, data: Buffer, ctx: ModeContext): ModeChanges {
  const ten = cdb[0] === 0x55;
  const changes: ModeChanges = { softwareWriteProtect: ctx.softwareWriteProtect };
  if (cdb[1] & 0x01) throw invalidCdb(1, 0); // SP
  const listLength = ten ? cdb.readUInt16BE(7) : cdb[4];
  if (listLength === 0) return changes;
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
    const current = f(0, ctx);
    const changeable = f(PC_CHANGEABLE, ctx);
    if (len !== current[1] || off + 2 + len > data.length) throw invalidParam(off + 1);
    for (let i = 2; i < current.length; i++) {
      if ((data[off + i] & ~changeable[i]) !== (current[i] & ~changeable[i])) throw invalidParam(off + i);
    }
    if (code === 0x0a) changes.softwareWriteProtect = (data[off + 4] & SWP) !== 0;
    off += 2 + len;
  }
  return changes;
}
