// Long file: to be split with the opcode table (issue #18 step 3), after the write-path work
// in flight on appliance/iscsi/ lands.
import { VolumeError, type BlockVolume } from '../../../image-store/block-volume';
import { atomicWriteBlocks, parseWriteAtomic16 } from './atomic-write';
import { parseExtendedCopy, receiveCopyResults, runExtendedCopy, type CopyStatus } from './extended-copy';
import { BLOCK_LIMITS, luIdentity, standardInquiry, vpdPage, type LuIdentity } from './inquiry';
import { modeSelect, modeSense } from './mode-pages';
import { Opcode, reportOpcodes, ServiceAction, type CommandInfo } from './opcodes';
import { RangeLock } from './range-lock';
import { accessKind } from './opcodes';
import { LuReservations, ReservationConflict } from './reservations';
import { blockErase, canBlockErase, parseSanitize, SanitizeAction, SanitizeState } from './sanitize';
import { Asc, encodeSense, invalidCdb, invalidParam, lbaOutOfRange, ScsiError, SenseKey, Status } from './sense';
import { UnitAttentions } from './unit-attention';

/**
 * The SCSI block command set (SPC-4 + SBC-3) over one BlockVolume, for one session. The
 * iSCSI layer gathers the Data-Out bytes and calls execute(); this class never sees PDUs.
 * State shared between sessions of the same LU (reservations, COMPARE AND WRITE atomicity)
 * lives in LuShared.
 */

/** One SCSI command as the transport hands it over. */
export interface ScsiRequest {
  cdb: Buffer;
  /** Data-Out bytes received (EDTL of them; may be fewer or more than the CDB asks for). */
  dataOut: Buffer | null;
  /** Expected Data Transfer Length from the transport (allocation lengths are in the CDB). */
  edtl: number;
  /** I_T nexus name, for reservations. */
  nexus: string;
  /**
   * A buffer of EDTL bytes a READ may return its data in (the connection's pool): the data
   * must come back as this very buffer (or a view of it) for it to be reused.
   */
  dataInBuffer?: Buffer;
}

/** What the command produced. */
export interface ScsiResult {
  status: number;
  /** Sense data for CHECK CONDITION. */
  sense: Buffer | null;
  /** Data-In (already truncated to the CDB's allocation length). */
  dataIn: Buffer | null;
  /** Bytes of Data-Out the CDB called for (for write residuals). */
  dataOutWanted: number;
}

/** State of one LU shared by every session that opens it. */
export class LuShared {
  readonly reservations = new LuReservations({ onReset: () => this.afterReset(), onNexusLost: () => this.detach() });
  /** EXTENDED COPY results held for RECEIVE COPY RESULTS, by "nexus/list id" (bounded). */
  readonly copyResults = new Map<string, CopyStatus>();
  /** LBA ranges held by running writes (shared) and COMPARE AND WRITE, ORWRITE, SANITIZE (exclusive). */
  readonly ranges = new RangeLock();
  readonly attention = new UnitAttentions();
  readonly sanitize = new SanitizeState();
  /** SWP of the control mode page, set through MODE SELECT by any nexus; off again after a reset. */
  softwareWriteProtect = false;
  /** Sessions that have the LU open. */
  private sessions = 0;

  /** A session opened the LU (LogicalUnit's constructor). */
  attach(): void {
    this.sessions++;
  }

  /**
   * A session closed it. When the last one goes, mode parameters return to their defaults:
   * no nexus is left to tell, and a client that set SWP and vanished must not find its disk
   * write-protected at its next boot (nobody can tell this from a power cycle in between).
   */
  private detach(): void {
    this.sessions = Math.max(0, this.sessions - 1);
    if (this.sessions === 0) this.softwareWriteProtect = false;
  }

  /**
   * A LU or target reset (SAM-5 §6.3.3): mode parameters return to their defaults (none
   * are saved) and every nexus gets POWER ON, RESET, OR BUS DEVICE RESET OCCURRED, which
   * supersedes older conditions. A running SANITIZE goes on (SBC-3 §4.11).
   */
  private afterReset(): void {
    this.softwareWriteProtect = false;
    this.attention.raise(Asc.PowerOnReset, null, true);
  }
}

const GOOD: Omit<ScsiResult, 'dataOutWanted'> = { status: Status.Good, sense: null, dataIn: null };
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

interface Io {
  lba: number;
  blocks: number;
}

/** Reads LBA and length of the READ/WRITE/VERIFY families (6/10/12/16-byte CDBs). */
function decodeIo(cdb: Buffer): Io {
  // The opcode's group code (top three bits) fixes the CDB layout (SPC-4 §4.2.5.1).
  const group = cdb[0] >> 5;
  switch (group === 0 ? 6 : group === 4 ? 16 : group === 5 ? 12 : 10) {
    case 6: {
      const n = cdb[4];
      return { lba: ((cdb[1] & 0x1f) << 16) | (cdb[2] << 8) | cdb[3], blocks: n === 0 ? 256 : n };
    }
    case 10:
      return { lba: cdb.readUInt32BE(2), blocks: cdb.readUInt16BE(7) };
    case 12:
      return { lba: cdb.readUInt32BE(2), blocks: cdb.readUInt32BE(6) };
    default: {
      const big = cdb.readBigUInt64BE(2);
      return { lba: big > MAX_SAFE ? Number.MAX_SAFE_INTEGER : Number(big), blocks: cdb.readUInt32BE(10) };
    }
  }
}

