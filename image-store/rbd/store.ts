// Long file: the RBD backend mirrors store.ts's management API one for one, plus the cluster
// operation queue and the lock takeover after a crash.
import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import type { Clock, Logger } from '../ports';
import { StoreError } from '../errors';
import { exportStream, type ExportFormat, type ExportStream } from '../export';
import { openImportSource } from '../import';
import { isZero } from '../io';
import type { DiskInfo, ImageInfo, SnapshotInfo, StoreHealth, StoreUsage } from '../types';
import { catalogueQueries, openCatalogue, type CatalogueQueries, type ClusterOp, type RbdDiskRow, type RbdImageRow, type RbdSnapshotRow } from './catalogue';
import { RbdCluster, type RbdImage } from './native';
import { RbdCli, RbdCliError, type RbdTarget } from './rbd-cli';
import { RbdVolume, SharedImage } from './volume';

export interface RbdStoreOptions {
  /** Where the catalogue (rbd.db) and import temp files live, e.g. <dataDir>/store-rbd. */
  dir: string;
  clock: Clock;
  log: Logger;
  rbd: RbdTarget & {
    /** Prefix of every RBD image this store makes, so a pool can be shared (default "netboot-"). */
    prefix?: string;
  };
  qemuImg?: string;
  /** The `rbd` tool (default: "rbd" on PATH). */
  rbdBin?: string;
  /** better-sqlite3's addon when it is not where the package keeps it (the bundle has it beside itself). */
  sqliteBinding?: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** The snapshot of a golden image's RBD image that its clients are cloned from. */
const GOLDEN_SNAP = 'golden';
/** Import write size: RBD's object size, so each write is one RADOS object. */
const IMPORT_PIECE = 4 << 20;

/**
 * Client disks on Ceph RBD, behind the same management surface as the local ImageStore (the
 * appliance's StoreBackend) and the same BlockVolume:
 *   golden image = RBD image + protected snapshot "golden";
 *   client disk  = a clone of it (O(1), copy-on-write in the cluster);
 *   snapshot     = an RBD snapshot of the disk's current image;
 *   restore      = a new clone of that snapshot becomes the disk (O(1)); every snapshot stays,
 *                  because the old image stays as long as a snapshot or a clone needs it;
 *   copy         = a clone of a snapshot (or of a hidden one taken of the live disk);
 *   promote      = a golden image that is the disk snapshot itself (no copy).
 * Names, lineage and pending cluster operations live in a local SQLite catalogue (catalogue.ts):
 * answers and errors come from it synchronously; cluster operations that a synchronous call
 * needs (the clone behind createDisk) are queued in the same transaction and applied in order,
 * and a volume's first I/O waits for them. Unneeded RBD images and snapshots are removed by a
 * queued garbage collection, children before parents.
 */
export class RbdStore {
  private readonly q: CatalogueQueries;
  private readonly shared = new Map<number, SharedImage>();
  private readonly imageHandles = new Map<number, number>();
  /** "rbd@snap" (or a head's name) → open read-only handles: gc keeps them. */
  private readonly pins = new Map<string, number>();
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private retryCancel: (() => void) | null = null;
  private retryMs = 1000;
  private lastOpError: string | null = null;
  private usageCache = { usedBytes: 0, provisionedBytes: 0 };
  private readonly prefix: string;

  /** RADOS client addresses of earlier processes of this store, and of this one (see recordInstance). */
  private pastOwners = new Set<string>();
  private myAddresses = new Set<string>();

  private constructor(
    readonly dir: string,
    private readonly db: Database.Database,
    private readonly cluster: RbdCluster,
    private readonly cli: RbdCli,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly qemuImg: string,
    prefix: string,
  ) {
    this.q = catalogueQueries(db);
    this.prefix = prefix;
  }

  /** Opens the catalogue, connects to the cluster (validating the config), and replays queued operations. */
  static async open(opts: RbdStoreOptions): Promise<RbdStore> {
    fs.mkdirSync(opts.dir, { recursive: true });
    fs.rmSync(path.join(opts.dir, 'tmp'), { recursive: true, force: true });
    const log = opts.log.child({ component: 'rbd-store', pool: opts.rbd.pool });
    const cli = new RbdCli(opts.rbd, opts.rbdBin);
    // Fails fast with the cluster's own words when conf, user, key or pool is wrong.
    try {
      await cli.run(['ls']);
    } catch (err) {
      throw new Error(`store.rbd: cannot list pool ${opts.rbd.pool} as client.${opts.rbd.id}: ${(err as Error).message}`);
    }
    const cluster = new RbdCluster(opts.rbd);
    const db = openCatalogue(path.join(opts.dir, 'rbd.db'), opts.sqliteBinding);
    const store = new RbdStore(opts.dir, db, cluster, cli, opts.clock, log, opts.qemuImg ?? 'qemu-img', opts.rbd.prefix ?? 'netboot-');
    store.recordInstance();
    await store.takeOverAfterCrash();
    // Imports that never finished: drop their rows; gc removes what they made.
    for (const r of store.q.images.all() as RbdImageRow[]) if (r.state !== 'ready') store.q.deleteImage.run(r.id);
    store.q.insertOp.run(JSON.stringify({ op: 'gc' } satisfies ClusterOp));
    await store.exclusive(() => store.drain());
    return store;
  }

