// Long file: the local store's whole management API (images, disks, snapshots, import, export,
// check) behind one transaction boundary; the I/O path is in volume-core.ts and volume.ts.
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type Database from 'better-sqlite3';
import type { Clock, Logger } from './ports';
import { StoreError } from './errors';
import { Metadata, openDatabase, storeGeometry, type DiskRow, type GcResult, type ImageRow, type SnapshotRow } from './metadata';
import { SegmentSpace } from './segments';
import type { SegmentIo } from './io';
import { applyLayer, ChainMaps } from './chain-maps';
import { ChunkMap } from './chunk-map';
import { VolumeCore } from './volume-core';
import { StoreVolume } from './volume';
import { importFile } from './import';
import { exportStream, type ExportFormat, type ExportStream } from './export';
import { checkStore, type CheckReport } from './check';

import type { DegradedInfo, DiskInfo, ImageInfo, SnapshotInfo, StoreHealth, StoreUsage } from './types';
export type { DegradedInfo, DiskInfo, ImageInfo, SnapshotInfo, StoreHealth, StoreUsage };

export interface ImageStoreOptions {
  dir: string;
  clock: Clock;
  log: Logger;
  segmentMiB?: number;
  chunkKiB?: number;
  reserveMiB?: number;
  /** Upper bound on the bytes of segment files (tests use it to simulate a full disk). */
  capacityBytes?: number;
  /**
   * Most bytes held in group reservations and not yet written, all disks together (default
   * 1 GiB; image-store/README.md, "Layout"): bounds how far reservations make the store grow.
   */
  reservationMiB?: number;
  /** qemu-img binary for formats other than raw/qcow2 (default: "qemu-img" on PATH). */
  qemuImg?: string;
  /** better-sqlite3's addon when it is not where the package keeps it (the bundle has it beside itself). */
  sqliteBinding?: string;
  /** @internal Segment data I/O; tests pass a volatile write cache to simulate power cuts. */
  io?: SegmentIo;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * The copy-on-write image store: golden images, client disks cloned from them in O(1), and
 * snapshots/restores in O(1). See README.md for the on-disk format and the crash-safety argument.
 * All management calls are synchronous SQLite transactions except where a live disk must be
 * flushed first; the I/O hot path (StoreVolume) never touches SQLite except in flush().
 */
export class ImageStore {
  /** @internal */ readonly meta: Metadata;
  /** @internal */ readonly space: SegmentSpace;
  /** @internal */ readonly db: Database.Database;
  private readonly diskCores = new Map<number, VolumeCore>();
  private readonly roCores = new Set<VolumeCore>();
  /** Resolved maps of images and snapshots, copied into each volume opened over them (64 MiB: 8M chunks, 512 GiB of 64 KiB chunks). */
  private readonly chainMaps: ChainMaps;
  private readonly imageHandles = new Map<number, number>();
  private closed = false;
  private importing = 0;
  /** Aborts the imports running now (a failed fdatasync may have dropped what they wrote). */
  private readonly importAborts = new Set<AbortController>();
  private degraded: DegradedInfo | null;

  private constructor(
    readonly dir: string,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly qemuImg: string,
    db: Database.Database,
    limits: { capacityBytes?: number; reserveBytes: number; reservationBytes: number },
    io: SegmentIo | undefined,
  ) {
    this.db = db;
    this.meta = new Metadata(db);
    this.chainMaps = new ChainMaps(this.meta, 16 * 1024 * 1024);
    const g = storeGeometry(db);
    this.space = new SegmentSpace(dir, this.meta, g.chunkBytes, g.segmentBytes, limits, io);
    this.space.load();
    this.degraded = this.meta.getDegraded() as DegradedInfo | null;
    this.space.onSyncFailure = (segment, err) => this.syncFailed(segment, err);
    this.recover();
  }

