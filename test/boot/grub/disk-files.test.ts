/**
 * Issue #15: the GRUB road reads the kernel, initramfs and command line from the client's own
 * disk. Disks are built with the real tools (sfdisk, mkfs.vfat, mcopy, mkfs.ext4) in both
 * partition-table kinds and the FAT sizes, then read back through partitions.ts, fat.ts,
 * ext4.ts and kernel-lookup.ts; crafted tables and chains end in errors, not hangs or reads
 * outside the disk.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ext4Opener } from '../../../appliance/boot/disk-files/ext4';
import { fatOpener, findKernel, KernelNotFound } from '../../../appliance/boot/disk-files/kernel-lookup';
import { type ByteReader, GPT_TYPES, readPartitions } from '../../../appliance/boot/disk-files/partitions';
import { parseDirectory } from '../../../appliance/boot/disk-files/fat';

const have = (t: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore', env: { ...process.env, PATH: `${process.env.PATH}:/sbin:/usr/sbin` } });
    return true;
  } catch {
    return false;
  }
};
const tools = ['sfdisk', 'mkfs.vfat', 'mcopy', 'mkfs.ext4'].filter((t) => !have(t));
const suite = tools.length ? describe.skip : describe;
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { env: { ...process.env, PATH: `${process.env.PATH}:/sbin:/usr/sbin` } });

function fileReader(path: string): { read: ByteReader; size: number; reads: Array<[number, number]> } {
  const fd = openSync(path, 'r');
  const size = statSync(path).size;
  const reads: Array<[number, number]> = [];
  return {
    size,
    reads,
    read: async (offset, length) => {
      reads.push([offset, length]);
      expect(offset + Math.min(length, size - offset)).toBeLessThanOrEqual(size);
      const b = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      readSync(fd, b, 0, b.length, offset);
      return b;
    },
  };
}

const kernelBytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + 3) & 0xff));
const initrdBytes = Buffer.from(Array.from({ length: 70_001 }, (_, i) => (i * 13) & 0xff));

/** A disk with a FAT boot partition (fatBits) holding a syslinux.cfg and an ext4 root, in `label` (dos|gpt). */
function fatDisk(dir: string, label: 'dos' | 'gpt', fatBits: 12 | 16 | 32): string {
  const mib = fatBits === 32 ? 40 : fatBits === 16 ? 16 : 2;
  const part = join(dir, `boot-${label}-${fatBits}.part`);
  rmSync(part, { force: true });
  sh('mkfs.vfat', ['-F', String(fatBits), '-n', 'BOOT', '-C', part, String(mib * 1024)]);
  writeFileSync(join(dir, 'vmlinuz-6.1.0-test'), kernelBytes);
  writeFileSync(join(dir, 'initrd.img-6.1.0-test'), initrdBytes);
  writeFileSync(
    join(dir, 'syslinux.cfg'),
    'DEFAULT linux\nPROMPT 0\nLABEL rescue\n  KERNEL /other\nLABEL linux\n  KERNEL /boot/vmlinuz-6.1.0-test\n  APPEND console=ttyS0 initrd=/boot/initrd.img-6.1.0-test quiet root=/dev/sda2\n',
  );
  sh('mmd', ['-i', part, '::/boot']);
  sh('mcopy', ['-i', part, join(dir, 'vmlinuz-6.1.0-test'), join(dir, 'initrd.img-6.1.0-test'), '::/boot/']);
  sh('mcopy', ['-i', part, join(dir, 'syslinux.cfg'), '::/']);
  const img = join(dir, `disk-${label}-${fatBits}.img`);
  const total = 2048 + mib * 2048 + 2048 + 34;
  writeFileSync(img, Buffer.alloc(0));
  sh('truncate', ['-s', String(total * 512), img]);
  const type = label === 'gpt' ? GPT_TYPES.efiSystem : fatBits === 32 ? 'c' : 'e';
  execFileSync('sfdisk', ['-q', img], {
    input: `label: ${label}\nstart=2048, size=${mib * 2048}, type=${type}\nstart=${2048 + mib * 2048}, size=1024, type=${label === 'gpt' ? GPT_TYPES.linuxData : '83'}\n`,
  });
  sh('dd', [`if=${part}`, `of=${img}`, 'bs=512', 'seek=2048', 'conv=notrunc', 'status=none']);
  return img;
}

