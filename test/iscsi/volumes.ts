import { read as fsRead, write as fsWrite } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { VolumeError, type BlockVolume, type ThinProvisioning } from '../../image-store/block-volume';

/**
 * Test volumes for the iSCSI target: the real image store lives elsewhere, these implement
 * the same BlockVolume contract simply. MemoryDisk is thin-provisioned (unmapped blocks read
 * as zero, so LBPRZ=1 and the thin-provisioning SCSI suites run); FileDisk is a plain file
 * (thin=false), as tgt's backing store is.
 */

function checkRange(lba: number, blocks: number, count: number): void {
  if (!Number.isInteger(lba) || !Number.isInteger(blocks) || lba < 0 || blocks < 0 || lba + blocks > count) {
    throw new VolumeError('OUT_OF_RANGE', `blocks ${lba}+${blocks} outside 0..${count}`);
  }
}

/** A thin-provisioned in-memory disk; open() gives each session its own handle on the same data. */
export class MemoryDisk {
  readonly data: Buffer;
  readonly mapped: Uint8Array;
  /** When set, writes that would map new blocks fail with NO_SPACE once this many are mapped. */
  spaceLimitBlocks = Infinity;
  /**
   * When > 0, handles declare the atomic-write capability for writes up to this many blocks:
   * true of every write here (checks first, then one synchronous copy), so declaring it is opt-in
   * only to keep a plain MemoryDisk a volume without WRITE ATOMIC.
   */
  atomicWriteBlocks = 0;
  flushes = 0;

  constructor(
    readonly id: string,
    readonly blockCount: number,
    readonly blockSize = 512,
    readonly granularityBlocks = 8,
  ) {
    this.data = Buffer.alloc(blockCount * blockSize);
    this.mapped = new Uint8Array(blockCount);
  }

  private mappedCount(): number {
    let n = 0;
    for (let i = 0; i < this.mapped.length; i++) n += this.mapped[i];
    return n;
  }

  /** A BlockVolume on this disk. */
  open(readOnly = false): BlockVolume & { close(): Promise<void> } {
    const disk = this;
    let closed = false;
    const live = () => {
      if (closed) throw new VolumeError('CLOSED', 'volume closed');
    };
    const thin: ThinProvisioning = { provisioned: true, unmappedReads: 'zero', granularityBlocks: disk.granularityBlocks };
    return {
      id: disk.id,
      blockSize: disk.blockSize,
      blockCount: disk.blockCount,
      readOnly,
      thin,
      ...(disk.atomicWriteBlocks > 0 && !readOnly ? { atomicWriteBlocks: disk.atomicWriteBlocks } : {}),
      async read(lba, blocks) {
        live();
        checkRange(lba, blocks, disk.blockCount);
        return Buffer.from(disk.data.subarray(lba * disk.blockSize, (lba + blocks) * disk.blockSize));
      },
      async write(lba, data) {
        live();
        if (readOnly) throw new VolumeError('READ_ONLY', 'read-only');
        const blocks = data.length / disk.blockSize;
        checkRange(lba, blocks, disk.blockCount);
        if (disk.spaceLimitBlocks !== Infinity) {
          let fresh = 0;
          for (let i = lba; i < lba + blocks; i++) fresh += disk.mapped[i] ? 0 : 1;
          if (disk.mappedCount() + fresh > disk.spaceLimitBlocks) throw new VolumeError('NO_SPACE', 'store full');
        }
        data.copy(disk.data, lba * disk.blockSize);
        disk.mapped.fill(1, lba, lba + blocks);
      },
      async flush() {
        live();
        disk.flushes++;
      },
      async unmap(lba, blocks) {
        live();
        if (readOnly) throw new VolumeError('READ_ONLY', 'read-only');
        checkRange(lba, blocks, disk.blockCount);
        disk.data.fill(0, lba * disk.blockSize, (lba + blocks) * disk.blockSize);
        disk.mapped.fill(0, lba, lba + blocks);
      },
      async mapping(lba, blocks) {
        live();
        checkRange(lba, blocks, disk.blockCount);
        const runs: { lba: number; blocks: number; mapped: boolean }[] = [];
        for (let i = lba; i < lba + blocks; ) {
          const m = disk.mapped[i] === 1;
          let j = i + 1;
          while (j < lba + blocks && (disk.mapped[j] === 1) === m) j++;
          runs.push({ lba: i, blocks: j - i, mapped: m });
          i = j;
        }
        return runs;
      },
      async close() {
        closed = true;
      },
    };
  }
}

/** A fully provisioned disk backed by a file (like tgt's rdwr backing store). */
export class FileDisk {
  constructor(
    readonly id: string,
    readonly path: string,
    readonly blockCount: number,
    readonly blockSize = 512,
  ) {}

  /** Opens the file for one session. */
  async open(readOnly = false): Promise<BlockVolume & { close(): Promise<void> }> {
    const fh: FileHandle = await open(this.path, readOnly ? 'r' : 'r+');
    const { blockSize, blockCount, id } = this;
    let closed = false;
    const live = () => {
      if (closed) throw new VolumeError('CLOSED', 'volume closed');
    };
    return {
      id,
      blockSize,
      blockCount,
      readOnly,
      thin: { provisioned: false, unmappedReads: 'zero', granularityBlocks: 1 },
      async read(lba, blocks) {
        live();
        checkRange(lba, blocks, blockCount);
        const buf = Buffer.allocUnsafe(blocks * blockSize);
        // The callback API on the raw fd: cheaper per call than FileHandle.read's promise path.
        const bytesRead = await new Promise<number>((resolve, reject) => {
          fsRead(fh.fd, buf, 0, buf.length, lba * blockSize, (err, n) => (err ? reject(err) : resolve(n)));
        });
        if (bytesRead < buf.length) buf.fill(0, bytesRead);
        return buf;
      },
      async write(lba, data, opts) {
        live();
        if (readOnly) throw new VolumeError('READ_ONLY', 'read-only');
        checkRange(lba, data.length / blockSize, blockCount);
        await new Promise<void>((resolve, reject) => {
          fsWrite(fh.fd, data, 0, data.length, lba * blockSize, (err) => (err ? reject(err) : resolve()));
        });
        if (opts?.fua) await fh.datasync();
      },
      async flush() {
        live();
        await fh.datasync();
      },
      async unmap() {
        throw new VolumeError('IO', 'not thin-provisioned');
      },
      async close() {
        if (closed) return;
        closed = true;
        await fh.close();
      },
    };
  }
}