  /**
   * An fdatasync failed: the data it was to make durable may be gone (Linux drops the pages and
   * the next fdatasync succeeds). Every disk with writes not proven durable stops (VolumeCore
   * .syncFailed), running imports are aborted, and the store is marked degraded in its database
   * so the admin sees it in status and check even after a restart.
   */
  private syncFailed(segment: number, err: Error): void {
    const reason = `fdatasync of segment ${segment} failed: ${err.message}`;
    const hit: string[] = [];
    for (const [id, core] of this.diskCores) {
      if (core.syncFailed(reason)) hit.push((this.meta.q.diskById.get(id) as DiskRow | undefined)?.name ?? `#${id}`);
    }
    for (const ac of this.importAborts) ac.abort();
    const now = this.clock.now();
    const d: DegradedInfo = this.degraded ?? { since: now, last: now, failures: 0, reason, segments: [], disks: [] };
    d.last = now;
    d.failures++;
    d.reason = reason;
    if (!d.segments.includes(segment)) d.segments.push(segment);
    for (const n of hit) if (!d.disks.includes(n)) d.disks.push(n);
    this.degraded = d;
    try {
      this.meta.setDegraded(d);
    } catch (e) {
      this.log.error({ err: e }, 'could not record the degraded state in the store database');
    }
    this.log.error({ segment, err, disks: hit }, 'fdatasync failed: writes not yet flushed are lost; those disks fail I/O until reconnected (store degraded)');
  }

  /** 'ok', or 'degraded' with why (a failed fdatasync lost data). */
  health(): StoreHealth {
    return this.degraded
      ? { state: 'degraded', degraded: { ...this.degraded, segments: [...this.degraded.segments], disks: [...this.degraded.disks] } }
      : { state: 'ok' };
  }

  /** @internal True while a disk stopped by a failed fdatasync is still open (check cannot clear degraded then). */
  hasFailedVolumes(): boolean {
    for (const core of this.diskCores.values()) if (core.failure) return true;
    return false;
  }

  /**
   * @internal Clears the degraded mark (check --repair, once the admin has seen the report);
   * false while a stopped disk is still open.
   */
  clearDegraded(): boolean {
    if (!this.degraded) return true;
    if (this.hasFailedVolumes()) return false;
    this.meta.setDegraded(null);
    this.degraded = null;
    this.log.warn({}, 'degraded state cleared');
    return true;
  }

  /** Opens the store in `dir`, creating the directory and database on first use. */
  static open(opts: ImageStoreOptions): ImageStore {
    const chunkBytes = (opts.chunkKiB ?? 64) * 1024;
    const segmentBytes = (opts.segmentMiB ?? 256) * 1024 * 1024;
    if (chunkBytes % 512 !== 0 || segmentBytes % chunkBytes !== 0) {
      throw new Error('store.segmentMiB must be a multiple of store.chunkKiB, which must be a multiple of 512 bytes');
    }
    fs.mkdirSync(opts.dir, { recursive: true });
    const db = openDatabase(path.join(opts.dir, 'store.db'), { chunkBytes, segmentBytes, sqliteBinding: opts.sqliteBinding });
    const log = opts.log.child({ component: 'image-store' });
    const g = storeGeometry(db);
    if (g.chunkBytes !== chunkBytes || g.segmentBytes !== segmentBytes) {
      log.warn({ stored: g, requested: { chunkBytes, segmentBytes } }, 'store geometry is fixed at creation; using the stored one');
    }
    return new ImageStore(
      opts.dir,
      opts.clock,
      log,
      opts.qemuImg ?? 'qemu-img',
      db,
      {
        capacityBytes: opts.capacityBytes,
        reserveBytes: (opts.reserveMiB ?? 256) * 1024 * 1024,
        reservationBytes: (opts.reservationMiB ?? 1024) * 1024 * 1024,
      },
      opts.io,
    );
  }

  /** Removes what a crash left half-made: images whose import never finished, temp files. */
  private recover(): void {
    const stale = (this.meta.q.images.all() as ImageRow[]).filter((r) => r.state !== 'ready');
    for (const r of stale) {
      this.log.warn({ image: r.name }, 'removing an image whose import did not finish');
      this.commit(() => {
        this.meta.q.deleteImage.run(r.id);
        return this.meta.collect(r.layer);
      });
    }
    fs.rmSync(path.join(this.dir, 'tmp'), { recursive: true, force: true });
    // A crash while growing leaves a segment file that was never recorded: nothing points into it.
    for (const f of fs.readdirSync(this.dir)) {
      if (/^seg-\d+\.dat$/.test(f) && Number(f.slice(4, -4)) >= this.space.segmentCount) {
        this.log.warn({ file: f }, 'removing a segment file a crash left unrecorded');
        fs.rmSync(path.join(this.dir, f), { force: true });
      }
    }
  }