  /**
   * Remembers this process's RADOS client address and the ones earlier processes had. Only one process
   * opens the catalogue at a time (locking_mode EXCLUSIVE), so an exclusive lock held by an earlier
   * identity belongs to a process that died without releasing it (a crash, SIGKILL, power loss).
   */
  private recordInstance(): void {
    const me = this.cluster.clientAddress;
    this.myAddresses = new Set(addressKeys(me));
    this.pastOwners = new Set((this.q.instances.all() as { owner: string }[]).flatMap((r) => addressKeys(r.owner)).filter((a) => !this.myAddresses.has(a)));
    this.q.insertInstance.run(me, this.clock.now());
    this.q.trimInstances.run();
  }

  /**
   * Takes over the exclusive lock of a disk's image if a dead process of ours still holds it:
   * otherwise librbd (and the `rbd` tool, for a snapshot) waits for that process's watch to time
   * out (30 s by default) before the first write, longer than an initiator's command timeout.
   * `anyOwner` (only right after an unclean stop) also takes it from an `rbd` tool run of ours that
   * died with the service: its address was never recorded. Otherwise a lock held by someone else
   * is left alone and reported: another appliance may serve this disk.
   */
  private takeOverStaleLock(image: RbdImage, rbd: string, anyOwner: boolean): void {
    try {
      for (const owner of image.lockOwners()) {
        const keys = addressKeys(owner);
        if (keys.some((k) => this.myAddresses.has(k))) continue;
        if (anyOwner || keys.some((k) => this.pastOwners.has(k))) {
          image.breakLock(owner);
          this.log.warn(
            { image: rbd, owner },
            'took over the exclusive lock a process of this appliance left behind when it died (the owner was blocklisted first)',
          );
        } else {
          this.log.warn({ image: rbd, owner }, 'the RBD image is locked by a client that is not this appliance: writes wait until it lets go');
        }
      }
    } catch (err) {
      this.log.warn({ err, image: rbd }, "cannot read or break the RBD image's exclusive lock");
    }
  }

  /** Opens a disk's image read-write, taking over a lock a dead process of ours left. */
  private openForWriting(rbd: string): RbdImage {
    const image = this.cluster.open(rbd);
    this.takeOverStaleLock(image, rbd, false);
    return image;
  }

  /**
   * After the store was not closed cleanly (a crash, SIGKILL, power loss), the locks on its disks
   * belong to processes that died with it (the service, or an `rbd` tool it ran: systemd kills the
   * whole unit): taken over before the queued operations run, which would otherwise wait for them.
   * The disks under this store's prefix are its own (docs/rbd.md), so no live client is fenced.
   */
  private async takeOverAfterCrash(): Promise<void> {
    const clean = (this.q.counter.get('clean_close') as { value: number } | undefined)?.value === 1;
    const first = this.q.counter.get('clean_close') === undefined && this.pastOwners.size === 0;
    this.q.setCounter.run('clean_close', 0);
    if (clean || first) return;
    for (const d of this.q.disks.all() as RbdDiskRow[]) {
      let image: RbdImage;
      try {
        image = this.cluster.open(d.rbd);
      } catch {
        continue; // not cloned yet (its clone is queued)
      }
      try {
        this.takeOverStaleLock(image, d.rbd, true);
      } finally {
        await image.close().catch((err: unknown) => this.log.warn({ err, image: d.rbd }, 'closing the RBD image failed'));
      }
    }
  }

  // ---- the operation queue ----

  /** Runs fn after every earlier management step (cluster operations are applied one at a time). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Applies queued operations in order; stops at the first failure (retried later with backoff). */
  private async drain(): Promise<void> {
    for (;;) {
      const row = (this.q.ops.all() as { seq: number; op: string }[])[0];
      if (!row) break;
      const op = JSON.parse(row.op) as ClusterOp;
      try {
        await this.apply(op);
      } catch (err) {
        this.lastOpError = (err as Error).message;
        this.log.error({ err, op }, 'cluster operation failed; retrying later');
        this.scheduleRetry();
        throw err;
      }
      this.q.deleteOp.run(row.seq);
    }
    this.lastOpError = null;
    this.retryMs = 1000;
  }

