/** What the store's calls answer: plain data, shared by both backends and the API. */

/** A golden image (read-only). */
export interface ImageInfo {
  id: number;
  name: string;
  sizeBytes: number;
  /** Bytes of chunk space this image's own layers hold. */
  usedBytes: number;
  createdAt: number;
  /** Where it came from: the imported file's name, or "snapshot:DISK/SNAP" when promoted. */
  source: string;
  /** Disks based on it. */
  disks: number;
}

/** A client disk: a copy-on-write child of one golden image. */
export interface DiskInfo {
  id: number;
  name: string;
  /** The golden image it is based on (null when that image was deleted after a promote/copy). */
  image: string | null;
  sizeBytes: number;
  /** Bytes written since the base image (the disk's own layers, snapshots' included). */
  usedBytes: number;
  createdAt: number;
  snapshots: number;
  open: boolean;
}

/** A read-only point in time of a disk. */
export interface SnapshotInfo {
  id: number;
  disk: string;
  name: string;
  sizeBytes: number;
  /** Bytes written between the previous point and this one (space this snapshot holds alone). */
  usedBytes: number;
  createdAt: number;
  image: string | null;
}

/** Space, in bytes. capacityBytes is what the store may grow to (limit or filesystem minus reserve). */
export interface StoreUsage {
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  allocatedBytes: number;
  segments: number;
  segmentBytes: number;
  chunkBytes: number;
}

/**
 * Why the store is degraded: an fdatasync of segment data failed, so writes acknowledged to
 * clients were lost (README.md "A failed fdatasync"). Persisted until check --repair clears it.
 */
export interface DegradedInfo {
  /** When the first failure happened (ms since the epoch), and the latest one. */
  since: number;
  last: number;
  /** How many fdatasync calls failed. */
  failures: number;
  /** The latest failure's error, e.g. "EIO: i/o error, fdatasync". */
  reason: string;
  /** Segment files whose sync failed. */
  segments: number[];
  /** Disks that lost writes (they failed every I/O until reopened). */
  disks: string[];
}

/** store.health(): 'degraded' once a failed fdatasync lost data, until check --repair clears it. */
export interface StoreHealth {
  state: 'ok' | 'degraded';
  degraded?: DegradedInfo;
}
