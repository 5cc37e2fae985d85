import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
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

/**
 * Opens (creating) a SQLite database in WAL mode with synchronous=FULL, so each commit is
 * durable and multi-row changes are atomic (shared/notes/storage.md).
 */
export function openDatabase(file: string, opts: { readonly?: boolean } = {}): Database.Database {
  const db = new Database(file, { nativeBinding: nativeBindingPath(), readonly: opts.readonly ?? false });
  if (!opts.readonly) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
  }
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  return db;
}
