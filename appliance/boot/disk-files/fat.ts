/**
 * A read-only FAT12/16/32 reader (Microsoft's FAT specification, "FAT: General Overview of
 * On-Disk Format" 1.03) for the boot partition or EFI system partition of a client's disk: find
 * a file by path (long names or 8.3, case-insensitive) and read it. Written here because the npm
 * FAT packages are unmaintained write-capable drivers; reading is the BPB, the FAT and directory
 * entries. The partition belongs to the client, so every chain is bounded by the file's size and
 * the cluster count, and loops end the walk.
 */
import type { ByteReader } from './partitions';

export interface FatFile {
  size: number;
  /** Reads up to `length` bytes at `position` of the file. */
  read(position: number, length: number): Promise<Buffer>;
}

export class FatError extends Error {}

interface Geometry {
  bytesPerSector: number;
  clusterBytes: number;
  fatStart: number;
  fatBits: 12 | 16 | 32;
  rootDirStart: number;
  rootDirBytes: number;
  rootCluster: number;
  dataStart: number;
  clusterCount: number;
}

interface DirEntry {
  name: string;
  shortName: string;
  isDir: boolean;
  firstCluster: number;
  size: number;
}

const MAX_DIR_BYTES = 4 * 1024 * 1024;
/** FAT sectors kept per open volume (oldest dropped first). */
const FAT_SECTORS_CACHED = 64;

/** Opens a FAT file system that starts at byte `start` of the disk and is `size` bytes long. */
export async function openFat(read: ByteReader, start: number, size: number): Promise<FatVolume> {
  const bpb = await read(start, 512);
  if (bpb.length < 512 || bpb.readUInt16LE(510) !== 0xaa55) throw new FatError('no FAT boot sector');
  const bytesPerSector = bpb.readUInt16LE(11);
  const sectorsPerCluster = bpb[13];
  const reserved = bpb.readUInt16LE(14);
  const fats = bpb[16];
  const rootEntries = bpb.readUInt16LE(17);
  const totalSectors = bpb.readUInt16LE(19) || bpb.readUInt32LE(32);
  const fatSectors = bpb.readUInt16LE(22) || bpb.readUInt32LE(36);
  if (
    ![512, 1024, 2048, 4096].includes(bytesPerSector) ||
    sectorsPerCluster === 0 ||
    (sectorsPerCluster & (sectorsPerCluster - 1)) !== 0 ||
    fats === 0 ||
    reserved === 0 ||
    fatSectors === 0
  ) {
    throw new FatError('not a FAT file system (BIOS parameter block out of range)');
  }
  if (totalSectors * bytesPerSector > size) throw new FatError('FAT file system larger than its partition');
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const dataSector = reserved + fats * fatSectors + rootDirSectors;
  const clusterCount = Math.floor((totalSectors - dataSector) / sectorsPerCluster);
  if (clusterCount <= 0) throw new FatError('FAT file system without data clusters');
  const fatBits = clusterCount < 4085 ? 12 : clusterCount < 65525 ? 16 : 32;
  return new FatVolume(read, {
    bytesPerSector,
    clusterBytes: bytesPerSector * sectorsPerCluster,
    fatStart: start + reserved * bytesPerSector,
    fatBits,
    rootDirStart: start + (reserved + fats * fatSectors) * bytesPerSector,
    rootDirBytes: rootDirSectors * bytesPerSector,
    rootCluster: fatBits === 32 ? bpb.readUInt32LE(44) : 0,
    dataStart: start + dataSector * bytesPerSector,
    clusterCount,
  });
}

export class FatVolume {
  private readonly fatSectors = new Map<number, Buffer>();
  constructor(
    private readonly read: ByteReader,
    private readonly g: Geometry,
  ) {}

  /** The file at `path` ("/EFI/BOOT/grub.cfg"), or undefined when any part is missing. */
  async open(path: string): Promise<FatFile | undefined> {
    const parts = path.split('/').filter((p) => p !== '');
    if (parts.length === 0) return undefined;
    let dir = await this.readDir(this.g.fatBits === 32 ? this.g.rootCluster : 0);
    for (const [i, part] of parts.entries()) {
      const want = part.toLowerCase();
      const e = dir.find((d) => d.name.toLowerCase() === want || d.shortName.toLowerCase() === want);
      if (!e) return undefined;
      if (i === parts.length - 1) {
        if (e.isDir) return undefined;
        const chain = await this.chain(e.firstCluster, e.size);
        return this.fileOf(chain, e.size);
      }
      if (!e.isDir) return undefined;
      dir = await this.readDir(e.firstCluster);
    }
    return undefined;
  }

  private fileOf(chain: number[], size: number): FatFile {
    const cb = this.g.clusterBytes;
    return {
      size,
      read: async (position, length) => {
        const end = Math.min(size, position + length);
        const parts: Buffer[] = [];
        let pos = position;
        while (pos < end) {
          const ci = Math.floor(pos / cb);
          // Read a run of consecutive clusters at once.
          let run = 1;
          while (ci + run < chain.length && chain[ci + run] === chain[ci] + run && (ci + run) * cb < end) run++;
          const within = pos - ci * cb;
          const n = Math.min(end - pos, run * cb - within);
          parts.push(await this.read(this.clusterOffset(chain[ci]) + within, n));
          pos += n;
        }
        return Buffer.concat(parts);
      },
    };
  }

