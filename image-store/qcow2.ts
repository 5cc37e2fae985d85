/**
 * qcow2 codec (pure: no I/O). Follows docs/interop/qcow2.txt of QEMU: big-endian header,
 * two-level L1/L2 tables mapping guest clusters to host offsets, refcount table + blocks.
 * Used to read imports natively and to write exports as a stream (layout computed up front).
 */

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

/** A header field that is wrong or a feature we do not read. */
export class DecodeError extends Error {
  constructor(
    readonly reason: string,
    readonly offset: number,
  ) {
    super(`${reason} (at byte ${offset})`);
    this.name = 'DecodeError';
  }
}

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  incompatibleFeatures: number;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
}

/** Incompatible feature bits (header v3, byte 72). */
export const INCOMPAT_DIRTY = 1;
export const INCOMPAT_CORRUPT = 2;
export const INCOMPAT_EXTERNAL_DATA = 4;
export const INCOMPAT_COMPRESSION = 8;
export const INCOMPAT_EXTENDED_L2 = 16;

const u64 = (b: Buffer, o: number) => {
  const v = b.readBigUInt64BE(o);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new DecodeError('64-bit field out of range', o);
  return Number(v);
};

/** True when buf starts with the qcow2 magic. */
export function isQcow2(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32BE(0) === QCOW2_MAGIC;
}

/** Decodes and sanity-checks a qcow2 header (the first cluster's first bytes). */
export function decodeQcow2Header(b: Buffer): Qcow2Header {
  if (b.length < 72) throw new DecodeError('header shorter than 72 bytes', b.length);
  if (b.readUInt32BE(0) !== QCOW2_MAGIC) throw new DecodeError('not a qcow2 file (bad magic)', 0);
  const version = b.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw new DecodeError(`qcow2 version ${version} is not supported`, 4);
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(b, 8),
    backingFileSize: b.readUInt32BE(16),
    clusterBits: b.readUInt32BE(20),
    size: u64(b, 24),
    cryptMethod: b.readUInt32BE(32),
    l1Size: b.readUInt32BE(36),
    l1TableOffset: u64(b, 40),
    refcountTableOffset: u64(b, 48),
    refcountTableClusters: b.readUInt32BE(56),
    nbSnapshots: b.readUInt32BE(60),
    incompatibleFeatures: 0,
    refcountOrder: 4,
    headerLength: 72,
    compressionType: 0,
  };
  if (version === 3) {
    if (b.length < 104) throw new DecodeError('v3 header shorter than 104 bytes', b.length);
    h.incompatibleFeatures = u64(b, 72);
    h.refcountOrder = b.readUInt32BE(96);
    h.headerLength = b.readUInt32BE(100);
    if (h.headerLength > 104 && b.length > 104) h.compressionType = b[104];
  }
  if (h.clusterBits < 9 || h.clusterBits > 21) throw new DecodeError(`cluster_bits ${h.clusterBits} out of range`, 20);
  const cs = 2 ** h.clusterBits;
  if (h.size % 512 !== 0) throw new DecodeError('virtual size is not a multiple of 512', 24);
  const l2Entries = cs / 8;
  const need = Math.ceil(h.size / (cs * l2Entries));
  if (h.l1Size < need) throw new DecodeError(`L1 table too small (${h.l1Size} < ${need})`, 36);
  if (h.l1TableOffset % cs !== 0) throw new DecodeError('L1 table offset not cluster-aligned', 40);
  return h;
}

/** Why this header needs qemu-img rather than the native reader, or null when we read it. */
export function unsupportedFeature(h: Qcow2Header): string | null {
  if (h.backingFileOffset !== 0) return 'has a backing file';
  if (h.cryptMethod !== 0) return 'is encrypted';
  if (h.incompatibleFeatures & INCOMPAT_CORRUPT) return 'is marked corrupt';
  if (h.incompatibleFeatures & INCOMPAT_EXTERNAL_DATA) return 'uses an external data file';
  if (h.incompatibleFeatures & INCOMPAT_EXTENDED_L2) return 'uses extended L2 entries';
  if (h.incompatibleFeatures & INCOMPAT_COMPRESSION && h.compressionType !== 0) return 'uses zstd compression';
  if (h.incompatibleFeatures & ~(INCOMPAT_DIRTY | INCOMPAT_COMPRESSION)) return 'uses unknown incompatible features';
  return null;
}