  private scheduleRetry(): void {
    if (this.retryCancel || this.closed) return;
    this.retryCancel = this.clock.setTimeout(() => {
      this.retryCancel = null;
      if (!this.closed) this.exclusive(() => this.drain()).catch(() => undefined);
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 60_000);
  }

  /** Records ops in the current transaction's wake and starts applying them. */
  private queue(...ops: ClusterOp[]): void {
    for (const op of ops) this.q.insertOp.run(JSON.stringify(op));
  }

  private kick(): void {
    this.exclusive(() => this.drain()).catch(() => undefined);
  }

  private async apply(op: ClusterOp): Promise<void> {
    if (op.op === 'clone') {
      try {
        await this.cli.clone(op.parent, op.snap, op.child);
      } catch (err) {
        if (!(err instanceof RbdCliError && err.exists)) throw err;
      }
    } else if (op.op === 'snap') {
      try {
        await this.cli.snapCreate(op.image, op.snap);
      } catch (err) {
        if (!(err instanceof RbdCliError && err.exists)) throw err;
      }
      if (op.protect) {
        try {
          await this.cli.snapProtect(op.image, op.snap);
        } catch (err) {
          if (!(err instanceof RbdCliError && /already protected|\(16\) Device or resource busy/.test(err.said))) throw err;
        }
      }
    } else {
      await this.collect();
    }
  }

  /**
   * Removes every RBD snapshot and image nothing needs any more. Needed: disk heads; the
   * snapshots golden images and disk snapshots are; what open read-only handles pin; and,
   * transitively, the parent (image and snapshot) of anything needed.
   */
  private async collect(): Promise<void> {
    const imgs = new Set<string>();
    const snaps = new Set<string>();
    for (const d of this.q.disks.all() as RbdDiskRow[]) imgs.add(d.rbd);
    for (const i of this.q.images.all() as RbdImageRow[]) snaps.add(`${i.rbd}@${i.snap}`);
    for (const s of this.q.snapshots.all() as { rbd: string; snap: string }[]) snaps.add(`${s.rbd}@${s.snap}`);
    for (const k of this.pins.keys()) (k.includes('@') ? snaps : imgs).add(k);
    for (const s of snaps) imgs.add(s.slice(0, s.indexOf('@')));
    const lineage = this.q.rbdImages.all() as { name: string; parent: string | null; parent_snap: string | null }[];
    const parentOf = new Map(lineage.map((r) => [r.name, r]));
    const stack = [...imgs];
    while (stack.length) {
      const r = parentOf.get(stack.pop()!);
      if (r?.parent && r.parent_snap) {
        snaps.add(`${r.parent}@${r.parent_snap}`);
        if (!imgs.has(r.parent)) {
          imgs.add(r.parent);
          stack.push(r.parent);
        }
      }
    }
    for (const s of this.q.rbdSnaps.all() as { image: string; snap: string }[]) {
      if (snaps.has(`${s.image}@${s.snap}`)) continue;
      await this.cli.snapRemove(s.image, s.snap);
      this.q.deleteRbdSnap.run(s.image, s.snap);
    }
    // Children first: an image is removed only once no remaining lineage row names it as parent.
    let garbage = lineage.filter((r) => !imgs.has(r.name)).map((r) => r.name);
    while (garbage.length) {
      const left = new Set(garbage);
      const leaves = garbage.filter((g) => !lineage.some((r) => left.has(r.name) && r.parent === g));
      if (!leaves.length) break;
      for (const g of leaves) {
        await this.cli.remove(g);
        this.q.deleteRbdImage.run(g);
      }
      garbage = garbage.filter((g) => !leaves.includes(g));
    }
    this.refreshUsage();
  }

  private refreshUsage(): void {
    this.cli.du().then(
      (u) => (this.usageCache = { usedBytes: u.used, provisionedBytes: u.provisioned }),
      () => undefined,
    );
  }

  /** A fresh RBD image name (never reused: the counter only grows). */
  private newRbdName(kind: 'i' | 'd'): string {
    const n = ((this.q.counter.get('rbd') as { value: number } | undefined)?.value ?? 0) + 1;
    this.q.setCounter.run('rbd', n);
    return `${this.prefix}${kind}${n}`;
  }

  private newSnapName(kind: 's' | 'c'): string {
    const n = ((this.q.counter.get('snap') as { value: number } | undefined)?.value ?? 0) + 1;
    this.q.setCounter.run('snap', n);
    return `${kind}${n}`;
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreError('STORE_CLOSED', 'the image store is closed');
  }

  private checkName(name: string): void {
    if (!NAME.test(name)) throw new StoreError('BAD_NAME', `bad name ${JSON.stringify(name)}: use letters, digits, . _ : - (max 128)`);
  }

  // ---- images ----

  /**
   * Imports a raw or qcow2 file (or any format qemu-img reads, with the local store's checks) as
   * a new golden image: an RBD image written through librbd (all-zero pieces skipped), then its
   * protected "golden" snapshot.
   */
  async importImage(
    name: string,
    file: string,
    opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal; format?: string; sourceName?: string; exclusive?: boolean } = {},
  ): Promise<ImageInfo> {
    this.assertOpen();
    this.checkName(name);
    if (this.q.imageByName.get(name) || this.q.diskByName.get(name)) throw new StoreError('IMAGE_EXISTS', `${name} already exists`);
    const label = opts.sourceName ?? path.basename(file);
    let id = 0;
    let rbd = '';
    try {
      const { src, tmp } = await openImportSource(file, label, path.join(this.dir, 'tmp'), { ...opts, qemuImg: this.qemuImg, log: this.log }).catch(
        (err: Error) => {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') throw new StoreError('BAD_IMAGE', `${label}: ${err.message}`);
          throw err;
        },
      );
      try {
        if (src.size === 0 || src.size % 512 !== 0) throw new StoreError('BAD_IMAGE', `${label}: size ${src.size} is not a positive multiple of 512 bytes`);
        if (this.q.imageByName.get(name) || this.q.diskByName.get(name)) throw new StoreError('IMAGE_EXISTS', `${name} already exists`);
        this.db.transaction(() => {
          rbd = this.newRbdName('i');
          this.q.insertRbdImage.run(rbd, null, null);
          id = Number(this.q.insertImage.run(name, rbd, GOLDEN_SNAP, src.size, this.clock.now(), 'importing', label).lastInsertRowid);
        })();
        await this.exclusive(async () => {
          await this.cli.create(rbd, src.size);
        });
        const img = this.cluster.open(rbd);
        try {
          const buf = Buffer.allocUnsafe(IMPORT_PIECE);
          let lastReport = 0;
          for (let pos = 0; pos < src.size; pos += IMPORT_PIECE) {
            if (opts.signal?.aborted) throw new StoreError('ABORTED', `import of ${name} aborted`);
            const len = Math.min(IMPORT_PIECE, src.size - pos);
            if (await src.allocated(pos, len)) {
              await src.read(buf, len, pos);
              if (!isZero(buf, 0, len)) await img.write(pos, Buffer.from(buf.subarray(0, len)));
            }
            if (opts.onProgress && (pos + len - lastReport >= 64 << 20 || pos + len === src.size)) {
              lastReport = pos + len;
              opts.onProgress(pos + len, src.size);
            }
          }
          await img.flush();
        } finally {
          await img.close();
        }
        await this.exclusive(async () => {
          this.q.insertRbdSnap.run(rbd, GOLDEN_SNAP);
          await this.apply({ op: 'snap', image: rbd, snap: GOLDEN_SNAP, protect: true });
          this.q.setImageState.run('ready', id);
        });
      } finally {
        await src.close();
        if (tmp) fs.rmSync(tmp, { force: true });
      }
    } catch (err) {
      if (id) {
        this.db.transaction(() => {
          this.q.deleteImage.run(id);
          this.queue({ op: 'gc' });
        })();
        this.kick();
      }
      throw err;
    }
    this.log.info({ image: name, rbd }, 'image imported');
    return this.imageInfo(this.q.imageById.get(id) as RbdImageRow);
  }

