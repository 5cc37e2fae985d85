import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SnapshotScheduler } from '../../appliance/backups/snapshot-scheduler';
import { ClientRegistry } from '../../appliance/clients/registry';
import { FakeClock } from '../../appliance/core/clock';
import { openDatabase } from '../../appliance/core/db';
import { silentLogger } from '../../appliance/core/log';
import { ImageStore } from '../../image-store/store';

const MIN = 60_000;

describe('scheduled snapshots with an injected clock (issue 8)', () => {
  let store: ImageStore | undefined;
  afterEach(async () => {
    await store?.close();
  });

  async function setup() {
    const dir = mkdtempSync(join(tmpdir(), 'nb-sched-'));
    const clock = new FakeClock(Date.UTC(2026, 10, 27, 0, 0));
    store = ImageStore.open({ dir: join(dir, 'store'), clock, log: silentLogger(), segmentMiB: 4, chunkKiB: 64, reserveMiB: 0 });
    writeFileSync(join(dir, 'img.raw'), Buffer.alloc(1024 * 1024, 7));
    await store.importImage('img', join(dir, 'img.raw'));
    const clients = new ClientRegistry(openDatabase(join(dir, 'a.db')), store, { iqnPrefix: 'iqn.2026-11.test', clock });
    const sched = new SnapshotScheduler(clients, store, clock, silentLogger(), MIN);
    return { clock, clients, sched, store };
  }

  const flush = () => new Promise((r) => setTimeout(r, 20));

  it('takes one snapshot per interval and keeps only the newest N', async () => {
    const { clock, clients, sched, store } = await setup();
    const a = clients.create('52:54:00:00:00:01', 'img');
    clients.create('52:54:00:00:00:02', 'img'); // no schedule: never snapshotted
    clients.setSchedule(a.mac, { everyMinutes: 60, keep: 3 });
    await sched.start();
    // 5 hours of minute ticks, each awaited so the store's async work completes.
    for (let m = 0; m < 5 * 60; m++) {
      clock.advance(MIN);
      await flush();
    }
    const snaps = store.listSnapshots(a.disk).filter((s) => s.name.startsWith('scheduled-'));
    expect(snaps).toHaveLength(3);
    const times = snaps.map((s) => s.createdAt).sort((x, y) => x - y);
    expect(times[1] - times[0]).toBe(60 * MIN);
    expect(times[2] - times[1]).toBe(60 * MIN);
    expect(sched.status().counters.snapshots).toBe(5);
    expect(sched.status().counters.pruned).toBe(2);
    expect(store.listSnapshots('client-525400000002')).toHaveLength(0);
    await sched.stop();
    expect(clock.pending).toBe(0);
  });

  it('never prunes snapshots a person took', async () => {
    const { clock, clients, sched, store } = await setup();
    const a = clients.create('52:54:00:00:00:03', 'img');
    await store.createSnapshot(a.disk, 'before-upgrade');
    clients.setSchedule(a.mac, { everyMinutes: 1, keep: 1 });
    await sched.start();
    for (let m = 0; m < 10; m++) {
      clock.advance(MIN);
      await flush();
    }
    await sched.stop();
    const names = store.listSnapshots(a.disk).map((s) => s.name);
    expect(names).toContain('before-upgrade');
    expect(names.filter((n) => n.startsWith('scheduled-'))).toHaveLength(1);
  });
});
