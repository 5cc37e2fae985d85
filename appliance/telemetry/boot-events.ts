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

/** How far an unknown client's boot got, furthest last. */
export const UNKNOWN_STAGES = ['dhcp', 'tftp', 'ipxe', 'script'] as const;
export type UnknownStage = (typeof UNKNOWN_STAGES)[number];

/**
 * A network-boot client the appliance heard but does not know (no client row): what zero-touch
 * enrolment lists as "waiting to boot". Derived from its boot events as they are recorded.
 */
export interface UnknownClient {
  mac: string;
  /** Option 93 (client architecture), when a DHCP request carried it. */
  arch: number | null;
  /** Option 60 (PXEClient:Arch:..., HTTPClient..., iPXE's own), when seen. */
  vendorClass: string | null;
  /** Its address, when the exchange told us (full mode's lease, a REQUEST's address). */
  address: string | null;
  firstSeen: number;
  lastSeen: number;
  /** How far it got: DHCP only, fetched iPXE over TFTP, iPXE asked DHCP, iPXE fetched its script. */
  stage: UnknownStage;
}

/** The furthest stage an event shows, for an unknown MAC; undefined for stages it cannot reach. */
function unknownStage(event: BootEvent): UnknownStage | undefined {
  if (event.stage.startsWith('dhcp-')) return event.detail?.ipxe === true ? 'ipxe' : 'dhcp';
  if (event.stage.startsWith('tftp-')) return 'tftp';
  if (event.stage === 'script-fetched') return 'script';
  return undefined;
}

/** Bounds on what BootEventStore keeps. */
export interface BootEventLimits {
  /** Events kept per MAC, newest first (default 500; up to TRIM_SLACK more between trims). */
  perClient?: number;
  /**
   * MACs that are not registered clients whose events are kept (default 500): the ones seen
   * most recently; the oldest is forgotten first. Anyone on the segment can send DISCOVERs with
   * a new chaddr each (issue #13), so without it the table grows with every spoofed MAC.
   */
  maxUnknownMacs?: number;
  /**
   * True for a registered client's MAC (their timelines are never dropped for the unknown
   * bound). Injected so telemetry does not depend on the client registry. Default: none is.
   */
  isClient?: (mac: string) => boolean;
}

/** Rows a MAC may pass perClient by before it is trimmed: one DELETE per TRIM_SLACK events, not per event. */
const TRIM_SLACK = 50;

/** What the store knows of one MAC's rows, so the bounds cost no query per event. */
interface MacState {
  rows: number;
  /** The newest row: its id, stage+detail key and time (identical repeats within 1 s collapse). */
  id: number;
  key: string;
  at: number;
}

/**
 * Keeps each client's boot timeline in SQLite, bounded to `perClient` events per MAC (oldest
 * dropped) so a client that loops forever cannot fill the disk, and to `maxUnknownMacs` MACs
 * that are not registered clients (least recently seen dropped) so spoofed DHCP traffic cannot
 * either. Repeated identical events within a second collapse into one (a ROM retrying DHCP 10
 * times is one line, with a count).
 *
 * Every writer (DHCP, TFTP, iSCSI, the script route, the GRUB road: all through the one EventBatch the composition root puts in front of this store) comes through
 * record(), so the bounds hold whichever path writes. The per-MAC row counts and the order of
 * unknown MACs live in memory, read from the table on first use (so a table grown before a
 * restart, or before these bounds existed, is cut back then). If a batch's commit fails after
 * an eviction, the memory is ahead of the table: the rows left behind are found at the next start.
 *
 * Zero-touch enrolment (issue #14): for each MAC that is not a client, one summary row in
 * `unknown_clients` (architecture, vendor class, address, first/last seen, furthest stage) is
 * kept beside its events, under the same `maxUnknownMacs` bound and dropped with them, so the
 * "waiting to boot" list costs one small table, not a scan of the timelines.
 */
export class BootEventStore implements BootEventSink {
  private readonly insert;
  private readonly trim;
  private readonly bump;
  private readonly dropMac;
  private readonly upsertUnknown;
  private readonly dropUnknown;
  private readonly perClient: number;
  private readonly maxUnknownMacs: number;
  private readonly isClient: (mac: string) => boolean;
  /** Every MAC with rows (registered clients and at most maxUnknownMacs others). */
  private readonly macs = new Map<string, MacState>();
  /** MACs not known as clients, least recently seen first (a Set keeps insertion order). */
  private readonly unknown = new Set<string>();
  private loaded = false;

