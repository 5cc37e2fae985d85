/** One command's state while the session holds it (the connection's task table, write assembly, Data-In). */
import type { ScsiCommand } from './pdu';
import type { LogicalUnit } from './scsi/logical-unit';

export interface Task {
  itt: number;
  cmd: ScsiCommand;
  lu: LogicalUnit | null;
  /** Write data (EDTL bytes) being assembled. */
  buf: Buffer | null;
  /** buf came from ctx.buffers: it goes back there once the command has been answered. */
  pooled: boolean;
  /**
   * A pooled buffer a large read may return its data in (ScsiRequest.dataInBuffer). It goes back
   * to the pool only once the Data-In sent from it reached the kernel; otherwise to the GC.
   */
  inBuf: Buffer | null;
  received: number;
  /** End of the unsolicited region (immediate + unsolicited Data-Out), §13.13-13.14. */
  unsolicitedEnd: number;
  /** Next offset to ask for with an R2T. */
  nextR2T: number;
  outstandingR2T: number;
  r2tSN: number;
  /** Expected DataSN per open Data-Out sequence, by TTT (created for writes only). */
  dataSN: Map<number, number> | null;
  /** Delivered in CmdSN order (for non-immediate commands). */
  ordered: boolean;
  executing: boolean;
  aborted: boolean;
  reservedBytes: number;
  /** A Data-Out arrived out of sequence: the command fails once its data is in. */
  dataError: boolean;
  /** buf holds only the unsolicited first burst (over MAX_WRITE_BUFFERED); grown when R2Ts may go. */
  partial: boolean;
  /** Data-In bytes reserved against maxQueuedDataIn while this read executes. */
  dataInReserved: number;
  /** In dispatchWaiters (counted in inFlight already). */
  waiting: boolean;
}

/** A task as a command registers it: nothing received, nothing reserved, not started. */
export function newTask(cmd: ScsiCommand, lu: LogicalUnit | null, ordered: boolean): Task {
  return {
    itt: cmd.itt,
    cmd,
    lu,
    buf: null,
    received: 0,
    unsolicitedEnd: 0,
    nextR2T: 0,
    outstandingR2T: 0,
    r2tSN: 0,
    dataSN: null,
    ordered,
    executing: false,
    aborted: false,
    reservedBytes: 0,
    pooled: false,
    dataError: false,
    partial: false,
    dataInReserved: 0,
    waiting: false,
    inBuf: null,
  };
}