  listImages(): ImageInfo[] {
    return (this.q.images.all() as RbdImageRow[]).filter((r) => r.state === 'ready').map((r) => this.imageInfo(r));
  }

  getImage(name: string): ImageInfo | undefined {
    const r = this.q.imageByName.get(name) as RbdImageRow | undefined;
    return r && r.state === 'ready' ? this.imageInfo(r) : undefined;
  }

  deleteImage(name: string): void {
    this.assertOpen();
    const r = this.imageRow(name);
    const users = this.q.disksUsingImage.all(r.id) as { name: string }[];
    if (users.length > 0) throw new StoreError('IMAGE_IN_USE', `image ${name} is used by disk(s) ${users.map((u) => u.name).join(', ')}`);
    if ((this.imageHandles.get(r.id) ?? 0) > 0) throw new StoreError('IMAGE_IN_USE', `image ${name} is open`);
    this.db.transaction(() => {
      this.q.deleteImage.run(r.id);
      this.queue({ op: 'gc' });
    })();
    this.kick();
    this.log.info({ image: name }, 'image deleted');
  }

  // ---- disks ----

  /** A client disk: a clone of the image's golden snapshot, queued; the disk's first I/O waits for it. */
  createDisk(name: string, image: string): DiskInfo {
    this.assertOpen();
    this.checkName(name);
    if (this.q.diskByName.get(name) || this.q.imageByName.get(name)) throw new StoreError('DISK_EXISTS', `${name} already exists`);
    const img = this.imageRow(image);
    let id = 0;
    this.db.transaction(() => {
      const head = this.newRbdName('d');
      this.q.insertRbdImage.run(head, img.rbd, img.snap);
      id = Number(this.q.insertDisk.run(name, img.id, head, img.size_bytes, this.clock.now()).lastInsertRowid);
      this.queue({ op: 'clone', parent: img.rbd, snap: img.snap, child: head });
    })();
    this.kick();
    this.log.info({ disk: name, image }, 'disk created');
    return this.diskInfo(this.q.diskById.get(id) as RbdDiskRow);
  }