function volumeSense(err: unknown, writing: boolean): ScsiError {
  if (err instanceof ScsiError) return err;
  if (err instanceof VolumeError) {
    switch (err.code) {
      case 'NO_SPACE':
        return new ScsiError(SenseKey.DataProtect, Asc.SpaceAllocationFailedWriteProtect);
      case 'READ_ONLY':
        return new ScsiError(SenseKey.DataProtect, Asc.WriteProtected);
      case 'OUT_OF_RANGE':
        return lbaOutOfRange();
      case 'CLOSED':
        return new ScsiError(SenseKey.NotReady, [0x04, 0x00]);
      default:
        break;
    }
  }
  return new ScsiError(SenseKey.MediumError, writing ? Asc.WriteError : Asc.UnrecoveredReadError);
}

/** Allocation-length truncation (SPC-4 §4.2.5.6). */
function truncate(b: Buffer, alloc: number): Buffer {
  return b.length > alloc ? b.subarray(0, alloc) : b;
}

/**
 * A command held back by a condition: CHECK CONDITION with its sense, except REQUEST SENSE,
 * which returns the sense as its data (SPC-4 §6.39) and clears the condition.
 */
function heldBack(err: ScsiError, cdb: Buffer, wanted: number): ScsiResult {
  if (cdb[0] === Opcode.RequestSense) return { ...GOOD, dataIn: truncate(encodeSense(err, (cdb[1] & 0x01) !== 0), cdb[4]), dataOutWanted: 0 };
  return { status: Status.CheckCondition, sense: encodeSense(err), dataIn: null, dataOutWanted: wanted };
}

/** The smallest LBA range covering every given one (a command holds one range, never two in turn). */
function envelope(ranges: readonly { lba: number; blocks: number }[]): { lba: number; blocks: number } {
  let start = Infinity;
  let end = 0;
  for (const r of ranges) {
    if (r.lba < start) start = r.lba;
    if (r.lba + r.blocks > end) end = r.lba + r.blocks;
  }
  return { lba: start, blocks: end - start };
}

/** A logical unit as one session sees it. */
export class LogicalUnit {
  readonly identity: LuIdentity;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly writeProtected: boolean;
  /** The newest unit attention this session has been told about (UnitAttentions numbers). */
  private uaSeen: number;

  constructor(
    readonly lun: number,
    readonly volume: BlockVolume,
    readOnly: boolean,
    readonly shared: LuShared,
    private readonly targetName: string,
  ) {
    this.identity = luIdentity(volume.id);
    this.blockSize = volume.blockSize;
    this.blockCount = volume.blockCount;
    this.writeProtected = readOnly || volume.readOnly;
    this.uaSeen = shared.attention.latest;
    shared.attach();
  }

  /** Runs one command to completion; never rejects (errors become CHECK CONDITION). */
  execute(req: ScsiRequest): Promise<ScsiResult> {
    // Two integer/string compares on the hot path; the rare cases are handled in gate().
    if (this.uaSeen !== this.shared.attention.latest || this.shared.sanitize.state !== 'idle') {
      const held = this.gate(req);
      if (held) return Promise.resolve(held);
    }
    const op = req.cdb[0];
    // READ/WRITE 10/16 take a direct path: checks, then the volume's own promise, no extra
    // async layers (they are most of the traffic; see bench/iscsi-vs-tgt.ts).
    if (op === Opcode.Read10 || op === Opcode.Read16 || op === Opcode.Write10 || op === Opcode.Write16) {
      try {
        const fast = this.fastIo(req);
        if (fast) return fast;
      } catch (err) {
        return Promise.resolve(this.failure(err, req.cdb, 0));
      }
    }
    return this.executeSlow(req);
  }

  private fastIo(req: ScsiRequest): Promise<ScsiResult> | null {
    const cdb = req.cdb;
    const op = cdb[0];
    const io = decodeIo(cdb);
    const write = op === Opcode.Write10 || op === Opcode.Write16;
    this.shared.reservations.check(req.nexus, write ? 'write' : 'read', op);
    this.checkProtect(cdb);
    this.checkRange(io.lba, io.blocks);
    if (io.blocks === 0 || io.blocks > BLOCK_LIMITS.maxTransferBlocks) return null;
    const bytes = io.blocks * this.blockSize;
    if (!write) {
      const into = req.dataInBuffer?.length === bytes ? req.dataInBuffer : undefined;
      return this.volume.read(io.lba, io.blocks, into).then(
        (dataIn) => ({ status: Status.Good, sense: null, dataIn, dataOutWanted: 0 }),
        (err) => this.failure(err, cdb, 0),
      );
    }
    this.checkWritable();
    const data = req.dataOut;
    if (!data || data.length !== bytes) return null; // residual cases take the general path
    // An overlapping COMPARE AND WRITE (or ORWRITE, SANITIZE) holds or awaits the range: wait in the general path.
    const ranges = this.shared.ranges;
    const hold = ranges.tryAcquire(io.lba, io.blocks, false);
    if (!hold) return null;
    let written: Promise<void>;
    try {
      written = this.volume.write(io.lba, data, { fua: (cdb[1] & 0x08) !== 0 });
    } catch (err) {
      ranges.release(hold);
      throw err;
    }
    return written.then(
      () => {
        ranges.release(hold);
        return { status: Status.Good, sense: null, dataIn: null, dataOutWanted: bytes };
      },
      (err) => {
        ranges.release(hold);
        return this.failure(err, cdb, bytes);
      },
    );
  }

