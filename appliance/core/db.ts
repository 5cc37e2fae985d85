import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync } from 'node:fs';
import { join } from 'node:path';

declare const __BUNDLE__: boolean | undefined;

/**
 * Where better-sqlite3's native addon is. In the single-file bundle it ships beside
 * dist/appliance.cjs and is passed through `nativeBinding`; in development the package finds
 * its own build.
 */
export function nativeBindingPath(): string | undefined {
  if (typeof __BUNDLE__ === 'undefined' || !__BUNDLE__) return undefined;
  const candidate = join(__dirname, 'better_sqlite3.node');
  return existsSync(candidate) ? candidate : undefined;
}

/** The database and the files SQLite keeps beside it. */
const SIDE_FILES = ['', '-wal', '-shm', '-journal'];

/**
 * Makes the database and its side files owner-only (they hold CHAP secrets). A missing
 * database is created empty at 0600 first: SQLite gives the -wal and -shm files it creates the
 * main file's mode, and an empty file is a valid empty database.
 */
export function restrictDatabaseFiles(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  for (const suffix of SIDE_FILES) {
    try {
      chmodSync(file + suffix, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

/**
 * Opens (creating) a SQLite database in WAL mode with synchronous=FULL, so each commit is
 * durable and multi-row changes are atomic (SQLite's WAL mode with synchronous=FULL). A writable file database
 * and its -wal/-shm are mode 0600, before and after opening (existing ones are tightened).
 */
export function openDatabase(file: string, opts: { readonly?: boolean } = {}): Database.Database {
  const onDisk = !opts.readonly && file !== ':memory:' && file !== '';
  if (onDisk) restrictDatabaseFiles(file);
  const db = new Database(file, { nativeBinding: nativeBindingPath(), readonly: opts.readonly ?? false });
  if (!opts.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
  }
  if (onDisk) restrictDatabaseFiles(file);
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  return db;
}