  listDisks(): DiskInfo[] {
    return (this.q.disks.all() as RbdDiskRow[]).map((r) => this.diskInfo(r));
  }

  getDisk(name: string): DiskInfo | undefined {
    const r = this.q.diskByName.get(name) as RbdDiskRow | undefined;
    return r ? this.diskInfo(r) : undefined;
  }

  deleteDisk(name: string): void {
    this.assertOpen();
    const d = this.diskRow(name);
    this.refuseIfOpen(d, 'delete');
    this.db.transaction(() => {
      this.q.deleteSnapshotsOf.run(d.id);
      this.q.deleteDisk.run(d.id);
      this.queue({ op: 'gc' });
    })();
    this.kick();
    this.log.info({ disk: name }, 'disk deleted');
  }

  /** Copies a disk (now, or one of its snapshots) as a clone: O(1). A live source is flushed first. */
  async copyDisk(from: string, to: string, opts: { snapshot?: number } = {}): Promise<DiskInfo> {
    this.assertOpen();
    this.checkName(to);
    const src = this.diskRow(from);
    if (this.q.diskByName.get(to) || this.q.imageByName.get(to)) throw new StoreError('DISK_EXISTS', `${to} already exists`);
    const snap = opts.snapshot !== undefined ? this.snapshotRow(src, opts.snapshot) : undefined;
    const release = snap ? undefined : this.shared.get(src.id)?.hold();
    const id = await this.exclusive(async () => {
      await this.drain();
      const cur = this.diskRow(from);
      let parent: string;
      let parentSnap: string;
      if (snap) {
        this.snapshotRow(cur, snap.id);
        parent = snap.rbd;
        parentSnap = snap.snap;
      } else {
        parent = cur.rbd;
        parentSnap = this.db.transaction(() => this.newSnapName('c'))();
        this.q.insertRbdSnap.run(parent, parentSnap);
        await this.flushOpen(cur.id);
        await this.cli.snapCreate(parent, parentSnap);
      }
      this.assertOpen();
      if (this.q.diskByName.get(to) || this.q.imageByName.get(to)) throw new StoreError('DISK_EXISTS', `${to} already exists`);
      const head = this.db.transaction(() => {
        const h = this.newRbdName('d');
        this.q.insertRbdImage.run(h, parent, parentSnap);
        return h;
      })();
      await this.cli.clone(parent, parentSnap, head);
      return Number(
        this.q.insertDisk.run(to, snap ? snap.image_id : cur.image_id, head, snap ? snap.size_bytes : cur.size_bytes, this.clock.now()).lastInsertRowid,
      );
    }).finally(() => release?.());
    this.log.info({ from, to, snapshot: opts.snapshot }, 'disk copied');
    return this.diskInfo(this.q.diskById.get(id) as RbdDiskRow);
  }

  // ---- volumes ----

