import type Database from 'better-sqlite3';

/** Appliance-level marks on golden images (the store knows only their blocks). */
export interface ImageFlags {
  /** A rescue image may be booted as a one-shot with the client's own disk attached as LUN 1. */
  rescue: boolean;
}

/** Keeps image marks in the appliance database, keyed by image name. */
export class ImageFlagStore {
  constructor(private readonly db: Database.Database) {
    db.exec('CREATE TABLE IF NOT EXISTS image_flags (name TEXT PRIMARY KEY, rescue INTEGER NOT NULL DEFAULT 0)');
  }

  get(name: string): ImageFlags {
    const r = this.db.prepare('SELECT rescue FROM image_flags WHERE name = ?').get(name) as { rescue: number } | undefined;
    return { rescue: r?.rescue === 1 };
  }

  set(name: string, flags: ImageFlags): void {
    this.db
      .prepare('INSERT INTO image_flags (name, rescue) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET rescue = excluded.rescue')
      .run(name, flags.rescue ? 1 : 0);
  }

  forget(name: string): void {
    this.db.prepare('DELETE FROM image_flags WHERE name = ?').run(name);
  }
}
