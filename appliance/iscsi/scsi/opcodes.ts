import { invalidCdb } from './sense';

/**
 * The SCSI commands this logical unit implements, with the CDB usage maps that REPORT
 * SUPPORTED OPERATION CODES returns (SPC-4 §6.35). A bit set in the usage map is a bit the
 * device server looks at; byte 0 is the opcode itself. Everything not listed answers
 * ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE.
 */

/** SCSI operation codes (SPC-4, SBC-3). */
export const Opcode = {
  TestUnitReady: 0x00,
  RequestSense: 0x03,
  Read6: 0x08,
  Write6: 0x0a,
  Inquiry: 0x12,
  ModeSelect6: 0x15,
  Reserve6: 0x16,
  Release6: 0x17,
  ModeSense6: 0x1a,
  StartStopUnit: 0x1b,
  PreventAllow: 0x1e,
  ReadCapacity10: 0x25,
  Read10: 0x28,
  Write10: 0x2a,
  WriteVerify10: 0x2e,
  Verify10: 0x2f,
  Prefetch10: 0x34,
  SyncCache10: 0x35,
  ReadDefectData10: 0x37,
  WriteSame10: 0x41,
  Unmap: 0x42,
  Sanitize: 0x48,
  ModeSelect10: 0x55,
  ModeSense10: 0x5a,
  PersistentReserveIn: 0x5e,
  PersistentReserveOut: 0x5f,
  ExtendedCopy: 0x83,
  ReceiveCopyResults: 0x84,
  Read16: 0x88,
  CompareAndWrite: 0x89,
  Write16: 0x8a,
  OrWrite16: 0x8b,
  WriteVerify16: 0x8e,
  Verify16: 0x8f,
  Prefetch16: 0x90,
  SyncCache16: 0x91,
  WriteSame16: 0x93,
  WriteAtomic16: 0x9c,
  ServiceActionIn16: 0x9e,
  ReportLuns: 0xa0,
  MaintenanceIn: 0xa3,
  Read12: 0xa8,
  Write12: 0xaa,
  WriteVerify12: 0xae,
  Verify12: 0xaf,
  ReadDefectData12: 0xb7,
} as const;

/** Service actions of SERVICE ACTION IN(16) and MAINTENANCE IN. */
export const ServiceAction = {
  ReadCapacity16: 0x10,
  GetLbaStatus: 0x12,
  ReportSupportedOpcodes: 0x0c,
  ReportSupportedTmfs: 0x0d,
} as const;

/** One supported command. */
export interface CommandInfo {
  opcode: number;
  /** Service action, for commands that have them. */
  sa?: number;
  /** CDB usage data; its length is the CDB length. */
  usage: readonly number[];
}

const lba10 = [0xff, 0xff, 0xff, 0xff];
const lba16 = [...lba10, ...lba10];

