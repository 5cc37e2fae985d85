import Database from 'better-sqlite3';

/**
 * The RBD backend's catalogue: which RBD image and snapshot each golden image, client disk and
 * snapshot is, the lineage of the RBD images we made (for garbage collection), and the queue of
 * cluster operations still to apply. SQLite (WAL, synchronous=FULL) on the box, like the local
 * store's metadata: the management API stays synchronous and every answer ("exists", "in use",
 * "not found") comes from here, so both backends give the same errors. The cluster holds the
 * data; docs/multi-appliance.md says how this catalogue would move next to it.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS images (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, rbd TEXT NOT NULL, snap TEXT NOT NULL,
  size_bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, state TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS disks (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, image_id INTEGER,
  rbd TEXT NOT NULL, size_bytes INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT, disk_id INTEGER NOT NULL, name TEXT NOT NULL, rbd TEXT NOT NULL,
  snap TEXT NOT NULL, size_bytes INTEGER NOT NULL, image_id INTEGER, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rbd_images (name TEXT PRIMARY KEY, parent TEXT, parent_snap TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rbd_snaps (image TEXT NOT NULL, snap TEXT NOT NULL, PRIMARY KEY (image, snap)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ops (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
-- The RADOS client addresses (ip:port/nonce) this store's processes had: an exclusive lock one of
-- them still holds was left by a process that died (the catalogue is opened by one process at a time).
CREATE TABLE IF NOT EXISTS instances (owner TEXT PRIMARY KEY, started_at INTEGER NOT NULL) WITHOUT ROWID;
`;

export interface RbdImageRow {
  id: number;
  name: string;
  rbd: string;
  snap: string;
  size_bytes: number;
  created_at: number;
  state: string;
  source: string;
}
export interface RbdDiskRow {
  id: number;
  name: string;
  image_id: number | null;
  rbd: string;
  size_bytes: number;
  created_at: number;
}
export interface RbdSnapshotRow {
  id: number;
  disk_id: number;
  name: string;
  rbd: string;
  snap: string;
  size_bytes: number;
  image_id: number | null;
  created_at: number;
}

/** A cluster operation, recorded with the catalogue change that needs it and applied in order. */
export type ClusterOp =
  | { op: 'clone'; parent: string; snap: string; child: string }
  | { op: 'snap'; image: string; snap: string; protect: boolean }
  | { op: 'gc' };

export function openCatalogue(file: string, sqliteBinding?: string): Database.Database {
  const db = new Database(file, { nativeBinding: sqliteBinding, timeout: 500 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(SCHEMA);
    db.exec('BEGIN IMMEDIATE; COMMIT');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code?.startsWith('SQLITE_BUSY')) throw new Error(`RBD catalogue ${file} is in use by another process`);
    throw err;
  }
  return db;
}

/** Prepared statements over the catalogue. */
export function catalogueQueries(db: Database.Database) {
  const p = (sql: string) => db.prepare(sql);
  return {
    images: p('SELECT * FROM images ORDER BY id'),
    imageByName: p('SELECT * FROM images WHERE name = ?'),
    instances: p('SELECT owner FROM instances'),
    insertInstance: p('INSERT OR REPLACE INTO instances (owner, started_at) VALUES (?, ?)'),
    trimInstances: p('DELETE FROM instances WHERE owner NOT IN (SELECT owner FROM instances ORDER BY started_at DESC LIMIT 32)'),
    imageById: p('SELECT * FROM images WHERE id = ?'),
    insertImage: p('INSERT INTO images (name, rbd, snap, size_bytes, created_at, state, source) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    setImageState: p('UPDATE images SET state = ? WHERE id = ?'),
    deleteImage: p('DELETE FROM images WHERE id = ?'),
    disks: p('SELECT * FROM disks ORDER BY id'),
    diskByName: p('SELECT * FROM disks WHERE name = ?'),
    diskById: p('SELECT * FROM disks WHERE id = ?'),
    disksUsingImage: p('SELECT name FROM disks WHERE image_id = ?'),
    insertDisk: p('INSERT INTO disks (name, image_id, rbd, size_bytes, created_at) VALUES (?, ?, ?, ?, ?)'),
    setDiskHead: p('UPDATE disks SET rbd = ?, image_id = ?, size_bytes = ? WHERE id = ?'),
    deleteDisk: p('DELETE FROM disks WHERE id = ?'),
    snapshots: p('SELECT * FROM snapshots ORDER BY id'),
    snapshotsOf: p('SELECT * FROM snapshots WHERE disk_id = ? ORDER BY id'),
    snapshot: p('SELECT * FROM snapshots WHERE id = ? AND disk_id = ?'),
    insertSnapshot: p('INSERT INTO snapshots (disk_id, name, rbd, snap, size_bytes, image_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    deleteSnapshot: p('DELETE FROM snapshots WHERE id = ?'),
    deleteSnapshotsOf: p('DELETE FROM snapshots WHERE disk_id = ?'),
    rbdImages: p('SELECT * FROM rbd_images'),
    insertRbdImage: p('INSERT OR IGNORE INTO rbd_images (name, parent, parent_snap) VALUES (?, ?, ?)'),
    deleteRbdImage: p('DELETE FROM rbd_images WHERE name = ?'),
    rbdSnaps: p('SELECT * FROM rbd_snaps'),
    insertRbdSnap: p('INSERT OR IGNORE INTO rbd_snaps (image, snap) VALUES (?, ?)'),
    deleteRbdSnap: p('DELETE FROM rbd_snaps WHERE image = ? AND snap = ?'),
    ops: p('SELECT * FROM ops ORDER BY seq'),
    insertOp: p('INSERT INTO ops (op) VALUES (?)'),
    deleteOp: p('DELETE FROM ops WHERE seq = ?'),
    counter: p('SELECT value FROM counters WHERE name = ?'),
    setCounter: p('INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value'),
  };
}
export type CatalogueQueries = ReturnType<typeof catalogueQueries>;