  constructor(
    private readonly db: Database.Database,
    private readonly clock: Clock,
    limits: BootEventLimits = {},
  ) {
    this.perClient = limits.perClient ?? 500;
    this.maxUnknownMacs = limits.maxUnknownMacs ?? 500;
    this.isClient = limits.isClient ?? (() => false);
    db.exec(`CREATE TABLE IF NOT EXISTS boot_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      mac TEXT NOT NULL, at INTEGER NOT NULL, stage TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}',
      count INTEGER NOT NULL DEFAULT 1);
      CREATE INDEX IF NOT EXISTS boot_events_mac ON boot_events(mac, id);`);
    this.insert = db.prepare('INSERT INTO boot_events (mac, at, stage, detail) VALUES (?, ?, ?, ?)');
    this.bump = db.prepare('UPDATE boot_events SET count = count + 1, at = ? WHERE id = ?');
    this.trim = db.prepare('DELETE FROM boot_events WHERE mac = ? AND id <= (SELECT id FROM boot_events WHERE mac = ? ORDER BY id DESC LIMIT 1 OFFSET ?)');
    this.dropMac = db.prepare('DELETE FROM boot_events WHERE mac = ?');
    db.exec(`CREATE TABLE IF NOT EXISTS unknown_clients (
      mac TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
      arch INTEGER, vendor_class TEXT, address TEXT, stage TEXT NOT NULL, rank INTEGER NOT NULL);`);
    this.upsertUnknown = db.prepare(`INSERT INTO unknown_clients (mac, first_seen, last_seen, arch, vendor_class, address, stage, rank)
      VALUES (@mac, @now, @now, @arch, @vc, @address, @stage, @rank)
      ON CONFLICT(mac) DO UPDATE SET last_seen = excluded.last_seen,
        arch = coalesce(excluded.arch, arch), vendor_class = coalesce(excluded.vendor_class, vendor_class),
        address = coalesce(excluded.address, address),
        stage = CASE WHEN excluded.rank > rank THEN excluded.stage ELSE stage END, rank = max(rank, excluded.rank)`);
    this.dropUnknown = db.prepare('DELETE FROM unknown_clients WHERE mac = ?');
  }

  record(event: BootEvent): void {
    if (!this.loaded) this.load();
    const now = this.clock.now();
    const mac = event.mac;
    const detail = JSON.stringify(event.detail ?? {});
    const key = `${event.stage}|${detail}`;
    let st = this.macs.get(mac);
    if (st && st.key === key && now - st.at < 1000) {
      this.bump.run(now, st.id);
      st.at = now;
      this.seen(mac, event, now);
      return;
    }
    const id = Number(this.insert.run(mac, now, event.stage, detail).lastInsertRowid);
    if (!st) this.macs.set(mac, (st = { rows: 0, id, key, at: now }));
    st.rows++;
    st.id = id;
    st.key = key;
    st.at = now;
    if (st.rows >= this.perClient + TRIM_SLACK) this.trimMac(mac, st);
    this.seen(mac, event, now);
  }

  /**
   * Moves an unknown MAC to the most recent end (updating its summary row), and forgets the least
   * recent beyond the bound. A MAC that has become a client leaves the unknown list.
   */
  private seen(mac: string, event: BootEvent, now: number): void {
    if (this.isClient(mac)) {
      if (this.unknown.delete(mac)) this.dropUnknown.run(mac);
      return;
    }
    this.unknown.delete(mac);
    this.unknown.add(mac);
    const stage = unknownStage(event);
    if (stage) {
      const d = event.detail ?? {};
      const ip = typeof d.ip === 'string' && d.ip !== '0.0.0.0' ? d.ip : null;
      this.upsertUnknown.run({
        mac,
        now,
        arch: typeof d.arch === 'number' ? d.arch : null,
        vc: typeof d.vc === 'string' ? d.vc.slice(0, 64) : null,
        address: ip,
        stage,
        rank: UNKNOWN_STAGES.indexOf(stage),
      });
    }
    if (this.unknown.size > this.maxUnknownMacs) this.evict();
  }

