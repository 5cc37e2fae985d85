import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { fileIo, type SegmentIo } from '../../image-store/io';
import { ImageStore } from '../../image-store/store';
import { pattern, prng, tempDir } from './helpers';
import { SECTOR, VolatileCache } from './volatile-cache';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const open = (dir: string, io: SegmentIo) =>
  ImageStore.open({ dir, clock: new FakeClock(), log: silentLogger(), segmentMiB: 1, chunkKiB: 4, reserveMiB: 0, io });

describe('power cut (volatile write cache loses unsynced sectors)', () => {
  it('keeps every write acknowledged before the last flush and every snapshot exact', async () => {
    const seed = Number(process.env.STORE_SEED ?? Date.now() % 100000);
    const rnd = prng(seed);
    const int = (n: number) => Math.floor(rnd() * n);
    const work = tempDir('power');
    dirs.push(work);
    const dir = path.join(work, 'store');
    const SIZE = 2 << 20;
    const golden = pattern(SIZE, 3);
    golden.fill(0, SIZE / 2);
    fs.writeFileSync(path.join(work, 'g.raw'), golden);
    let store = open(dir, fileIo);
    await store.importImage('g', path.join(work, 'g.raw'));
    store.createDisk('d', 'g');
    await store.close();

    let durable: Buffer = Buffer.from(golden);
    const snaps = new Map<number, Buffer>();
    let lostTotal = 0;
    let deaths = 0;
    let tag = seed * 10_000;
    for (let cut = 0; cut < 30; cut++) {
      // The power fails at a random I/O, possibly in the middle of a flush or a snapshot.
      const cache = new VolatileCache(1 + int(600));
      store = open(dir, cache);
      let vol = store.openVolume('d');
      const cur = Buffer.from(durable);
      let post = new Map<number, Buffer[]>(); // sector -> contents that may have landed since the last flush
      const mayLand = (lba: number, data: Buffer) => {
        for (let k = 0; k < data.length / SECTOR; k++) {
          const list = post.get(lba + k) ?? [];
          list.push(Buffer.from(data.subarray(k * SECTOR, (k + 1) * SECTOR)));
          post.set(lba + k, list);
        }
      };
      const flushed = () => {
        durable = Buffer.from(cur);
        post = new Map();
      };
      /** Runs op unless the power fails first; true when it completed. */
      const run = (op: () => Promise<unknown>) => Promise.race([op().then(() => true), cache.died]);
      let pendingSnap = false;
      for (let i = 0; i < 200 && !cache.dead; i++) {
        const r = rnd();
        if (r < 0.6) {
          const lba = int(SIZE / SECTOR - 64);
          const data = pattern(SECTOR * (1 + int(64)), tag++);
          mayLand(lba, data);
          if (await run(() => vol.write(lba, data))) data.copy(cur, lba * SECTOR);
        } else if (r < 0.75) {
          if (await run(() => vol.flush())) flushed();
        } else if (r < 0.8) {
          const lba = int(SIZE / SECTOR - 64);
          const n = 1 + int(64);
          mayLand(lba, Buffer.alloc(n * SECTOR));
          if (await run(() => vol.unmap(lba, n))) cur.fill(0, lba * SECTOR, (lba + n) * SECTOR);
        } else if (r < 0.88) {
          let id = 0;
          pendingSnap = true;
          if (await run(async () => (id = (await store.createSnapshot('d', `s${cut}-${i}`)).id))) {
            pendingSnap = false;
            flushed();
            snaps.set(id, Buffer.from(cur));
          }
        } else if ((r < 0.93 && snaps.size > 1) || snaps.size > 8) {
          const id = [...snaps.keys()][int(snaps.size)];
          await store.deleteSnapshot('d', id);
          snaps.delete(id);
        } else if (r < 0.97 && snaps.size > 0) {
          const id = [...snaps.keys()][int(snaps.size)];
          if (!(await run(() => vol.close()))) break;
          flushed();
          await store.restoreSnapshot('d', id);
          snaps.get(id)!.copy(cur);
          flushed();
          vol = store.openVolume('d');
        }
      }
      // Power cut: the cache loses about half of what was not synced; the process state is gone.
      if (cache.dead) deaths++;
      lostTotal += await cache.cut(rnd);
      store.db.close();
      store.space.close();

      store = open(dir, fileIo);
      const where = `seed ${seed} cut ${cut}`;
      const rep = store.check();
      expect(rep.problems, `${where}: ${JSON.stringify(rep.problems)}`).toEqual([]);
      const v = store.openVolume('d', { readOnly: true });
      const now = await v.read(0, SIZE / SECTOR);
      await v.close();
      let bad = -1;
      for (let sct = 0; sct < SIZE / SECTOR && bad < 0; sct++) {
        const got = now.subarray(sct * SECTOR, (sct + 1) * SECTOR);
        const ok = got.equals(durable.subarray(sct * SECTOR, (sct + 1) * SECTOR)) || (post.get(sct) ?? []).some((b) => got.equals(b));
        if (!ok) bad = sct;
      }
      expect(bad, `${where}: sector ${bad} is neither the flushed data nor a later write`).toBe(-1);
      const known = store.listSnapshots('d').filter((x) => !snaps.has(x.id));
      expect(known.length, `${where}: unexpected snapshots ${JSON.stringify(known)}`).toBeLessThanOrEqual(pendingSnap ? 1 : 0);
      for (const x of known) await store.deleteSnapshot('d', x.id);
      for (const [id, want] of snaps) {
        const sv = store.openVolume('d', { snapshot: id });
        expect((await sv.read(0, SIZE / SECTOR)).equals(want), `${where}: snapshot ${id} changed`).toBe(true);
        await sv.close();
      }
      await store.close();
      durable = now;
    }
    expect(lostTotal, 'the cache never held unsynced data at a cut: the test tested nothing').toBeGreaterThan(0);
    expect(deaths, 'the power never failed during the runs').toBeGreaterThan(10);
  });
});

