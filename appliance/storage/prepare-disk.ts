import { execFile } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import { ApiError } from '../core/errors';

const run = promisify(execFile);

/** The label the box's mount rule looks for (os-overlay: LABEL=NETBOOT → /srv/netboot). */
export const NETBOOT_LABEL = 'NETBOOT';

export interface PrepareDiskRequest {
  /** Whole disk to erase, e.g. "/dev/sda" (a loop device in tests). */
  device: string;
  /** Must equal basename(device) ("sda"): the user typed the disk's name to confirm. */
  confirm: string;
  /** Owner of the new filesystem's root directory (the `netboot` service user). */
  owner?: { uid: number; gid: number };
}

export interface PreparedDisk {
  device: string;
  partition: string;
  label: string;
  fsType: 'ext4';
  uuid: string;
  sizeBytes: number;
}

interface LsblkNode {
  name: string;
  path: string;
  type: string;
  mountpoints?: (string | null)[];
  children?: LsblkNode[];
}

/**
 * Erases a whole disk and makes it the appliance's data disk: one GPT partition spanning it and
 * an ext4 filesystem labelled NETBOOT, which the box mounts at /srv/netboot. Refuses unless the
 * user typed the disk's name, the disk is not the system disk and nothing on it is mounted or
 * held open by the kernel (RAID, LVM, swap). Needs root (partition re-read is CAP_SYS_ADMIN),
 * so the hardened service cannot run it: the CLI does, as root (docs/raspberry-pi.md).
 */
export async function prepareDisk(req: PrepareDiskRequest): Promise<PreparedDisk> {
  if (!/^\/dev\/[A-Za-z0-9._-]+$/.test(req.device)) {
    throw new ApiError('DISK_INVALID', 400, `${req.device} is not a device path like /dev/sda`);
  }
  if (req.confirm !== basename(req.device)) {
    throw new ApiError('DISK_CONFIRMATION_MISMATCH', 400, `Type the disk's name "${basename(req.device)}" to confirm that everything on it may be erased`);
  }
  let device: string;
  try {
    device = realpathSync(req.device);
    if (!statSync(device).isBlockDevice()) throw new Error('not a block device');
  } catch {
    throw new ApiError('DISK_NOT_FOUND', 404, `${req.device} is not a block device on this machine`);
  }

  const tree = await lsblk(device);
  if (tree.type !== 'disk' && tree.type !== 'loop') {
    throw new ApiError('DISK_NOT_WHOLE', 400, `${req.device} is a ${tree.type}, not a whole disk`);
  }
  const mounted = flatten(tree).flatMap((n) => (n.mountpoints ?? []).filter((m): m is string => !!m).map((m) => `${n.path} on ${m}`));
  const rootSource = await findmnt('/');
  const holdsRoot = flatten(tree).some((n) => n.path === rootSource) || mounted.some((m) => m.endsWith(' on /'));
  if (holdsRoot) {
    throw new ApiError('DISK_IS_SYSTEM', 409, `${req.device} holds the root filesystem: refusing to erase the system disk`);
  }
  if (mounted.length) {
    throw new ApiError('DISK_IN_USE', 409, `${req.device} has mounted filesystems (${mounted.join(', ')}): unmount them first`);
  }
  // O_EXCL on a block device fails with EBUSY while the kernel holds it (mounted, RAID member,
  // LVM PV, swap): a second guard that does not depend on lsblk seeing everything.
  try {
    closeSync(openSync(device, constants.O_RDONLY | constants.O_EXCL));
  } catch (err) {
    throw new ApiError('DISK_IN_USE', 409, `${req.device} is in use by the kernel (${(err as NodeJS.ErrnoException).code})`);
  }

  // Old RAID/LVM/filesystem signatures at the ends of the disk would confuse blkid and udev.
  await run('wipefs', ['--all', '--quiet', device]);
  // One Linux-filesystem partition over the whole disk, 1 MiB aligned (sfdisk's default).
  await runWithInput('sfdisk', ['--quiet', '--wipe', 'always', device], `label: gpt\ntype=L, name="${NETBOOT_LABEL}"\n`);
  const partition = await partitionNode(device);
  const ext4Args = [
    '-F',
    '-q',
    '-L',
    NETBOOT_LABEL,
    // No root-reserved blocks: the service user owns the disk and only it writes there.
    '-m',
    '0',
  ];
  if (req.owner) ext4Args.push('-E', `root_owner=${req.owner.uid}:${req.owner.gid}`);
  await run('mkfs.ext4', [...ext4Args, partition], { timeout: 10 * 60_000 });
  const { stdout: uuid } = await run('blkid', ['-s', 'UUID', '-o', 'value', partition]);
  const { stdout: size } = await run('blockdev', ['--getsize64', partition]);
  return { device: req.device, partition, label: NETBOOT_LABEL, fsType: 'ext4', uuid: uuid.trim(), sizeBytes: Number(size.trim()) };
}

async function lsblk(device: string): Promise<LsblkNode> {
  const { stdout } = await run('lsblk', ['--json', '--output', 'NAME,PATH,TYPE,MOUNTPOINTS', device]);
  const parsed = JSON.parse(stdout) as { blockdevices: LsblkNode[] };
  const top = parsed.blockdevices[0];
  if (!top) throw new ApiError('DISK_NOT_FOUND', 404, `lsblk does not know ${device}`);
  return top;
}

function flatten(n: LsblkNode): LsblkNode[] {
  return [n, ...(n.children ?? []).flatMap(flatten)];
}

async function findmnt(target: string): Promise<string> {
  try {
    const { stdout } = await run('findmnt', ['--noheadings', '--output', 'SOURCE', '--target', target]);
    const src = stdout.trim();
    return src.startsWith('/dev/') ? realpathSync(src) : src;
  } catch {
    return '';
  }
}

function runWithInput(cmd: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, (err, _stdout, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve()));
    child.stdin!.end(input);
  });
}

/**
 * The first partition's device node. The kernel names it sda1, mmcblk0p1, loop0p1 (a "p" after
 * a trailing digit). udev creates the node; where none runs (containers, this CI), devtmpfs
 * may not either, so after a bounded wait we create it from sysfs's major:minor.
 */
async function partitionNode(disk: string): Promise<string> {
  const name = basename(disk);
  const partName = /\d$/.test(name) ? `${name}p1` : `${name}1`;
  const node = `/dev/${partName}`;
  await run('udevadm', ['settle', '--timeout=5']).catch(() => undefined);
  for (let i = 0; i < 20; i++) {
    if (existsSync(node)) return node;
    if (i === 2) await run('partx', ['--add', disk]).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
  }
  const sys = `/sys/class/block/${partName}/dev`;
  if (!existsSync(sys)) throw new Error(`the kernel did not register ${partName} after partitioning ${disk}`);
  const [major, minor] = readFileSync(sys, 'utf8').trim().split(':');
  await run('mknod', ['--mode=0660', node, 'b', major!, minor!]);
  return node;
}