/** Header extension type naming the external data file (section "Header extensions"). */
export const EXT_EXTERNAL_DATA_FILE = 0x44415441;

/**
 * The other files a qcow2 header names: its backing file and its external data file (from the
 * incompatible bit and/or the header extension; qemu opens either). `head` must hold the header
 * and its extensions (they end within the first cluster). Empty when the image is self-contained.
 */
export function qcow2FileReferences(h: Qcow2Header, head: Buffer): { kind: 'backing file' | 'external data file'; name: string }[] {
  const refs: { kind: 'backing file' | 'external data file'; name: string }[] = [];
  if (h.backingFileOffset !== 0) {
    const end = h.backingFileOffset + h.backingFileSize;
    const name = end <= head.length ? head.toString('utf8', h.backingFileOffset, end) : '(name past the first cluster)';
    refs.push({ kind: 'backing file', name });
  }
  let dataFile: string | undefined;
  // Extensions follow the header: 4-byte type, 4-byte length, data padded to 8 bytes; type 0 ends.
  for (let o = h.headerLength; o + 8 <= head.length; ) {
    const type = head.readUInt32BE(o);
    const len = head.readUInt32BE(o + 4);
    if (type === 0) break;
    if (type === EXT_EXTERNAL_DATA_FILE) dataFile = head.toString('utf8', o + 8, Math.min(head.length, o + 8 + len));
    o += 8 + Math.ceil(len / 8) * 8;
  }
  if (dataFile !== undefined || h.incompatibleFeatures & INCOMPAT_EXTERNAL_DATA) refs.push({ kind: 'external data file', name: dataFile ?? '(unnamed)' });
  return refs;
}

/** L1/L2 entry offset field: bits 9..55 (the copied flag and reserved bits masked out). */
export const OFFSET_MASK = 0x00fffffffffffe00n;
export const FLAG_COPIED = 1n << 63n;
export const FLAG_COMPRESSED = 1n << 62n;
export const FLAG_ZERO = 1n;

/** A decoded L2 entry. */
export type L2Entry = { kind: 'unallocated' } | { kind: 'zero' } | { kind: 'data'; offset: number } | { kind: 'compressed'; offset: number; length: number };