  /** Runs fn in one transaction, then releases what it freed and tells open views about merges. */
  /** @internal */ commit(fn: () => GcResult | void): void {
    const res = this.db.transaction(fn)();
    if (!res) return;
    // Frozen layers change only here: a layer deleted, or folded into its child.
    if (res.merged.length > 0 || res.deleted.length > 0) this.chainMaps.clear();
    this.space.release(res.freed);
    for (const m of res.merged) {
      for (const core of this.diskCores.values()) core.onMerged(m.from, m.into);
      for (const core of this.roCores) core.onMerged(m.from, m.into);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'the image store is closed');
  }

  private checkName(name: string): void {
    if (!NAME.test(name)) throw new StoreError('BAD_NAME', `bad name ${JSON.stringify(name)}: use letters, digits, . _ : - (max 128)`);
  }

  // ---- images ----

  /** Imports a raw or qcow2 file (or any format qemu-img reads) as a new golden image. */
  async importImage(
    name: string,
    file: string,
    opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal; format?: string; sourceName?: string; exclusive?: boolean } = {},
  ): Promise<ImageInfo> {
    this.assertOpen();
    this.checkName(name);
    if (this.meta.q.imageByName.get(name) || this.meta.q.diskByName.get(name)) throw new StoreError('IMAGE_EXISTS', `${name} already exists`);
    this.importing++;
    const ac = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal;
    this.importAborts.add(ac);
    let row: ImageRow;
    try {
      row = await importFile(this, name, file, { ...opts, signal, qemuImg: this.qemuImg, log: this.log, now: this.clock.now() });
    } finally {
      this.importAborts.delete(ac);
      this.importing--;
    }
    this.log.info({ image: name, sizeBytes: row.size_bytes }, 'image imported');
    return this.imageInfo(row);
  }

  listImages(): ImageInfo[] {
    return (this.meta.q.images.all() as ImageRow[]).filter((r) => r.state === 'ready').map((r) => this.imageInfo(r));
  }

  getImage(name: string): ImageInfo | undefined {
    const r = this.meta.q.imageByName.get(name) as ImageRow | undefined;
    return r && r.state === 'ready' ? this.imageInfo(r) : undefined;
  }

  /** Deletes a golden image; refused with IMAGE_IN_USE while a disk is based on it or it is open. */
  deleteImage(name: string): void {
    this.assertOpen();
    const r = this.imageRow(name);
    const users = this.meta.q.disksUsingImage.all(r.id) as { name: string }[];
    if (users.length > 0) throw new StoreError('IMAGE_IN_USE', `image ${name} is used by disk(s) ${users.map((u) => u.name).join(', ')}`);
    if ((this.imageHandles.get(r.id) ?? 0) > 0) throw new StoreError('IMAGE_IN_USE', `image ${name} is open`);
    this.commit(() => {
      this.meta.q.deleteImage.run(r.id);
      return this.meta.collect(r.layer);
    });
    this.log.info({ image: name }, 'image deleted');
  }

  // ---- disks ----

  /** Creates a client disk as an O(1) copy-on-write clone of an image. */
  createDisk(name: string, image: string): DiskInfo {
    this.assertOpen();
    this.checkName(name);
    if (this.meta.q.diskByName.get(name) || this.meta.q.imageByName.get(name)) throw new StoreError('DISK_EXISTS', `${name} already exists`);
    const img = this.imageRow(image);
    let id = 0;
    this.commit(() => {
      const top = this.meta.newLayer(img.layer, this.clock.now());
      id = Number(this.meta.q.insertDisk.run(name, img.id, top, img.size_bytes, this.clock.now()).lastInsertRowid);
    });
    this.log.info({ disk: name, image }, 'disk created');
    return this.diskInfo(this.meta.q.diskById.get(id) as DiskRow);
  }

  listDisks(): DiskInfo[] {
    return (this.meta.q.disks.all() as DiskRow[]).map((r) => this.diskInfo(r));
  }