  /** Opens a disk (read-write unless readOnly), one of its snapshots, or an image (read-only). */
  openVolume(name: string, opts: { readOnly?: boolean; snapshot?: number } = {}): RbdVolume {
    this.assertOpen();
    const d = this.q.diskByName.get(name) as RbdDiskRow | undefined;
    if (d && opts.snapshot === undefined) {
      let sh = this.shared.get(d.id);
      if (!sh) {
        const rbd = d.rbd;
        sh = new SharedImage(
          this.exclusive(async () => {
            await this.drain();
            return this.openForWriting(rbd);
          }),
        );
        this.shared.set(d.id, sh);
      }
      const s = sh;
      s.handles++;
      const ro = opts.readOnly === true;
      return new RbdVolume(`disk-${d.id}`, d.size_bytes, ro, s, async () => {
        if (--s.handles === 0) {
          if (this.shared.get(d.id) === s) this.shared.delete(d.id);
          await s.release(true);
        }
      });
    }
    let rbd: string;
    let snapName: string;
    let size: number;
    let id: string;
    let imageId: number | undefined;
    if (d) {
      const s = this.snapshotRow(d, opts.snapshot!);
      ({ rbd, snap: snapName, size_bytes: size } = s);
      id = `snapshot-${s.id}`;
    } else {
      const img = this.imageRow(name);
      ({ rbd, snap: snapName, size_bytes: size } = img);
      id = `image-${img.id}`;
      imageId = img.id;
    }
    const pin = `${rbd}@${snapName}`;
    this.pins.set(pin, (this.pins.get(pin) ?? 0) + 1);
    if (imageId !== undefined) this.imageHandles.set(imageId, (this.imageHandles.get(imageId) ?? 0) + 1);
    const sh = new SharedImage(
      this.exclusive(async () => {
        await this.drain();
        return this.cluster.open(rbd, { snapshot: snapName, readOnly: true });
      }),
    );
    sh.handles = 1;
    return new RbdVolume(id, size, true, sh, async () => {
      if (imageId !== undefined) this.imageHandles.set(imageId, (this.imageHandles.get(imageId) ?? 1) - 1);
      await sh.release(false);
      const left = (this.pins.get(pin) ?? 1) - 1;
      if (left > 0) this.pins.set(pin, left);
      else {
        this.pins.delete(pin);
        if (!this.closed) {
          this.queue({ op: 'gc' });
          this.kick();
        }
      }
    });
  }

  isOpen(name: string): boolean {
    const d = this.q.diskByName.get(name) as RbdDiskRow | undefined;
    if (d) return (this.shared.get(d.id)?.handles ?? 0) > 0;
    const i = this.q.imageByName.get(name) as RbdImageRow | undefined;
    return i ? (this.imageHandles.get(i.id) ?? 0) > 0 : false;
  }

  private refuseIfOpen(d: RbdDiskRow, what: string): void {
    if ((this.shared.get(d.id)?.handles ?? 0) > 0) {
      throw new StoreError('DISK_IN_USE', `cannot ${what} disk ${d.name}: it is open (log the initiator out first)`);
    }
  }

  /** Flushes the open handle of a disk (before a snapshot of it: librbd's own cache included). */
  private async flushOpen(diskId: number): Promise<void> {
    // Not awaiting `ready`: it may be queued behind the caller (exclusive), and a handle whose
    // image is not open yet has written nothing.
    const sh = this.shared.get(diskId);
    if (!sh?.image) return;
    await sh.quiesce();
    await sh.image.flush();
  }

  // ---- snapshots ----

  /** An RBD snapshot of the disk's current image (a live disk is flushed first). */
  async createSnapshot(disk: string, name: string): Promise<SnapshotInfo> {
    this.assertOpen();
    if (!NAME.test(name)) throw new StoreError('BAD_NAME', `bad snapshot name ${JSON.stringify(name)}`);
    const d0 = this.diskRow(disk);
    const release = this.shared.get(d0.id)?.hold();
    const id = await this.exclusive(async () => {
      await this.drain();
      const d = this.diskRow(disk);
      const snap = this.db.transaction(() => {
        const s = this.newSnapName('s');
        this.q.insertRbdSnap.run(d.rbd, s);
        return s;
      })();
      await this.flushOpen(d.id);
      await this.cli.snapCreate(d.rbd, snap);
      // A disk deleted meanwhile: the snapshot is garbage (gc removes it).
      const cur = this.diskRow(disk);
      return Number(this.q.insertSnapshot.run(cur.id, name, cur.rbd, snap, cur.size_bytes, cur.image_id, this.clock.now()).lastInsertRowid);
    }).finally(() => release?.());
    const d = this.diskRow(disk);
    this.log.info({ disk, snapshot: name, id }, 'snapshot created');
    return this.snapshotInfo(this.q.snapshot.get(id, d.id) as RbdSnapshotRow, d);
  }

  listSnapshots(disk: string): SnapshotInfo[] {
    const d = this.diskRow(disk);
    return (this.q.snapshotsOf.all(d.id) as RbdSnapshotRow[]).map((s) => this.snapshotInfo(s, d));
  }

  /** A new clone of the snapshot becomes the disk; the old image stays while snapshots need it. */
  async restoreSnapshot(disk: string, id: number): Promise<void> {
    this.assertOpen();
    const d = this.diskRow(disk);
    this.refuseIfOpen(d, 'restore');
    const s = this.snapshotRow(d, id);
    await this.swapHead(disk, s.rbd, s.snap, s.image_id, s.size_bytes);
    this.log.info({ disk, snapshot: id }, 'snapshot restored');
  }

