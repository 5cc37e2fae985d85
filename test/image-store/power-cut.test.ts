import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { fileIo, preadFull, pwriteFull, type SegmentIo } from '../../image-store/io';
import { ImageStore } from '../../image-store/store';
import { pattern, prng, tempDir } from './helpers';

const SECTOR = 512;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/**
 * A volatile write cache in front of the segment files: writes stay in memory (per 512-byte
 * sector) until sync(fd) writes them out. cut() is the power failure: each unsynced sector is
 * independently kept or lost (a drive destages its cache in any order, torn at sector size).
 */
class VolatileCache implements SegmentIo {
  private pending = new Map<number, Map<number, Buffer>>();
  /** The power fails at the ioLeft-th call: that call and every later one never completes. */
  dead = false;
  readonly died: Promise<false>;
  private die!: () => void;

  constructor(private ioLeft: number) {
    this.died = new Promise<false>((r) => (this.die = () => r(false)));
  }

  private alive(): boolean {
    if (!this.dead && --this.ioLeft <= 0) {
      this.dead = true;
      this.die();
    }
    return !this.dead;
  }

  async read(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    if (!this.alive()) return new Promise(() => {});
    await preadFull(fd, buf, off, len, pos);
    const p = this.pending.get(fd);
    if (!p) return;
    for (let k = 0; k < len; k += SECTOR) p.get(pos + k)?.copy(buf, off + k);
  }

  async write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    if (!this.alive()) return new Promise(() => {});
    let p = this.pending.get(fd);
    if (!p) this.pending.set(fd, (p = new Map()));
    for (let k = 0; k < len; k += SECTOR) p.set(pos + k, Buffer.from(buf.subarray(off + k, off + k + SECTOR)));
    await new Promise((r) => setImmediate(r));
  }

  async sync(fd: number): Promise<void> {
    if (!this.alive()) return new Promise(() => {});
    const p = this.pending.get(fd);
    this.pending.delete(fd);
    if (!p) return;
    // Write contiguous sectors as one run (the test would otherwise spend its time in pwrite).
    const order = [...p.keys()].sort((a, b) => a - b);
    for (let i = 0; i < order.length; ) {
      let j = i + 1;
      while (j < order.length && order[j] === order[j - 1] + SECTOR) j++;
      await pwriteFull(fd, Buffer.concat(order.slice(i, j).map((pos) => p.get(pos)!)), 0, (j - i) * SECTOR, order[i]);
      i = j;
    }
  }

  async cut(rnd: () => number): Promise<number> {
    let lost = 0;
    for (const [fd, p] of this.pending) {
      for (const [pos, b] of p) {
        if (rnd() < 0.5) await pwriteFull(fd, b, 0, SECTOR, pos);
        else lost++;
      }
    }
    this.pending.clear();
    return lost;
  }
}

const open = (dir: string, io: SegmentIo) => ImageStore.open({ dir, clock: new FakeClock(), log: silentLogger(), segmentMiB: 1, chunkKiB: 4, reserveMiB: 0, io });

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
