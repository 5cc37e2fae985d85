/**
 * Which disk formats an import accepts, told by their magic bytes (pure: no I/O). We decide the
 * format ourselves and always name it to qemu-img: letting qemu-img probe would let a file choose
 * a format that reads other files (a vmdk descriptor's extents, a backing file).
 */

/** Formats qemu-img may read for an import: each keeps its data in the one file. */
export const QEMU_FORMATS = ['qcow2', 'qed', 'vmdk', 'vdi', 'vhdx', 'vpc'] as const;
export type QemuFormat = (typeof QEMU_FORMATS)[number];

/**
 * What the first bytes say: 'raw' when nothing is recognised (raw is read natively, so an odd
 * file imports as its own bytes and nothing else), or a refused kind ('vmdk-descriptor' names
 * extent files; 'luks' and 'parallels' are not imported).
 */
export type DetectedFormat = 'raw' | QemuFormat | 'vmdk-descriptor' | 'luks' | 'parallels';

/** How many leading bytes detectFormat looks at. */
export const DETECT_BYTES = 4096;

const startsWith = (b: Buffer, s: string) => b.length >= s.length && b.toString('latin1', 0, s.length) === s;

/** The format of an image from its first DETECT_BYTES bytes (magic numbers as qemu's drivers define them). */
export function detectFormat(head: Buffer): DetectedFormat {
  if (startsWith(head, 'QFI\xfb')) return 'qcow2';
  if (startsWith(head, 'QED\0')) return 'qed';
  if (startsWith(head, 'KDMV') || startsWith(head, 'COWD')) return 'vmdk';
  if (startsWith(head, 'vhdxfile')) return 'vhdx';
  if (startsWith(head, 'conectix')) return 'vpc';
  if (head.length >= 0x44 && head.readUInt32LE(0x40) === 0xbeda107f) return 'vdi';
  if (startsWith(head, 'LUKS\xba\xbe')) return 'luks';
  if (startsWith(head, 'WithoutFreeSpace') || startsWith(head, 'WithouFreSpacExt')) return 'parallels';
  if (isVmdkDescriptor(head)) return 'vmdk-descriptor';
  return 'raw';
}

/** A text vmdk descriptor: the disk's data lives in the extent files it names. */
function isVmdkDescriptor(head: Buffer): boolean {
  const text = head.toString('latin1');
  return /^# Disk DescriptorFile/.test(text) || (/^\s*createType\s*=/m.test(text) && /^\s*(RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"/m.test(text));
}

/** The file names in a vmdk descriptor's extent lines (`RW 2048 FLAT "disk-flat.vmdk" 0`). */
export function vmdkExtentFiles(descriptor: string): string[] {
  return [...descriptor.matchAll(/^\s*(?:RW|RDONLY|NOACCESS)\s+\d+\s+\w+\s+"([^"]*)"/gm)].map((m) => m[1]);
}

/**
 * A monolithic sparse vmdk with capacity 0 is read by qemu as a descriptor embedded in the file,
 * extents and all: refused like a descriptor file. `head` starts with "KDMV".
 */
export function vmdkEmbedsDescriptor(head: Buffer): boolean {
  return startsWith(head, 'KDMV') && head.length >= 20 && head.readBigUInt64LE(12) === 0n;
}

/** The parts of `qemu-img info --output=json` that name files. */
export interface QemuInfo {
  format?: string;
  filename?: string;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'format-specific'?: { type?: string; data?: { 'data-file'?: string; 'create-type'?: string; extents?: { filename?: string }[] } };
}

/** vmdk create types whose data is all in the one file. */
const VMDK_ONE_FILE = new Set(['monolithicSparse', 'streamOptimized']);

/**
 * Why qemu-img's view of the image (opened as `self`) refers to another file, or null when it does
 * not: a backing file, an external data file, a vmdk extent elsewhere or a multi-file vmdk type.
 */
export function qemuInfoReference(info: QemuInfo, format: QemuFormat, self: string): string | null {
  if (info.format !== format) return `${format} image read as ${String(info.format)} refused`;
  const backing = info['backing-filename'] ?? info['full-backing-filename'];
  if (backing !== undefined) return `${format} backing file ${backing} refused`;
  const data = info['format-specific']?.data;
  if (data?.['data-file'] !== undefined) return `${format} external data file ${data['data-file']} refused`;
  if (format === 'vmdk') {
    for (const e of data?.extents ?? []) if (e.filename !== self) return `vmdk extent file ${String(e.filename)} refused`;
    const type = data?.['create-type'];
    if (type !== undefined && !VMDK_ONE_FILE.has(type)) return `vmdk of type ${type} refused (its data lives in other files)`;
  }
  return null;
}
