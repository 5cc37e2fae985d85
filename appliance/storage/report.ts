/**
 * What the storage page and GET /api/storage show: the disks attached to the box, which
 * filesystem holds the data directory, and warnings when it is nearly full or gone. Pure: it
 * takes systeminformation's output (blockDevices(), fsSize()) and the resolved data directory,
 * so tests feed fixtures captured on real boxes.
 */

/** The fields we use from systeminformation's blockDevices() (one row per disk/partition, from lsblk). */
export interface BlockDeviceRow {
  name: string;
  /** 'disk' | 'part' | 'loop' | 'rom' | ... (lsblk TYPE) */
  type: string;
  fsType: string;
  mount: string;
  size: number;
  model: string;
  serial: string;
  label: string;
  uuid: string;
  removable: boolean;
  /** lsblk TRAN: 'usb', 'sata', 'nvme', 'mmc', '' ... */
  protocol: string;
  device?: string;
}

/** The fields we use from systeminformation's fsSize() (one row per mounted filesystem, from df). */
export interface FsSizeRow {
  fs: string;
  type: string;
  size: number;
  used: number;
  /** Bytes an unprivileged writer can still use (df "Avail": excludes ext4's reserved blocks). */
  available: number;
  mount: string;
  rw: boolean | null;
}

/** One partition (or a filesystem written straight onto a whole disk). */
export interface PartitionEntry {
  device: string;
  fsType: string;
  label: string;
  uuid: string;
  sizeBytes: number;
  /** '' when not mounted. */
  mount: string;
  /** From df when mounted; null otherwise. */
  usedBytes: number | null;
  freeBytes: number | null;
  holdsDataDir: boolean;
}

/** One physical (or loop) disk with its partitions. */
export interface DiskEntry {
  device: string;
  name: string;
  model: string;
  serial: string;
  sizeBytes: number;
  removable: boolean;
  /** Attached over USB (lsblk TRAN=usb): the appliance's data disk is normally one. */
  usb: boolean;
  transport: string;
  /** Holds the root filesystem (the SD card on a Raspberry Pi): never offered for preparation. */
  system: boolean;
  /** Has at least one mounted filesystem. */
  inUse: boolean;
  holdsDataDir: boolean;
  partitions: PartitionEntry[];
}

export type DataDirState = 'ok' | 'low' | 'missing';

/** Where the data directory lives, as the dashboard headline shows it. */
export interface DataDirEntry {
  /** As configured. */
  path: string;
  /** realpath(path), or null when the directory does not exist. */
  realPath: string | null;
  /** Mount point of the filesystem holding it (longest prefix of realPath), or null. */
  mount: string | null;
  /** Filesystem source, e.g. /dev/sda1. */
  source: string | null;
  fsType: string | null;
  sizeBytes: number | null;
  freeBytes: number | null;
  /** Whole disk holding it, e.g. /dev/sda, when known. */
  disk: string | null;
  /** On the same filesystem as / (the SD card on a Pi): images then wear the system card. */
  onRootFilesystem: boolean;
  state: DataDirState;
}

export type WarningLevel = 'warning' | 'critical' | 'info';

/** A condition the dashboard shows as a banner; code is stable for programs. */
export interface StorageWarning {
  code: 'DATA_DIR_MISSING' | 'DATA_DIR_NOT_MOUNTED' | 'DATA_DIR_LOW_SPACE' | 'DATA_DIR_READ_ONLY' | 'DATA_DIR_ON_SYSTEM_DISK';
  level: WarningLevel;
  message: string;
}

/** The body of GET /api/storage. */
export interface StorageReport {
  dataDir: DataDirEntry;
  disks: DiskEntry[];
  warnings: StorageWarning[];
  /** When the underlying facts were collected (ms since the epoch). */
  collectedAt: number;
}

export interface StorageInput {
  dataDir: string;
  /** realpath(dataDir), or null when it does not exist (the caller resolves it: I/O). */
  realDataDir: string | null;
  blockDevices: BlockDeviceRow[];
  fsSizes: FsSizeRow[];
  collectedAt: number;
  /** Thresholds; defaults: below 10 % or below 1 GiB free is "low". */
  lowFreeFraction?: number;
  lowFreeBytes?: number;
  /**
   * The mount point the data directory is meant to be on (the box's USB disk, /srv/netboot).
   * When set and the directory resolves onto another filesystem, the disk is not mounted.
   */
  expectedMount?: string;
}

const GiB = 1024 ** 3;

/** True when `path` is `mount` or below it (on a path-component boundary). */
export function isUnder(path: string, mount: string): boolean {
  if (mount === '/') return path.startsWith('/');
  return path === mount || path.startsWith(`${mount}/`);
}

/** The mounted filesystem holding `path`: the longest mount point that is a prefix of it. */
export function filesystemFor(path: string, fsSizes: FsSizeRow[]): FsSizeRow | undefined {
  let best: FsSizeRow | undefined;
  for (const f of fsSizes) {
    if (isUnder(path, f.mount) && (!best || f.mount.length > best.mount.length)) best = f;
  }
  return best;
}

const devPath = (row: BlockDeviceRow) => row.device || `/dev/${row.name}`;

/**
 * Groups lsblk rows into disks with partitions. systeminformation flattens lsblk's tree and
 * drops the parent name, so a partition is attached to the disk whose name prefixes it
 * (sda → sda1, mmcblk0 → mmcblk0p2, nvme0n1 → nvme0n1p1, loop3 → loop3p1).
 */
