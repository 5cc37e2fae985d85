/**
 * Write assembly, split out of the connection (issue #18, step 3): a write command's data arrives
 * as immediate data, unsolicited Data-Out (InitialR2T=No, up to FirstBurstLength) and Data-Out
 * answering our R2Ts (RFC 7143 §13.13-13.15, at most MaxOutstandingR2T at a time, each at most
 * MaxBurstLength), checked per sequence (DataSN per TTT, §11.7.1) and gathered into one buffer of
 * EDTL bytes; the command executes once everything is in.
 *
 * Memory is bounded per connection: MAX_WRITE_BUFFERED of write data reserved at once; over it a
 * write waits for its R2Ts (its unsolicited first burst, which cannot be refused, gets a buffer of
 * that burst only), and MAX_EDTL bounds one command. Buffer ownership (appliance/iscsi/README.md,
 * "Buffers"): pooled buffers are acquired here; the connection releases a task's buffer once the
 * command was answered, and its reservation through released()/abandoned().
 */
import { RESERVED_TAG } from './constants';
import { MIN_CLASS } from './buffer-pool';
import type { SessionParams } from './params';
import type { DataOut } from './pdu';
import { Op } from './constants';
import type { Task } from './task';

/**
 * Write data allocated for in-flight commands before R2Ts wait (per connection). Writes whose
 * first burst comes unsolicited (InitialR2T=No) while over this get a buffer of that first burst
 * only (at most FirstBurstLength, §13.14), and the rest of their buffer once others finish.
 */
export const MAX_WRITE_BUFFERED = 64 * 1024 * 1024;
/** Largest EDTL accepted for a command carrying data: bounds what one command may make us allocate. */
export const MAX_EDTL = 16 * 1024 * 1024;

export interface WriteAssemblyHost {
  params(): SessionParams;
  task(itt: number): Task | undefined;
  acquire(bytes: number): Buffer;
  takeTtt(): number;
  /** Sends an R2T (the connection fills in StatSN and the window). */
  sendR2T(r2t: { lun: number; itt: number; ttt: number; r2tSN: number; bufferOffset: number; length: number }): void;
  protocolError(reason: string): void;
  /** All of a task's data may be in: the connection executes it when its turn has come. */
  ready(task: Task): void;
  /** True in full feature phase (placement of immediate data only then). */
  inFullFeature(): boolean;
  closed(): boolean;
  debug(obj: Record<string, unknown>, msg: string): void;
}

export class WriteAssembly {
  /** Bytes reserved for in-flight writes' buffers. */
  private buffered = 0;
  /** Bytes of first-burst-only buffers (Task.partial): at most QUEUE_DEPTH × FirstBurstLength. */
  private partialBuffered = 0;
  /** Writes waiting for buffer space before their R2Ts go out, in arrival order. */
  private readonly waiters: Task[] = [];
  /** ArrayBuffers of pooled buffers that placeImmediateData handed the framer. */
  private readonly placedCommandData = new WeakSet<ArrayBufferLike>();

  constructor(private readonly host: WriteAssemblyHost) {}

