/**
 * Issue #13: boot events were kept for every MAC ever seen, so spoofed DHCP DISCOVERs (a new
 * random chaddr each) grew appliance.db without bound; and the per-MAC trim ran only when the
 * new row's id was a multiple of 50, so a MAC whose rows never landed on one was never trimmed.
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import type { BootEvent } from '../../appliance/core/model';
import { EventBatch, FLUSH_DELAY_MS } from '../../appliance/telemetry/event-batch';
import { BootEventStore } from '../../appliance/telemetry/boot-events';

const mac = (i: number) => `02:${[(i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255, 0xee].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
const CLIENTS = ['52:54:00:00:00:01', '52:54:00:00:00:02', '52:54:00:00:00:03'];

function count(db: Database.Database): { rows: number; macs: number } {
  return db.prepare('SELECT count(*) AS rows, count(DISTINCT mac) AS macs FROM boot_events').get() as { rows: number; macs: number };
}

function make(perClient = 500, maxUnknownMacs = 500) {
  const db = new Database(':memory:');
  const clock = new FakeClock();
  const clients = new Set(CLIENTS);
  const store = new BootEventStore(db, clock, { perClient, maxUnknownMacs, isClient: (m: string) => clients.has(m) });
  return { db, clock, clients, store };
}

describe('boot events are bounded (issue #13)', () => {
  it('10,000 spoofed MACs through the DHCP path leave at most 500 unknown MACs; registered clients keep theirs; fast', () => {
    const { db, clock, store } = make();
    // The DHCP server's path: its EventBatch writes one transaction per window.
    const batch = new EventBatch(store, { log: silentLogger(), clock, db });
    for (const c of CLIENTS) {
      for (let k = 0; k < 20; k++) batch.record({ mac: c, stage: 'tftp-start', detail: { file: `f${k}` } });
    }
    clock.advance(FLUSH_DELAY_MS);
    const t0 = performance.now();
    for (let i = 0; i < 10_000; i++) {
      const m = mac(i);
      batch.record({ mac: m, stage: 'dhcp-discover', detail: { xid: i, arch: 7 } });
      batch.record({ mac: m, stage: 'dhcp-offer', detail: { kind: 'proxy' } });
      if (i % 200 === 199) clock.advance(FLUSH_DELAY_MS);
    }
    clock.advance(FLUSH_DELAY_MS);
    const ms = performance.now() - t0;

    const c = count(db);
    expect(c.macs, 'distinct MACs: 500 unknown + 3 clients').toBeLessThanOrEqual(503);
    expect(c.rows).toBeLessThanOrEqual(500 * 2 + 3 * 20);
    for (const cl of CLIENTS) expect(store.list(cl)).toHaveLength(20);
    // Oldest forgotten first: the newest spoofed MACs are the ones kept.
    expect(store.list(mac(9_999))).toHaveLength(2);
    expect(store.list(mac(9_500))).toHaveLength(2);
    expect(store.list(mac(9_499))).toHaveLength(0);
    expect(store.list(mac(0))).toHaveLength(0);
    // 20,000 events: a few hundred ms here; the bound keeps it from growing with the flood.
    expect(ms, `took ${ms.toFixed(0)} ms`).toBeLessThan(5_000);
    db.close();
  });

  it('holds on the unbatched path (TFTP, iSCSI, the script route record directly)', () => {
    const { db, store } = make(500, 100);
    for (const c of CLIENTS) store.record({ mac: c, stage: 'iscsi-login', detail: { target: 't' } });
    for (let i = 0; i < 2_000; i++) store.record({ mac: mac(i), stage: 'tftp-error', detail: { file: 'x', reason: 'not found' } });
    const c = count(db);
    expect(c.macs).toBe(100 + 3);
    expect(c.rows).toBe(100 + 3);
    for (const cl of CLIENTS) expect(store.list(cl)).toHaveLength(1);
    db.close();
  });

  it('a MAC registered after its events were recorded keeps them', () => {
    const { db, clients, store } = make(500, 10);
    const late = mac(123_456);
    store.record({ mac: late, stage: 'dhcp-discover', detail: { xid: 1 } });
    clients.add(late); // enrolled
    for (let i = 0; i < 100; i++) store.record({ mac: mac(i), stage: 'dhcp-discover', detail: { xid: i } });
    expect(store.list(late)).toHaveLength(1);
    expect(count(db).macs).toBe(11);
    db.close();
  });

  it('bounds every MAC to perClient events, however their writes interleave', () => {
    const { db, clock, store } = make(100, 500);
    // Two clients alternating: with the old "trim when id % 50 === 0" one of them never trimmed.
    for (let i = 0; i < 5_000; i++) {
      store.record({ mac: CLIENTS[i % 2], stage: 'tftp-start', detail: { file: `f${i}` } });
      clock.advance(1);
    }
    for (const c of CLIENTS.slice(0, 2)) {
      const n = (db.prepare('SELECT count(*) AS n FROM boot_events WHERE mac = ?').get(c) as { n: number }).n;
      expect(n, c).toBeLessThanOrEqual(150);
      expect(store.list(c, 1)[0].detail.file, 'the newest event is kept').toBe(c === CLIENTS[0] ? 'f4998' : 'f4999');
    }
    db.close();
  });

  it('a table grown before the bound existed is cut back when the store opens', () => {
    const db = new Database(':memory:');
    new BootEventStore(db, new FakeClock()); // creates the table
    const ins = db.prepare("INSERT INTO boot_events (mac, at, stage, detail) VALUES (?, 0, 'dhcp-discover', '{}')");
    db.transaction(() => {
      for (let i = 0; i < 3_000; i++) ins.run(mac(i));
      for (let k = 0; k < 5; k++) ins.run(CLIENTS[0]);
    })();
    const store = new BootEventStore(db, new FakeClock(), { maxUnknownMacs: 500, isClient: (m: string) => CLIENTS.includes(m) });
    const event: BootEvent = { mac: mac(5_000), stage: 'dhcp-discover' };
    store.record(event);
    const c = count(db);
    expect(c.macs).toBe(501);
    expect(store.list(CLIENTS[0])).toHaveLength(5);
    expect(store.list(mac(2_999))).toHaveLength(1);
    expect(store.list(mac(2_500))).toHaveLength(0);
    db.close();
  });
});