  private evict(): void {
    for (const mac of this.unknown) {
      if (this.unknown.size <= this.maxUnknownMacs) break;
      this.unknown.delete(mac);
      // Registered since its last event: it keeps its timeline (and leaves the unknown count).
      if (this.isClient(mac)) {
        this.dropUnknown.run(mac);
        continue;
      }
      this.dropMac.run(mac);
      this.dropUnknown.run(mac);
      this.macs.delete(mac);
    }
  }

  private trimMac(mac: string, st: MacState): void {
    this.trim.run(mac, mac, this.perClient);
    st.rows = Math.min(st.rows, this.perClient);
  }

  /** Reads each MAC's row count and recency from the table, then applies both bounds. */
  private load(): void {
    this.loaded = true;
    const rows = this.db.prepare('SELECT mac, count(*) AS n, max(id) AS last FROM boot_events GROUP BY mac ORDER BY last').all() as {
      mac: string;
      n: number;
      last: number;
    }[];
    for (const r of rows) {
      // key '' never matches: no collapsing into an event from before the restart.
      const st: MacState = { rows: r.n, id: r.last, key: '', at: -Infinity };
      this.macs.set(r.mac, st);
      if (st.rows > this.perClient) this.trimMac(r.mac, st);
      if (!this.isClient(r.mac)) this.unknown.add(r.mac);
    }
    if (this.unknown.size > this.maxUnknownMacs) this.evict();
    // Summaries whose timeline is gone (evicted before a crash) or whose MAC became a client.
    this.db.exec('DELETE FROM unknown_clients WHERE mac NOT IN (SELECT DISTINCT mac FROM boot_events)');
    for (const r of this.db.prepare('SELECT mac FROM unknown_clients').all() as { mac: string }[]) {
      if (this.isClient(r.mac)) this.dropUnknown.run(r.mac);
    }
  }

  /**
   * The network-boot clients heard that are not clients, most recently seen first (at most
   * maxUnknownMacs). A MAC registered since its last event is left out.
   */
  unknownClients(): UnknownClient[] {
    if (!this.loaded) this.load();
    const rows = this.db.prepare('SELECT * FROM unknown_clients ORDER BY last_seen DESC, mac').all() as {
      mac: string;
      first_seen: number;
      last_seen: number;
      arch: number | null;
      vendor_class: string | null;
      address: string | null;
      stage: UnknownStage;
    }[];
    return rows
      .filter((r) => !this.isClient(r.mac))
      .map((r) => ({
        mac: r.mac,
        arch: r.arch,
        vendorClass: r.vendor_class,
        address: r.address,
        firstSeen: r.first_seen,
        lastSeen: r.last_seen,
        stage: r.stage,
      }));
  }

  /** MACs whose events are kept (for tests and status). */
  get trackedMacs(): number {
    if (!this.loaded) this.load();
    return this.macs.size;
  }

  /** The newest `limit` events of one client, oldest first. */
  list(mac: string, limit = 200): (StoredBootEvent & { count: number })[] {
    const rows = this.db.prepare('SELECT * FROM (SELECT * FROM boot_events WHERE mac = ? ORDER BY id DESC LIMIT ?) ORDER BY id').all(mac, limit) as {
      id: number;
      mac: string;
      at: number;
      stage: BootStage;
      detail: string;
      count: number;
    }[];
    return rows.map((r) => ({ ...r, detail: JSON.parse(r.detail) }));
  }

  /** The latest event of every client (dashboard: last boot stage). */
  latestByClient(): Map<string, StoredBootEvent> {
    const rows = this.db.prepare('SELECT e.* FROM boot_events e JOIN (SELECT mac, MAX(id) id FROM boot_events GROUP BY mac) m ON e.id = m.id').all() as {
      id: number;
      mac: string;
      at: number;
      stage: BootStage;
      detail: string;
    }[];
    return new Map(rows.map((r) => [r.mac, { ...r, detail: JSON.parse(r.detail) }]));
  }

  /** Drops a client's timeline (client deleted). */
  forget(mac: string): void {
    this.dropMac.run(mac);
    this.dropUnknown.run(mac);
    this.macs.delete(mac);
    this.unknown.delete(mac);
  }
}
