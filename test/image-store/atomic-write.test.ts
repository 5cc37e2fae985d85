import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { atomicWriteBlocks } from '../../appliance/iscsi/scsi/atomic-write';
import { BLOCK_LIMITS } from '../../appliance/iscsi/scsi/inquiry';
import { VolumeError } from '../../image-store/block-volume';
import { fileIo, type SegmentIo } from '../../image-store/io';
import { ImageStore } from '../../image-store/store';
import { DESTAGE_ENTRIES } from '../../image-store/volume-core';
import { ATOMIC_WRITE_BLOCKS, type StoreVolume } from '../../image-store/volume';
import { pattern, prng, tempDir } from './helpers';
import { VolatileCache } from './volatile-cache';

/**
 * Atomic writes (WRITE ATOMIC(16) through BlockVolume write(..., { atomic: true })): all or
 * nothing for concurrent readers, for concurrent writes to the rest of the chunks, across a
 * power cut, and on failure. Small geometry (4 KiB chunks = 8 blocks) so ranges span chunks.
 */
const BS = 512;
const CHUNK_BLOCKS = 8;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const tick = () => new Promise<void>((r) => setImmediate(r));
const open = (dir: string, io: SegmentIo, more: { chunkKiB?: number; capacityBytes?: number } = {}) =>
  ImageStore.open({
    dir,
    clock: new FakeClock(),
    log: silentLogger(),
    segmentMiB: 1,
    chunkKiB: more.chunkKiB ?? 4,
    reserveMiB: 0,
    capacityBytes: more.capacityBytes,
    io,
  });

/** A store with image `g` (golden: a pattern in the first `dataBytes`, by default half, zeros after) and disk `d` over it. */
async function makeStore(tag: string, size: number, opts: { chunkKiB?: number; capacityBytes?: number; dataBytes?: number } = {}) {
  const work = tempDir(tag);
  dirs.push(work);
  const golden = pattern(size, 3);
  golden.fill(0, opts.dataBytes ?? size / 2);
  fs.writeFileSync(path.join(work, 'g.raw'), golden);
  const dir = path.join(work, 'store');
  const store = open(dir, fileIo, opts);
  await store.importImage('g', path.join(work, 'g.raw'));
  store.createDisk('d', 'g');
  await store.close();
  return { dir, golden };
}

/** I/O whose writes each finish after a random 0-4 ms, so a multi-chunk write's chunks land at different times. */
class SlowWrites implements SegmentIo {
  constructor(private readonly rnd: () => number) {}
  read(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    return fileIo.read(fd, buf, off, len, pos);
  }
  async write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    await sleep(Math.floor(this.rnd() * 5));
    return fileIo.write(fd, buf, off, len, pos);
  }
  sync(fd: number): Promise<void> {
    return fileIo.sync(fd);
  }
}

/** I/O whose writes wait for `hold` (when set) before they start; `failWrite` makes the n-th write from now fail. */
class ControlledIo implements SegmentIo {
  hold: Promise<void> | null = null;
  private failIn = 0;
  writes = 0;
  read(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    return fileIo.read(fd, buf, off, len, pos);
  }
  async write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    this.writes++;
    if (this.failIn > 0 && --this.failIn === 0) throw new Error('EIO (injected)');
    if (this.hold) await this.hold;
    return fileIo.write(fd, buf, off, len, pos);
  }
  sync(fd: number): Promise<void> {
    return fileIo.sync(fd);
  }
  failWrite(n: number): void {
    this.failIn = n;
  }
}

