import fs from 'node:fs';
import zlib from 'node:zlib';
import { preadFull } from './io';
import { DecodeError, decodeL2Entry, decodeQcow2Header, OFFSET_MASK, unsupportedFeature, type Qcow2Header } from './qcow2';

/** A random-access source of guest bytes: a raw file or a qcow2 read natively. */
export interface ImageSource {
  readonly size: number;
  /** Fills buf[0..len) with guest bytes [pos, pos+len). */
  read(buf: Buffer, len: number, pos: number): Promise<void>;
  /** False when [pos, pos+len) is known to read as zeros without looking (unallocated). */
  allocated(pos: number, len: number): Promise<boolean>;
  close(): Promise<void>;
}

/** A raw file: every byte is guest data. */
export class RawSource implements ImageSource {
  private constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  static open(file: string): RawSource {
    return RawSource.fromFd(fs.openSync(file, 'r'));
  }

  /** Reads through an open descriptor (which it then owns): the file checked is the file read. */
  static fromFd(fd: number): RawSource {
    return new RawSource(fd, fs.fstatSync(fd).size);
  }

  read(buf: Buffer, len: number, pos: number): Promise<void> {
    return preadFull(this.fd, buf, 0, len, pos);
  }

  async allocated(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    fs.closeSync(this.fd);
  }
}

/**
 * Reads a qcow2 file (v2/v3, zlib-compressed clusters included, no backing file) without
 * qemu-img. Every offset is checked against the file size so a truncated file fails with a
 * DecodeError naming where, instead of importing zeros.
 */
export class Qcow2Source implements ImageSource {
  readonly size: number;
  private readonly cs: number;
  private readonly l2Entries: number;
  private readonly l2Cache = new Map<number, BigUint64Array | null>();
  private lastCompressed: { offset: number; data: Buffer } | null = null;

  private constructor(
    private readonly fd: number,
    private readonly fileSize: number,
    readonly header: Qcow2Header,
    private readonly l1: bigint[],
  ) {
    this.size = header.size;
    this.cs = 2 ** header.clusterBits;
    this.l2Entries = this.cs / 8;
  }

  /** Opens and validates; throws DecodeError for a bad file, or with `unsupported` set for a feature we skip. */
  static async open(file: string): Promise<Qcow2Source> {
    return Qcow2Source.fromFd(fs.openSync(file, 'r'));
  }

  /** As open, through a descriptor it then owns (closed here on failure). Never opens another file. */
  static async fromFd(fd: number): Promise<Qcow2Source> {
    try {
      const fileSize = fs.fstatSync(fd).size;
      const head = Buffer.alloc(Math.min(4096, fileSize));
      await preadFull(fd, head, 0, head.length, 0);
      const h = decodeQcow2Header(head);
      const why = unsupportedFeature(h);
      if (why) throw Object.assign(new DecodeError(`qcow2 ${why}`, 0), { unsupported: true });
      const l1Bytes = h.l1Size * 8;
      if (h.l1TableOffset + l1Bytes > fileSize) throw new DecodeError('file is truncated: L1 table past end of file', h.l1TableOffset);
      const raw = Buffer.alloc(l1Bytes);
      await preadFull(fd, raw, 0, l1Bytes, h.l1TableOffset);
      const l1: bigint[] = [];
      for (let i = 0; i < h.l1Size; i++) l1.push(raw.readBigUInt64BE(i * 8));
      return new Qcow2Source(fd, fileSize, h, l1);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  private async l2(i: number): Promise<BigUint64Array | null> {
    if (this.l2Cache.has(i)) return this.l2Cache.get(i)!;
    const off = Number(this.l1[i] & OFFSET_MASK);
    let table: BigUint64Array | null = null;
    if (off !== 0) {
      if (off % this.cs !== 0) throw new DecodeError('L2 table offset not cluster-aligned', this.header.l1TableOffset + i * 8);
      if (off + this.cs > this.fileSize) throw new DecodeError('file is truncated: L2 table past end of file', off);
      const b = Buffer.alloc(this.cs);
      await preadFull(this.fd, b, 0, this.cs, off);
      table = new BigUint64Array(this.l2Entries);
      for (let k = 0; k < this.l2Entries; k++) table[k] = b.readBigUInt64BE(k * 8);
    }
    if (this.l2Cache.size > 64) this.l2Cache.delete(this.l2Cache.keys().next().value!);
    this.l2Cache.set(i, table);
    return table;
  }

  private async entry(cluster: number) {
    const i = Math.floor(cluster / this.l2Entries);
    const t = await this.l2(i);
    if (!t) return { kind: 'unallocated' as const };
    return decodeL2Entry(t[cluster % this.l2Entries], this.header.clusterBits, this.header.version);
  }

  async allocated(pos: number, len: number): Promise<boolean> {
    for (let c = Math.floor(pos / this.cs); c * this.cs < pos + len; c++) {
      const e = await this.entry(c);
      if (e.kind === 'data' || e.kind === 'compressed') return true;
    }
    return false;
  }

  async read(buf: Buffer, len: number, pos: number): Promise<void> {
    let o = 0;
    while (o < len) {
      const g = pos + o;
      const c = Math.floor(g / this.cs);
      const inCluster = g - c * this.cs;
      const n = Math.min(this.cs - inCluster, len - o);
      const e = await this.entry(c);
      if (e.kind === 'data') {
        if (e.offset + inCluster + n > this.fileSize) {
          throw new DecodeError('file is truncated: data cluster past end of file', e.offset);
        }
        await preadFull(this.fd, buf, o, n, e.offset + inCluster);
      } else if (e.kind === 'compressed') {
        const data = await this.inflate(e.offset, e.length);
        data.copy(buf, o, inCluster, inCluster + n);
      } else {
        buf.fill(0, o, o + n);
      }
      o += n;
    }
  }

  private async inflate(offset: number, length: number): Promise<Buffer> {
    if (this.lastCompressed?.offset === offset) return this.lastCompressed.data;
    if (offset >= this.fileSize) throw new DecodeError('file is truncated: compressed cluster past end of file', offset);
    const avail = Math.min(length, this.fileSize - offset);
    const src = Buffer.alloc(avail);
    await preadFull(this.fd, src, 0, avail, offset);
    let data: Buffer;
    try {
      // The stored length is rounded up to sectors, so trailing bytes after the deflate stream are normal.
      data = zlib.inflateRawSync(src, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch (err) {
      throw new DecodeError(`compressed cluster does not inflate: ${(err as Error).message}`, offset);
    }
    if (data.length < this.cs) throw new DecodeError('compressed cluster inflates short (truncated?)', offset);
    this.lastCompressed = { offset, data };
    return data;
  }

  async close(): Promise<void> {
    fs.closeSync(this.fd);
  }
}
