/**
 * SCSI status codes and sense data (SPC-4 §4.5). Commands fail by throwing ScsiError; the
 * logical unit turns it into CHECK CONDITION with fixed-format sense data (or descriptor
 * format when the initiator set D_SENSE in the control mode page).
 */

/** SAM-5 status codes. */
export const Status = {
  Good: 0x00,
  CheckCondition: 0x02,
  ConditionMet: 0x04,
  Busy: 0x08,
  ReservationConflict: 0x18,
  TaskSetFull: 0x28,
  TaskAborted: 0x40,
} as const;

/** Sense keys (SPC-4 §4.5.6). */
export const SenseKey = {
  NoSense: 0x0,
  NotReady: 0x2,
  MediumError: 0x3,
  HardwareError: 0x4,
  IllegalRequest: 0x5,
  UnitAttention: 0x6,
  DataProtect: 0x7,
  CopyAborted: 0xa,
  AbortedCommand: 0xb,
  Miscompare: 0xe,
} as const;

/** Additional sense codes we use, as [ASC, ASCQ]. */
export const Asc = {
  NoAdditionalSense: [0x00, 0x00],
  SanitizeInProgress: [0x04, 0x1b],
  InvalidFieldInInformationUnit: [0x0e, 0x03],
  WriteError: [0x0c, 0x00],
  UnrecoveredReadError: [0x11, 0x00],
  ParameterListLengthError: [0x1a, 0x00],
  MiscompareDuringVerify: [0x1d, 0x00],
  InvalidOpcode: [0x20, 0x00],
  LbaOutOfRange: [0x21, 0x00],
  InvalidFieldInCdb: [0x24, 0x00],
  LunNotSupported: [0x25, 0x00],
  InvalidFieldInParameterList: [0x26, 0x00],
  DataPhaseError: [0x4b, 0x00],
  WriteProtected: [0x27, 0x00],
  SoftwareWriteProtected: [0x27, 0x02],
  SpaceAllocationFailedWriteProtect: [0x27, 0x07],
  PowerOnReset: [0x29, 0x00],
  ModeParametersChanged: [0x2a, 0x01],
  ReservationsPreempted: [0x2a, 0x03],
  ReservationsReleased: [0x2a, 0x04],
  RegistrationsPreempted: [0x2a, 0x05],
  SanitizeCommandFailed: [0x31, 0x03],
  SavingParametersNotSupported: [0x39, 0x00],
  MediumNotPresent: [0x3a, 0x00],
  LogicalUnitFailure: [0x3e, 0x01],
  InsufficientRegistrationResources: [0x55, 0x04],
} as const satisfies Record<string, readonly [number, number]>;

/** Where in the CDB or parameter list the bad field is (SPC-4 §4.5.2.4.2, sense-key specific). */
export interface FieldPointer {
  /** True: the CDB; false: the parameter list. */
  inCdb: boolean;
  byte: number;
  /** Bit 0..7, or undefined when the whole byte is meant. */
  bit?: number;
}

/** A command that ends in CHECK CONDITION. */
export class ScsiError extends Error {
  constructor(
    readonly key: number,
    readonly asc: readonly [number, number],
    readonly field?: FieldPointer,
    /** INFORMATION field (e.g. miscompare offset). */
    readonly information?: number,
    /** Progress indication, 0..65535 of 65536 (NOT READY while an operation runs, SPC-4 §4.5.2.4.4). */
    readonly progress?: number,
  ) {
    super(`sense ${key.toString(16)}/${asc[0].toString(16)}/${asc[1].toString(16)}`);
    this.name = 'ScsiError';
  }
}

/** Shorthand: ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at byte (and bit). */
export function invalidCdb(byte: number, bit?: number): ScsiError {
  return new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInCdb, { inCdb: true, byte, bit });
}

/** Shorthand: ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST. */
export function invalidParam(byte: number, bit?: number): ScsiError {
  return new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInParameterList, { inCdb: false, byte, bit });
}

/** Shorthand: ABORTED COMMAND / DATA PHASE ERROR (SPC-4 Table 48), e.g. Data-Out that never came. */
export function dataPhaseError(): ScsiError {
  return new ScsiError(SenseKey.AbortedCommand, Asc.DataPhaseError);
}

/** Shorthand: ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE. */
export function lbaOutOfRange(): ScsiError {
  return new ScsiError(SenseKey.IllegalRequest, Asc.LbaOutOfRange);
}

/** Builds sense data: fixed format (0x70, 18 bytes) or descriptor format (0x72). */
export function encodeSense(e: ScsiError, descriptor = false): Buffer {
  if (descriptor) {
    const extra = (e.information !== undefined ? 12 : 0) + (e.field || e.progress !== undefined ? 8 : 0);
    const b = Buffer.alloc(8 + extra);
    b[0] = 0x72;
    b[1] = e.key;
    b[2] = e.asc[0];
    b[3] = e.asc[1];
    b[7] = extra;
    let off = 8;
    if (e.information !== undefined) {
      b[off] = 0x00; // information descriptor
      b[off + 1] = 0x0a;
      b[off + 2] = 0x80; // VALID
      b.writeBigUInt64BE(BigInt(e.information), off + 4);
      off += 12;
    }
    if (e.field || e.progress !== undefined) {
      b[off] = 0x02; // sense-key specific descriptor
      b[off + 1] = 0x06;
      writeSks(b, off + 4, e);
    }
    return b;
  }
  const b = Buffer.alloc(18);
  b[0] = 0x70 | (e.information !== undefined ? 0x80 : 0);
  b[2] = e.key;
  if (e.information !== undefined) b.writeUInt32BE(e.information >>> 0, 3);
  b[7] = 10;
  b[12] = e.asc[0];
  b[13] = e.asc[1];
  if (e.field || e.progress !== undefined) writeSks(b, 15, e);
  return b;
}

/** Sense-key specific bytes: a field pointer, or a progress indication. */
function writeSks(b: Buffer, off: number, e: ScsiError): void {
  const f = e.field;
  if (!f) {
    b[off] = 0x80; // SKSV
    b.writeUInt16BE(Math.max(0, Math.min(0xffff, e.progress ?? 0)), off + 1);
    return;
  }
  b[off] = 0x80 | (f.inCdb ? 0x40 : 0) | (f.bit !== undefined ? 0x08 | (f.bit & 7) : 0);
  b.writeUInt16BE(f.byte, off + 1);
}
