import type { BlockVolume } from '../../../image-store/block-volume';
import { Asc, invalidCdb, ScsiError, SenseKey } from './sense';

/**
 * EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 §6.4, §6.24; SPC-3 layout), for copies
 * inside one logical unit: one identification target descriptor (0xE4) naming this LU by
 * its NAA designator, block-to-block segment descriptors (0x02). This is what VMware's
 * XCOPY offload sends; the data never crosses the network.
 */

/** Limits reported by RECEIVE COPY RESULTS (OPERATING PARAMETERS) and enforced. */
export const COPY_LIMITS = {
  maxTargetDescriptors: 2,
  maxSegmentDescriptors: 8,
  maxDescriptorListLength: 1024,
  /** Bytes per segment: 65535 blocks of 512 (the 16-bit NUMBER OF BLOCKS field). */
  maxSegmentBytes: 65535 * 512,
} as const;

const TGT_IDENTIFICATION = 0xe4;
const SEG_BLOCK_TO_BLOCK = 0x02;
const HEADER = 16;
const TGT_LEN = 32;

/** The copy status kept per I_T nexus and list identifier (RECEIVE COPY RESULTS, COPY STATUS). */
export interface CopyStatus {
  status: number;
  segments: number;
  bytes: number;
}

function abortedCopy(asc: readonly [number, number]): ScsiError {
  return new ScsiError(SenseKey.CopyAborted, asc);
}

const paramLengthError = () => new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);

interface Segment {
  src: number;
  dst: number;
  blocks: number;
  srcLba: number;
  dstLba: number;
}

/** Parses and checks an EXTENDED COPY parameter list; returns the list id, usage and segments. */
export function parseExtendedCopy(data: Buffer, naa: Buffer, blockSize: number, blockCount: number) {
  if (data.length < HEADER) throw paramLengthError();
  const listId = data[0];
  const usage = (data[1] >> 3) & 3;
  const tgtLen = data.readUInt16BE(2);
  const segLen = data.readUInt32BE(8);
  const inlineLen = data.readUInt32BE(12);
  if (HEADER + tgtLen + segLen + inlineLen > data.length) throw paramLengthError();
  if (tgtLen + segLen > COPY_LIMITS.maxDescriptorListLength) throw paramLengthError();
  if (inlineLen !== 0) throw new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInParameterList, { inCdb: false, byte: 12 });
  if (tgtLen % TGT_LEN !== 0) throw paramLengthError();
  const targets = tgtLen / TGT_LEN;
  if (targets > COPY_LIMITS.maxTargetDescriptors) throw new ScsiError(SenseKey.IllegalRequest, [0x26, 0x06]);
  const reachable: boolean[] = [];
  for (let i = 0; i < targets; i++) {
    const t = data.subarray(HEADER + i * TGT_LEN, HEADER + (i + 1) * TGT_LEN);
    if (t[0] !== TGT_IDENTIFICATION) throw new ScsiError(SenseKey.IllegalRequest, [0x26, 0x07]);
    // Designator (bytes 4..23): code set, association/type, length, value: must be our NAA.
    const len = t[7];
    const ours = (t[4] & 0x0f) === 0x01 && (t[5] & 0x0f) === 0x03 && len === naa.length && t.subarray(8, 8 + len).equals(naa);
    const bs = (t[29] << 16) | (t[30] << 8) | t[31];
    const nul = (t[1] & 0x20) !== 0;
    reachable.push(ours && bs === blockSize && (t[1] & 0x1f) === 0 && !nul);
  }
  const segments: Segment[] = [];
  let off = HEADER + tgtLen;
  const end = off + segLen;
  while (off < end) {
    if (off + 4 > end) throw paramLengthError();
    const type = data[off];
    const len = data.readUInt16BE(off + 2) + 4;
    if (off + len > end) throw paramLengthError();
    if (segments.length + 1 > COPY_LIMITS.maxSegmentDescriptors) throw new ScsiError(SenseKey.IllegalRequest, [0x26, 0x08]);
    if (type !== SEG_BLOCK_TO_BLOCK) throw new ScsiError(SenseKey.IllegalRequest, [0x26, 0x09]);
    if (len !== 0x18 + 4) throw paramLengthError();
    const s = data.subarray(off, off + len);
    const big = (o: number) => {
      const v = s.readBigUInt64BE(o);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    };
    segments.push({ src: s.readUInt16BE(4), dst: s.readUInt16BE(6), blocks: s.readUInt16BE(10), srcLba: big(12), dstLba: big(20) });
    off += len;
  }
  for (const seg of segments) {
    // An index naming no descriptor, or one that is not this LU: the copy target is unreachable.
    if (!reachable[seg.src] || !reachable[seg.dst]) throw abortedCopy([0x08, 0x04]);
    if (seg.srcLba + seg.blocks > blockCount || seg.dstLba + seg.blocks > blockCount) throw abortedCopy([0x00, 0x00]);
  }
  return { listId, usage, segments };
}