  getDisk(name: string): DiskInfo | undefined {
    const r = this.meta.q.diskByName.get(name) as DiskRow | undefined;
    return r ? this.diskInfo(r) : undefined;
  }

  /** Deletes a disk and all its snapshots; refused with DISK_IN_USE while it is open. */
  deleteDisk(name: string): void {
    this.assertOpen();
    const d = this.diskRow(name);
    this.refuseIfOpen(d, 'delete');
    this.commit(() => {
      const snaps = this.meta.q.snapshotsOf.all(d.id) as SnapshotRow[];
      for (const s of snaps) this.meta.q.deleteSnapshot.run(s.id);
      this.meta.q.deleteDisk.run(d.id);
      const res = this.meta.collect(d.layer);
      for (const s of snaps) this.meta.collect(s.layer, res);
      return res;
    });
    this.log.info({ disk: name }, 'disk deleted');
  }

  /** Renames a disk with its snapshots (moving a disk to another client); refused while open. */
  renameDisk(from: string, to: string): DiskInfo {
    this.assertOpen();
    this.checkName(to);
    const d = this.diskRow(from);
    this.refuseIfOpen(d, 'rename');
    if (this.meta.q.diskByName.get(to) || this.meta.q.imageByName.get(to)) throw new StoreError('DISK_EXISTS', `${to} already exists`);
    this.commit(() => {
      this.meta.q.renameDisk.run(to, d.id);
    });
    this.log.info({ from, to }, 'disk renamed');
    return this.diskInfo(this.meta.q.diskById.get(d.id) as DiskRow);
  }

  /**
   * Copies a disk (its current state, or one of its snapshots) to a new disk in O(1): both then
   * share the frozen history copy-on-write. A live source is flushed first.
   */
  async copyDisk(from: string, to: string, opts: { snapshot?: number } = {}): Promise<DiskInfo> {
    this.assertOpen();
    this.checkName(to);
    const src = this.diskRow(from);
    if (this.meta.q.diskByName.get(to) || this.meta.q.imageByName.get(to)) throw new StoreError('DISK_EXISTS', `${to} already exists`);
    let id = 0;
    if (opts.snapshot !== undefined) {
      const s = this.snapshotRow(src, opts.snapshot);
      this.commit(() => {
        const top = this.meta.newLayer(s.layer, this.clock.now());
        id = Number(this.meta.q.insertDisk.run(to, s.image_id, top, s.size_bytes, this.clock.now()).lastInsertRowid);
      });
    } else {
      await this.freeze(src, (frozen, now) => {
        const top = this.meta.newLayer(frozen, now);
        id = Number(this.meta.q.insertDisk.run(to, src.image_id, top, src.size_bytes, now).lastInsertRowid);
      });
    }
    this.log.info({ from, to, snapshot: opts.snapshot }, 'disk copied');
    return this.diskInfo(this.meta.q.diskById.get(id) as DiskRow);
  }

  /**
   * Freezes a disk's current top layer (flushing a live disk first, with its writes held) and
   * gives the disk a fresh top over it; `also` adds rows that refer to the frozen layer.
   */
  private async freeze(d: DiskRow, also: (frozen: number, now: number) => void): Promise<void> {
    const core = this.diskCores.get(d.id);
    const run = () => {
      const cur = this.meta.q.diskById.get(d.id) as DiskRow | undefined;
      if (!cur) throw new StoreError('DISK_NOT_FOUND', `disk ${d.name} not found`);
      const now = this.clock.now();
      let top = 0;
      this.commit(() => {
        top = this.meta.newLayer(cur.layer, now);
        this.meta.q.setDiskLayer.run(top, cur.image_id, cur.size_bytes, cur.id);
        also(cur.layer, now);
      });
      // Every entry the disk owned now belongs to the frozen layer: the next write copies.
      if (core) core.top = top;
    };
    if (core) await core.exclusive(run, true);
    else run();
  }

  // ---- volumes ----

