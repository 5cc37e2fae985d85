/**
 * A read-only ext2/3/4 reader for the one thing the GRUB road needs from a client's root or /boot
 * partition: open a file by path (the bootloader config, the kernel, the initramfs) and read it.
 * Superblock, group descriptors (32- and 64-bit), inodes, extent trees and the ext2/3 block map,
 * linear directory scans (htree directories read linearly too), symbolic links. No journal
 * replay, no writes. npm `ext2fs` (WASM libext2fs) was weighed first and not taken: it installs
 * process-wide uncaughtException/unhandledRejection handlers that rethrow (docs/decisions.md).
 * The partition is the client's: depths, counts and block numbers are all bounded.
 */
import type { FatFile } from './fat';
import type { FsOpener, ReadableFs } from './kernel-lookup';
import type { ByteReader, Partition } from './partitions';

/** MBR types and GPT GUIDs that may hold an ext file system (Linux data, XBOOTLDR, x86-64/ARM64 root). */
const EXT_TYPES = new Set([
  '83',
  '0fc63daf-8483-4772-8e79-3d69d8477de4',
  'bc13c2ff-59e6-4262-a352-b275fd6f7172',
  '4f68bce3-e8cd-4db1-96e7-fbcaf984b709',
  'b921b045-1df0-41c3-af44-4c6f280d3fae',
]);
const EXT_MAGIC = 0xef53;
const EXTENT_MAGIC = 0xf30a;
const INCOMPAT_64BIT = 0x80;
const EXTENTS_FL = 0x80000;
const INLINE_DATA_FL = 0x10000000;
const S_IFMT = 0xf000;
const S_IFREG = 0x8000;
const S_IFDIR = 0x4000;
const S_IFLNK = 0xa000;
const MAX_DIR_BYTES = 8 * 1024 * 1024;
const MAX_SYMLINKS = 8;

export class Ext4Error extends Error {}

interface Inode {
  mode: number;
  size: number;
  flags: number;
  block: Buffer;
}

/** One run of a file: `count` blocks from logical block `logical` at physical block `physical` (0: a hole). */
interface Run {
  logical: number;
  physical: number;
  count: number;
}

export const ext4Opener: FsOpener = async (read: ByteReader, p: Partition) => {
  if (!EXT_TYPES.has(p.type)) return undefined;
  const sb = await read(p.start + 1024, 1024);
  if (sb.length < 1024 || sb.readUInt16LE(56) !== EXT_MAGIC) return undefined;
  try {
    return new Ext4Fs(read, p, sb);
  } catch (err) {
    if (err instanceof Ext4Error) return undefined;
    throw err;
  }
};

class Ext4Fs implements ReadableFs {
  private readonly blockSize: number;
  private readonly inodesPerGroup: number;
  private readonly inodeSize: number;
  private readonly descSize: number;
  private readonly firstDataBlock: number;
  private readonly groups: number;
  private readonly blocks: number;

