import type { Readable } from 'node:stream';
import type { BlockVolume } from '../../image-store/block-volume';
import type { StoreHealth, StoreUsage } from '../../image-store/store';

/**
 * What the appliance needs from the image store (image-store/ implements it). Kept narrow so
 * the registry and routes can be tested with the real store on a temp dir, and so another
 * backend could stand in.
 */
export interface DiskStore {
  listImages(): ImageSummary[];
  getImage(name: string): ImageSummary | undefined;
  importImage(
    name: string,
    file: string,
    opts?: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal; sourceName?: string; exclusive?: boolean },
  ): Promise<ImageSummary>;
  deleteImage(name: string): void;
  createDisk(name: string, image: string): DiskSummary;
  getDisk(name: string): DiskSummary | undefined;
  deleteDisk(name: string): void;
  openVolume(name: string, opts?: { readOnly?: boolean; snapshot?: number }): BlockVolume & { close(): Promise<void> | void };
  copyDisk(from: string, to: string, opts?: { snapshot?: number }): Promise<DiskSummary>;
  promoteSnapshot(disk: string, id: number, imageName: string): ImageSummary;
  isOpen(name: string): boolean;
  createSnapshot(disk: string, name: string): Promise<SnapshotSummary>;
  listSnapshots(disk: string): SnapshotSummary[];
  restoreSnapshot(disk: string, id: number): Promise<void>;
  deleteSnapshot(disk: string, id: number): Promise<void>;
  resetDisk(disk: string, image?: string): Promise<void>;
  exportVolume(name: string, opts: { snapshot?: number; format: 'raw' | 'qcow2' }): Readable;
}

/**
 * A store backend as the composition root holds it: the DiskStore surface plus space, health
 * and shutdown. The local copy-on-write store (image-store/store.ts) and the Ceph RBD store
 * (image-store/rbd/) both implement it; `store.backend` in the config picks one.
 */
export interface StoreBackend extends DiskStore {
  /** Space in bytes as the backend counts it (the status page and /api/system show it). */
  usage(): Pick<StoreUsage, 'capacityBytes' | 'usedBytes' | 'freeBytes'>;
  health(): StoreHealth;
  /** Makes every open disk durable, then releases the backend; open handles then fail with CLOSED. */
  close(): Promise<void>;
}

export interface ImageSummary {
  name: string;
  sizeBytes: number;
  usedBytes?: number;
  createdAt: number;
}

export interface DiskSummary {
  name: string;
  /** The golden image it descends from (null once that image was deleted after a re-base). */
  image: string | null;
  sizeBytes: number;
  usedBytes?: number;
  createdAt: number;
}

export interface SnapshotSummary {
  id: number;
  name: string;
  createdAt: number;
  usedBytes?: number;
}
