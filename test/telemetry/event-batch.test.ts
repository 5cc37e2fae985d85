/**
 * EventBatch: boot events are written after a delay, in one transaction, and a failing sink
 * costs a warning, never an exception in the packet path.
 */
import Database from 'better-sqlite3';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import type { BootEvent } from '../../appliance/core/model';
import { EventBatch, FLUSH_DELAY_MS, MAX_BATCH } from '../../appliance/telemetry/event-batch';
import { BootEventStore } from '../../appliance/telemetry/boot-events';

const MAC = '02:00:00:00:bb:01';
const event = (i: number): BootEvent => ({ mac: MAC, stage: 'dhcp-discover', detail: { xid: i } });

describe('EventBatch', () => {
  it('writes nothing until the delay passes, then every queued event in one transaction', () => {
    const db = new Database(':memory:');
    const store = new BootEventStore(db, new FakeClock());
    const inTransaction: boolean[] = [];
    const sink = { record: (e: BootEvent) => (inTransaction.push(db.inTransaction), store.record(e)) };
    const clock = new FakeClock();
    const batch = new EventBatch(sink, { log: silentLogger(), clock, db });

    for (let i = 0; i < 3; i++) batch.record(event(i));
    expect(store.list(MAC)).toHaveLength(0);
    expect(batch.queued).toBe(3);
    clock.advance(FLUSH_DELAY_MS - 1);
    expect(store.list(MAC)).toHaveLength(0);
    clock.advance(1);
    expect(store.list(MAC).map((e) => e.detail.xid)).toEqual([0, 1, 2]);
    expect(inTransaction).toEqual([true, true, true]);
    expect(batch.queued).toBe(0);
    expect(clock.pending).toBe(0);
    db.close();
  });

  it('flush() writes at once and cancels the timer (the service calls it on stop)', () => {
    const seen: BootEvent[] = [];
    const clock = new FakeClock();
    const batch = new EventBatch({ record: (e) => seen.push(e) }, { log: silentLogger(), clock });
    batch.record(event(1));
    expect(clock.pending).toBe(1);
    batch.flush();
    expect(seen).toHaveLength(1);
    expect(clock.pending).toBe(0);
    batch.flush(); // nothing queued: no-op
    expect(seen).toHaveLength(1);
  });

  it('a full batch is written on the next turn of the event loop, without waiting for the timer', async () => {
    const seen: BootEvent[] = [];
    const clock = new FakeClock();
    const batch = new EventBatch({ record: (e) => seen.push(e) }, { log: silentLogger(), clock });
    for (let i = 0; i < MAX_BATCH; i++) batch.record(event(i));
    expect(seen).toHaveLength(0); // never inside record(): that would be before the reply is sent
    await new Promise((r) => setImmediate(r));
    expect(seen).toHaveLength(MAX_BATCH);
    expect(clock.pending).toBe(0);
  });

  it('a sink that throws loses only its own events and logs one warning a minute', () => {
    const lines: { msg: string; failed: number }[] = [];
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const seen: number[] = [];
    const sink = {
      record: (e: BootEvent) => {
        if (e.detail?.xid === 1) throw new Error('SQLITE_FULL: database or disk is full');
        seen.push(e.detail?.xid as number);
      },
    };
    const clock = new FakeClock();
    const batch = new EventBatch(sink, { log, clock });
    for (let i = 0; i < 3; i++) batch.record(event(i));
    expect(() => clock.advance(FLUSH_DELAY_MS)).not.toThrow();
    expect(seen).toEqual([0, 2]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ failed: 1 });
    batch.record(event(1));
    clock.advance(FLUSH_DELAY_MS);
    expect(lines).toHaveLength(1); // rate-limited
    clock.advance(60_000);
    batch.record(event(1));
    clock.advance(FLUSH_DELAY_MS);
    expect(lines).toHaveLength(2);
  });
});