  /**
   * Sets up a new write's data phase: 'refused' (immediate data not allowed or too long: the
   * connection fails the connection), 'waiting' (over the buffer budget: its R2Ts go out later),
   * or 'started' (R2Ts issued as far as allowed; the connection then tries to execute it).
   */
  begin(task: Task): 'refused' | 'waiting' | 'started' {
    const p = this.host.params();
    const cmd = task.cmd;
    const imm = cmd.data.length;
    if (imm > 0 && (!p.immediateData || imm > p.firstBurstLength || imm > cmd.edtl)) return 'refused';
    task.received = imm;
    task.unsolicitedEnd = p.initialR2T ? imm : Math.min(cmd.edtl, p.firstBurstLength);
    // Unsolicited Data-Out is only sent when F is clear on the command (§11.3.1).
    if (cmd.final && !p.initialR2T) task.unsolicitedEnd = imm;
    task.nextR2T = task.unsolicitedEnd;
    // Sequences of Data-Out are expected only when not everything came as immediate data.
    if (imm < cmd.edtl) task.dataSN = new Map();
    if (task.unsolicitedEnd > imm) task.dataSN!.set(RESERVED_TAG, 0);
    const placed = imm > 0 && this.placedCommandData.has(cmd.data.buffer) && cmd.data.byteOffset === 0;
    if (imm === cmd.edtl) {
      task.buf = cmd.data; // the whole write came as immediate data: no copy
      // Gathered into a pooled buffer by place(): it goes back to the pool when answered.
      task.pooled = placed;
    } else if (task.unsolicitedEnd < cmd.edtl && this.buffered > 0 && this.buffered + cmd.edtl > MAX_WRITE_BUFFERED) {
      // Too much write data buffered already: ask for this one's data once others finish.
      // Unsolicited Data-Out may already be on its way (InitialR2T=No) and cannot be refused:
      // it gets a buffer of its first burst only, never the whole EDTL (issue #13).
      if (task.unsolicitedEnd > imm) {
        task.buf = Buffer.allocUnsafe(task.unsolicitedEnd);
        if (imm) cmd.data.copy(task.buf, 0);
        task.partial = true;
        this.partialBuffered += task.unsolicitedEnd;
      }
      this.waiters.push(task);
      return 'waiting';
    } else {
      this.allocate(task);
    }
    this.issueR2Ts(task);
    return 'started';
  }

  /** A task's reservation ends (answered): waiting writes may get their buffers. */
  released(task: Task): void {
    if (!task.reservedBytes) return;
    this.buffered -= task.reservedBytes;
    task.reservedBytes = 0;
    this.drainWaiters();
  }

  /** A task aborted before it executed: forget its reservation and first-burst buffer. */
  abandoned(task: Task): void {
    if (task.reservedBytes) this.buffered -= task.reservedBytes;
    task.reservedBytes = 0;
    if (task.partial) this.partialBuffered -= task.buf!.length;
    task.partial = false;
  }

  private allocate(task: Task): void {
    const cmd = task.cmd;
    const first = task.partial ? task.buf! : null;
    if (!first && cmd.data.length > 0 && this.placedCommandData.has(cmd.data.buffer) && cmd.data.byteOffset === 0) {
      // The immediate data already sits at the start of a pooled buffer of EDTL bytes (place()).
      task.buf = Buffer.from(cmd.data.buffer, 0, cmd.edtl);
      task.pooled = true;
      this.buffered += cmd.edtl;
      task.reservedBytes = cmd.edtl;
      return;
    }
    task.buf = this.host.acquire(cmd.edtl);
    task.pooled = true;
    this.buffered += cmd.edtl;
    task.reservedBytes = cmd.edtl;
    if (first) {
      // The first burst gathered so far (immediate data included); later pieces land in buf.
      first.copy(task.buf, 0);
      task.partial = false;
      this.partialBuffered -= first.length;
    } else if (cmd.data.length) {
      cmd.data.copy(task.buf, 0);
    }
  }

  /** Starts writes that waited for buffer space. */
  private drainWaiters(): void {
    while (this.waiters.length) {
      const task = this.waiters[0];
      if (task.aborted || this.host.closed()) {
        this.waiters.shift();
        continue;
      }
      if (this.buffered > 0 && this.buffered + task.cmd.edtl > MAX_WRITE_BUFFERED) return;
      this.waiters.shift();
      this.allocate(task);
      this.issueR2Ts(task);
    }
  }

  /** Sends R2Ts for the task, up to MaxOutstandingR2T, each at most MaxBurstLength (§13.13-13.15). */
  private issueR2Ts(task: Task): void {
    const p = this.host.params();
    const edtl = task.cmd.edtl;
    while (task.nextR2T < edtl && task.outstandingR2T < p.maxOutstandingR2T && !task.aborted) {
      const len = Math.min(p.maxBurstLength, edtl - task.nextR2T);
      const ttt = this.host.takeTtt();
      task.dataSN!.set(ttt, 0);
      this.host.sendR2T({ lun: task.cmd.lun, itt: task.itt, ttt, r2tSN: task.r2tSN++, bufferOffset: task.nextR2T, length: len });
      task.nextR2T += len;
      task.outstandingR2T++;
    }
  }

