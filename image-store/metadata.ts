import Database from 'better-sqlite3';

/**
 * The store's SQLite metadata: segments, layers and their extents, and the names that hold
 * layers (images, disks, snapshots). WAL with synchronous=FULL: every commit is durable when it
 * returns, which the write-ordering argument in README.md relies on.
 *
 * A layer is a set of extents (logical chunk -> physical chunk, or ZERO) over a parent layer.
 * A view (image, disk, snapshot) is one layer; reading it means the topmost layer in its chain
 * that has an extent for the chunk, else zeros. Each physical chunk is in exactly one extent.
 */

/** extents.pchunk value meaning "this chunk reads as zeros" (takes no space). */
export const ZERO_EXTENT = -1;

export const FORMAT_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (id INTEGER PRIMARY KEY, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  parent INTEGER REFERENCES layers(id),
  created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent);
CREATE TABLE IF NOT EXISTS extents (
  layer INTEGER NOT NULL, lchunk INTEGER NOT NULL, pchunk INTEGER NOT NULL,
  PRIMARY KEY (layer, lchunk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, layer INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,
  state TEXT NOT NULL, source TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS images_layer ON images(layer);
CREATE TABLE IF NOT EXISTS disks (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, image_id INTEGER,
  layer INTEGER NOT NULL, size_bytes INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS disks_layer ON disks(layer);
CREATE INDEX IF NOT EXISTS disks_image ON disks(image_id);
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT, disk_id INTEGER NOT NULL, name TEXT NOT NULL,
  layer INTEGER NOT NULL, size_bytes INTEGER NOT NULL, image_id INTEGER,
  created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS snapshots_layer ON snapshots(layer);
CREATE INDEX IF NOT EXISTS snapshots_disk ON snapshots(disk_id);
`;

export interface ImageRow {
  id: number;
  name: string;
  layer: number;
  size_bytes: number;
  created_at: number;
  state: string;
  source: string;
}
export interface DiskRow {
  id: number;
  name: string;
  image_id: number | null;
  layer: number;
  size_bytes: number;
  created_at: number;
}
export interface SnapshotRow {
  id: number;
  disk_id: number;
  name: string;
  layer: number;
  size_bytes: number;
  image_id: number | null;
  created_at: number;
}

/** What a garbage-collection pass did: chunks to release after commit, layers merged (from -> into). */
export interface GcResult {
  freed: number[];
  merged: { from: number; into: number }[];
  deleted: number[];
}

/** Opens (creating when absent) the metadata database and checks its format. */
export function openDatabase(file: string, params: { chunkBytes: number; segmentBytes: number; sqliteBinding?: string }): Database.Database {
  // nativeBinding: in the single-file bundle the addon ships beside dist/appliance.cjs.
  const db = new Database(file, { nativeBinding: params.sqliteBinding, timeout: 500 });
  try {
    // One process owns a store: its free map lives in memory, so a second writer (another
    // appliance, or check-cli --repair while it runs) would corrupt it. EXCLUSIVE locking set
    // before WAL also keeps the WAL index in heap memory (no -shm mmap; fine on FAT/exFAT).
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = OFF');
    db.exec(SCHEMA);
    db.exec('BEGIN IMMEDIATE; COMMIT');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) throw new Error(`image store ${file} is in use by another process`);
    throw err;
  }
  const get = (k: string) => (db.prepare('SELECT value FROM meta WHERE key = ?').get(k) as { value: string } | undefined)?.value;
  if (get('format') === undefined) {
    const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
    db.transaction(() => {
      put.run('format', String(FORMAT_VERSION));
      put.run('chunkBytes', String(params.chunkBytes));
      put.run('segmentBytes', String(params.segmentBytes));
    })();
  } else if (Number(get('format')) !== FORMAT_VERSION) {
    db.close();
    throw new Error(`store format ${get('format')} is not supported (expected ${FORMAT_VERSION})`);
  }
  return db;
}

/** Reads the geometry a store was created with (it never changes afterwards). */
export function storeGeometry(db: Database.Database): { chunkBytes: number; segmentBytes: number } {
  const rows = db.prepare("SELECT key, value FROM meta WHERE key IN ('chunkBytes','segmentBytes')").all() as { key: string; value: string }[];
  const m = new Map(rows.map((r) => [r.key, Number(r.value)]));
  return { chunkBytes: m.get('chunkBytes')!, segmentBytes: m.get('segmentBytes')! };
}

/**
 * Prepared statements and the layer-graph operations. Every method that changes rows is meant
 * to run inside a caller's transaction; none releases space itself (the caller does it after
 * the commit, so freed space is reused only once the change that freed it is durable).
 */
export class Metadata {
  readonly q;
  private readonly pinned = new Map<number, number>();

  constructor(readonly db: Database.Database) {
    this.q = {
      newLayer: db.prepare('INSERT INTO layers (parent, created_at) VALUES (?, ?)'),
      layer: db.prepare('SELECT id, parent FROM layers WHERE id = ?'),
      setParent: db.prepare('UPDATE layers SET parent = ? WHERE id = ?'),
      deleteLayer: db.prepare('DELETE FROM layers WHERE id = ?'),
      children: db.prepare('SELECT id FROM layers WHERE parent = ? LIMIT 2'),
      namedRefs: db.prepare(`SELECT (SELECT count(*) FROM images WHERE layer = @l) + (SELECT count(*) FROM disks WHERE layer = @l)
        + (SELECT count(*) FROM snapshots WHERE layer = @l) AS n`),
      extentsOf: db.prepare('SELECT lchunk, pchunk FROM extents WHERE layer = ?'),
      /** Same rows as [lchunk, pchunk] arrays: no object per row when loading a big map. */
      extentsRaw: db.prepare('SELECT lchunk, pchunk FROM extents WHERE layer = ?').raw(true),
      allRealRaw: db.prepare('SELECT pchunk FROM extents WHERE pchunk >= 0').raw(true),
      extent: db.prepare('SELECT pchunk FROM extents WHERE layer = ? AND lchunk = ?'),
      upsertExtent: db.prepare(
        'INSERT INTO extents (layer, lchunk, pchunk) VALUES (?, ?, ?) ON CONFLICT (layer, lchunk) DO UPDATE SET pchunk = excluded.pchunk',
      ),
      insertExtentIfAbsent: db.prepare('INSERT INTO extents (layer, lchunk, pchunk) VALUES (?, ?, ?) ON CONFLICT (layer, lchunk) DO NOTHING'),
      deleteExtents: db.prepare('DELETE FROM extents WHERE layer = ?'),
      realChunksOf: db.prepare('SELECT pchunk FROM extents WHERE layer = ? AND pchunk >= 0'),
      countAll: db.prepare('SELECT count(*) AS n FROM extents WHERE layer = ?'),
      repoint: [
        db.prepare('UPDATE layers SET parent = @to WHERE parent = @from'),
        db.prepare('UPDATE disks SET layer = @to WHERE layer = @from'),
        db.prepare('UPDATE snapshots SET layer = @to WHERE layer = @from'),
        db.prepare('UPDATE images SET layer = @to WHERE layer = @from'),
      ],
      countReal: db.prepare('SELECT count(*) AS n FROM extents WHERE layer = ? AND pchunk >= 0'),
      allReal: db.prepare('SELECT pchunk FROM extents WHERE pchunk >= 0'),
      segments: db.prepare('SELECT id, bytes FROM segments ORDER BY id'),
      addSegment: db.prepare('INSERT INTO segments (id, bytes) VALUES (?, ?)'),
      images: db.prepare('SELECT * FROM images ORDER BY name'),
      isImageLayer: db.prepare('SELECT 1 AS x FROM images WHERE layer = ? LIMIT 1'),
      imageByName: db.prepare('SELECT * FROM images WHERE name = ?'),
      imageById: db.prepare('SELECT * FROM images WHERE id = ?'),
      insertImage: db.prepare('INSERT INTO images (name, layer, size_bytes, created_at, state, source) VALUES (?, ?, ?, ?, ?, ?)'),
      setImageState: db.prepare('UPDATE images SET state = ?, size_bytes = ? WHERE id = ?'),
      deleteImage: db.prepare('DELETE FROM images WHERE id = ?'),
      disksUsingImage: db.prepare('SELECT name FROM disks WHERE image_id = ?'),
      snapshotsUsingImage: db.prepare('SELECT count(*) AS n FROM snapshots WHERE image_id = ?'),
      disks: db.prepare('SELECT * FROM disks ORDER BY name'),
      diskByName: db.prepare('SELECT * FROM disks WHERE name = ?'),
      diskById: db.prepare('SELECT * FROM disks WHERE id = ?'),
      insertDisk: db.prepare('INSERT INTO disks (name, image_id, layer, size_bytes, created_at) VALUES (?, ?, ?, ?, ?)'),
      setDiskLayer: db.prepare('UPDATE disks SET layer = ?, image_id = ?, size_bytes = ? WHERE id = ?'),
      deleteDisk: db.prepare('DELETE FROM disks WHERE id = ?'),
      renameDisk: db.prepare('UPDATE disks SET name = ? WHERE id = ?'),
      snapshotsOf: db.prepare('SELECT * FROM snapshots WHERE disk_id = ? ORDER BY id'),
      snapshot: db.prepare('SELECT * FROM snapshots WHERE id = ? AND disk_id = ?'),
      insertSnapshot: db.prepare('INSERT INTO snapshots (disk_id, name, layer, size_bytes, image_id, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      deleteSnapshot: db.prepare('DELETE FROM snapshots WHERE id = ?'),
    };
  }

  /** The store's degraded record (store.ts DegradedInfo) in the meta table, or null. */
  getDegraded(): unknown {
    const r = this.db.prepare("SELECT value FROM meta WHERE key = 'degraded'").get() as { value: string } | undefined;
    return r ? JSON.parse(r.value) : null;
  }

  /** Records (durably: synchronous=FULL) or clears the degraded record. */
  setDegraded(value: unknown): void {
    if (value === null) this.db.prepare("DELETE FROM meta WHERE key = 'degraded'").run();
    else
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('degraded', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(JSON.stringify(value));
  }

  /** Creates an empty layer over `parent` (null for a root). */
  newLayer(parent: number | null, now: number): number {
    return Number(this.q.newLayer.run(parent, now).lastInsertRowid);
  }

  /** The chain from `top` down to its root, top first. */
  chain(top: number): number[] {
    const out: number[] = [];
    let cur: number | null = top;
    while (cur !== null) {
      if (out.length > 1_000_000) throw new Error(`layer chain from ${top} has a cycle`);
      out.push(cur);
      const row = this.q.layer.get(cur) as { id: number; parent: number | null } | undefined;
      if (!row) throw new Error(`layer ${cur} is missing`);
      cur = row.parent;
    }
    return out;
  }

  /** Keeps a layer alive while an in-memory view (an export, a read-only open) reads it. */
  pin(layer: number): void {
    this.pinned.set(layer, (this.pinned.get(layer) ?? 0) + 1);
  }

  /** Layers pinned by open read-only views (check counts them as referenced). */
  pinnedLayers(): number[] {
    return [...this.pinned.keys()];
  }

  /** Releases a pin; returns true when the layer may now be collectable. */
  unpin(layer: number): boolean {
    const n = (this.pinned.get(layer) ?? 0) - 1;
    if (n <= 0) this.pinned.delete(layer);
    else this.pinned.set(layer, n);
    return n <= 0;
  }

  /**
   * Collects `layer` and then its ancestors as far as they became garbage: a layer nothing
   * refers to is deleted (its chunks freed); a layer whose only reference is one child layer
   * is merged into that child (extents the child overrides are freed). O(extents touched).
   */
  collect(layer: number | null, out: GcResult = { freed: [], merged: [], deleted: [] }): GcResult {
    let cur = layer;
    while (cur !== null) {
      const row = this.q.layer.get(cur) as { id: number; parent: number | null } | undefined;
      if (!row) break;
      if (this.pinned.has(cur)) break;
      const named = (this.q.namedRefs.get({ l: cur }) as { n: number }).n;
      if (named > 0) break;
      const kids = this.q.children.all(cur) as { id: number }[];
      if (kids.length === 0) {
        for (const r of this.q.realChunksOf.all(cur) as { pchunk: number }[]) out.freed.push(r.pchunk);
        this.q.deleteExtents.run(cur);
        this.q.deleteLayer.run(cur);
        out.deleted.push(cur);
        cur = row.parent;
      } else if (kids.length === 1) {
        // The survivor takes our place (the parent's child count is unchanged), but it may be
        // garbage itself (deleteDisk drops several names at once): look at it again.
        cur = this.merge(cur, kids[0].id, row.parent, out);
      } else {
        break;
      }
    }
    return out;
  }

  /**
   * Folds layer `from` into its only child `into`. Costs O(smaller layer): when the child holds
   * fewer extents (the usual case: a snapshot deleted right under a fresh disk top) the child's
   * extents move down instead and the parent takes over the child's id-bearing references.
   */
  private merge(from: number, into: number, parent: number | null, out: GcResult): number {
    const nFrom = (this.q.countAll.get(from) as { n: number }).n;
    const nInto = (this.q.countAll.get(into) as { n: number }).n;
    if (nInto < nFrom && !this.pinned.has(into)) {
      for (const e of this.q.extentsOf.all(into) as { lchunk: number; pchunk: number }[]) {
        const old = this.q.extent.get(from, e.lchunk) as { pchunk: number } | undefined;
        if (old && old.pchunk >= 0 && old.pchunk !== e.pchunk) out.freed.push(old.pchunk);
        this.q.upsertExtent.run(from, e.lchunk, e.pchunk);
      }
      this.q.deleteExtents.run(into);
      for (const st of this.q.repoint) st.run({ from: into, to: from });
      this.q.deleteLayer.run(into);
      // Open views: entries of `into` now belong to `from`, and a view whose top was `into` now has `from`.
      out.merged.push({ from: into, into: from });
      return from;
    }
    for (const e of this.q.extentsOf.all(from) as { lchunk: number; pchunk: number }[]) {
      const moved = this.q.insertExtentIfAbsent.run(into, e.lchunk, e.pchunk).changes === 1;
      if (!moved && e.pchunk >= 0) out.freed.push(e.pchunk);
    }
    this.q.deleteExtents.run(from);
    this.q.setParent.run(parent, into);
    this.q.deleteLayer.run(from);
    out.merged.push({ from, into });
    return into;
  }
}