/** The command table, in opcode order. */
export const COMMANDS: readonly CommandInfo[] = [
  { opcode: Opcode.TestUnitReady, usage: [0x00, 0, 0, 0, 0, 0x07] },
  { opcode: Opcode.RequestSense, usage: [0x03, 0x01, 0, 0, 0xff, 0x07] },
  { opcode: Opcode.Read6, usage: [0x08, 0x1f, 0xff, 0xff, 0xff, 0x07] },
  { opcode: Opcode.Write6, usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, 0x07] },
  { opcode: Opcode.Inquiry, usage: [0x12, 0x01, 0xff, 0xff, 0xff, 0x07] },
  { opcode: Opcode.ModeSelect6, usage: [0x15, 0x11, 0, 0, 0xff, 0x07] },
  { opcode: Opcode.Reserve6, usage: [0x16, 0, 0, 0, 0, 0x07] },
  { opcode: Opcode.Release6, usage: [0x17, 0, 0, 0, 0, 0x07] },
  { opcode: Opcode.ModeSense6, usage: [0x1a, 0x08, 0xff, 0xff, 0xff, 0x07] },
  { opcode: Opcode.StartStopUnit, usage: [0x1b, 0x01, 0, 0x0f, 0xf7, 0x07] },
  { opcode: Opcode.PreventAllow, usage: [0x1e, 0, 0, 0, 0x03, 0x07] },
  { opcode: Opcode.ReadCapacity10, usage: [0x25, 0, ...lba10, 0, 0, 0x01, 0x07] },
  { opcode: Opcode.Read10, usage: [0x28, 0xfa, ...lba10, 0x1f, 0xff, 0xff, 0x07] },
  { opcode: Opcode.Write10, usage: [0x2a, 0xfa, ...lba10, 0x1f, 0xff, 0xff, 0x07] },
  { opcode: Opcode.WriteVerify10, usage: [0x2e, 0xf2, ...lba10, 0x1f, 0xff, 0xff, 0x07] },
  { opcode: Opcode.Verify10, usage: [0x2f, 0xf6, ...lba10, 0x1f, 0xff, 0xff, 0x07] },
  { opcode: Opcode.Prefetch10, usage: [0x34, 0x02, ...lba10, 0x1f, 0xff, 0xff, 0x07] },
  { opcode: Opcode.SyncCache10, usage: [0x35, 0x02, ...lba10, 0x1f, 0xff, 0xff, 0x07] },
  { opcode: Opcode.ReadDefectData10, usage: [0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.WriteSame10, usage: [0x41, 0xf8, ...lba10, 0x1f, 0xff, 0xff, 0x07] },
  { opcode: Opcode.Unmap, usage: [0x42, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0x07] },
  // SANITIZE: IMMED, AUSE, service action; BLOCK ERASE and EXIT FAILURE MODE only (sanitize.ts).
  { opcode: Opcode.Sanitize, sa: 0x02, usage: [0x48, 0xbf, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.Sanitize, sa: 0x1f, usage: [0x48, 0xbf, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.ModeSelect10, usage: [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.ModeSense10, usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.PersistentReserveIn, sa: 0x00, usage: [0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.PersistentReserveIn, sa: 0x01, usage: [0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.PersistentReserveIn, sa: 0x02, usage: [0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  { opcode: Opcode.PersistentReserveIn, sa: 0x03, usage: [0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07] },
  ...[0, 1, 2, 3, 4, 5, 6].map((sa) => ({
    opcode: Opcode.PersistentReserveOut,
    sa,
    usage: [0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07],
  })),
  { opcode: Opcode.ExtendedCopy, sa: 0x00, usage: [0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07] },
  { opcode: Opcode.ReceiveCopyResults, sa: 0x00, usage: [0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07] },
  { opcode: Opcode.ReceiveCopyResults, sa: 0x03, usage: [0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07] },
  { opcode: Opcode.Read16, usage: [0x88, 0xfa, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.CompareAndWrite, usage: [0x89, 0xfa, ...lba16, 0, 0, 0, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.Write16, usage: [0x8a, 0xfa, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.OrWrite16, usage: [0x8b, 0xfa, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.WriteVerify16, usage: [0x8e, 0xf2, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.Verify16, usage: [0x8f, 0xf6, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.Prefetch16, usage: [0x90, 0x02, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.SyncCache16, usage: [0x91, 0x02, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.WriteSame16, usage: [0x93, 0xf9, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  // Offered only on volumes with the atomic-write capability (atomic-write.ts).
  { opcode: Opcode.WriteAtomic16, usage: [0x9c, 0xf8, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x07] },
  { opcode: Opcode.ServiceActionIn16, sa: ServiceAction.ReadCapacity16, usage: [0x9e, 0x1f, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x01, 0x07] },
  { opcode: Opcode.ServiceActionIn16, sa: ServiceAction.GetLbaStatus, usage: [0x9e, 0x1f, ...lba16, 0xff, 0xff, 0xff, 0xff, 0x00, 0x07] },
  { opcode: Opcode.ReportLuns, usage: [0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07] },
  { opcode: Opcode.MaintenanceIn, sa: ServiceAction.ReportSupportedOpcodes, usage: [0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07] },
  { opcode: Opcode.MaintenanceIn, sa: ServiceAction.ReportSupportedTmfs, usage: [0xa3, 0x1f, 0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07] },
  { opcode: Opcode.Read12, usage: [0xa8, 0xfa, ...lba10, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.Write12, usage: [0xaa, 0xfa, ...lba10, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.WriteVerify12, usage: [0xae, 0xf2, ...lba10, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.Verify12, usage: [0xaf, 0xf6, ...lba10, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07] },
  { opcode: Opcode.ReadDefectData12, usage: [0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07] },
];

/** True for opcodes whose CDB byte 1 (low 5 bits) carries a service action. */
export function hasServiceAction(opcode: number): boolean {
  return COMMANDS.some((c) => c.opcode === opcode && c.sa !== undefined);
}

/** REPORT SUPPORTED OPERATION CODES (SPC-4 §6.35) for the commands of the table that `offered` accepts. */
export function reportOpcodes(cdb: Buffer, offered: (c: CommandInfo) => boolean = () => true): Buffer {
  const rctd = (cdb[2] & 0x80) !== 0;
  const option = cdb[2] & 0x07;
  const reqOp = cdb[3];
  const reqSa = cdb.readUInt16BE(4);
  const timeouts = (): Buffer => {
    const t = Buffer.alloc(12);
    t.writeUInt16BE(10, 0);
    return t;
  };
  if (option === 0) {
    const parts: Buffer[] = [];
    for (const c of COMMANDS) {
      if (!offered(c)) continue;
      const d = Buffer.alloc(8);
      d[0] = c.opcode;
      if (c.sa !== undefined) d.writeUInt16BE(c.sa, 2);
      d[5] = (c.sa !== undefined ? 0x01 : 0) | (rctd ? 0x02 : 0);
      d.writeUInt16BE(c.usage.length, 6);
      parts.push(d);
      if (rctd) parts.push(timeouts());
    }
    const body = Buffer.concat(parts);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(body.length, 0);
    return Buffer.concat([h, body]);
  }
  let cmd;
  if (option === 1) {
    if (hasServiceAction(reqOp)) throw invalidCdb(3);
    cmd = COMMANDS.find((c) => c.opcode === reqOp && offered(c));
  } else if (option === 2) {
    if (!hasServiceAction(reqOp) && COMMANDS.some((c) => c.opcode === reqOp)) throw invalidCdb(3);
    cmd = COMMANDS.find((c) => c.opcode === reqOp && c.sa === reqSa && offered(c));
  } else if (option === 3) {
    cmd = COMMANDS.find((c) => c.opcode === reqOp && (c.sa === undefined || c.sa === reqSa) && offered(c));
  } else {
    throw invalidCdb(2, 0);
  }
  if (!cmd) {
    const b = Buffer.alloc(4);
    b[1] = 0x01; // not supported
    return b;
  }
  const b = Buffer.alloc(4 + cmd.usage.length);
  b[1] = (rctd ? 0x80 : 0) | 0x03; // CTDP, SUPPORT = supported per standard
  b.writeUInt16BE(cmd.usage.length, 2);
  Buffer.from(cmd.usage).copy(b, 4);
  if (cmd.sa !== undefined) b[5] = (b[5] & 0xe0) | 0x1f;
  return rctd ? Buffer.concat([b, timeouts()]) : b;
}

/** How a command touches the medium, for reservations (SPC-4 Table 76, simplified to read/write). */
export type AccessKind = 'read' | 'write' | 'none';

/**
 * What each opcode is beyond its CDB usage (issue #18: one place says it): the reservation
 * access kind, and which medium transfer it is (the session's read/write statistics count
 * READ(6/10/12/16) and WRITE / WRITE AND VERIFY(6/10/12/16) only). Absent: 'none', no transfer.
 */
const TRAITS: ReadonlyMap<number, { access: AccessKind; medium?: 'read' | 'write' }> = new Map([
  [Opcode.Read6, { access: 'read', medium: 'read' }],
  [Opcode.Read10, { access: 'read', medium: 'read' }],
  [Opcode.Read12, { access: 'read', medium: 'read' }],
  [Opcode.Read16, { access: 'read', medium: 'read' }],
  [Opcode.Verify10, { access: 'read' }],
  [Opcode.Verify12, { access: 'read' }],
  [Opcode.Verify16, { access: 'read' }],
  [Opcode.Prefetch10, { access: 'read' }],
  [Opcode.Prefetch16, { access: 'read' }],
  [Opcode.Write6, { access: 'write', medium: 'write' }],
  [Opcode.Write10, { access: 'write', medium: 'write' }],
  [Opcode.Write12, { access: 'write', medium: 'write' }],
  [Opcode.Write16, { access: 'write', medium: 'write' }],
  [Opcode.WriteVerify10, { access: 'write', medium: 'write' }],
  [Opcode.WriteVerify12, { access: 'write', medium: 'write' }],
  [Opcode.WriteVerify16, { access: 'write', medium: 'write' }],
  [Opcode.WriteSame10, { access: 'write' }],
  [Opcode.WriteSame16, { access: 'write' }],
  [Opcode.Unmap, { access: 'write' }],
  [Opcode.CompareAndWrite, { access: 'write' }],
  [Opcode.OrWrite16, { access: 'write' }],
  [Opcode.SyncCache10, { access: 'write' }],
  [Opcode.SyncCache16, { access: 'write' }],
  [Opcode.ModeSelect6, { access: 'write' }],
  [Opcode.ExtendedCopy, { access: 'write' }],
  [Opcode.ModeSelect10, { access: 'write' }],
  [Opcode.Sanitize, { access: 'write' }],
  [Opcode.WriteAtomic16, { access: 'write' }],
]);

/** Which reservation rules apply to an opcode. */
export function accessKind(op: number): AccessKind {
  return TRAITS.get(op)?.access ?? 'none';
}

/** 'read' / 'write' for the commands that move medium data in that direction, else undefined. */
export function mediumTransfer(op: number): 'read' | 'write' | undefined {
  return TRAITS.get(op)?.medium;
}
