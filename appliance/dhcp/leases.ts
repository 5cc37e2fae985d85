/**
 * Full-mode leases, kept in memory for fast allocation and written through to SQLite (table
 * dhcp_leases) so they survive restarts: a client gets the same address after the appliance
 * restarts, and addresses bound before a restart are not handed to anyone else.
 */
import type Database from 'better-sqlite3';

/** offered: held for a client between OFFER and REQUEST; bound: ACKed; released/expired: free but remembered (the same client gets it back first); declined: quarantined (RFC 2131 section 4.3.3). */
export type LeaseState = 'offered' | 'bound' | 'released' | 'declined';

/** One address's record. */
export interface Lease {
  ip: string;
  /** The client it belongs to ('' for a declined address nobody owns). */
  mac: string;
  state: LeaseState;
  /** ms since epoch; for offered/bound/declined the hold ends then; for released it is the release time. */
  expiresAt: number;
  hostName: string;
  updatedAt: number;
}

/** The lease table with an in-memory index by address and by MAC. */
export class LeaseStore {
  private readonly byIpMap = new Map<string, Lease>();
  private readonly byMacMap = new Map<string, Lease>();
  private readonly upsertStmt;
  private readonly deleteStmt;

  constructor(private readonly db: Database.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS dhcp_leases (
      ip TEXT PRIMARY KEY,
      mac TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'declined')),
      expires_at INTEGER NOT NULL,
      host_name TEXT NOT NULL DEFAULT '',
      updated_at INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS dhcp_leases_mac ON dhcp_leases(mac);`);
    this.upsertStmt = db.prepare(`INSERT INTO dhcp_leases (ip, mac, state, expires_at, host_name, updated_at)
      VALUES (@ip, @mac, @state, @expiresAt, @hostName, @updatedAt)
      ON CONFLICT(ip) DO UPDATE SET mac = excluded.mac, state = excluded.state, expires_at = excluded.expires_at,
        host_name = excluded.host_name, updated_at = excluded.updated_at`);
    this.deleteStmt = db.prepare('DELETE FROM dhcp_leases WHERE ip = ?');
    const rows = db.prepare('SELECT ip, mac, state, expires_at, host_name, updated_at FROM dhcp_leases ORDER BY updated_at').all() as {
      ip: string;
      mac: string;
      state: LeaseState;
      expires_at: number;
      host_name: string;
      updated_at: number;
    }[];
    for (const r of rows) {
      this.index({ ip: r.ip, mac: r.mac, state: r.state, expiresAt: r.expires_at, hostName: r.host_name, updatedAt: r.updated_at });
    }
  }

  private index(l: Lease): void {
    this.byIpMap.set(l.ip, l);
    // A MAC's lease is its most recently updated one.
    if (l.mac) this.byMacMap.set(l.mac, l);
  }

  /** The record for an address. */
  byIp(ip: string): Lease | undefined {
    return this.byIpMap.get(ip);
  }

  /** The client's latest record (any state but declined). */
  byMac(mac: string): Lease | undefined {
    const l = this.byMacMap.get(mac);
    return l && l.mac === mac && this.byIpMap.get(l.ip) === l ? l : undefined;
  }

  /**
   * Writes a record. A MAC holds one address: its previous record is marked released.
   * `persist` false keeps it in memory only: offers are held for seconds and need no durability,
   * and skipping the SQLite commit (an fsync) keeps DISCOVER->OFFER fast.
   */
  put(l: Lease, persist = true): void {
    const prev = l.mac ? this.byMac(l.mac) : undefined;
    const freed: Lease | undefined =
      prev && prev.ip !== l.ip && (prev.state === 'offered' || prev.state === 'bound')
        ? { ...prev, state: 'released', expiresAt: l.updatedAt, updatedAt: l.updatedAt }
        : undefined;
    if (persist) {
      this.db.transaction(() => {
        if (freed) this.upsertStmt.run(freed);
        this.upsertStmt.run(l);
      })();
    }
    if (freed) this.byIpMap.set(freed.ip, freed);
    this.index(l);
  }

  /** Forgets an address entirely. */
  remove(ip: string): void {
    const l = this.byIpMap.get(ip);
    this.deleteStmt.run(ip);
    this.byIpMap.delete(ip);
    if (l && this.byMacMap.get(l.mac) === l) this.byMacMap.delete(l.mac);
  }

  /** Every record (status page, allocation scan). */
  all(): IterableIterator<Lease> {
    return this.byIpMap.values();
  }

  /** Bound leases not yet expired. */
  activeCount(now: number): number {
    let n = 0;
    for (const l of this.byIpMap.values()) if (l.state === 'bound' && l.expiresAt > now) n += 1;
    return n;
  }
}