  constructor(
    private readonly read: ByteReader,
    private readonly p: Partition,
    sb: Buffer,
  ) {
    const logBlock = sb.readUInt32LE(24);
    if (logBlock > 6) throw new Ext4Error('block size out of range');
    this.blockSize = 1024 << logBlock;
    const incompat = sb.readUInt32LE(96);
    this.blocks = sb.readUInt32LE(4) + (incompat & INCOMPAT_64BIT ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
    this.inodesPerGroup = sb.readUInt32LE(40);
    const blocksPerGroup = sb.readUInt32LE(32);
    this.inodeSize = sb.readUInt32LE(76) >= 1 ? sb.readUInt16LE(88) : 128;
    this.descSize = incompat & INCOMPAT_64BIT ? Math.max(32, sb.readUInt16LE(0xfe)) : 32;
    this.firstDataBlock = sb.readUInt32LE(20);
    if (this.inodesPerGroup === 0 || blocksPerGroup === 0 || this.inodeSize < 128 || this.blocks * this.blockSize > p.size * 2)
      throw new Ext4Error('superblock out of range');
    this.groups = Math.ceil((this.blocks - this.firstDataBlock) / blocksPerGroup);
  }

  async open(path: string): Promise<FatFile | undefined> {
    const ino = await this.lookup(path, 0);
    if (ino === undefined) return undefined;
    const inode = await this.inode(ino);
    if ((inode.mode & S_IFMT) !== S_IFREG) return undefined;
    return this.fileOf(inode);
  }

  private async blockAt(n: number, count = 1): Promise<Buffer> {
    if (n <= 0 || n + count > this.blocks) throw new Ext4Error(`block ${n} outside the file system`);
    return this.read(this.p.start + n * this.blockSize, count * this.blockSize);
  }

  private async inode(ino: number): Promise<Inode> {
    const group = Math.floor((ino - 1) / this.inodesPerGroup);
    if (ino < 1 || group >= this.groups) throw new Ext4Error(`inode ${ino} out of range`);
    const descAt = (this.firstDataBlock + 1) * this.blockSize + group * this.descSize;
    const desc = await this.read(this.p.start + descAt, this.descSize);
    const table = desc.readUInt32LE(8) + (this.descSize >= 64 ? desc.readUInt32LE(0x28) * 2 ** 32 : 0);
    const at = table * this.blockSize + ((ino - 1) % this.inodesPerGroup) * this.inodeSize;
    if (table === 0 || at + this.inodeSize > this.p.size) throw new Ext4Error(`inode table of group ${group} outside the partition`);
    const raw = await this.read(this.p.start + at, 128);
    return {
      mode: raw.readUInt16LE(0),
      size: raw.readUInt32LE(4) + raw.readUInt32LE(108) * 2 ** 32,
      flags: raw.readUInt32LE(32),
      block: Buffer.from(raw.subarray(40, 100)),
    };
  }

  /** The inode number of `path`, following symbolic links (bounded). */
  private async lookup(path: string, hops: number): Promise<number | undefined> {
    let ino = 2; // the root directory
    const parts = path.split('/').filter((s) => s !== '' && s !== '.');
    for (const [i, part] of parts.entries()) {
      const dir = await this.inode(ino);
      if ((dir.mode & S_IFMT) !== S_IFDIR) return undefined;
      const next = await this.findEntry(dir, part);
      if (next === undefined) return undefined;
      const node = await this.inode(next);
      if ((node.mode & S_IFMT) === S_IFLNK) {
        if (hops >= MAX_SYMLINKS) throw new Ext4Error('too many symbolic links');
        const target = await this.readLink(node);
        const base = target.startsWith('/') ? '' : parts.slice(0, i).join('/');
        const rest = parts.slice(i + 1).join('/');
        return this.lookup(`${base}/${target}/${rest}`, hops + 1);
      }
      ino = next;
    }
    return ino;
  }

  private async readLink(node: Inode): Promise<string> {
    // Fast symlinks keep the target in i_block (when it fits in its 60 bytes and no blocks are used).
    if (node.size < 60 && !(node.flags & EXTENTS_FL)) return node.block.toString('utf8', 0, node.size);
    return (await this.fileOf(node).read(0, Math.min(node.size, 4096))).toString('utf8');
  }

  private async findEntry(dir: Inode, name: string): Promise<number | undefined> {
    const data = await this.fileOf(dir).read(0, Math.min(dir.size, MAX_DIR_BYTES));
    for (let blockStart = 0; blockStart < data.length; blockStart += this.blockSize) {
      let o = blockStart;
      const end = Math.min(data.length, blockStart + this.blockSize);
      while (o + 8 <= end) {
        const ino = data.readUInt32LE(o);
        const recLen = data.readUInt16LE(o + 4);
        const nameLen = data[o + 6]!;
        if (recLen < 8 || o + recLen > end) break;
        if (ino !== 0 && nameLen === Buffer.byteLength(name) && data.toString('utf8', o + 8, o + 8 + nameLen) === name) return ino;
        o += recLen;
      }
    }
    return undefined;
  }

  private fileOf(inode: Inode): FatFile {
    let runs: Promise<Run[]> | undefined;
    const size = inode.size;
    return {
      size,
      read: async (position, length) => {
        if (inode.flags & INLINE_DATA_FL) return inode.block.subarray(Math.min(position, 60), Math.min(size, 60, position + length));
        runs ??= this.runsOf(inode);
        const all = await runs;
        const end = Math.min(size, position + length);
        const out: Buffer[] = [];
        let pos = position;
        while (pos < end) {
          const lb = Math.floor(pos / this.blockSize);
          const run = all.find((r) => lb >= r.logical && lb < r.logical + r.count);
          const within = pos - lb * this.blockSize;
          const runEnd = run ? (run.logical + run.count) * this.blockSize : (lb + 1) * this.blockSize;
          const n = Math.min(end - pos, runEnd - pos);
          if (!run || run.physical === 0) out.push(Buffer.alloc(n));
          else {
            const phys = run.physical + (lb - run.logical);
            if (phys + Math.ceil((within + n) / this.blockSize) > this.blocks) throw new Ext4Error('file block outside the file system');
            out.push(await this.read(this.p.start + phys * this.blockSize + within, n));
          }
          pos += n;
        }
        return Buffer.concat(out);
      },
    };
  }

  private async runsOf(inode: Inode): Promise<Run[]> {
    const maxBlocks = Math.ceil(inode.size / this.blockSize);
    if (inode.flags & EXTENTS_FL) {
      const out: Run[] = [];
      await this.extentNode(inode.block, 0, out, maxBlocks);
      return out.sort((a, b) => a.logical - b.logical);
    }
    return this.blockMap(inode.block, maxBlocks);
  }

  private async extentNode(node: Buffer, depth: number, out: Run[], maxBlocks: number): Promise<void> {
    if (node.readUInt16LE(0) !== EXTENT_MAGIC) throw new Ext4Error('bad extent header');
    const entries = node.readUInt16LE(2);
    const nodeDepth = node.readUInt16LE(6);
    if (depth > 5 || entries > (node.length - 12) / 12) throw new Ext4Error('extent tree out of range');
    for (let i = 0; i < entries; i++) {
      const e = 12 + i * 12;
      if (nodeDepth === 0) {
        const logical = node.readUInt32LE(e);
        let count = node.readUInt16LE(e + 4);
        const uninitialised = count > 32768;
        if (uninitialised) count -= 32768;
        const physical = node.readUInt16LE(e + 6) * 2 ** 32 + node.readUInt32LE(e + 8);
        if (logical < maxBlocks) out.push({ logical, physical: uninitialised ? 0 : physical, count });
      } else {
        const leaf = node.readUInt32LE(e + 4) + node.readUInt16LE(e + 8) * 2 ** 32;
        await this.extentNode(await this.blockAt(leaf), depth + 1, out, maxBlocks);
      }
    }
  }

  /** ext2/3: 12 direct blocks, then single, double and triple indirect blocks. */
  private async blockMap(iblock: Buffer, maxBlocks: number): Promise<Run[]> {
    const list: number[] = [];
    for (let i = 0; i < 12 && list.length < maxBlocks; i++) list.push(iblock.readUInt32LE(i * 4));
    const perBlock = this.blockSize / 4;
    const walk = async (block: number, level: number): Promise<void> => {
      if (list.length >= maxBlocks) return;
      if (block === 0) {
        const span = perBlock ** level;
        for (let i = 0; i < span && list.length < maxBlocks; i++) list.push(0);
        return;
      }
      const b = await this.blockAt(block);
      for (let i = 0; i < perBlock && list.length < maxBlocks; i++) {
        const n = b.readUInt32LE(i * 4);
        if (level === 1) list.push(n);
        else await walk(n, level - 1);
      }
    };
    for (let level = 1; level <= 3; level++) await walk(iblock.readUInt32LE((11 + level) * 4), level);
    const runs: Run[] = [];
    for (const [logical, physical] of list.entries()) {
      const last = runs[runs.length - 1];
      if (last && physical !== 0 && last.physical !== 0 && last.physical + last.count === physical) last.count++;
      else runs.push({ logical, physical, count: 1 });
    }
    return runs;
  }
}
