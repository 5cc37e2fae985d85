import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import type { VolumeError } from '../../image-store/block-volume';
import { fileIo, type SegmentIo } from '../../image-store/io';
import { ImageStore } from '../../image-store/store';
import { fillUntilFailure, openStore, pattern, prng, tempDir } from './helpers';

/**
 * Layout of a disk's chunks in the segment files, and what it buys: chunks that are neighbours on
 * the disk lie side by side in one file (a group reservation per 1 MiB of the disk, taken on its
 * first write), so a sequential write over them is one pwrite whatever order the client first
 * wrote them in; reservations never cost space anyone else needs.
 */
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

class CountingIo implements SegmentIo {
  writes: number[] = [];
  read = fileIo.read;
  sync = fileIo.sync;
  write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    this.writes.push(len);
    return fileIo.write(fd, buf, off, len, pos);
  }
}

const MIB = 1024 * 1024;

async function storeWithImage(tag: string, size: number, io: SegmentIo, reservationMiB?: number): Promise<{ store: ImageStore; golden: Buffer }> {
  const work = tempDir(tag);
  dirs.push(work);
  const golden = pattern(size, 5);
  fs.writeFileSync(path.join(work, 'g.raw'), golden);
  const store = ImageStore.open({
    dir: path.join(work, 'store'),
    clock: new FakeClock(),
    log: silentLogger(),
    segmentMiB: 16,
    chunkKiB: 64,
    reserveMiB: 0,
    io,
    reservationMiB,
  });
  await store.importImage('g', path.join(work, 'g.raw'));
  store.createDisk('d', 'g');
  return { store, golden };
}