  /**
   * Opens a disk (read-write unless readOnly) or an image (always read-only) as a BlockVolume.
   * Every open counts for isOpen(); StoreVolume.close() releases it.
   */
  openVolume(name: string, opts: { readOnly?: boolean; snapshot?: number } = {}): StoreVolume {
    this.assertOpen();
    const d = this.meta.q.diskByName.get(name) as DiskRow | undefined;
    if (d && opts.snapshot === undefined) {
      let core = this.diskCores.get(d.id);
      if (!core) {
        core = new VolumeCore(this.meta, this.space, d.layer, d.size_bytes, true, this.resolveDisk(d.layer, d.size_bytes));
        this.diskCores.set(d.id, core);
      }
      const ro = opts.readOnly === true;
      core.handles++;
      if (!ro) core.writers++;
      return new StoreVolume(`disk-${d.id}`, core, ro, () => {
        core.handles--;
        if (!ro) core.writers--;
        if (core.handles === 0) {
          core.dropReservations();
          if (this.diskCores.get(d.id) === core) this.diskCores.delete(d.id);
        }
      });
    }
    let layer: number;
    let size: number;
    let id: string;
    let imageId: number | undefined;
    if (d) {
      const s = this.snapshotRow(d, opts.snapshot!);
      layer = s.layer;
      size = s.size_bytes;
      id = `snapshot-${s.id}`;
    } else {
      const img = this.imageRow(name);
      layer = img.layer;
      size = img.size_bytes;
      id = `image-${img.id}`;
      imageId = img.id;
    }
    this.meta.pin(layer);
    const core = new VolumeCore(this.meta, this.space, layer, size, false, this.chainMaps.copy(layer, Math.ceil(size / this.space.chunkBytes)));
    this.roCores.add(core);
    if (imageId !== undefined) this.imageHandles.set(imageId, (this.imageHandles.get(imageId) ?? 0) + 1);
    return new StoreVolume(id, core, true, () => {
      this.roCores.delete(core);
      if (imageId !== undefined) this.imageHandles.set(imageId, (this.imageHandles.get(imageId) ?? 1) - 1);
      // The pinned layer may have been merged into its child meanwhile; core.top follows merges.
      if (this.meta.unpin(core.top) && !this.closed) this.commit(() => this.meta.collect(core.top));
    });
  }

  /**
   * A disk's resolved map: the frozen chain below its writable top (from the cache), with the
   * top's own extents applied over it.
   */
  private resolveDisk(top: number, sizeBytes: number): ChunkMap {
    const chunks = Math.ceil(sizeBytes / this.space.chunkBytes);
    const parent = (this.meta.q.layer.get(top) as { parent: number | null } | undefined)?.parent ?? null;
    const m = parent === null ? ChunkMap.zero(chunks) : this.chainMaps.copy(parent, chunks);
    applyLayer(this.meta, top, m);
    return m;
  }

  /** @internal True when any view is open (check skips the leak scan then: in-flight chunks are not durable yet). */
  hasOpenVolumes(): boolean {
    return this.diskCores.size > 0 || this.roCores.size > 0 || this.importing > 0;
  }

  /** True while any handle on the disk (or image) is open. */
  isOpen(name: string): boolean {
    const d = this.meta.q.diskByName.get(name) as DiskRow | undefined;
    if (d) return (this.diskCores.get(d.id)?.handles ?? 0) > 0;
    const i = this.meta.q.imageByName.get(name) as ImageRow | undefined;
    return i ? (this.imageHandles.get(i.id) ?? 0) > 0 : false;
  }

  private refuseIfOpen(d: DiskRow, what: string): void {
    if ((this.diskCores.get(d.id)?.handles ?? 0) > 0) {
      throw new StoreError('DISK_IN_USE', `cannot ${what} disk ${d.name}: it is open (log the initiator out first)`);
    }
  }

  // ---- snapshots ----

  /** Takes a read-only point-in-time snapshot in O(1). A live disk is flushed first (writes held meanwhile). */
  async createSnapshot(disk: string, name: string): Promise<SnapshotInfo> {
    this.assertOpen();
    if (!NAME.test(name)) throw new StoreError('BAD_NAME', `bad snapshot name ${JSON.stringify(name)}`);
    const d = this.diskRow(disk);
    let id = 0;
    await this.freeze(d, (frozen, now) => {
      const cur = this.meta.q.diskById.get(d.id) as DiskRow;
      id = Number(this.meta.q.insertSnapshot.run(d.id, name, frozen, cur.size_bytes, cur.image_id, now).lastInsertRowid);
    });
    this.log.info({ disk, snapshot: name, id }, 'snapshot created');
    return this.snapshotInfo(this.meta.q.snapshot.get(id, d.id) as SnapshotRow, d);
  }

