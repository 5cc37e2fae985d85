/**
 * The narrow interface between the iSCSI target and whatever stores the blocks. The local
 * copy-on-write store implements it; another backend (Ceph RBD one day) could too.
 *
 * Addresses and lengths are in logical blocks of `blockSize` bytes (always 512 for the local
 * store: BIOS INT13 needs it). Callers never pass ranges outside [0, blockCount); the volume
 * still checks and throws VolumeError('OUT_OF_RANGE').
 *
 * Durability (SBC volatile write cache semantics): a write may be lost by a power cut until
 * flush() resolves; after flush() every write that resolved before flush() was called survives.
 * write(..., { fua: true }) resolves only once that write is durable.
 *
 * Atomicity: a plain write may be torn (a concurrent read or a power cut can see part of it).
 * A volume that declares `atomicWriteBlocks` promises that write(..., { atomic: true }) of up to
 * that many blocks is all or nothing, both for concurrent readers and across a crash (SCSI
 * WRITE ATOMIC); it rejects longer atomic writes with OUT_OF_RANGE rather than tear them.
 */
export interface BlockVolume {
  /** Stable identifier, e.g. the volume's id in the store; used for the NAA/serial in VPD. */
  readonly id: string;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly readOnly: boolean;
  /** Thin provisioning, for READ CAPACITY(16) LBPME/LBPRZ and VPD 0xB2. */
  readonly thin: ThinProvisioning;

  /** Largest write(..., { atomic: true }) in blocks that is all or nothing; absent or 0: none is. */
  readonly atomicWriteBlocks?: number;

  /**
   * Reads blocks [lba, lba+blocks). `into` (exactly blocks × blockSize bytes), when given, may
   * receive the data and be returned (the iSCSI target reuses such buffers); a volume may also
   * ignore it and return a buffer of its own. Callers use the returned buffer either way.
   */
  read(lba: number, blocks: number, into?: Buffer): Promise<Buffer>;
  write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void>;
  flush(): Promise<void>;
  /** Deallocates blocks (SCSI UNMAP / WRITE SAME with UNMAP). What they then read as: `thin.unmappedReads`. */
  unmap(lba: number, blocks: number): Promise<void>;
  /** Which ranges are mapped (for GET LBA STATUS): returns runs starting at lba covering up to `blocks`. */
  mapping?(lba: number, blocks: number): Promise<{ lba: number; blocks: number; mapped: boolean }[]>;
  /** Releases the handle (flushing first when writable); the iSCSI session calls it on logout or drop. */
  close?(): Promise<void>;
}

/** Per-write options. */
export interface WriteOptions {
  /** Force unit access: resolve only once this write is durable. */
  fua?: boolean;
  /** All or nothing (see `atomicWriteBlocks`); only for volumes that declare it. */
  atomic?: boolean;
}

export interface ThinProvisioning {
  /** True when the volume allocates on write and supports unmap (LBPME=1). */
  provisioned: boolean;
  /**
   * What an unmapped block reads as. 'zero' lets the target set LBPRZ=1; 'base' (a clone whose
   * unmapped blocks show the golden image again) must report LBPRZ=0.
   */
  unmappedReads: 'zero' | 'base';
  /** Unmap granularity in blocks (the store's chunk size), for VPD 0xB0. */
  granularityBlocks: number;
}

export type VolumeErrorCode = 'OUT_OF_RANGE' | 'NO_SPACE' | 'READ_ONLY' | 'IO' | 'CLOSED';

/** Thrown by BlockVolume methods; the iSCSI layer maps each code to standard sense data. */
export class VolumeError extends Error {
  constructor(
    readonly code: VolumeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'VolumeError';
  }
}