  /**
   * Commands held back before they run: a pending unit attention (SPC-4 §5.14: reported on
   * anything but INQUIRY, REPORT LUNS and REQUEST SENSE, which returns it as its data), a
   * running SANITIZE (NOT READY, SANITIZE IN PROGRESS with progress, SBC-3 §4.11.2) and a
   * failed one (medium access gets MEDIUM ERROR, SANITIZE COMMAND FAILED).
   */
  private gate(req: ScsiRequest): ScsiResult | null {
    const cdb = req.cdb;
    const op = cdb[0];
    if (op === Opcode.Inquiry) return null;
    const wanted = this.dataOutLength(cdb);
    if (this.uaSeen !== this.shared.attention.latest) {
      const { asc, seen } = this.shared.attention.next(this.uaSeen, req.nexus);
      this.uaSeen = seen;
      if (asc) return heldBack(new ScsiError(SenseKey.UnitAttention, asc), cdb, wanted);
    }
    const sanitize = this.shared.sanitize;
    if (sanitize.state === 'running') {
      return heldBack(new ScsiError(SenseKey.NotReady, Asc.SanitizeInProgress, undefined, undefined, Math.floor(sanitize.progress * 0x10000)), cdb, wanted);
    }
    const touchesMedium = accessKind(op) !== 'none' && op !== Opcode.ModeSelect6 && op !== Opcode.ModeSelect10;
    if (sanitize.state === 'failed' && op !== Opcode.Sanitize && touchesMedium) {
      return {
        status: Status.CheckCondition,
        sense: encodeSense(new ScsiError(SenseKey.MediumError, Asc.SanitizeCommandFailed)),
        dataIn: null,
        dataOutWanted: wanted,
      };
    }
    return null;
  }

  private failure(err: unknown, cdb: Buffer, wanted: number): ScsiResult {
    if (err instanceof ReservationConflict) return { status: Status.ReservationConflict, sense: null, dataIn: null, dataOutWanted: wanted };
    const e = volumeSense(err, accessKind(cdb[0]) === 'write');
    return { status: Status.CheckCondition, sense: encodeSense(e), dataIn: null, dataOutWanted: wanted };
  }

  private async executeSlow(req: ScsiRequest): Promise<ScsiResult> {
    const cdb = req.cdb;
    let wanted = 0;
    try {
      wanted = this.dataOutLength(cdb);
      this.shared.reservations.check(req.nexus, accessKind(cdb[0]), cdb[0]);
      const out = await this.dispatch(req, wanted);
      return { ...GOOD, ...out, dataOutWanted: wanted };
    } catch (err) {
      return this.failure(err, cdb, wanted);
    }
  }

  /** How many Data-Out bytes the CDB asks for (0 for reads and non-data commands). */
  dataOutLength(cdb: Buffer): number {
    const bs = this.blockSize;
    switch (cdb[0]) {
      case Opcode.Write6:
      case Opcode.Write10:
      case Opcode.Write12:
      case Opcode.Write16:
      case Opcode.WriteVerify10:
      case Opcode.WriteVerify12:
      case Opcode.WriteVerify16:
      case Opcode.OrWrite16:
        return decodeIo(cdb).blocks * bs;
      case Opcode.Verify10:
      case Opcode.Verify12:
      case Opcode.Verify16:
        return ((cdb[1] >> 1) & 3) === 1 ? decodeIo(cdb).blocks * bs : ((cdb[1] >> 1) & 3) === 3 ? bs : 0;
      case Opcode.CompareAndWrite:
        return 2 * cdb[13] * bs;
      case Opcode.WriteAtomic16:
        return cdb.readUInt16BE(12) * bs;
      case Opcode.WriteSame10:
      case Opcode.WriteSame16:
        return cdb[1] & 0x01 && cdb[0] === Opcode.WriteSame16 ? 0 : bs;
      case Opcode.Unmap:
        return cdb.readUInt16BE(7);
      case Opcode.ModeSelect6:
        return cdb[4];
      case Opcode.ModeSelect10:
        return cdb.readUInt16BE(7);
      case Opcode.PersistentReserveOut:
        return cdb.readUInt32BE(5);
      case Opcode.ExtendedCopy:
        return cdb.readUInt32BE(10);
      default:
        return 0;
    }
  }

  private checkRange(lba: number, blocks: number): void {
    // Zero blocks at an LBA past the end is still out of range (SBC-3 §4.5).
    if (lba + blocks > this.blockCount || (blocks === 0 && lba >= this.blockCount)) throw lbaOutOfRange();
  }

  private checkWritable(): void {
    if (this.writeProtected) throw new ScsiError(SenseKey.DataProtect, Asc.WriteProtected);
    if (this.shared.softwareWriteProtect) throw new ScsiError(SenseKey.DataProtect, Asc.SoftwareWriteProtected);
  }

