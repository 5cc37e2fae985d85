import { VolumeError, type BlockVolume, type ThinProvisioning, type WriteOptions } from '../block-volume';
import type { RbdError, RbdImage } from './native';

const BS = 512;
/** RBD's default object size (order 22): the unmap granularity worth advertising (VPD 0xB0). */
const OBJECT_BLOCKS = (4 << 20) / BS;

/** librbd's errno → the BlockVolume code the iSCSI layer turns into sense data. */
function volumeError(err: unknown, id: string): VolumeError {
  if (err instanceof VolumeError) return err;
  const errno = (err as RbdError).errno;
  if (errno === 28 || errno === 122) return new VolumeError('NO_SPACE', `${id}: ${(err as Error).message}`);
  if (errno === 30) return new VolumeError('READ_ONLY', `${id}: ${(err as Error).message}`);
  return new VolumeError('IO', `${id}: ${(err as Error).message}`);
}

/**
 * One open RBD image shared by every handle on the same disk (two sessions see each other's
 * writes, and librbd's exclusive lock is not bounced between two handles of one process).
 * `ready` waits for the catalogue's queued cluster operations (the clone that makes the disk).
 */
export class SharedImage {
  handles = 0;
  inflight = 0;
  private idle: (() => void)[] = [];
  closed = false;
  /** Set once `ready` resolved: a handle still waiting has done no I/O yet. */
  image: RbdImage | null = null;

  constructor(readonly ready: Promise<RbdImage>) {
    ready.then(
      (img) => (this.image = img),
      () => undefined,
    ); // a failure surfaces on the first I/O
  }

  /** While set, new requests wait for it (a snapshot of the live disk is being taken). */
  private gate: Promise<void> | null = null;

  /**
   * Holds every request that starts from now on until the returned release is called: the
   * snapshot then holds exactly the writes issued before it was asked for (as the local store's).
   */
  hold(): () => void {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const prev = this.gate;
    this.gate = prev ? Promise.all([prev, gate]).then(() => undefined) : gate;
    const mine = this.gate;
    return () => {
      release();
      if (this.gate === mine) this.gate = null;
    };
  }

  /** Resolves once no request that already started is in flight. */
  async quiesce(): Promise<void> {
    if (this.inflight > 0) await new Promise<void>((r) => this.idle.push(r));
  }

  async run<T>(fn: (img: RbdImage) => Promise<T>): Promise<T> {
    const gate = this.gate;
    this.inflight++;
    let img: RbdImage;
    try {
      if (gate) {
        this.inflight--;
        await gate;
        this.inflight++;
      }
      img = await this.ready;
    } catch (err) {
      if (--this.inflight === 0) for (const f of this.idle.splice(0)) f();
      throw err;
    }
    try {
      if (this.closed) throw new VolumeError('CLOSED', 'the RBD store is closed');
      return await fn(img);
    } finally {
      if (--this.inflight === 0) for (const f of this.idle.splice(0)) f();
    }
  }

  /** Waits for every request, flushes (when writable) and closes the image. */
  async release(flush: boolean): Promise<void> {
    let img: RbdImage;
    try {
      img = await this.ready;
    } catch {
      return; // never opened
    }
    if (this.inflight > 0) await new Promise<void>((r) => this.idle.push(r));
    try {
      if (flush) await img.flush();
    } finally {
      await img.close();
    }
  }
}

/** A BlockVolume over an RBD image (a disk's head) or a snapshot (read-only), 512-byte blocks. */
export class RbdVolume implements BlockVolume {
  readonly blockSize = BS;
  readonly blockCount: number;
  readonly thin: ThinProvisioning;
  private closed = false;

  constructor(
    readonly id: string,
    sizeBytes: number,
    readonly readOnly: boolean,
    private readonly shared: SharedImage,
    private readonly onClose: () => Promise<void>,
  ) {
    this.blockCount = Math.floor(sizeBytes / BS);
    // librbd discards whole and partial objects (rbd_skip_partial_discard=false, see the addon):
    // a discarded range reads as zeros, also in a clone (the parent is not shown again).
    this.thin = { provisioned: !readOnly, unmappedReads: 'zero', granularityBlocks: OBJECT_BLOCKS };
  }

  private check(lba: number, blocks: number): void {
    if (this.closed) throw new VolumeError('CLOSED', `volume ${this.id} is closed`);
    if (!Number.isInteger(lba) || !Number.isInteger(blocks) || lba < 0 || blocks < 0 || lba + blocks > this.blockCount) {
      throw new VolumeError('OUT_OF_RANGE', `blocks ${lba}+${blocks} outside 0..${this.blockCount}`);
    }
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    this.check(lba, blocks);
    if (blocks === 0) return Buffer.alloc(0);
    try {
      return await this.shared.run((img) => img.read(lba * BS, blocks * BS));
    } catch (err) {
      throw volumeError(err, this.id);
    }
  }

  async write(lba: number, data: Buffer, opts?: WriteOptions): Promise<void> {
    if (data.length % BS !== 0) throw new VolumeError('OUT_OF_RANGE', 'write length is not a multiple of the block size');
    this.check(lba, data.length / BS);
    if (this.readOnly) throw new VolumeError('READ_ONLY', `volume ${this.id} is read-only`);
    if (opts?.atomic) throw new VolumeError('OUT_OF_RANGE', 'atomic writes are not offered on RBD volumes');
    if (data.length === 0) return;
    try {
      await this.shared.run((img) => img.write(lba * BS, data, opts?.fua === true));
    } catch (err) {
      throw volumeError(err, this.id);
    }
  }

  async flush(): Promise<void> {
    if (this.closed) throw new VolumeError('CLOSED', `volume ${this.id} is closed`);
    if (this.readOnly) return;
    try {
      await this.shared.run((img) => img.flush());
    } catch (err) {
      throw volumeError(err, this.id);
    }
  }

  async unmap(lba: number, blocks: number): Promise<void> {
    this.check(lba, blocks);
    if (this.readOnly) throw new VolumeError('READ_ONLY', `volume ${this.id} is read-only`);
    if (blocks === 0) return;
    try {
      await this.shared.run((img) => img.discard(lba * BS, blocks * BS));
    } catch (err) {
      throw volumeError(err, this.id);
    }
  }

  /** For exports: one mapped run (an RBD image's allocation map is not read here; a qcow2 export is then fully allocated). */
  mappedRuns(): { lba: number; blocks: number; mapped: boolean }[] {
    return [{ lba: 0, blocks: this.blockCount, mapped: true }];
  }

  /** Flushes (when writable) and releases the handle; the last handle closes the image. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.onClose();
  }
}