  /**
   * Where a Data-Out's data segment goes when the framer has to gather it from several socket
   * chunks: straight into its command's buffer at its offset (one copy, not two). Only for a
   * task still taking data under a TTT we issued; anything else gets a buffer of its own and is
   * judged by onDataOut as before. A Data-Out that onDataOut then finds out of sequence has
   * written into a command that fails anyway (ERL 0), and a later one cannot land while the
   * command executes (executing tasks get no placement).
   */
  place(h: Buffer, len: number): Buffer | undefined {
    const op = h[0]! & 0x3f;
    if (op === Op.ScsiCommand) return this.placeImmediateData(h, len);
    if (op !== Op.DataOut) return undefined;
    const task = this.host.task(h.readUInt32BE(16));
    if (!task || !task.buf || !task.dataSN || task.executing || task.aborted || !task.dataSN.has(h.readUInt32BE(20))) return undefined;
    const off = h.readUInt32BE(40);
    if (off + len > task.buf.length) return undefined;
    return task.buf.subarray(off, off + len);
  }

  /**
   * Immediate data of a large WRITE (open-iscsi and libiscsi send up to FirstBurstLength, 256
   * KiB, with the command) spans socket chunks: gather it into the start of a pooled buffer of
   * EDTL bytes, which the task then adopts (allocate) instead of copying it again. Judged
   * before anything checked the command: a buffer the task does not adopt (a protocol error, a
   * command refused) is left to the GC, never released.
   */
  private placeImmediateData(h: Buffer, len: number): Buffer | undefined {
    const edtl = h.readUInt32BE(20);
    if ((h[1]! & 0x20) === 0 || edtl < MIN_CLASS || len > edtl || edtl > MAX_EDTL || !this.host.inFullFeature()) return undefined;
    const buf = this.host.acquire(edtl);
    this.placedCommandData.add(buf.buffer);
    return buf.subarray(0, len);
  }

  /** One Data-Out PDU (§11.7): checked, placed, and the command readied once all data is in. */
  onDataOut(d: DataOut): void {
    const task = this.host.task(d.itt);
    if (!task || !task.buf || !task.dataSN || task.executing) {
      // Data for an aborted or answered task: nothing to do with it (§7.1.1, ERL 0).
      this.host.debug({ itt: d.itt }, 'Data-Out for no pending task, dropped');
      return;
    }
    if (task.aborted) return;
    const seqs = task.dataSN!;
    const expected = seqs.get(d.ttt);
    if (expected === undefined) return this.host.protocolError(`Data-Out with unknown TTT ${d.ttt}`);
    if (d.dataSN !== expected && !task.dataError) {
      // A DataSN gap at ERL 0 cannot be recovered (§7.1): keep the connection, take in the rest of
      // the data, and fail the command (ABORTED COMMAND / DATA PHASE ERROR) instead of writing it.
      this.host.debug({ itt: d.itt, dataSN: d.dataSN, expected }, 'Data-Out out of sequence, failing the command');
      task.dataError = true;
    }
    seqs.set(d.ttt, d.dataSN + 1);
    const len = d.data.length;
    if (d.bufferOffset + len > task.cmd.edtl) return this.host.protocolError('Data-Out beyond the expected data transfer length');
    // Unsolicited data stops at FirstBurstLength (§13.14); a first-burst-only buffer ends there.
    if (d.ttt === RESERVED_TAG && d.bufferOffset + len > task.unsolicitedEnd) return this.host.protocolError('unsolicited Data-Out beyond the first burst');
    // Already in place when the framer gathered it into task.buf (place()).
    const placed = d.data.buffer === task.buf.buffer && d.data.byteOffset === task.buf.byteOffset + d.bufferOffset;
    if (len > 0 && !placed) d.data.copy(task.buf, d.bufferOffset);
    task.received += len;
    if (d.final && d.ttt !== RESERVED_TAG) {
      seqs.delete(d.ttt);
      task.outstandingR2T--;
      this.issueR2Ts(task);
    }
    this.host.ready(task);
  }
}