  listSnapshots(disk: string): SnapshotInfo[] {
    const d = this.diskRow(disk);
    return (this.meta.q.snapshotsOf.all(d.id) as SnapshotRow[]).map((s) => this.snapshotInfo(s, d));
  }

  /** Makes the disk equal to the snapshot again in O(1); other snapshots (newer ones too) stay. */
  async restoreSnapshot(disk: string, id: number): Promise<void> {
    this.assertOpen();
    const d = this.diskRow(disk);
    this.refuseIfOpen(d, 'restore');
    const s = this.snapshotRow(d, id);
    this.rebase(d, s.layer, s.image_id, s.size_bytes);
    this.log.info({ disk, snapshot: id }, 'snapshot restored');
  }

  /** Deletes a snapshot; its space is freed once nothing else needs it (allowed on a live disk). */
  async deleteSnapshot(disk: string, id: number): Promise<void> {
    this.assertOpen();
    const d = this.diskRow(disk);
    const s = this.snapshotRow(d, id);
    this.commit(() => {
      this.meta.q.deleteSnapshot.run(s.id);
      return this.meta.collect(s.layer);
    });
    this.log.info({ disk, snapshot: id }, 'snapshot deleted');
  }

  /** Resets the disk to its golden image, or re-bases it onto another image (a restore too). */
  async resetDisk(disk: string, image?: string): Promise<void> {
    this.assertOpen();
    const d = this.diskRow(disk);
    this.refuseIfOpen(d, 'reset');
    let img: ImageRow;
    if (image !== undefined) img = this.imageRow(image);
    else {
      const r = d.image_id === null ? undefined : (this.meta.q.imageById.get(d.image_id) as ImageRow | undefined);
      if (!r) throw new StoreError('IMAGE_NOT_FOUND', `disk ${disk} has no base image to reset to`);
      img = r;
    }
    this.rebase(d, img.layer, img.id, img.size_bytes);
    this.log.info({ disk, image: img.name }, 'disk reset');
  }

  /** Points the disk at a fresh empty layer over `layer` and collects its old top. */
  private rebase(d: DiskRow, layer: number, imageId: number | null, size: number): void {
    this.commit(() => {
      const top = this.meta.newLayer(layer, this.clock.now());
      this.meta.q.setDiskLayer.run(top, imageId, size, d.id);
      return this.meta.collect(d.layer);
    });
  }

  /** Turns a snapshot into a new golden image in O(1) (they share the data). */
  promoteSnapshot(disk: string, id: number, imageName: string): ImageInfo {
    this.assertOpen();
    this.checkName(imageName);
    if (this.meta.q.imageByName.get(imageName) || this.meta.q.diskByName.get(imageName)) throw new StoreError('IMAGE_EXISTS', `${imageName} already exists`);
    const d = this.diskRow(disk);
    const s = this.snapshotRow(d, id);
    let iid = 0;
    this.commit(() => {
      iid = Number(this.meta.q.insertImage.run(imageName, s.layer, s.size_bytes, this.clock.now(), 'ready', `snapshot:${d.name}/${s.name}`).lastInsertRowid);
    });
    this.log.info({ disk, snapshot: id, image: imageName }, 'snapshot promoted');
    return this.imageInfo(this.meta.q.imageById.get(iid) as ImageRow);
  }

  // ---- export, check, usage ----

  /**
   * Streams a disk, image or snapshot as raw or qcow2 (for HTTP download); `.size` is the exact
   * byte length. Holds a read-only handle until the stream ends or is destroyed.
   */
  exportVolume(name: string, opts: { snapshot?: number; format: ExportFormat }): ExportStream {
    this.assertOpen();
    const vol = this.openVolume(name, { readOnly: true, snapshot: opts.snapshot });
    return exportStream(vol, opts.format);
  }