  private async dispatch(req: ScsiRequest, wanted: number): Promise<Partial<ScsiResult>> {
    const cdb = req.cdb;
    const op = cdb[0];
    switch (op) {
      case Opcode.TestUnitReady:
        return {};
      case Opcode.RequestSense: {
        // Autosense delivers every error with its status, so nothing is pending (NO SENSE).
        const desc = (cdb[1] & 0x01) !== 0;
        return { dataIn: truncate(encodeSense(new ScsiError(SenseKey.NoSense, Asc.NoAdditionalSense), desc), cdb[4]) };
      }
      case Opcode.Inquiry:
        return { dataIn: this.inquiry(cdb) };
      case Opcode.ReportLuns:
        throw new Error('REPORT LUNS is answered by the session');
      case Opcode.ReadCapacity10: {
        if (cdb[8] & 0x01) {
          /* PMI: obsolete; same answer */
        }
        const b = Buffer.alloc(8);
        b.writeUInt32BE(Math.min(this.blockCount - 1, 0xffffffff), 0);
        b.writeUInt32BE(this.blockSize, 4);
        return { dataIn: b };
      }
      case Opcode.ServiceActionIn16:
        switch (cdb[1] & 0x1f) {
          case ServiceAction.ReadCapacity16:
            return { dataIn: truncate(this.readCapacity16(), cdb.readUInt32BE(10)) };
          case ServiceAction.GetLbaStatus:
            return { dataIn: await this.getLbaStatus(cdb) };
          default:
            throw invalidCdb(1, 4);
        }
      case Opcode.MaintenanceIn:
        switch (cdb[1] & 0x1f) {
          case ServiceAction.ReportSupportedOpcodes:
            return {
              dataIn: truncate(
                reportOpcodes(cdb, (c) => this.offers(c)),
                cdb.readUInt32BE(6),
              ),
            };
          case ServiceAction.ReportSupportedTmfs: {
            const b = Buffer.alloc(cdb[2] & 0x80 ? 16 : 4);
            b[0] = 0x80 | 0x40 | 0x20 | 0x10 | 0x08; // ABORT TASK, ABORT TASK SET, CLEAR ACA, CLEAR TASK SET, LU RESET
            b[1] = 0x00;
            if (b.length === 16) b[3] = 0x0c;
            return { dataIn: truncate(b, cdb.readUInt32BE(6)) };
          }
          default:
            throw invalidCdb(1, 4);
        }
      case Opcode.ModeSense6:
      case Opcode.ModeSense10: {
        const alloc = op === Opcode.ModeSense6 ? cdb[4] : cdb.readUInt16BE(7);
        return { dataIn: truncate(modeSense(cdb, this.modeContext()), alloc) };
      }
      case Opcode.ModeSelect6:
      case Opcode.ModeSelect10:
        if ((req.dataOut?.length ?? 0) < wanted) throw new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);
        this.modeSelect(req, wanted);
        return {};
      case Opcode.StartStopUnit:
        // A fixed disk: power conditions and START are accepted; LOEJ cannot eject (no medium changer).
        if (cdb[4] & 0x02 && !(cdb[4] & 0x01) && cdb[4] >> 4 === 0) throw invalidCdb(4, 1);
        return {};
      case Opcode.PreventAllow:
        if ((cdb[4] & 0x03) > 1) throw invalidCdb(4, 0);
        return {};
      case Opcode.Reserve6:
        if (cdb[1] & 0x01) throw invalidCdb(1, 0); // third-party / extents (obsolete)
        this.shared.reservations.reserve6(req.nexus);
        return {};
      case Opcode.Release6:
        this.shared.reservations.release6(req.nexus);
        return {};
      case Opcode.PersistentReserveIn:
        return { dataIn: truncate(this.shared.reservations.prIn(cdb), cdb.readUInt16BE(7)) };
      case Opcode.PersistentReserveOut:
        this.shared.reservations.prOut(cdb, req.dataOut ?? Buffer.alloc(0), req.nexus);
        return {};
      case Opcode.ExtendedCopy:
        await this.extendedCopy(req, wanted);
        return {};
      case Opcode.ReceiveCopyResults:
        return { dataIn: truncate(receiveCopyResults(cdb, this.shared.copyResults.get(`${req.nexus}/${cdb[2]}`)), cdb.readUInt32BE(10)) };
      case Opcode.ReadDefectData10: {
        const b = Buffer.alloc(4);
        b[1] = cdb[2] & 0x1f;
        return { dataIn: truncate(b, cdb.readUInt16BE(7)) };
      }
      case Opcode.ReadDefectData12: {
        const b = Buffer.alloc(8);
        b[1] = cdb[1] & 0x1f;
        return { dataIn: truncate(b, cdb.readUInt32BE(6)) };
      }
      case Opcode.Read6:
      case Opcode.Read10:
      case Opcode.Read12:
      case Opcode.Read16:
        return { dataIn: await this.read(cdb) };
      case Opcode.Write6:
      case Opcode.Write10:
      case Opcode.Write12:
      case Opcode.Write16:
      case Opcode.WriteVerify10:
      case Opcode.WriteVerify12:
      case Opcode.WriteVerify16:
        await this.write(cdb, req.dataOut, wanted);
        return {};
      case Opcode.Verify10:
      case Opcode.Verify12:
      case Opcode.Verify16:
        await this.verify(cdb, req.dataOut);
        return {};
      case Opcode.Prefetch10:
      case Opcode.Prefetch16: {
        const io = decodeIo(cdb);
        this.checkRange(io.lba, io.blocks);
        return {};
      }
      case Opcode.SyncCache10:
      case Opcode.SyncCache16: {
        const io = decodeIo(cdb);
        this.checkRange(io.lba, io.blocks);
        await this.volume.flush();
        return {};
      }
      case Opcode.WriteSame10:
      case Opcode.WriteSame16:
        await this.writeSame(cdb, req.dataOut);
        return {};
      case Opcode.Unmap:
        await this.unmap(cdb, req.dataOut);
        return {};
      case Opcode.CompareAndWrite:
        await this.compareAndWrite(cdb, req.dataOut);
        return {};
      case Opcode.OrWrite16:
        await this.orWrite(cdb, req.dataOut, wanted);
        return {};
      case Opcode.Sanitize:
        await this.sanitize(cdb);
        return {};
      case Opcode.WriteAtomic16:
        await this.writeAtomic(cdb, req.dataOut, wanted);
        return {};
      default:
        throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidOpcode, { inCdb: true, byte: 0 });
    }
  }

  private modeContext() {
    return {
      blockCount: this.blockCount,
      blockSize: this.blockSize,
      writeProtected: this.writeProtected,
      softwareWriteProtect: this.shared.softwareWriteProtect,
    };
  }

  /** MODE SELECT; a changed SWP applies to every nexus, and the others are told (SPC-4 §6.13: MODE PARAMETERS CHANGED). */
  private modeSelect(req: ScsiRequest, wanted: number): void {
    const changes = modeSelect(req.cdb, (req.dataOut ?? Buffer.alloc(0)).subarray(0, wanted), this.modeContext());
    if (changes.softwareWriteProtect !== this.shared.softwareWriteProtect) {
      this.shared.softwareWriteProtect = changes.softwareWriteProtect;
      this.shared.attention.raise(Asc.ModeParametersChanged, req.nexus);
    }
  }

  /** Whether this LU offers a command of the table (REPORT SUPPORTED OPERATION CODES lists only those). */
  private offers(c: CommandInfo): boolean {
    if (c.opcode === Opcode.Sanitize) return canBlockErase(this.volume);
    if (c.opcode === Opcode.Unmap) return this.volume.thin.provisioned;
    if (c.opcode === Opcode.WriteAtomic16) return atomicWriteBlocks(this.volume, BLOCK_LIMITS.maxTransferBlocks) > 0;
    return true;
  }

  private inquiry(cdb: Buffer): Buffer {
    const evpd = (cdb[1] & 0x01) !== 0;
    if (cdb[1] & 0x02) throw invalidCdb(1, 1); // CMDDT (obsolete)
    const alloc = cdb.readUInt16BE(3);
    if (!evpd) {
      if (cdb[2] !== 0) throw invalidCdb(2);
      return truncate(standardInquiry(true), alloc);
    }
    return truncate(vpdPage(cdb[2], this.volume, this.identity, this.targetName), alloc);
  }

  private readCapacity16(): Buffer {
    const b = Buffer.alloc(32);
    b.writeBigUInt64BE(BigInt(this.blockCount - 1), 0);
    b.writeUInt32BE(this.blockSize, 8);
    // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 0. (4 KiB "physical" blocks would be a useful
    // alignment hint, but libiscsi's GetLBAStatus.UnmapSingle then expects GET LBA STATUS to
    // start its first descriptor past the requested LBA, against SBC-3 §5.6; we keep 0.)
    b[13] = 0;
    if (this.volume.thin.provisioned) {
      b[14] = 0x80 | (this.volume.thin.unmappedReads === 'zero' ? 0x40 : 0); // LBPME, LBPRZ
    }
    return b;
  }

  private checkProtect(cdb: Buffer): void {
    // RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT: no protection information on this LU.
    if (cdb.length >= 10 && cdb[0] !== Opcode.Read6 && cdb[0] !== Opcode.Write6 && cdb[1] & 0xe0) throw invalidCdb(1, 5);
  }

  /** MAXIMUM TRANSFER LENGTH (VPD 0xB0) enforced; the sense points at the CDB's length field. */
  private checkLength(cdb: Buffer, blocks: number): void {
    if (blocks > BLOCK_LIMITS.maxTransferBlocks) throw invalidCdb(lengthField(cdb));
  }

  private async read(cdb: Buffer): Promise<Buffer | null> {
    const io = decodeIo(cdb);
    this.checkProtect(cdb);
    this.checkRange(io.lba, io.blocks);
    if (io.blocks === 0) return null;
    this.checkLength(cdb, io.blocks);
    return this.volume.read(io.lba, io.blocks);
  }

  private async write(cdb: Buffer, data: Buffer | null, wanted: number): Promise<void> {
    const io = decodeIo(cdb);
    this.checkProtect(cdb);
    this.checkRange(io.lba, io.blocks);
    this.checkWritable();
    if (io.blocks === 0) return;
    this.checkLength(cdb, io.blocks);
    const fua =
      (cdb[0] !== Opcode.Write6 && (cdb[1] & 0x08) !== 0) ||
      cdb[0] === Opcode.WriteVerify10 ||
      cdb[0] === Opcode.WriteVerify12 ||
      cdb[0] === Opcode.WriteVerify16;
    const got = data?.length ?? 0;
    if (got === 0 && wanted > 0) return;
    await this.shared.ranges.with(io.lba, io.blocks, false, async () => {
      if (got >= wanted) {
        await this.volume.write(io.lba, got === wanted ? data! : data!.subarray(0, wanted), { fua });
        return;
      }
      // EDTL < transfer length: write only what arrived (FCP-4 §9.4.2, as libiscsi expects):
      // whole blocks directly, a trailing partial block merged with what is on the medium.
      const whole = Math.floor(got / this.blockSize);
      const rest = got - whole * this.blockSize;
      if (whole > 0) await this.volume.write(io.lba, data!.subarray(0, whole * this.blockSize), { fua });
      if (rest > 0) {
        const last = Buffer.from(await this.volume.read(io.lba + whole, 1));
        data!.copy(last, 0, whole * this.blockSize, got);
        await this.volume.write(io.lba + whole, last, { fua });
      }
    });
  }

  private async verify(cdb: Buffer, data: Buffer | null): Promise<void> {
    const io = decodeIo(cdb);
    this.checkProtect(cdb);
    const bytchk = (cdb[1] >> 1) & 3;
    if (bytchk === 2) throw invalidCdb(1, 2);
    this.checkRange(io.lba, io.blocks);
    if (io.blocks === 0 || bytchk === 0) return;
    this.checkLength(cdb, io.blocks);
    const medium = await this.volume.read(io.lba, io.blocks);
    const bs = this.blockSize;
    for (let i = 0; i < medium.length; i++) {
      const expect = bytchk === 3 ? data?.[i % bs] : data?.[i];
      if (expect === undefined || medium[i] !== expect) {
        throw new ScsiError(SenseKey.Miscompare, Asc.MiscompareDuringVerify, undefined, i);
      }
    }
  }

  private async writeSame(cdb: Buffer, data: Buffer | null): Promise<void> {
    const sixteen = cdb[0] === Opcode.WriteSame16;
    const lba = sixteen ? Number(cdb.readBigUInt64BE(2) > MAX_SAFE ? MAX_SAFE : cdb.readBigUInt64BE(2)) : cdb.readUInt32BE(2);
    let blocks = sixteen ? cdb.readUInt32BE(10) : cdb.readUInt16BE(7);
    const unmap = (cdb[1] & 0x08) !== 0;
    const anchor = (cdb[1] & 0x10) !== 0;
    const ndob = sixteen && (cdb[1] & 0x01) !== 0;
    this.checkProtect(cdb);
    if (anchor) throw invalidCdb(1, 4); // ANC_SUP=0
    if (lba > this.blockCount || (lba === this.blockCount && blocks > 0)) throw lbaOutOfRange();
    if (lba + blocks > this.blockCount) throw lbaOutOfRange();
    // WSNZ=0: zero blocks means "from LBA to the end", bounded by MAXIMUM WRITE SAME LENGTH.
    if (blocks === 0) blocks = this.blockCount - lba;
    if (blocks > BLOCK_LIMITS.maxWriteSameBlocks) throw invalidCdb(sixteen ? 10 : 7);
    this.checkWritable();
    if (blocks === 0) return;
    const bs = this.blockSize;
    const pattern = ndob ? Buffer.alloc(bs) : data;
    // Exactly one block of Data-Out (SBC-3 §5.45); anything else is an invalid request.
    if (!pattern || pattern.length !== bs) throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInCdb, { inCdb: true, byte: 1 });
    // UNMAP=1 on a thin LU is an unmap request (SBC-3 §5.45): the blocks then read as the LU
    // reports (LBPRZ), whatever the Data-Out pattern; that is what Linux discard relies on.
    if (unmap && this.volume.thin.provisioned) {
      await this.shared.ranges.with(lba, blocks, false, () => this.volume.unmap(lba, blocks));
      return;
    }
    // Write the pattern in chunks of at most 1 MiB so a large WRITE SAME needs bounded memory.
    const chunkBlocks = Math.max(1, Math.min(blocks, Math.floor((1 << 20) / bs)));
    const chunk = Buffer.allocUnsafe(chunkBlocks * bs);
    for (let i = 0; i < chunkBlocks; i++) pattern.copy(chunk, i * bs, 0, bs);
    await this.shared.ranges.with(lba, blocks, false, async () => {
      for (let done = 0; done < blocks; done += chunkBlocks) {
        const n = Math.min(chunkBlocks, blocks - done);
        await this.volume.write(lba + done, n === chunkBlocks ? chunk : chunk.subarray(0, n * bs));
      }
    });
  }

  private async unmap(cdb: Buffer, data: Buffer | null): Promise<void> {
    if (cdb[1] & 0x01) throw invalidCdb(1, 0); // ANCHOR: ANC_SUP=0
    if (!this.volume.thin.provisioned) throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidOpcode, { inCdb: true, byte: 0 });
    const listLength = cdb.readUInt16BE(7);
    this.checkWritable();
    if (listLength === 0) return;
    const d = data ?? Buffer.alloc(0);
    if (listLength < 8 || d.length < 8) throw new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);
    const descLen = Math.min(d.readUInt16BE(2), d.length - 8);
    const count = Math.floor(descLen / 16);
    if (count > BLOCK_LIMITS.maxUnmapDescriptors) throw invalidParam(2);
    const ranges: Io[] = [];
    for (let i = 0; i < count; i++) {
      const off = 8 + i * 16;
      const big = d.readBigUInt64BE(off);
      const blocks = d.readUInt32BE(off + 8);
      const lba = big > MAX_SAFE ? Number.MAX_SAFE_INTEGER : Number(big);
      if (lba + blocks > this.blockCount) throw lbaOutOfRange();
      if (blocks > BLOCK_LIMITS.maxUnmapBlocks) throw invalidParam(off + 8);
      ranges.push({ lba, blocks });
    }
    const work = ranges.filter((r) => r.blocks > 0);
    if (work.length === 0) return;
    const all = envelope(work);
    await this.shared.ranges.with(all.lba, all.blocks, false, async () => {
      for (const r of work) await this.volume.unmap(r.lba, r.blocks);
    });
  }

  private async getLbaStatus(cdb: Buffer): Promise<Buffer> {
    const big = cdb.readBigUInt64BE(2);
    const alloc = cdb.readUInt32BE(10);
    if (big >= BigInt(this.blockCount)) throw lbaOutOfRange();
    const lba = Number(big);
    const span = Math.min(this.blockCount - lba, 0x100000);
    const runs = this.volume.mapping ? await this.volume.mapping(lba, span) : [{ lba, blocks: span, mapped: true }];
    const maxDesc = Math.max(1, Math.min(runs.length, Math.floor((Math.max(alloc, 24) - 8) / 16)));
    const b = Buffer.alloc(8 + 16 * maxDesc);
    b.writeUInt32BE(4 + 16 * maxDesc, 0);
    for (let i = 0; i < maxDesc; i++) {
      const r = runs[i] ?? { lba, blocks: span, mapped: true };
      const off = 8 + 16 * i;
      b.writeBigUInt64BE(BigInt(r.lba), off);
      b.writeUInt32BE(r.blocks, off + 8);
      b[off + 12] = r.mapped ? 0 : 1; // 0 mapped, 1 deallocated
    }
    return truncate(b, alloc);
  }

  private async compareAndWrite(cdb: Buffer, data: Buffer | null): Promise<void> {
    const lbaBig = cdb.readBigUInt64BE(2);
    const blocks = cdb[13];
    this.checkProtect(cdb);
    const lba = lbaBig > MAX_SAFE ? Number.MAX_SAFE_INTEGER : Number(lbaBig);
    if (blocks > BLOCK_LIMITS.maxCompareAndWriteBlocks) throw invalidCdb(13);
    this.checkRange(lba, blocks);
    this.checkWritable();
    const bs = this.blockSize;
    const n = blocks * bs;
    // The Data-Out must be exactly verify + write data; a NUMBER OF LOGICAL BLOCKS that does not
    // match the transfer (e.g. 256 wrapped to 0) is an invalid CDB, not a no-op.
    if ((data?.length ?? 0) !== 2 * n) throw invalidCdb(13);
    if (blocks === 0 || !data) return;
    // Compare and write as one step: no other write to these LBAs, from any session, in between.
    await this.shared.ranges.with(lba, blocks, true, async () => {
      const medium = await this.volume.read(lba, blocks);
      for (let i = 0; i < n; i++) {
        if (medium[i] !== data[i]) throw new ScsiError(SenseKey.Miscompare, Asc.MiscompareDuringVerify, undefined, i);
      }
      await this.volume.write(lba, data.subarray(n, 2 * n), { fua: (cdb[1] & 0x08) !== 0 });
    });
  }

  private async extendedCopy(req: ScsiRequest, wanted: number): Promise<void> {
    if ((req.cdb[1] & 0x1f) !== 0) throw invalidCdb(1, 4); // LID1 only
    if (wanted === 0) return;
    const data = req.dataOut;
    if (!data || data.length < wanted) throw new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);
    const { listId, usage, segments } = parseExtendedCopy(data.subarray(0, wanted), this.identity.naa, this.blockSize, this.blockCount);
    this.checkWritable();
    let status: CopyStatus;
    if (segments.length === 0) status = await runExtendedCopy(this.volume, segments, false);
    else {
      const all = envelope(segments.map((g) => ({ lba: g.dstLba, blocks: g.blocks })));
      status = await this.shared.ranges.with(all.lba, all.blocks, false, () => runExtendedCopy(this.volume, segments, false));
    }
    // LIST ID USAGE 00b/01b: keep the results for RECEIVE COPY RESULTS; 10b/11b: discard.
    if (usage < 2) {
      const results = this.shared.copyResults;
      results.set(`${req.nexus}/${listId}`, status);
      if (results.size > 64) results.delete(results.keys().next().value!);
    }
  }

  private async orWrite(cdb: Buffer, data: Buffer | null, wanted: number): Promise<void> {
    const io = decodeIo(cdb);
    this.checkProtect(cdb);
    this.checkRange(io.lba, io.blocks);
    this.checkWritable();
    if (io.blocks === 0) return;
    this.checkLength(cdb, io.blocks);
    if (!data || data.length < wanted) throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInInformationUnit);
    await this.shared.ranges.with(io.lba, io.blocks, true, async () => {
      const medium = Buffer.from(await this.volume.read(io.lba, io.blocks));
      for (let i = 0; i < wanted; i++) medium[i] |= data[i];
      await this.volume.write(io.lba, medium, { fua: (cdb[1] & 0x08) !== 0 });
    });
  }

  /** WRITE ATOMIC(16), for volumes that promise all-or-nothing writes (atomic-write.ts). */
  private async writeAtomic(cdb: Buffer, data: Buffer | null, wanted: number): Promise<void> {
    const max = atomicWriteBlocks(this.volume, BLOCK_LIMITS.maxTransferBlocks);
    if (max === 0) throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidOpcode, { inCdb: true, byte: 0 });
    const w = parseWriteAtomic16(cdb);
    const lba = w.lba > MAX_SAFE ? Number.MAX_SAFE_INTEGER : Number(w.lba);
    this.checkRange(lba, w.blocks);
    if (w.blocks > max) throw invalidCdb(12);
    this.checkWritable();
    if (w.blocks === 0) return;
    // Part of the data is not a write of part of the blocks here: all or nothing.
    if (!data || data.length < wanted) throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInInformationUnit);
    await this.shared.ranges.with(lba, w.blocks, true, () =>
      this.volume.write(lba, data.length === wanted ? data : data.subarray(0, wanted), { fua: w.fua, atomic: true }),
    );
  }

  /** SANITIZE BLOCK ERASE / EXIT FAILURE MODE (see sanitize.ts for what is offered and why). */
  private async sanitize(cdb: Buffer): Promise<void> {
    if (!canBlockErase(this.volume)) throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidOpcode, { inCdb: true, byte: 0 });
    const req = parseSanitize(cdb);
    const state = this.shared.sanitize;
    if (req.action === SanitizeAction.ExitFailureMode) {
      // Leaving failure mode is allowed only when the failed SANITIZE set AUSE (SBC-3 §5.30.1).
      if (state.state === 'failed' && !state.exitAllowed) throw invalidCdb(1, 4);
      state.state = 'idle';
      return;
    }
    this.checkWritable();
    // From here every command from every nexus is NOT READY until the erase ends; writes
    // already running finish first (the exclusive hold over every LBA waits for them).
    state.state = 'running';
    state.exitAllowed = req.ause;
    state.progress = 0;
    const run = this.shared.ranges
      .with(0, this.blockCount, true, () => blockErase(this.volume, BLOCK_LIMITS.maxUnmapBlocks, (f) => (state.progress = f)))
      .then(
        () => {
          state.state = 'idle';
          return true;
        },
        () => {
          state.state = 'failed';
          return false;
        },
      );
    state.done = run.then(() => undefined);
    if (req.immed) return;
    if (!(await run)) throw new ScsiError(SenseKey.MediumError, Asc.SanitizeCommandFailed);
  }
}