function groupDisks(rows: BlockDeviceRow[]): { disk: BlockDeviceRow; parts: BlockDeviceRow[] }[] {
  const disks = rows.filter((r) => r.type === 'disk' || r.type === 'loop');
  const out = disks.map((disk) => ({ disk, parts: [] as BlockDeviceRow[] }));
  for (const r of rows) {
    if (r.type !== 'part') continue;
    const parent = out
      .filter((d) => new RegExp(`^${d.disk.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}p?\\d+$`).test(r.name))
      .sort((a, b) => b.disk.name.length - a.disk.name.length)[0];
    parent?.parts.push(r);
  }
  return out;
}

/** Builds the storage report: disks, the data directory's filesystem, and warnings. */
export function buildStorageReport(input: StorageInput): StorageReport {
  const lowFraction = input.lowFreeFraction ?? 0.1;
  const lowBytes = input.lowFreeBytes ?? GiB;
  const fs = input.realDataDir ? filesystemFor(input.realDataDir, input.fsSizes) : undefined;
  const rootFs = input.fsSizes.find((f) => f.mount === '/');

  const disks: DiskEntry[] = groupDisks(input.blockDevices)
    // zram swap, empty card readers and loop devices with nothing attached are noise here.
    .filter(({ disk, parts }) => disk.size > 0 && !(disk.type === 'loop' && parts.length === 0 && !disk.fsType))
    .map(({ disk, parts }) => {
      // A filesystem written to the whole disk (no partition table) shows as the disk row itself.
      const members = parts.length ? parts : disk.fsType ? [disk] : [];
      const partitions: PartitionEntry[] = members.map((p) => {
        const df = p.mount ? input.fsSizes.find((f) => f.mount === p.mount) : undefined;
        return {
          device: devPath(p),
          fsType: p.fsType,
          label: p.label,
          uuid: p.uuid,
          sizeBytes: p.size,
          mount: p.mount,
          usedBytes: df ? df.used : null,
          freeBytes: df ? df.available : null,
          holdsDataDir: !!fs && !!p.mount && p.mount === fs.mount,
        };
      });
      const mounts = [disk.mount, ...parts.map((p) => p.mount)].filter(Boolean);
      return {
        device: devPath(disk),
        name: disk.name,
        model: disk.model.trim(),
        serial: disk.serial,
        sizeBytes: disk.size,
        removable: disk.removable,
        usb: disk.protocol === 'usb',
        transport: disk.protocol,
        system: mounts.includes('/'),
        inUse: mounts.length > 0,
        holdsDataDir: partitions.some((p) => p.holdsDataDir) || (!!fs && mounts.includes(fs.mount)),
        partitions,
      };
    });

  const holder = disks.find((d) => d.holdsDataDir);
  const onRoot = !!fs && !!rootFs && fs.mount === rootFs.mount;
  const dataDir: DataDirEntry = {
    path: input.dataDir,
    realPath: input.realDataDir,
    mount: fs?.mount ?? null,
    source: fs?.fs ?? null,
    fsType: fs?.type ?? null,
    sizeBytes: fs?.size ?? null,
    freeBytes: fs?.available ?? null,
    disk: holder?.device ?? null,
    onRootFilesystem: onRoot,
    state: 'ok',
  };

  const warnings: StorageWarning[] = [];
  // The directory resolves onto a filesystem mounted above the expected mount point (usually /):
  // the USB disk is absent and writes would land on the SD card.
  const notMounted = !!input.expectedMount && !!fs && !isUnder(fs.mount, input.expectedMount);
  if (!input.realDataDir || !fs) {
    dataDir.state = 'missing';
    warnings.push({
      code: 'DATA_DIR_MISSING',
      level: 'critical',
      message: `The data directory ${input.dataDir} is gone: the disk holding it is unplugged or not mounted. Clients cannot boot their disks.`,
    });
  } else if (notMounted) {
    dataDir.state = 'missing';
    warnings.push({
      code: 'DATA_DIR_NOT_MOUNTED',
      level: 'critical',
      message: `Nothing is mounted at ${input.expectedMount}: ${input.dataDir} is on ${fs.mount} (${fs.fs}) instead. Plug in the disk labelled NETBOOT.`,
    });
  } else {
    const free = fs.available;
    if (fs.size > 0 && (free < lowBytes || free / fs.size < lowFraction)) {
      dataDir.state = 'low';
      const critical = free < lowBytes / 4 || free / fs.size < lowFraction / 4;
      warnings.push({
        code: 'DATA_DIR_LOW_SPACE',
        level: critical ? 'critical' : 'warning',
        message: `${fs.mount} has ${formatBytes(free)} free of ${formatBytes(fs.size)} (${((free / fs.size) * 100).toFixed(1)} %). Delete snapshots or clients, or move to a larger disk.`,
      });
    }
    if (fs.rw === false) {
      warnings.push({
        code: 'DATA_DIR_READ_ONLY',
        level: 'critical',
        message: `${fs.mount} is mounted read-only (the kernel does this after disk errors): clients cannot write.`,
      });
    }
    if (onRoot && !input.expectedMount) {
      warnings.push({
        code: 'DATA_DIR_ON_SYSTEM_DISK',
        level: 'info',
        message: `${input.dataDir} is on the system disk. On a Raspberry Pi, put images on a USB disk: SD cards wear out under client writes.`,
      });
    }
  }
  return { dataDir, disks, warnings, collectedAt: input.collectedAt };
}

/** "1.5 GiB": binary units, one decimal, for messages. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}