/** Runs the segments in order, in chunks of at most 1 MiB. */
export async function runExtendedCopy(volume: BlockVolume, segments: Segment[], fua: boolean): Promise<CopyStatus> {
  const bs = volume.blockSize;
  const chunk = Math.max(1, Math.floor((1 << 20) / bs));
  let bytes = 0;
  for (const seg of segments) {
    for (let done = 0; done < seg.blocks; done += chunk) {
      const n = Math.min(chunk, seg.blocks - done);
      const buf = await volume.read(seg.srcLba + done, n);
      await volume.write(seg.dstLba + done, buf, { fua });
      bytes += n * bs;
    }
  }
  return { status: 1, segments: segments.length, bytes };
}

/** RECEIVE COPY RESULTS: OPERATING PARAMETERS (SA 3) or COPY STATUS (SA 0) for a list id. */
export function receiveCopyResults(cdb: Buffer, status: CopyStatus | undefined): Buffer {
  const sa = cdb[1] & 0x1f;
  if (sa === 0x03) {
    const codes = [SEG_BLOCK_TO_BLOCK, TGT_IDENTIFICATION];
    const b = Buffer.alloc(44 + codes.length);
    b.writeUInt32BE(b.length - 4, 0);
    b[4] = 0; // SNLID: list ids are required
    b.writeUInt16BE(COPY_LIMITS.maxTargetDescriptors, 8);
    b.writeUInt16BE(COPY_LIMITS.maxSegmentDescriptors, 10);
    b.writeUInt32BE(COPY_LIMITS.maxDescriptorListLength, 12);
    b.writeUInt32BE(COPY_LIMITS.maxSegmentBytes, 16);
    b.writeUInt32BE(0, 20); // no inline data
    b.writeUInt32BE(0, 24); // no held data
    b.writeUInt16BE(1, 34); // total concurrent copies
    b[36] = 1;
    b[37] = 9; // data segment granularity: 512 bytes (log2)
    b[43] = codes.length;
    codes.forEach((c, i) => (b[44 + i] = c));
    return b;
  }
  if (sa === 0x00) {
    if (!status) throw invalidCdb(2);
    const b = Buffer.alloc(12);
    b.writeUInt32BE(8, 0);
    b[4] = status.status;
    b.writeUInt16BE(status.segments, 5);
    b[7] = 0; // transfer count in bytes
    b.writeUInt32BE(Math.min(status.bytes, 0xffffffff), 8);
    return b;
  }
  throw invalidCdb(1, 4);
}

/** VPD page 0x8F body: the Supported Commands descriptor (SPC-4 §7.8.17.3). */
export function thirdPartyCopyPage(): Buffer {
  const list = Buffer.from([0x83, 1, 0x00, 0x84, 2, 0x00, 0x03]);
  const desc = Buffer.alloc(4 + ((1 + list.length + 3) & ~3));
  desc.writeUInt16BE(0x0001, 0);
  desc.writeUInt16BE(desc.length - 4, 2);
  desc[4] = list.length;
  list.copy(desc, 5);
  return desc;
}
