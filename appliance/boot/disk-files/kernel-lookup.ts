/**
 * Finds the kernel and initramfs a client's disk boots: partition table, then each partition's
 * file system (FAT boot/EFI partitions here; ext2/3/4 through ext4.ts), the first bootloader
 * config that names a kernel present on that file system. Read fresh at every boot, so a kernel
 * upgrade inside the client takes effect at its next boot.
 */
import { type BootEntry, CONFIG_PATHS, parseBootConfig } from './boot-config';
import { FatError, type FatFile, openFat } from './fat';
import { type ByteReader, type Partition, readPartitions } from './partitions';

/** A file system that can open files by absolute path. */
export interface ReadableFs {
  open(path: string): Promise<FatFile | undefined>;
  /** Releases what opening took (ext4's mount); files read afterwards fail. */
  close?(): Promise<void>;
}

/** Opens a partition's file system, or undefined when it is not of that kind. */
export type FsOpener = (read: ByteReader, p: Partition) => Promise<ReadableFs | undefined>;

export interface FoundKernel {
  entry: BootEntry;
  partition: Partition;
  kernel: FatFile;
  initrd: FatFile | undefined;
  /** Releases the file system the files are on (call once, after the last read). */
  close(): Promise<void>;
}

/** Limits: a kernel over 128 MiB or an initramfs over 1 GiB is not served (a crafted disk). */
export const MAX_KERNEL_BYTES = 128 * 1024 * 1024;
export const MAX_INITRD_BYTES = 1024 * 1024 * 1024;
const MAX_CONFIG_BYTES = 256 * 1024;

export class KernelNotFound extends Error {}

export const fatOpener: FsOpener = async (read, p) => {
  try {
    return await openFat(read, p.start, p.size);
  } catch (err) {
    if (err instanceof FatError) return undefined;
    throw err;
  }
};

/**
 * The boot entry and its files. Tries partitions in table order and every opener on each; the
 * first config whose kernel exists wins. Throws KernelNotFound saying what was looked at.
 */
export async function findKernel(read: ByteReader, diskBytes: number, openers: readonly FsOpener[]): Promise<FoundKernel> {
  const parts = await readPartitions(read, diskBytes);
  const tried: string[] = [];
  for (const p of parts) {
    for (const opener of openers) {
      const fs = await opener(read, p);
      if (!fs) continue;
      const found = await lookIn(fs, p, tried).catch(async (err) => {
        await fs.close?.();
        throw err;
      });
      if (found) return found;
      await fs.close?.();
    }
  }
  const where = parts.map((p) => `${p.index}:${p.type.slice(0, 8)}`).join(', ') || 'none';
  throw new KernelNotFound(
    `no kernel found on the client's disk (partitions ${where}; ${tried.join('; ') || 'no bootloader config (grub.cfg, extlinux.conf, syslinux.cfg) on a readable file system'})`,
  );
}

async function lookIn(fs: ReadableFs, p: Partition, tried: string[]): Promise<FoundKernel | undefined> {
  for (const c of CONFIG_PATHS) {
    const f = await fs.open(c.path);
    if (!f) continue;
    const text = (await f.read(0, Math.min(f.size, MAX_CONFIG_BYTES))).toString('utf8');
    const entry = parseBootConfig(c.kind, text, `partition ${p.index}${c.path}`);
    if (!entry) {
      tried.push(`partition ${p.index}${c.path}: no boot entry`);
      continue;
    }
    const kernel = await fs.open(entry.kernel);
    if (!kernel) {
      tried.push(`partition ${p.index}${c.path}: kernel ${entry.kernel} not on that partition`);
      continue;
    }
    if (kernel.size > MAX_KERNEL_BYTES) throw new KernelNotFound(`kernel ${entry.kernel} is ${kernel.size} bytes (over ${MAX_KERNEL_BYTES})`);
    const initrd = entry.initrd ? await fs.open(entry.initrd) : undefined;
    if (entry.initrd && !initrd) {
      tried.push(`partition ${p.index}${c.path}: initramfs ${entry.initrd} not on that partition`);
      continue;
    }
    if (initrd && initrd.size > MAX_INITRD_BYTES) throw new KernelNotFound(`initramfs ${entry.initrd} is ${initrd.size} bytes (over ${MAX_INITRD_BYTES})`);
    return { entry, partition: p, kernel, initrd, close: async () => fs.close?.() };
  }
  return undefined;
}