/** Passes I/O through, except that while `hold` is set a write waits for it before it starts. */
class HeldWrites implements SegmentIo {
  hold: Promise<void> | null = null;
  constructor(private readonly inner: SegmentIo) {}
  read(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    return this.inner.read(fd, buf, off, len, pos);
  }
  async write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    if (this.hold) await this.hold;
    return this.inner.write(fd, buf, off, len, pos);
  }
  sync(fd: number): Promise<void> {
    return this.inner.sync(fd);
  }
}

describe('flush after a write that completed during an earlier flush', () => {
  // Regression: segments were marked dirty when a write was issued, so a flush whose fdatasync
  // ran while the write was still in flight took the mark away, and a later flush (which must
  // cover the write: it resolved before that flush was called) synced nothing.
  it('makes the write durable', async () => {
    const work = tempDir('inflight-flush');
    dirs.push(work);
    const dir = path.join(work, 'store');
    fs.writeFileSync(path.join(work, 'g.raw'), Buffer.alloc(64 * 1024));
    let store = open(dir, fileIo);
    await store.importImage('g', path.join(work, 'g.raw'));
    store.createDisk('d', 'g');
    let vol = store.openVolume('d');
    await vol.write(0, pattern(4096, 1)); // the disk owns chunk 0 from here: the next write is in place
    await store.close();

    const cache = new VolatileCache(Infinity);
    const io = new HeldWrites(cache);
    store = open(dir, io);
    vol = store.openVolume('d');
    let letGo!: () => void;
    io.hold = new Promise<void>((r) => (letGo = r));
    const data = pattern(SECTOR, 2);
    const written = vol.write(3, data);
    await vol.flush(); // runs while the write is in flight: it does not cover it
    io.hold = null;
    letGo();
    await written;
    await vol.flush(); // called after the write resolved: must make it durable
    expect(await cache.cut(() => 1), 'every unsynced sector is lost').toBe(0);
    store.db.close();
    store.space.close();

    store = open(dir, fileIo);
    expect(store.check().problems).toEqual([]);
    vol = store.openVolume('d', { readOnly: true });
    expect((await vol.read(3, 1)).equals(data)).toBe(true);
    await store.close();
  });
});