describe('write layout', () => {
  it('writes a sequential 1 MiB with one pwrite, first (copy on write) and again (in place), and splits only at a chunk elsewhere', async () => {
    const io = new CountingIo();
    const { store } = await storeWithImage('coalesce', 4 * MIB, io);
    try {
      const v = store.openVolume('d');
      io.writes = [];
      const mib = pattern(MIB, 9);
      await v.write(2048, mib); // 16 chunks not owned yet: fresh chunks of one reservation, one call
      expect(io.writes).toEqual([MIB]);
      io.writes = [];
      const again = pattern(MIB, 11);
      await v.write(2048, again); // owned now, side by side: one call
      expect(io.writes).toEqual([MIB]);
      expect((await v.read(2048, 2048)).equals(again)).toBe(true);
      // The next MiB's first chunk went where the store had room, not after the previous group:
      // a 4 KiB write there first (copy on write of one chunk), then the run is split around it.
      await v.write(0, pattern(4096, 12));
      io.writes = [];
      const wider = pattern(MIB + 65536, 13);
      await v.write(0, wider);
      expect(io.writes.reduce((a, b) => a + b, 0)).toBe(MIB + 65536);
      expect((await v.read(0, wider.length / 512)).equals(wider)).toBe(true);
      await v.close();
    } finally {
      await store.close();
    }
  });

  it('keeps chunks first written in scattered order side by side: a later 1 MiB write over each MiB is one pwrite', async () => {
    const io = new CountingIo();
    const size = 8 * MIB;
    const { store, golden } = await storeWithImage('scatter', size, io);
    try {
      const v = store.openVolume('d');
      const model = Buffer.from(golden);
      // 4 KiB writes at a random place in each of the 128 chunks, in shuffled order (as a
      // client's first writes come): each copies its chunk on write into its group's slot.
      const rnd = prng(7);
      const order = [...Array(128).keys()].sort(() => rnd() - 0.5);
      for (const c of order) {
        const lba = c * 128 + Math.floor(rnd() * 120);
        const d = pattern(4096, 1000 + c);
        await v.write(lba, d);
        d.copy(model, lba * 512);
      }
      // Without the reservations the chunks would lie in the order written: 16 calls per MiB.
      for (let m = 0; m < size / MIB; m++) {
        io.writes = [];
        const d = pattern(MIB, 2000 + m);
        await v.write(m * 2048, d);
        d.copy(model, m * MIB);
        expect(io.writes, `MiB ${m}`).toEqual([MIB]);
      }
      await v.flush();
      expect((await v.read(0, size / 512)).equals(model)).toBe(true);
      await v.close();
      expect(store.check().problems).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('puts chunks a group gets in a later session (the disk closed and opened again) next to the ones it has', async () => {
    const io = new CountingIo();
    const { store } = await storeWithImage('sessions', 4 * MIB, io);
    try {
      let v = store.openVolume('d');
      await v.write(2048 + 3 * 128, pattern(4096, 40)); // chunk 3 of the second MiB
      await v.close(); // its reservation is given back
      // Meanwhile another disk takes chunks: it must not get the slots next to chunk 3.
      store.createDisk('e', 'g');
      const e = store.openVolume('e');
      await e.write(0, pattern(2 * MIB, 41));
      await e.close();
      v = store.openVolume('d');
      for (let c = 0; c < 16; c++) if (c !== 3) await v.write(2048 + c * 128 + 8, pattern(4096, 50 + c));
      io.writes = [];
      const d = pattern(MIB, 60);
      await v.write(2048, d);
      expect(io.writes).toEqual([MIB]);
      expect((await v.read(2048, 2048)).equals(d)).toBe(true);
      await v.close();
      expect(store.check().problems).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('holds no more unwritten reserved space than reservationMiB, all disks together (0: none)', async () => {
    for (const [limit, most] of [
      [1, 15],
      [0, 0],
    ] as const) {
      const { store, golden } = await storeWithImage(`limit-${limit}`, 8 * MIB, fileIo, limit);
      try {
        store.createDisk('e', 'g');
        const d = store.openVolume('d');
        const e = store.openVolume('e');
        const space = (store as unknown as { space: { reservedChunks: number } }).space;
        // 4 KiB into each of 4 MiB-groups of each disk: 1 MiB holds one group of 16 (15 unwritten).
        for (let g = 0; g < 4; g++) {
          await d.write(g * 2048, pattern(4096, g));
          await e.write(g * 2048 + 8, pattern(4096, 10 + g));
          expect(space.reservedChunks, `limit ${limit} MiB, group ${g}`).toBeLessThanOrEqual(most);
        }
        expect(space.reservedChunks).toBe(most);
        // Past the limit the writes still land: each reads back over the golden image.
        const want = Buffer.from(golden.subarray(0, 4 * MIB));
        for (let g = 0; g < 4; g++) pattern(4096, 10 + g).copy(want, g * MIB + 4096);
        expect((await e.read(0, 8192)).equals(want)).toBe(true);
        await d.close();
        await e.close();
        expect(space.reservedChunks).toBe(0);
      } finally {
        await store.close();
      }
    }
  });

  it('gives reserved chunks back when the disk closes, never counts them as used, and hands them to others when space runs out', async () => {
    const dir = tempDir('reserve-pressure');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, Buffer.alloc(4 * MIB));
    // 4 KiB chunks, 1 MiB segments, 4 MiB in all: 32-chunk (128 KiB) groups.
    const store = openStore(path.join(dir, 'store'), { capacityBytes: 4 * MIB });
    try {
      await store.importImage('g', raw);
      store.createDisk('a', 'g');
      store.createDisk('b', 'g');
      const a = store.openVolume('a');
      // One 4 KiB write into each of 4 groups: each reserves 32 chunks and writes one (the very
      // first may find no segment yet and take a single chunk while the store grows).
      for (let g = 0; g < 4; g++) await a.write(g * 256, pattern(4096, 30 + g));
      const space = (store as unknown as { space: { reservedChunks: number } }).space;
      expect(space.reservedChunks).toBeGreaterThanOrEqual(3 * 31);
      expect(space.reservedChunks % 31).toBe(0);
      expect(store.usage().usedBytes).toBe(4 * 4096);
      await a.close();
      expect(space.reservedChunks).toBe(0);
      expect(store.check().problems).toEqual([]);

      // a reserves again; b then fills the store: a's unwritten slots go to b before NO_SPACE.
      const a2 = store.openVolume('a');
      for (let g = 4; g < 8; g++) await a2.write(g * 256, pattern(4096, 30 + g));
      expect(space.reservedChunks).toBeGreaterThan(0);
      const b = store.openVolume('b');
      const { written, err } = await fillUntilFailure(b, 8, 500);
      expect((err as VolumeError).code).toBe('NO_SPACE');
      expect(space.reservedChunks).toBe(0);
      expect(store.usage().freeBytes).toBeLessThan(4096);
      // Everything both disks were told was written reads back.
      for (let g = 0; g < 8; g++) expect((await a2.read(g * 256, 8)).equals(pattern(4096, 30 + g)), `a group ${g}`).toBe(true);
      for (let lba = 0; lba < written; lba += 8) expect((await b.read(lba, 8)).equals(pattern(4096, 500 + lba)), `b @${lba}`).toBe(true);
      await a2.close();
      await b.close();
      expect(store.check().problems).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
