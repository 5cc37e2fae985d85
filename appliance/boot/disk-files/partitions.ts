/**
 * Partition tables of a client's disk, read through a byte reader (no file system, no image
 * store): MBR (with extended/logical partitions) and GPT (UEFI 2.10 section 5.3). The disk is the
 * client's: every field is checked against the disk's size and counts are bounded, so a crafted
 * table yields an error or fewer partitions, never a read outside the disk or an endless walk.
 */

/** Reads `length` bytes at byte `offset` of the disk (short only past its end). */
export type ByteReader = (offset: number, length: number) => Promise<Buffer>;

export interface Partition {
  /** 1-based, in table order (MBR logical partitions from 5, as Linux numbers them). */
  index: number;
  /** Byte offset and length on the disk. */
  start: number;
  size: number;
  /** MBR: the type byte as two hex digits ("0c", "83"); GPT: the type GUID, lower case. */
  type: string;
  scheme: 'mbr' | 'gpt';
}

/** GPT type GUIDs we look into for kernels. */
export const GPT_TYPES = {
  efiSystem: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b',
  linuxData: '0fc63daf-8483-4772-8e79-3d69d8477de4',
  xbootldr: 'bc13c2ff-59e6-4262-a352-b275fd6f7172',
  microsoftBasicData: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7',
  biosBoot: '21686148-6449-6e6f-744e-656564454649',
} as const;

const SECTOR = 512;
const MAX_GPT_ENTRIES = 256;
const MAX_LOGICAL = 64;

export class PartitionTableError extends Error {}

function guid(b: Buffer, o: number): string {
  const h = (s: number, e: number, le: boolean) => {
    const part = b.subarray(o + s, o + e);
    return Buffer.from(le ? [...part].reverse() : part).toString('hex');
  };
  return `${h(0, 4, true)}-${h(4, 6, true)}-${h(6, 8, true)}-${h(8, 10, false)}-${h(10, 16, false)}`;
}

function inside(diskBytes: number, start: number, size: number): boolean {
  return start >= 0 && size > 0 && start + size <= diskBytes;
}

/** Reads the partition table of a disk of `diskBytes` bytes: GPT when a protective MBR says so. */
export async function readPartitions(read: ByteReader, diskBytes: number): Promise<Partition[]> {
  const mbr = await read(0, SECTOR);
  if (mbr.length < SECTOR || mbr.readUInt16LE(510) !== 0xaa55) throw new PartitionTableError('no partition table (no MBR signature)');
  const entries = [0, 1, 2, 3].map((i) => mbr.subarray(446 + i * 16, 462 + i * 16));
  if (entries.some((e) => e[4] === 0xee)) return readGpt(read, diskBytes);
  const out: Partition[] = [];
  for (const [i, e] of entries.entries()) {
    const type = e[4];
    if (type === 0) continue;
    const start = e.readUInt32LE(8) * SECTOR;
    const size = e.readUInt32LE(12) * SECTOR;
    if (!inside(diskBytes, start, size)) continue;
    if (type === 0x05 || type === 0x0f || type === 0x85) {
      out.push(...(await readLogical(read, diskBytes, start)));
      continue;
    }
    out.push({ index: i + 1, start, size, type: type.toString(16).padStart(2, '0'), scheme: 'mbr' });
  }
  return out;
}

/** The EBR chain of an extended partition: each EBR's links are relative to the extended one's start. */
async function readLogical(read: ByteReader, diskBytes: number, extStart: number): Promise<Partition[]> {
  const out: Partition[] = [];
  let ebr = extStart;
  const seen = new Set<number>();
  while (out.length < MAX_LOGICAL && !seen.has(ebr)) {
    seen.add(ebr);
    const b = await read(ebr, SECTOR);
    if (b.length < SECTOR || b.readUInt16LE(510) !== 0xaa55) break;
    const e = b.subarray(446, 462);
    const start = ebr + e.readUInt32LE(8) * SECTOR;
    const size = e.readUInt32LE(12) * SECTOR;
    if (e[4] !== 0 && inside(diskBytes, start, size)) out.push({ index: 5 + out.length, start, size, type: e[4].toString(16).padStart(2, '0'), scheme: 'mbr' });
    const next = b.subarray(462, 478);
    if (next[4] === 0) break;
    ebr = extStart + next.readUInt32LE(8) * SECTOR;
    if (ebr >= diskBytes) break;
  }
  return out;
}

async function readGpt(read: ByteReader, diskBytes: number): Promise<Partition[]> {
  const h = await read(SECTOR, SECTOR);
  if (h.length < 92 || h.toString('latin1', 0, 8) !== 'EFI PART') throw new PartitionTableError('protective MBR without a GPT header');
  const entriesLba = Number(h.readBigUInt64LE(72));
  const count = h.readUInt32LE(80);
  const entrySize = h.readUInt32LE(84);
  if (entrySize < 128 || entrySize > 1024 || entrySize % 8 !== 0) throw new PartitionTableError(`GPT entry size ${entrySize} is not valid`);
  const n = Math.min(count, MAX_GPT_ENTRIES);
  const at = entriesLba * SECTOR;
  if (at + n * entrySize > diskBytes) throw new PartitionTableError('GPT entries lie outside the disk');
  const table = await read(at, n * entrySize);
  const out: Partition[] = [];
  for (let i = 0; i < n && (i + 1) * entrySize <= table.length; i++) {
    const o = i * entrySize;
    if (table.subarray(o, o + 16).every((x) => x === 0)) continue;
    const first = Number(table.readBigUInt64LE(o + 32));
    const last = Number(table.readBigUInt64LE(o + 40));
    const start = first * SECTOR;
    const size = (last - first + 1) * SECTOR;
    if (last < first || !inside(diskBytes, start, size)) continue;
    out.push({ index: i + 1, start, size, type: guid(table, o), scheme: 'gpt' });
  }
  return out;
}
