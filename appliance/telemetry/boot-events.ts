import type Database from 'better-sqlite3';
import type { Clock } from '../core/clock';
import type { BootEvent, BootEventSink, BootStage } from '../core/model';

/** A stored boot event. */
export interface StoredBootEvent {
  id: number;
  mac: string;
  at: number;
  stage: BootStage;
  detail: Record<string, string | number | boolean>;
}

/**
 * Keeps each client's boot timeline in SQLite, bounded to `perClient` events per MAC (oldest
 * dropped) so a client that loops forever cannot fill the disk. Repeated identical events
 * within a second collapse into one (a ROM retrying DHCP 10 times is one line, with a count).
 */
export class BootEventStore implements BootEventSink {
  private readonly insert;
  private readonly trim;
  private readonly last = new Map<string, { key: string; at: number; id: number }>();
  private readonly bump;

  constructor(private readonly db: Database.Database, private readonly clock: Clock, private readonly perClient = 500) {
    db.exec(`CREATE TABLE IF NOT EXISTS boot_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      mac TEXT NOT NULL, at INTEGER NOT NULL, stage TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}',
      count INTEGER NOT NULL DEFAULT 1);
      CREATE INDEX IF NOT EXISTS boot_events_mac ON boot_events(mac, id);`);
    this.insert = db.prepare('INSERT INTO boot_events (mac, at, stage, detail) VALUES (?, ?, ?, ?)');
    this.bump = db.prepare('UPDATE boot_events SET count = count + 1, at = ? WHERE id = ?');
    this.trim = db.prepare(
      'DELETE FROM boot_events WHERE mac = ? AND id <= (SELECT id FROM boot_events WHERE mac = ? ORDER BY id DESC LIMIT 1 OFFSET ?)',
    );
  }

  record(event: BootEvent): void {
    const now = this.clock.now();
    const detail = JSON.stringify(event.detail ?? {});
    const key = `${event.stage}|${detail}`;
    const prev = this.last.get(event.mac);
    if (prev && prev.key === key && now - prev.at < 1000) {
      this.bump.run(now, prev.id);
      prev.at = now;
      return;
    }
    const id = Number(this.insert.run(event.mac, now, event.stage, detail).lastInsertRowid);
    this.last.set(event.mac, { key, at: now, id });
    if (id % 50 === 0) this.trim.run(event.mac, event.mac, this.perClient);
  }

  /** The newest `limit` events of one client, oldest first. */
  list(mac: string, limit = 200): (StoredBootEvent & { count: number })[] {
    const rows = this.db
      .prepare('SELECT * FROM (SELECT * FROM boot_events WHERE mac = ? ORDER BY id DESC LIMIT ?) ORDER BY id')
      .all(mac, limit) as { id: number; mac: string; at: number; stage: BootStage; detail: string; count: number }[];
    return rows.map((r) => ({ ...r, detail: JSON.parse(r.detail) }));
  }

  /** The latest event of every client (dashboard: last boot stage). */
  latestByClient(): Map<string, StoredBootEvent> {
    const rows = this.db
      .prepare('SELECT e.* FROM boot_events e JOIN (SELECT mac, MAX(id) id FROM boot_events GROUP BY mac) m ON e.id = m.id')
      .all() as { id: number; mac: string; at: number; stage: BootStage; detail: string }[];
    return new Map(rows.map((r) => [r.mac, { ...r, detail: JSON.parse(r.detail) }]));
  }

  /** Drops a client's timeline (client deleted). */
  forget(mac: string): void {
    this.db.prepare('DELETE FROM boot_events WHERE mac = ?').run(mac);
    this.last.delete(mac);
  }
}
