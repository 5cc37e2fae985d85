import { VolumeError, type BlockVolume, type ThinProvisioning, type WriteOptions } from './block-volume';
import type { VolumeCore } from './volume-core';

/**
 * Largest atomic write of a writable handle: 2048 blocks (1 MiB, 16 chunks of 64 KiB, 17 when
 * unaligned). An atomic write holds every other write of the disk while it copies each chunk it
 * touches into a fresh one, and needs that many free chunks even to overwrite the disk's own
 * data; 1 MiB bounds both (a few milliseconds, ~1 MiB of buffers) while covering what atomic
 * writes are for: database pages (4-64 KiB) and journal commit blocks, with room to spare.
 */
export const ATOMIC_WRITE_BLOCKS = 2048;

/**
 * One handle on an open view, as returned by ImageStore.openVolume. Handles on the same disk
 * share one VolumeCore (one map, one write cache), so two sessions see each other's writes.
 * close() flushes (when writable) and releases the handle; afterwards every call throws CLOSED.
 */
export class StoreVolume implements BlockVolume {
  readonly blockSize = 512;
  readonly blockCount: number;
  readonly thin: ThinProvisioning;
  /** Writable handles promise all-or-nothing atomic writes up to this many blocks (volume-core.ts writeAtomic). */
  readonly atomicWriteBlocks: number | undefined;
  private closed = false;

  constructor(
    readonly id: string,
    private readonly core: VolumeCore,
    readonly readOnly: boolean,
    private readonly onClose: (v: StoreVolume) => void,
  ) {
    this.blockCount = core.blockCount;
    // Unmapped chunks read as zeros (README.md "UNMAP"): the target may report LBPRZ=1.
    this.thin = { provisioned: !readOnly, unmappedReads: 'zero', granularityBlocks: core.chunkBlocks };
    this.atomicWriteBlocks = readOnly ? undefined : ATOMIC_WRITE_BLOCKS;
  }

  private check(lba: number, blocks: number): void {
    if (this.closed) throw new VolumeError('CLOSED', `volume ${this.id} is closed`);
    if (!Number.isInteger(lba) || !Number.isInteger(blocks) || lba < 0 || blocks < 0 || lba + blocks > this.blockCount) {
      throw new VolumeError('OUT_OF_RANGE', `blocks ${lba}+${blocks} outside 0..${this.blockCount}`);
    }
  }

  read(lba: number, blocks: number, into?: Buffer): Promise<Buffer> {
    try {
      this.check(lba, blocks);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.core.read(lba, blocks, into?.length === blocks * this.blockSize ? into : undefined);
  }

  write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    try {
      if (data.length % this.blockSize !== 0) throw new VolumeError('OUT_OF_RANGE', 'write length is not a multiple of the block size');
      this.check(lba, data.length / this.blockSize);
      if (this.readOnly) throw new VolumeError('READ_ONLY', `volume ${this.id} is read-only`);
      if (opts?.atomic && data.length / this.blockSize > ATOMIC_WRITE_BLOCKS) {
        throw new VolumeError('OUT_OF_RANGE', `atomic write of ${data.length / this.blockSize} blocks exceeds ${ATOMIC_WRITE_BLOCKS}`);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    const written = opts?.atomic ? this.core.writeAtomic(lba, data) : this.core.write(lba, data);
    // FUA: this write is durable when it resolves (flush covers it: it resolved before flush()).
    return opts?.fua ? written.then(() => this.core.flush()) : written;
  }

  async flush(): Promise<void> {
    if (this.closed) throw new VolumeError('CLOSED', `volume ${this.id} is closed`);
    if (!this.readOnly) await this.core.flush();
  }

  async unmap(lba: number, blocks: number): Promise<void> {
    this.check(lba, blocks);
    if (this.readOnly) throw new VolumeError('READ_ONLY', `volume ${this.id} is read-only`);
    await this.core.unmap(lba, blocks);
  }

  async mapping(lba: number, blocks: number): Promise<{ lba: number; blocks: number; mapped: boolean }[]> {
    this.check(lba, blocks);
    return this.core.mapping(lba, blocks);
  }

  /** @internal Synchronous mapping of the whole volume (export plans its qcow2 layout from it). */
  mappedRuns(): { lba: number; blocks: number; mapped: boolean }[] {
    return this.core.mapping(0, this.blockCount);
  }

  /** Flushes (writable handles) and releases the handle. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      // After ImageStore.close() the store already flushed everything.
      if (!this.readOnly && !this.core.closed) await this.core.flush();
    } finally {
      this.closed = true;
      this.onClose(this);
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