  /** Writes an export to a file (created or truncated). */
  async exportToFile(name: string, file: string, opts: { snapshot?: number; format: ExportFormat }): Promise<void> {
    await pipeline(this.exportVolume(name, opts), fs.createWriteStream(file));
  }

  /** Verifies the store's invariants; with repair, fixes leaks. See check.ts. */
  check(opts: { repair?: boolean } = {}): CheckReport {
    this.assertOpen();
    return checkStore(this, opts);
  }

  usage(): StoreUsage {
    const capacityBytes = this.space.capacityBytes();
    const usedBytes = this.space.usedChunks * this.space.chunkBytes;
    return {
      capacityBytes,
      usedBytes,
      freeBytes: Math.max(0, capacityBytes - usedBytes),
      allocatedBytes: this.space.segmentCount * this.space.segmentBytes,
      segments: this.space.segmentCount,
      segmentBytes: this.space.segmentBytes,
      chunkBytes: this.space.chunkBytes,
    };
  }

  /** Flushes every open disk, then closes the database and segment files. Open handles become CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    // A disk stopped by a failed fdatasync has nothing it may commit.
    for (const core of this.diskCores.values()) if (!core.closed) await core.flush();
    await this.space.idle();
    this.closed = true;
    for (const core of [...this.diskCores.values(), ...this.roCores]) core.closed = true;
    this.space.close();
    this.db.close();
  }

  // ---- rows and infos ----

  /** @internal */ imageRow(name: string): ImageRow {
    const r = this.meta.q.imageByName.get(name) as ImageRow | undefined;
    if (!r || r.state !== 'ready') throw new StoreError('IMAGE_NOT_FOUND', `image ${name} not found`);
    return r;
  }

  private diskRow(name: string): DiskRow {
    const r = this.meta.q.diskByName.get(name) as DiskRow | undefined;
    if (!r) throw new StoreError('DISK_NOT_FOUND', `disk ${name} not found`);
    return r;
  }

  private snapshotRow(d: DiskRow, id: number): SnapshotRow {
    const r = this.meta.q.snapshot.get(id, d.id) as SnapshotRow | undefined;
    if (!r) throw new StoreError('SNAPSHOT_NOT_FOUND', `snapshot ${id} of disk ${d.name} not found`);
    return r;
  }

  /** Bytes held by the layers from `layer` down to (not including) the next image's layer. */
  private ownedBytes(layer: number, stopAtImages: boolean): number {
    let n = 0;
    let cur: number | null = layer;
    let first = true;
    while (cur !== null) {
      if (!first && stopAtImages && this.meta.q.isImageLayer.get(cur)) break;
      first = false;
      n += (this.meta.q.countReal.get(cur) as { n: number }).n;
      cur = (this.meta.q.layer.get(cur) as { parent: number | null } | undefined)?.parent ?? null;
    }
    return n * this.space.chunkBytes;
  }

  private imageInfo(r: ImageRow): ImageInfo {
    return {
      id: r.id,
      name: r.name,
      sizeBytes: r.size_bytes,
      usedBytes: this.ownedBytes(r.layer, true),
      createdAt: r.created_at,
      source: r.source,
      disks: (this.meta.q.disksUsingImage.all(r.id) as unknown[]).length,
    };
  }

  private imageName(id: number | null): string | null {
    if (id === null) return null;
    return (this.meta.q.imageById.get(id) as ImageRow | undefined)?.name ?? null;
  }

  private diskInfo(r: DiskRow): DiskInfo {
    return {
      id: r.id,
      name: r.name,
      image: this.imageName(r.image_id),
      sizeBytes: r.size_bytes,
      usedBytes: this.ownedBytes(r.layer, true),
      createdAt: r.created_at,
      snapshots: (this.meta.q.snapshotsOf.all(r.id) as unknown[]).length,
      open: (this.diskCores.get(r.id)?.handles ?? 0) > 0,
    };
  }

  private snapshotInfo(s: SnapshotRow, d: DiskRow): SnapshotInfo {
    return {
      id: s.id,
      disk: d.name,
      name: s.name,
      sizeBytes: s.size_bytes,
      usedBytes: (this.meta.q.countReal.get(s.layer) as { n: number }).n * this.space.chunkBytes,
      createdAt: s.created_at,
      image: this.imageName(s.image_id),
    };
  }
}
