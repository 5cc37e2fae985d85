/**
 * The answer side of a SCSI command, split out of the connection (issue #18, step 3), pure:
 * which residual the response reports (RFC 7143 §11.4.5) and how read data becomes Data-In PDUs
 * (§11.7): at most the initiator's MaxRecvDataSegmentLength each, F at every MaxBurstLength
 * boundary, the status (S bit) in the last one when there is no sense data. No sockets: the
 * connection hands each PDU to its writer.
 */
import { BHS_LENGTH } from './constants';
import { writeDataIn } from './pdu';

/** What the SCSI response (or the last Data-In) reports, and the read data actually sent. */
export interface Residuals {
  underflow: boolean;
  overflow: boolean;
  residual: number;
  /** The read data to send (cut to the expected length on overflow), or null. */
  dataIn: Buffer | null;
}

/**
 * The residual of a finished command. `edtl`: the initiator's Expected Data Transfer Length;
 * `dataIn`: what the command read; `dataOutWanted`: how much data it took.
 */
export function residualsOf(cmd: { read: boolean; write: boolean; edtl: number }, dataIn: Buffer | null, dataOutWanted: number): Residuals {
  const edtl = cmd.edtl;
  if (dataIn && dataIn.length > 0 && cmd.read) {
    if (dataIn.length > edtl) return { underflow: false, overflow: true, residual: dataIn.length - edtl, dataIn: dataIn.subarray(0, edtl) };
    if (dataIn.length < edtl) return { underflow: true, overflow: false, residual: edtl - dataIn.length, dataIn };
    return { underflow: false, overflow: false, residual: 0, dataIn };
  }
  if (cmd.write && dataOutWanted !== edtl && (dataOutWanted > 0 || edtl > 0)) {
    return dataOutWanted > edtl
      ? { underflow: false, overflow: true, residual: dataOutWanted - edtl, dataIn }
      : { underflow: true, overflow: false, residual: edtl - dataOutWanted, dataIn };
  }
  // Data-In for a command sent without the R bit: the initiator expects none (overflow).
  if (dataIn && dataIn.length > 0 && !cmd.read) return { underflow: false, overflow: true, residual: dataIn.length, dataIn: null };
  // A read that returned nothing. (A write whose data all arrived has no residual: reporting one
  // made Linux resend every WRITE forever, so mounting ext4 hung.)
  if (edtl > 0 && !cmd.write) return { underflow: true, overflow: false, residual: edtl, dataIn };
  return { underflow: false, overflow: false, residual: 0, dataIn };
}

export interface DataInOptions {
  /** The initiator's MaxRecvDataSegmentLength and the session's MaxBurstLength. */
  segment: number;
  burst: number;
  headerDigest: boolean;
  /** True when the status rides in the last Data-In (no sense data to send). */
  withStatus: boolean;
  status: number;
  residuals: Pick<Residuals, 'underflow' | 'overflow' | 'residual'>;
  lun: number;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

/**
 * Builds the Data-In PDUs for `data` and hands each to `send` (header, payload slice, and the
 * shared header buffer with this header's offset, where a header digest is written in place).
 * All headers share one allocation; payloads are slices, not copies. Returns true when the status
 * was sent (StatSN then advances).
 */
export function buildDataIn(data: Buffer, o: DataInOptions, send: (header: Buffer, payload: Buffer, headers: Buffer, at: number) => void): boolean {
  const count = Math.ceil(data.length / o.segment) + Math.ceil(data.length / o.burst);
  const hdrLen = BHS_LENGTH + (o.headerDigest ? 4 : 0);
  const headers = Buffer.allocUnsafe(hdrLen * count);
  let off = 0;
  let dataSN = 0;
  let burstLeft = o.burst;
  let h = 0;
  let statusSent = false;
  while (off < data.length) {
    const len = Math.min(o.segment, data.length - off, burstLeft);
    const last = off + len >= data.length;
    burstLeft -= len;
    const statusHere = last && o.withStatus;
    writeDataIn(headers, h, {
      final: burstLeft === 0 || last,
      statusFlag: statusHere,
      status: o.status,
      underflow: o.residuals.underflow,
      overflow: o.residuals.overflow,
      residual: o.residuals.residual,
      lun: o.lun,
      itt: o.itt,
      dataSN: dataSN++,
      bufferOffset: off,
      dataLength: len,
      statSN: o.statSN,
      expCmdSN: o.expCmdSN,
      maxCmdSN: o.maxCmdSN,
    });
    statusSent ||= statusHere;
    send(headers.subarray(h, h + BHS_LENGTH), data.subarray(off, off + len), headers, h);
    h += hdrLen;
    off += len;
    if (burstLeft === 0) burstLeft = o.burst;
  }
  return statusSent;
}
