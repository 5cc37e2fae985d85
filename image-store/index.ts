/** The image store's public surface: the store, its errors, the volume interface. */
export { ImageStore, type ImageInfo, type DiskInfo, type SnapshotInfo, type StoreUsage, type ImageStoreOptions } from './store';
export { StoreError, type StoreErrorCode } from './errors';
export { StoreVolume } from './volume';
export { VolumeError, type BlockVolume, type ThinProvisioning, type VolumeErrorCode, type WriteOptions } from './block-volume';
export type { CheckReport, CheckProblem } from './check';
export type { ExportFormat, ExportStream } from './export';