  private clusterOffset(c: number): number {
    return this.g.dataStart + (c - 2) * this.g.clusterBytes;
  }

  /**
   * Bytes of the FAT at `off`, read a sector at a time and kept in a small cache: a chain walk
   * reads consecutive sectors, and a FAT32 of a large partition (tens of MiB) is never held whole.
   */
  private async fatBytes(off: number, n: number): Promise<Buffer> {
    const bps = this.g.bytesPerSector;
    const first = Math.floor(off / bps);
    const last = Math.floor((off + n - 1) / bps);
    const parts: Buffer[] = [];
    for (let sec = first; sec <= last; sec++) {
      let b = this.fatSectors.get(sec);
      if (!b) {
        b = await this.read(this.g.fatStart + sec * bps, bps);
        if (this.fatSectors.size >= FAT_SECTORS_CACHED) this.fatSectors.delete(this.fatSectors.keys().next().value!);
        this.fatSectors.set(sec, b);
      }
      parts.push(b);
    }
    const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    return joined.subarray(off - first * bps, off - first * bps + n);
  }

  private async next(c: number): Promise<number> {
    const fatLength = Math.ceil(((this.g.clusterCount + 2) * this.g.fatBits) / 8);
    const bad = this.g.fatBits === 32 ? 0x0ffffff7 : this.g.fatBits === 16 ? 0xfff7 : 0xff7;
    const off = this.g.fatBits === 32 ? c * 4 : this.g.fatBits === 16 ? c * 2 : Math.floor(c * 1.5);
    const n = this.g.fatBits === 32 ? 4 : 2;
    if (off + n > fatLength) return bad;
    const f = await this.fatBytes(off, n);
    if (f.length < n) return bad;
    if (this.g.fatBits === 32) return f.readUInt32LE(0) & 0x0fffffff;
    const v = f.readUInt16LE(0);
    if (this.g.fatBits === 16) return v;
    return c & 1 ? v >> 4 : v & 0xfff;
  }

  private isEnd(v: number): boolean {
    const bad = this.g.fatBits === 32 ? 0x0ffffff7 : this.g.fatBits === 16 ? 0xfff7 : 0xff7;
    return v < 2 || v >= bad || v > this.g.clusterCount + 1;
  }

  /** The cluster chain from `first`, at most enough clusters for `bytes` (or the directory cap). */
  private async chain(first: number, bytes: number): Promise<number[]> {
    const want = Math.ceil(bytes / this.g.clusterBytes);
    const out: number[] = [];
    const seen = new Set<number>();
    let c = first;
    while (out.length < want && !this.isEnd(c) && !seen.has(c)) {
      seen.add(c);
      out.push(c);
      c = await this.next(c);
    }
    if (out.length < want) throw new FatError('FAT chain shorter than the file (damaged file system)');
    return out;
  }

  private async readDir(cluster: number): Promise<DirEntry[]> {
    let raw: Buffer;
    if (cluster === 0) raw = await this.read(this.g.rootDirStart, this.g.rootDirBytes);
    else {
      const chain: number[] = [];
      const seen = new Set<number>();
      let c = cluster;
      while (!this.isEnd(c) && !seen.has(c) && chain.length * this.g.clusterBytes < MAX_DIR_BYTES) {
        seen.add(c);
        chain.push(c);
        c = await this.next(c);
      }
      raw = await this.fileOf(chain, chain.length * this.g.clusterBytes).read(0, chain.length * this.g.clusterBytes);
    }
    return parseDirectory(raw);
  }
}

/** Directory entries of a raw directory (32-byte records, long-name records before their short one). */
export function parseDirectory(raw: Buffer): DirEntry[] {
  const out: DirEntry[] = [];
  let lfn: string[] = [];
  for (let o = 0; o + 32 <= raw.length; o += 32) {
    const first = raw[o];
    if (first === 0) break;
    if (first === 0xe5) {
      lfn = [];
      continue;
    }
    const attr = raw[o + 11];
    if (attr === 0x0f) {
      const seq = first & 0x1f;
      const chars = Buffer.concat([raw.subarray(o + 1, o + 11), raw.subarray(o + 14, o + 26), raw.subarray(o + 28, o + 32)]);
      let s = '';
      for (let i = 0; i + 2 <= chars.length; i += 2) {
        const u = chars.readUInt16LE(i);
        if (u === 0 || u === 0xffff) break;
        s += String.fromCharCode(u);
      }
      lfn[seq - 1] = s;
      continue;
    }
    if (attr & 0x08) {
      lfn = [];
      continue; // volume label
    }
    const base = raw.toString('latin1', o, o + 8).trimEnd();
    const ext = raw.toString('latin1', o + 8, o + 11).trimEnd();
    const shortName = ext ? `${base}.${ext}` : base;
    const name = lfn.length > 0 ? lfn.join('') : shortName;
    lfn = [];
    if (shortName === '.' || shortName === '..') continue;
    const firstCluster = (raw.readUInt16LE(o + 20) << 16) | raw.readUInt16LE(o + 26);
    out.push({ name, shortName, isDir: (attr & 0x10) !== 0, firstCluster, size: raw.readUInt32LE(o + 28) });
  }
  return out;
}