  async deleteSnapshot(disk: string, id: number): Promise<void> {
    this.assertOpen();
    const d = this.diskRow(disk);
    const s = this.snapshotRow(d, id);
    this.db.transaction(() => {
      this.q.deleteSnapshot.run(s.id);
      this.queue({ op: 'gc' });
    })();
    this.kick();
    this.log.info({ disk, snapshot: id }, 'snapshot deleted');
  }

  /** Resets the disk to its golden image, or re-bases it onto another image. */
  async resetDisk(disk: string, image?: string): Promise<void> {
    this.assertOpen();
    const d = this.diskRow(disk);
    this.refuseIfOpen(d, 'reset');
    let img: RbdImageRow;
    if (image !== undefined) img = this.imageRow(image);
    else {
      const r = d.image_id === null ? undefined : (this.q.imageById.get(d.image_id) as RbdImageRow | undefined);
      if (!r || r.state !== 'ready') throw new StoreError('IMAGE_NOT_FOUND', `disk ${disk} has no base image to reset to`);
      img = r;
    }
    await this.swapHead(disk, img.rbd, img.snap, img.id, img.size_bytes);
    this.log.info({ disk, image: img.name }, 'disk reset');
  }

  private async swapHead(disk: string, parent: string, snap: string, imageId: number | null, size: number): Promise<void> {
    await this.exclusive(async () => {
      await this.drain();
      const head = this.db.transaction(() => {
        const h = this.newRbdName('d');
        this.q.insertRbdImage.run(h, parent, snap);
        return h;
      })();
      await this.cli.clone(parent, snap, head);
      const d = this.diskRow(disk);
      this.refuseIfOpen(d, 'restore');
      this.db.transaction(() => {
        this.q.setDiskHead.run(head, imageId, size, d.id);
        this.queue({ op: 'gc' });
      })();
    });
    this.kick();
  }

  /** A snapshot becomes a golden image in O(1): the image is that RBD snapshot (protected). */
  promoteSnapshot(disk: string, id: number, imageName: string): ImageInfo {
    this.assertOpen();
    this.checkName(imageName);
    if (this.q.imageByName.get(imageName) || this.q.diskByName.get(imageName)) throw new StoreError('IMAGE_EXISTS', `${imageName} already exists`);
    const d = this.diskRow(disk);
    const s = this.snapshotRow(d, id);
    let iid = 0;
    this.db.transaction(() => {
      iid = Number(this.q.insertImage.run(imageName, s.rbd, s.snap, s.size_bytes, this.clock.now(), 'ready', `snapshot:${d.name}/${s.name}`).lastInsertRowid);
      this.queue({ op: 'snap', image: s.rbd, snap: s.snap, protect: true });
    })();
    this.kick();
    this.log.info({ disk, snapshot: id, image: imageName }, 'snapshot promoted');
    return this.imageInfo(this.q.imageById.get(iid) as RbdImageRow);
  }

  // ---- export, usage, health ----

  exportVolume(name: string, opts: { snapshot?: number; format: ExportFormat }): ExportStream {
    this.assertOpen();
    return exportStream(this.openVolume(name, { readOnly: true, snapshot: opts.snapshot }), opts.format);
  }

  /** What `rbd du` last said about our images (refreshed after each garbage collection). */
  usage(): Pick<StoreUsage, 'capacityBytes' | 'usedBytes' | 'freeBytes'> & { provisionedBytes: number } {
    return { capacityBytes: 0, usedBytes: this.usageCache.usedBytes, freeBytes: 0, provisionedBytes: this.usageCache.provisionedBytes };
  }

  /** 'degraded' while a cluster operation keeps failing (it is retried with backoff). */
  health(): StoreHealth {
    if (!this.lastOpError) return { state: 'ok' };
    const now = this.clock.now();
    return {
      state: 'degraded',
      degraded: { since: now, last: now, failures: (this.q.ops.all() as unknown[]).length, reason: this.lastOpError, segments: [], disks: [] },
    };
  }