describe('atomic writes on a store volume', () => {
  it('are declared on writable handles only, match VPD 0xB0, read back, and refuse more than the limit', async () => {
    const { dir, golden } = await makeStore('atomic-basic', 2 << 20);
    const store = open(dir, fileIo);
    const vol = store.openVolume('d');
    const ro = store.openVolume('g');
    expect(vol.atomicWriteBlocks).toBe(ATOMIC_WRITE_BLOCKS);
    expect(ro.atomicWriteBlocks).toBeUndefined();
    // What the target reports as MAXIMUM ATOMIC TRANSFER LENGTH is what the volume promises.
    expect(atomicWriteBlocks(vol, BLOCK_LIMITS.maxTransferBlocks)).toBe(ATOMIC_WRITE_BLOCKS);
    expect(atomicWriteBlocks(ro, BLOCK_LIMITS.maxTransferBlocks)).toBe(0);

    // The largest atomic write, unaligned, across 257 chunks of the image and of zeros.
    const lba = vol.blockCount / 2 - 1000 - 3;
    const big = pattern(ATOMIC_WRITE_BLOCKS * BS, 7);
    await vol.write(lba, big, { atomic: true });
    expect((await vol.read(lba, ATOMIC_WRITE_BLOCKS)).equals(big)).toBe(true);
    expect((await vol.read(lba - 5, 5)).equals(golden.subarray((lba - 5) * BS, lba * BS))).toBe(true);
    await expect(vol.write(0, Buffer.alloc((ATOMIC_WRITE_BLOCKS + 1) * BS), { atomic: true })).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
    await expect(ro.write(0, Buffer.alloc(BS), { atomic: true })).rejects.toMatchObject({ code: 'READ_ONLY' });

    // Chunks that end up all zeros become zero extents: no space taken.
    const used = store.usage().usedBytes;
    await vol.write(CHUNK_BLOCKS, Buffer.alloc(3 * CHUNK_BLOCKS * BS), { atomic: true });
    expect(store.usage().usedBytes).toBe(used);
    expect((await vol.read(CHUNK_BLOCKS, 3 * CHUNK_BLOCKS)).every((x) => x === 0)).toBe(true);
    await vol.write(0, Buffer.alloc(0), { atomic: true });

    await vol.close();
    await ro.close();
    // Durable after close (which flushes), and check is clean (the replaced chunks were freed).
    expect(store.check().problems).toEqual([]);
    const again = store.openVolume('d', { readOnly: true });
    expect((await again.read(lba, ATOMIC_WRITE_BLOCKS)).equals(big)).toBe(true);
    await again.close();
    await store.close();
  });

  for (const owned of [false, true]) {
    it(`are seen by concurrent readers all old or all new (${owned ? 'chunks the disk owns' : 'chunks of the image'})`, async () => {
      const seed = Number(process.env.STORE_SEED ?? Date.now() % 100000);
      const rnd = prng(seed);
      const { dir } = await makeStore(`atomic-read-${owned}`, 1 << 20);
      const store = open(dir, new SlowWrites(rnd));
      const vol = store.openVolume('d');
      // 26 blocks from block 5: a partial first chunk, two whole ones, a partial last one.
      const lba = 5;
      const n = 26;
      if (owned) {
        await vol.write(0, pattern(4 * CHUNK_BLOCKS * BS, 11));
        await vol.flush();
      }
      // Readers look at a window 3 blocks wider on each side, whole or straddling either edge.
      const W0 = lba - 3;
      const WN = n + 6;
      const reads: [number, number][] = [
        [lba, n],
        [W0, WN],
        [W0, 12],
        [lba + n - 4, 7],
      ];
      let old = await vol.read(W0, WN);
      let during = 0;
      for (let round = 0; round < 5; round++) {
        const data = pattern(n * BS, 100 + round);
        const neu = Buffer.from(old);
        data.copy(neu, (lba - W0) * BS);
        let done = false;
        const readers = reads.map(async ([from, len]) => {
          const o = (from - W0) * BS;
          const before = old.subarray(o, o + len * BS);
          const after = neu.subarray(o, o + len * BS);
          for (let i = 0; i < 100_000 && !done; i++) {
            const got = await vol.read(from, len);
            expect(got.equals(before) || got.equals(after), `seed ${seed} round ${round}: a read of ${from}+${len} saw a mix of old and new`).toBe(true);
            if (!done) during++;
            await tick();
          }
        });
        await vol.write(lba, data, { atomic: true });
        done = true;
        await Promise.all(readers);
        expect((await vol.read(W0, WN)).equals(neu)).toBe(true);
        old = neu;
      }
      expect(during, 'no read ran while an atomic write was in progress: the test tested nothing').toBeGreaterThan(20);
      await vol.close();
      expect(store.check().problems).toEqual([]);
      await store.close();
    });
  }

  it('do not lose plain writes to other blocks of the same chunks, in flight or issued meanwhile', async () => {
    const { dir } = await makeStore('atomic-mix', 1 << 20);
    const io = new ControlledIo();
    const store = open(dir, io);
    const vol = store.openVolume('d');
    const base = pattern(2 * CHUNK_BLOCKS * BS, 21);
    await vol.write(0, base); // the disk owns chunks 0 and 1: plain writes to them go in place
    await vol.flush();
    const expected = Buffer.from(base);

    let letGo!: () => void;
    io.hold = new Promise<void>((r) => (letGo = r));
    const a1 = pattern(BS, 22);
    const w1 = vol.write(1, a1); // in flight (held) when the atomic write starts
    const neu = pattern(8 * BS, 23);
    let atomicDone = false;
    const at = vol.write(4, neu, { atomic: true }).then(() => (atomicDone = true)); // blocks 4-11: chunks 0 and 1
    const a2 = pattern(BS, 24);
    let w2Done = false;
    const w2 = vol.write(14, a2).then(() => (w2Done = true)); // issued while the atomic write runs
    for (let i = 0; i < 5; i++) await tick();
    expect(atomicDone, 'the atomic write must wait for the write in flight to its chunk').toBe(false);
    expect(w2Done).toBe(false);
    io.hold = null;
    letGo();
    await Promise.all([w1, at, w2]);
    a1.copy(expected, 1 * BS);
    neu.copy(expected, 4 * BS);
    a2.copy(expected, 14 * BS);
    expect((await vol.read(0, 2 * CHUNK_BLOCKS)).equals(expected)).toBe(true);
    await vol.close();
    expect(store.check().problems).toEqual([]);
    const again = store.openVolume('d', { readOnly: true });
    expect((await again.read(0, 2 * CHUNK_BLOCKS)).equals(expected)).toBe(true);
    await again.close();
    await store.close();
  });

  it('leave the old data and free the fresh chunks when space runs out part way (NO_SPACE)', async () => {
    // One 1 MiB segment of 4 KiB chunks; the image takes 32 of them.
    const { dir } = await makeStore('atomic-full', 2 << 20, { capacityBytes: 1 << 20, dataBytes: 128 << 10 });
    const store = open(dir, fileIo, { capacityBytes: 1 << 20 });
    const vol = store.openVolume('d');
    const free = () => store.usage().freeBytes / 4096;
    // Fill the store from the zero half until 3 chunks are left.
    for (let l = vol.blockCount / 2; free() > 3; l += CHUNK_BLOCKS) await vol.write(l, pattern(CHUNK_BLOCKS * BS, l));
    expect(free()).toBe(3);
    await vol.flush();
    const lba = vol.blockCount / 2 + 3; // inside chunks the disk owns: even an overwrite needs fresh chunks
    const old = await vol.read(lba, 5 * CHUNK_BLOCKS);
    const used = store.usage().usedBytes;
    const err = await vol.write(lba, pattern(5 * CHUNK_BLOCKS * BS, 31), { atomic: true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VolumeError);
    expect((err as VolumeError).code).toBe('NO_SPACE');
    expect((await vol.read(lba, 5 * CHUNK_BLOCKS)).equals(old)).toBe(true);
    expect(store.usage().usedBytes, 'the fresh chunks went back to the pool').toBe(used);
    // Those 3 chunks are usable: an atomic write needing exactly 3 succeeds.
    const fits = pattern(2 * CHUNK_BLOCKS * BS, 32);
    await vol.write(lba, fits, { atomic: true });
    expect((await vol.read(lba, 2 * CHUNK_BLOCKS)).equals(fits)).toBe(true);
    await vol.close();
    const rep = store.check();
    expect(rep.problems).toEqual([]);
    await store.close();
  });

  it('leave the old data and free the fresh chunks when a chunk write fails (IO)', async () => {
    const { dir } = await makeStore('atomic-eio', 1 << 20);
    const io = new ControlledIo();
    const store = open(dir, io);
    const vol = store.openVolume('d');
    await vol.write(0, pattern(6 * CHUNK_BLOCKS * BS, 41));
    await vol.flush();
    const old = await vol.read(2, 4 * CHUNK_BLOCKS);
    const used = store.usage().usedBytes;
    io.failWrite(3); // the third of the five chunk writes
    const err = await vol.write(2, pattern(4 * CHUNK_BLOCKS * BS, 42), { atomic: true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect((err as VolumeError).code).toBe('IO');
    expect((await vol.read(2, 4 * CHUNK_BLOCKS)).equals(old)).toBe(true);
    expect(store.usage().usedBytes).toBe(used);
    // The disk still works, and after close nothing leaked.
    await vol.write(2, pattern(BS, 43));
    await vol.close();
    expect(store.check().problems).toEqual([]);
    await store.close();
  });

  it('after a power cut at any point of the write and its flush, the range is all old or all new', async () => {
    const seed = Number(process.env.STORE_SEED ?? Date.now() % 100000);
    const rnd = prng(seed);
    const int = (k: number) => Math.floor(rnd() * k);
    const SIZE = 256 * 1024;
    const { dir } = await makeStore('atomic-power', SIZE);
    const blocks = SIZE / BS;
    let tag = seed * 1000;
    let lost = 0;
    let deaths = 0;
    let committed = 0;
    for (let round = 0; round < 60; round++) {
      const where = `seed ${seed} round ${round}`;
      const lba = int(blocks - 48);
      const n = 1 + int(40);
      // Without power cuts: often make the range's chunks the disk's own (so a write in place
      // would tear), then know exactly what the range holds.
      let store = open(dir, fileIo);
      let vol: StoreVolume = store.openVolume('d');
      if (rnd() < 0.7) {
        const from = Math.floor(lba / CHUNK_BLOCKS) * CHUNK_BLOCKS;
        const to = Math.ceil((lba + n) / CHUNK_BLOCKS) * CHUNK_BLOCKS;
        await vol.write(from, pattern((to - from) * BS, tag++));
      }
      await vol.flush();
      const old = await vol.read(lba, n);
      await store.close();

      // The atomic write and a flush, the power failing at a random I/O (or not at all).
      const cache = new VolatileCache(1 + int(14));
      store = open(dir, cache);
      vol = store.openVolume('d');
      const neu = pattern(n * BS, tag++);
      const run = (op: () => Promise<unknown>) => Promise.race([op().then(() => true), cache.died]);
      const wrote = await run(() => vol.write(lba, neu, { atomic: true }));
      const flushed = wrote && rnd() < 0.8 && (await run(() => vol.flush()));
      if (cache.dead) deaths++;
      lost += await cache.cut(rnd);
      store.db.close();
      store.space.close();

      store = open(dir, fileIo);
      expect(store.check().problems, where).toEqual([]);
      vol = store.openVolume('d', { readOnly: true });
      const got = await vol.read(lba, n);
      await vol.close();
      await store.close();
      if (flushed) expect(got.equals(neu), `${where}: flushed but not all new`).toBe(true);
      else expect(got.equals(old) || got.equals(neu), `${where}: blocks ${lba}+${n} are a mix of old and new`).toBe(true);
      if (got.equals(neu)) committed++;
    }
    expect(lost, `seed ${seed}: the cache never held unsynced data at a cut: the test tested nothing`).toBeGreaterThan(0);
    expect(deaths, `seed ${seed}: the power seldom failed during the writes`).toBeGreaterThanOrEqual(10);
    expect(committed, `seed ${seed}: too few atomic writes survived`).toBeGreaterThanOrEqual(5);
  });

  it('commit together when their switch is what triggers a background destage', async () => {
    // 1 KiB chunks: DESTAGE_ENTRIES - 2 uncommitted entries take 16 MiB of writes.
    const size = (DESTAGE_ENTRIES + 64) * 1024;
    const { dir } = await makeStore('atomic-destage', size, { chunkKiB: 1 });
    let store = open(dir, fileIo, { chunkKiB: 1 });
    let vol = store.openVolume('d');
    const layer = (store.db.prepare('SELECT layer FROM disks WHERE name = ?').get('d') as { layer: number }).layer;
    const extents = () => (store.db.prepare('SELECT count(*) AS n FROM extents WHERE layer = ?').get(layer) as { n: number }).n;
    // The golden half is data, the rest zeros: write DESTAGE_ENTRIES - 2 chunks with no flush.
    await vol.write(0, pattern((DESTAGE_ENTRIES - 2) * 1024, 51));
    expect(extents(), 'nothing committed yet').toBe(0);
    // Four chunks: the destage starts when the second of them is switched.
    const lba = (DESTAGE_ENTRIES + 2) * 2 + 1;
    const old = await vol.read(lba, 7);
    const neu = pattern(7 * BS, 52);
    await vol.write(lba, neu, { atomic: true });
    // Wait for the destage's commit, then cut the power before any other flush.
    for (let i = 0; i < 1000 && extents() < DESTAGE_ENTRIES - 2; i++) await sleep(10);
    expect(extents()).toBeGreaterThanOrEqual(DESTAGE_ENTRIES - 2);
    await store.space.idle();
    store.db.close();
    store.space.close();

    store = open(dir, fileIo, { chunkKiB: 1 });
    expect(store.check().problems).toEqual([]);
    vol = store.openVolume('d', { readOnly: true });
    const got = await vol.read(lba, 7);
    expect(got.equals(old) || got.equals(neu), 'a destage committed part of an atomic write').toBe(true);
    await vol.close();
    await store.close();
  }, 60_000);
});