/** Decodes one L2 entry (section "Cluster mapping"). */
export function decodeL2Entry(e: bigint, clusterBits: number, version: number): L2Entry {
  if (e & FLAG_COMPRESSED) {
    const x = BigInt(62 - (clusterBits - 8));
    const offset = Number(e & ((1n << x) - 1n));
    const sectors = Number((e >> x) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
    return { kind: 'compressed', offset, length: sectors * 512 - (offset & 511) };
  }
  if (version >= 3 && e & FLAG_ZERO) return { kind: 'zero' };
  const offset = Number(e & OFFSET_MASK);
  return offset === 0 ? { kind: 'unallocated' } : { kind: 'data', offset };
}

/** The fixed layout of a qcow2 file we write: metadata first, then data clusters in guest order. */
export interface Qcow2Plan {
  clusterBits: number;
  size: number;
  l1Size: number;
  l1Offset: number;
  l1Clusters: number;
  refTableOffset: number;
  refTableClusters: number;
  refBlocksOffset: number;
  refBlocks: number;
  l2Offset: number;
  /** Indices into L1 that get an L2 table, in order. */
  l2Indices: number[];
  dataOffset: number;
  /** Guest cluster indices that hold data, ascending; data cluster k is at dataOffset + k*cs. */
  dataClusters: number[];
  totalClusters: number;
}

/** Lays out a v3 qcow2 (16-bit refcounts) holding `dataClusters` of a `size`-byte disk. */
export function planQcow2(size: number, dataClusters: number[], clusterBits = 16): Qcow2Plan {
  const cs = 2 ** clusterBits;
  const l2Entries = cs / 8;
  const l1Size = Math.max(1, Math.ceil(size / (cs * l2Entries)));
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const l2Set = new Set<number>();
  for (const c of dataClusters) l2Set.add(Math.floor(c / l2Entries));
  const l2Indices = [...l2Set].sort((a, b) => a - b);
  const perRefBlock = cs / 2;
  let refBlocks = 1;
  let refTableClusters = 1;
  for (;;) {
    const total = 1 + l1Clusters + refTableClusters + refBlocks + l2Indices.length + dataClusters.length;
    const rb = Math.ceil(total / perRefBlock);
    const rt = Math.ceil((rb * 8) / cs);
    if (rb === refBlocks && rt === refTableClusters) break;
    refBlocks = rb;
    refTableClusters = rt;
  }
  const l1Offset = cs;
  const refTableOffset = l1Offset + l1Clusters * cs;
  const refBlocksOffset = refTableOffset + refTableClusters * cs;
  const l2Offset = refBlocksOffset + refBlocks * cs;
  const dataOffset = l2Offset + l2Indices.length * cs;
  return {
    clusterBits,
    size,
    l1Size,
    l1Offset,
    l1Clusters,
    refTableOffset,
    refTableClusters,
    refBlocksOffset,
    refBlocks,
    l2Offset,
    l2Indices,
    dataOffset,
    dataClusters,
    totalClusters: dataOffset / cs + dataClusters.length,
  };
}

/** The header cluster of a planned file. */
export function encodeQcow2Header(p: Qcow2Plan): Buffer {
  const b = Buffer.alloc(2 ** p.clusterBits);
  b.writeUInt32BE(QCOW2_MAGIC, 0);
  b.writeUInt32BE(3, 4);
  b.writeUInt32BE(p.clusterBits, 20);
  b.writeBigUInt64BE(BigInt(p.size), 24);
  b.writeUInt32BE(p.l1Size, 36);
  b.writeBigUInt64BE(BigInt(p.l1Offset), 40);
  b.writeBigUInt64BE(BigInt(p.refTableOffset), 48);
  b.writeUInt32BE(p.refTableClusters, 56);
  b.writeUInt32BE(4, 96); // refcount_order: 16-bit refcounts
  b.writeUInt32BE(104, 100); // header_length; extensions follow, none but the end marker (zeros)
  return b;
}

/** Every metadata cluster of the plan (L1, refcount table, refcount blocks, L2 tables), in file order. */
export function* encodeQcow2Metadata(p: Qcow2Plan): Generator<Buffer> {
  const cs = 2 ** p.clusterBits;
  const l2Entries = cs / 8;
  const l1 = Buffer.alloc(p.l1Clusters * cs);
  p.l2Indices.forEach((i, k) => l1.writeBigUInt64BE(BigInt(p.l2Offset + k * cs) | FLAG_COPIED, i * 8));
  yield l1;
  const rt = Buffer.alloc(p.refTableClusters * cs);
  for (let k = 0; k < p.refBlocks; k++) rt.writeBigUInt64BE(BigInt(p.refBlocksOffset + k * cs), k * 8);
  yield rt;
  const rb = Buffer.alloc(p.refBlocks * cs);
  for (let c = 0; c < p.totalClusters; c++) rb.writeUInt16BE(1, c * 2);
  yield rb;
  let k = 0;
  for (const i of p.l2Indices) {
    const l2 = Buffer.alloc(cs);
    while (k < p.dataClusters.length && Math.floor(p.dataClusters[k] / l2Entries) === i) {
      const c = p.dataClusters[k];
      l2.writeBigUInt64BE(BigInt(p.dataOffset + k * cs) | FLAG_COPIED, (c % l2Entries) * 8);
      k++;
    }
    yield l2;
  }
}