  /**
   * Compares the catalogue with the pool: every RBD image and snapshot the catalogue needs must
   * exist, and every image of ours in the pool must be in the catalogue (or queued for removal).
   */
  async check(): Promise<{ ok: boolean; problems: string[] }> {
    this.assertOpen();
    return this.exclusive(async () => {
      const problems: string[] = [];
      const pool = new Set((await this.cli.list()).filter((n) => n.startsWith(this.prefix)));
      const known = new Set((this.q.rbdImages.all() as { name: string }[]).map((r) => r.name));
      for (const n of pool) if (!known.has(n)) problems.push(`RBD image ${n} is not in the catalogue`);
      const pending = (this.q.ops.all() as unknown[]).length > 0;
      for (const d of this.q.disks.all() as RbdDiskRow[]) if (!pool.has(d.rbd) && !pending) problems.push(`disk ${d.name}: RBD image ${d.rbd} is missing`);
      const wanted = [...(this.q.images.all() as RbdImageRow[]).filter((i) => i.state === 'ready'), ...(this.q.snapshots.all() as RbdSnapshotRow[])];
      const byImage = new Map<string, Set<string>>();
      for (const w of wanted) {
        if (!byImage.has(w.rbd)) byImage.set(w.rbd, new Set(pool.has(w.rbd) ? (await this.cli.snapshots(w.rbd)).map((s) => s.name) : []));
        if (!byImage.get(w.rbd)!.has(w.snap)) problems.push(`${w.name}: RBD snapshot ${w.rbd}@${w.snap} is missing`);
      }
      return { ok: problems.length === 0, problems };
    });
  }

  /** Images of ours in the pool right now (tests: nothing left after deleting everything). */
  async poolImages(): Promise<string[]> {
    return (await this.cli.list()).filter((n) => n.startsWith(this.prefix));
  }

  /** Waits until every queued cluster operation is applied (tests, shutdown). */
  async settle(): Promise<void> {
    await this.exclusive(() => this.drain());
  }

  /** Flushes and closes every open image, waits for queued operations, then disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.exclusive(() => this.drain()).catch(() => undefined);
    this.closed = true;
    this.retryCancel?.();
    for (const sh of this.shared.values()) sh.closed = true;
    const open = [...this.shared.values()];
    this.shared.clear();
    for (const sh of open) {
      sh.inflight = 0;
      await sh.release(true).catch(() => undefined);
    }
    await this.tail.catch(() => undefined);
    try {
      this.cluster.shutdown();
    } catch (err) {
      this.log.warn({ err }, 'RADOS connection left open: read-only handles were not closed');
    }
    this.q.setCounter.run('clean_close', 1);
    this.db.close();
  }

  // ---- rows and infos ----

  private imageRow(name: string): RbdImageRow {
    const r = this.q.imageByName.get(name) as RbdImageRow | undefined;
    if (!r || r.state !== 'ready') throw new StoreError('IMAGE_NOT_FOUND', `image ${name} not found`);
    return r;
  }

  private diskRow(name: string): RbdDiskRow {
    const r = this.q.diskByName.get(name) as RbdDiskRow | undefined;
    if (!r) throw new StoreError('DISK_NOT_FOUND', `disk ${name} not found`);
    return r;
  }

  private snapshotRow(d: RbdDiskRow, id: number): RbdSnapshotRow {
    const r = this.q.snapshot.get(id, d.id) as RbdSnapshotRow | undefined;
    if (!r) throw new StoreError('SNAPSHOT_NOT_FOUND', `snapshot ${id} of disk ${d.name} not found`);
    return r;
  }

  private imageName(id: number | null): string | null {
    if (id === null) return null;
    const r = this.q.imageById.get(id) as RbdImageRow | undefined;
    return r && r.state === 'ready' ? r.name : null;
  }

  private imageInfo(r: RbdImageRow): ImageInfo {
    return {
      id: r.id,
      name: r.name,
      sizeBytes: r.size_bytes,
      usedBytes: 0,
      createdAt: r.created_at,
      source: r.source,
      disks: (this.q.disksUsingImage.all(r.id) as unknown[]).length,
    };
  }

  private diskInfo(r: RbdDiskRow): DiskInfo {
    return {
      id: r.id,
      name: r.name,
      image: this.imageName(r.image_id),
      sizeBytes: r.size_bytes,
      usedBytes: 0,
      createdAt: r.created_at,
      snapshots: (this.q.snapshotsOf.all(r.id) as unknown[]).length,
      open: (this.shared.get(r.id)?.handles ?? 0) > 0,
    };
  }

  private snapshotInfo(s: RbdSnapshotRow, d: RbdDiskRow): SnapshotInfo {
    return { id: s.id, disk: d.name, name: s.name, sizeBytes: s.size_bytes, usedBytes: 0, createdAt: s.created_at, image: this.imageName(s.image_id) };
  }
}

/** The `ip:port/nonce` addresses in a RADOS address list ("[v2:a/n,v1:b/n]" or "a/n"), for comparing lock owners. */
export function addressKeys(addrs: string): string[] {
  return addrs
    .split(/[\s,[\]]+/)
    .map((a) => a.replace(/^(?:v1|v2|any):/, ''))
    .filter((a) => a.includes('/'));
}
