import type { BlockVolume } from '../../../image-store/block-volume';
import { invalidCdb } from './sense';

/**
 * WRITE ATOMIC(16) (SBC-4 §5.48, §4.29): all of the blocks are written or none, whatever
 * happens (a concurrent read or write, an abort, a power cut). The target can promise that
 * only when the volume does, so the command is offered only for a volume that declares
 * `atomicWriteBlocks` (BlockVolume): write(..., { atomic: true }) of at most that many blocks
 * is all-or-nothing, both for concurrent readers and across a crash. The image store's
 * writable volumes provide it by copying the touched chunks into fresh ones and switching the
 * map in one step (image-store/README.md "Atomic writes"). Against other commands' writes the
 * logical unit adds an exclusive hold on the range (range-lock.ts), so overlapping writes never
 * mix. Any aligned or unaligned range up to the limit is atomic, so VPD 0xB0 reports ATOMIC
 * ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY 0 (no requirement) and no atomic boundaries.
 */

/** Largest WRITE ATOMIC(16) in blocks for this volume (0: not offered), capped at `maxTransferBlocks`. */
export function atomicWriteBlocks(volume: BlockVolume, maxTransferBlocks: number): number {
  const n = volume.atomicWriteBlocks;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? Math.min(n, maxTransferBlocks, 0xffff) : 0;
}

/** The fields of a WRITE ATOMIC(16) CDB. */
export interface AtomicWriteCdb {
  lba: bigint;
  blocks: number;
  fua: boolean;
}

/**
 * Decodes a WRITE ATOMIC(16) CDB and checks the fields that do not depend on the LU; the
 * caller checks the LBA range first, then `blocks` against the atomic limit (an LBA out of
 * range is reported as such whatever the length).
 */
export function parseWriteAtomic16(cdb: Buffer): AtomicWriteCdb {
  if (cdb[1] & 0xe0) throw invalidCdb(1, 5); // WRPROTECT: no protection information here
  if (cdb.readUInt16BE(10) !== 0) throw invalidCdb(10); // ATOMIC BOUNDARY: boundaries not supported
  return { lba: cdb.readBigUInt64BE(2), blocks: cdb.readUInt16BE(12), fua: (cdb[1] & 0x08) !== 0 };
}