/** A GPT disk whose only Linux partition is ext4 with /boot and Debian's grub.cfg inside (no separate /boot). */
function ext4Disk(dir: string, label: 'dos' | 'gpt'): string {
  const root = join(dir, `root-${label}`);
  sh('mkdir', ['-p', join(root, 'boot/grub')]);
  writeFileSync(join(root, 'boot/vmlinuz-6.1.0-13-amd64'), kernelBytes);
  writeFileSync(join(root, 'boot/initrd.img-6.1.0-13-amd64'), initrdBytes);
  writeFileSync(
    join(root, 'boot/grub/grub.cfg'),
    [
      "set default='0'",
      "menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple' {",
      '\tload_video',
      '\tsearch --no-floppy --fs-uuid --set=root 1234',
      "\techo\t'Loading Linux 6.1.0-13-amd64 ...'",
      '\tlinux\t/boot/vmlinuz-6.1.0-13-amd64 root=UUID=1234 ro console=ttyS0 quiet',
      '\tinitrd\t/boot/initrd.img-6.1.0-13-amd64',
      '}',
      '',
    ].join('\n'),
  );
  const part = join(dir, `root-${label}.part`);
  sh('mkfs.ext4', ['-q', '-F', '-d', root, part, '16M']);
  const img = join(dir, `ext4-${label}.img`);
  sh('truncate', ['-s', String((2048 + 16 * 2048 + 34) * 512), img]);
  execFileSync('sfdisk', ['-q', img], { input: `label: ${label}\nstart=2048, size=${16 * 2048}, type=${label === 'gpt' ? GPT_TYPES.linuxData : '83'}\n` });
  sh('dd', [`if=${part}`, `of=${img}`, 'bs=512', 'seek=2048', 'conv=notrunc', 'status=none']);
  return img;
}