/** Byte offset of the TRANSFER LENGTH field for the opcode's CDB group. */
function lengthField(cdb: Buffer): number {
  const group = cdb[0] >> 5;
  return group === 0 ? 4 : group === 4 ? 10 : group === 5 ? 6 : 7;
}

/** REPORT LUNS data (SPC-4 §6.33) for the LUN numbers a session sees. */
export function reportLuns(cdb: Buffer, luns: number[]): Buffer {
  const alloc = cdb.readUInt32BE(6);
  const select = cdb[2];
  if (alloc < 16) throw invalidCdb(6);
  if (select > 2 && select !== 0x10 && select !== 0x11 && select !== 0x12) throw invalidCdb(2);
  const list = select === 1 ? [] : [...luns].sort((a, b) => a - b);
  const b = Buffer.alloc(8 + 8 * list.length);
  b.writeUInt32BE(8 * list.length, 0);
  list.forEach((l, i) => {
    const off = 8 + i * 8;
    if (l < 256) b[off + 1] = l;
    else {
      b[off] = 0x40 | (l >> 8);
      b[off + 1] = l & 0xff;
    }
  });
  return truncate(b, alloc);
}

/** The answer for a LUN nobody configured: INQUIRY says "no device", others LOGICAL UNIT NOT SUPPORTED (SPC-4 §5.8.2). */
export function noSuchLun(cdb: Buffer): ScsiResult {
  if (cdb[0] === Opcode.Inquiry && !(cdb[1] & 0x01) && cdb[2] === 0) {
    return { status: Status.Good, sense: null, dataIn: truncate(standardInquiry(false), cdb.readUInt16BE(3)), dataOutWanted: 0 };
  }
  if (cdb[0] === Opcode.RequestSense) {
    return {
      status: Status.Good,
      sense: null,
      dataIn: truncate(encodeSense(new ScsiError(SenseKey.IllegalRequest, Asc.LunNotSupported)), cdb[4]),
      dataOutWanted: 0,
    };
  }
  return { status: Status.CheckCondition, sense: encodeSense(new ScsiError(SenseKey.IllegalRequest, Asc.LunNotSupported)), dataIn: null, dataOutWanted: 0 };
}