suite(`kernel lookup on real disk images${tools.length ? ` (skipped: missing ${tools.join(', ')})` : ''}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'nb-diskfiles-'));

  for (const label of ['dos', 'gpt'] as const) {
    for (const bits of [12, 16, 32] as const) {
      it(`${label} + FAT${bits}: syslinux.cfg's default label, kernel and initramfs bytes read back`, async () => {
        const r = fileReader(fatDisk(dir, label, bits));
        const parts = await readPartitions(r.read, r.size);
        expect(parts.map((p) => p.scheme)).toEqual([label === 'dos' ? 'mbr' : 'gpt', label === 'dos' ? 'mbr' : 'gpt']);
        expect(parts[0]!.start).toBe(2048 * 512);
        const found = await findKernel(r.read, r.size, [fatOpener, ext4Opener]);
        expect(found.entry).toEqual({
          kernel: '/boot/vmlinuz-6.1.0-test',
          initrd: '/boot/initrd.img-6.1.0-test',
          cmdline: 'console=ttyS0 quiet root=/dev/sda2',
          source: 'partition 1/syslinux.cfg',
        });
        expect(found.kernel.size).toBe(kernelBytes.length);
        expect(Buffer.compare(await found.kernel.read(0, kernelBytes.length), kernelBytes)).toBe(0);
        // A read in the middle, across cluster boundaries, as TFTP asks for blocks.
        expect(Buffer.compare(await found.kernel.read(12345, 8192), kernelBytes.subarray(12345, 12345 + 8192))).toBe(0);
        expect(Buffer.compare(await found.initrd!.read(0, 1 << 20), initrdBytes)).toBe(0);
      });
    }
    it(`${label} + ext4 root with /boot/grub/grub.cfg (Debian's layout): the default entry's kernel, initrd and command line`, async () => {
      const r = fileReader(ext4Disk(dir, label));
      const found = await findKernel(r.read, r.size, [fatOpener, ext4Opener]);
      expect(found.entry).toEqual({
        kernel: '/boot/vmlinuz-6.1.0-13-amd64',
        initrd: '/boot/initrd.img-6.1.0-13-amd64',
        cmdline: 'root=UUID=1234 ro console=ttyS0 quiet',
        source: 'partition 1/boot/grub/grub.cfg',
      });
      expect(Buffer.compare(await found.kernel.read(0, kernelBytes.length), kernelBytes)).toBe(0);
      expect(Buffer.compare(await found.initrd!.read(100, 5000), initrdBytes.subarray(100, 5100))).toBe(0);
    });
  }

  it('a disk without a bootloader config says what it looked at', async () => {
    const img = join(dir, 'empty.img');
    sh('truncate', ['-s', `${4 << 20}`, img]);
    execFileSync('sfdisk', ['-q', img], { input: 'label: gpt\nstart=2048, size=4096, type=L\n' });
    const r = fileReader(img);
    await expect(findKernel(r.read, r.size, [fatOpener, ext4Opener])).rejects.toThrow(KernelNotFound);
    await expect(findKernel(r.read, r.size, [fatOpener, ext4Opener])).rejects.toThrow(/partitions 1:0fc63daf/);
  });

  it('a crafted table: GPT entries past the end of the disk are refused; a FAT chain that loops ends in an error', async () => {
    const img = fatDisk(dir, 'gpt', 16);
    const bytes = readFileSync(img);
    // Point the GPT's entry array far past the disk.
    const gpt = Buffer.from(bytes);
    gpt.writeBigUInt64LE(1n << 40n, 512 + 72);
    const g = async (o: number, l: number) => gpt.subarray(o, o + l);
    await expect(readPartitions(g, gpt.length)).rejects.toThrow(/outside the disk/);
    // Make the kernel's second cluster point back at its first: the chain ends short, an error.
    const r = fileReader(img);
    const found = await findKernel(r.read, r.size, [fatOpener]);
    expect(found.kernel.size).toBe(kernelBytes.length);
    const bs = bytes.readUInt16LE(2048 * 512 + 11);
    const fatStart = 2048 * 512 + bytes.readUInt16LE(2048 * 512 + 14) * bs;
    // The kernel is the first file written after the directories: find its first cluster in /boot.
    const looped = Buffer.from(bytes);
    for (let c = 2; c < 4000; c++) {
      const next = looped.readUInt16LE(fatStart + c * 2);
      if (next === c + 1) {
        looped.writeUInt16LE(c, fatStart + (c + 1) * 2); // c+1 -> c: a loop
        break;
      }
    }
    const l = async (o: number, len: number) => looped.subarray(o, o + len);
    await expect(findKernel(l, looped.length, [fatOpener])).rejects.toThrow(/chain shorter than the file/);
  });
});

describe('FAT directory records', () => {
  it('long names span several records in reverse order; deleted entries and volume labels are skipped', () => {
    const rec = (bytes: number[]) => Buffer.from([...bytes, ...Array(32 - bytes.length).fill(0)]);
    const lfnPart = (seq: number, text: string) => {
      const b = Buffer.alloc(32, 0xff);
      b[0] = seq;
      b[11] = 0x0f;
      b[12] = 0;
      b[13] = 0;
      b.writeUInt16LE(0, 26);
      const slots = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
      for (let i = 0; i < text.length; i++) b.writeUInt16LE(text.charCodeAt(i), slots[i]!);
      if (text.length < 13) b.writeUInt16LE(0, slots[text.length]!);
      return b;
    };
    const short = (name: string, attr: number, cluster: number, size: number) => {
      const b = Buffer.alloc(32);
      b.write(name.padEnd(11, ' '), 0, 'latin1');
      b[11] = attr;
      b.writeUInt16LE(cluster, 26);
      b.writeUInt32LE(size, 28);
      return b;
    };
    const raw = Buffer.concat([
      short('BOOT       ', 0x08, 0, 0),
      Buffer.from([0xe5, ...Buffer.alloc(31)]),
      lfnPart(0x42, '.1.0-test'),
      lfnPart(0x01, 'vmlinuz-6'),
      short('VMLINU~1   ', 0x20, 5, 1234),
      short('EFI        ', 0x10, 9, 0),
      rec([0]),
      short('AFTEREND   ', 0x20, 7, 1),
    ]);
    const entries = parseDirectory(raw);
    expect(entries.map((e) => [e.name, e.isDir, e.firstCluster, e.size])).toEqual([
      ['vmlinuz-6.1.0-test', false, 5, 1234],
      ['EFI', true, 9, 0],
    ]);
  });
});
