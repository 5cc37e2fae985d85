import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ChunkMap, PAGE_BITS } from '../../image-store/chunk-map';
import type { VolumeCore } from '../../image-store/volume-core';
import { openStore, pattern, tempDir } from './helpers';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('resolved maps of images and snapshots', () => {
  it("reads an image's extents from SQLite once for every disk opened over it, and again only after a layer was folded", async () => {
    const dir = tempDir('chain-maps');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    const golden = pattern(256 * 1024, 3);
    fs.writeFileSync(raw, golden);
    const store = openStore(path.join(dir, 'store'));
    try {
      await store.importImage('g', raw);
      // Count the layers whose extents are read from SQLite.
      const q = store.meta.q as unknown as { extentsRaw: { iterate: (layer: number) => Iterable<unknown> } };
      const real = q.extentsRaw.iterate.bind(q.extentsRaw);
      const reads: number[] = [];
      q.extentsRaw.iterate = (layer: number) => {
        reads.push(layer);
        return real(layer);
      };
      const imageLayer = (store.meta.q.imageByName.get('g') as { layer: number }).layer;
      for (const name of ['a', 'b', 'c']) {
        store.createDisk(name, 'g');
        const v = store.openVolume(name);
        await v.write(8, pattern(4096, name.charCodeAt(0)));
        await v.close();
      }
      expect(reads.filter((l) => l === imageLayer)).toHaveLength(1);

      // A snapshot of a, then deleting it: its layer folds into a's top, which clears the cache.
      const snap = await store.createSnapshot('a', 's');
      const a = store.openVolume('a');
      await a.write(16, pattern(4096, 99));
      await a.close();
      reads.length = 0;
      await store.deleteSnapshot('a', snap.id);
      const again = store.openVolume('a');
      expect(reads).toContain(imageLayer);
      // What a reads is still right: its writes over the golden image.
      const want = Buffer.from(golden);
      pattern(4096, 'a'.charCodeAt(0)).copy(want, 8 * 512);
      pattern(4096, 99).copy(want, 16 * 512);
      expect((await again.read(0, want.length / 512)).equals(want)).toBe(true);
      await again.close();
      expect(store.check().problems).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe('paged chunk maps (issue #16: a map per open disk cost 8 bytes per chunk of its size)', () => {
  const PAGE = 1 << PAGE_BITS;

  it('shares pages between copies until one writes, in either direction, and reads 0 where nothing was set', () => {
    const a = ChunkMap.zero(3 * PAGE + 5);
    expect(a.at(0)).toBe(0);
    expect(a.genAt(3 * PAGE + 4)).toBe(0);
    expect(a.bytes).toBe(0);
    a.set(1, 11, 7);
    a.set(3 * PAGE + 4, 99, 7);
    // Two pages made, the last one only 5 entries long.
    expect(a.bytes).toBe(PAGE * 8 + 5 * 8);
    const b = a.share();
    expect(b.ownBytes).toBe(0);
    expect([b.at(1), b.genAt(1), b.at(3 * PAGE + 4)]).toEqual([11, 7, 99]);
    // b writes: its own copy of page 0; a keeps its entry.
    b.set(2, 22, 8);
    expect([a.at(2), b.at(2), b.at(1)]).toEqual([0, 22, 11]);
    expect(b.ownBytes).toBe(PAGE * 8);
    // a writes a page it shares with b since share(): it copies too, b keeps what it saw.
    a.set(3 * PAGE + 4, 100, 9);
    expect([a.at(3 * PAGE + 4), b.at(3 * PAGE + 4)]).toEqual([100, 99]);
    // A layer merged into another: only the map it is done on changes, even on a shared page.
    const c = b.share();
    c.replaceGen(7, 5);
    expect([c.genAt(1), b.genAt(1), a.genAt(1)]).toEqual([5, 7, 7]);
    expect(c.genAt(2)).toBe(8);
  });

  it('ten disks of one 2 GiB image in 8 KiB chunks hold its map once, and each only the pages it wrote', async () => {
    const dir = tempDir('chain-maps-paged');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    const GiB = 2 ** 30;
    const MiB = 2 ** 20;
    // 1 MiB of data at the start and 1 MiB at 1 GiB, the rest a hole: an installed OS on a large
    // disk. 256k chunks of 8 KiB: as many as a 16 GiB disk in the default 64 KiB chunks.
    const fd = fs.openSync(raw, 'w');
    fs.writeSync(fd, pattern(MiB, 1), 0, MiB, 0);
    fs.writeSync(fd, pattern(MiB, 2), 0, MiB, GiB);
    fs.ftruncateSync(fd, 2 * GiB);
    fs.closeSync(fd);
    const store = openStore(path.join(dir, 'store'), { chunkKiB: 8 });
    const vols: ReturnType<typeof store.openVolume>[] = [];
    try {
      await store.importImage('g', raw);
      for (let k = 0; k < 10; k++) {
        store.createDisk(`d${k}`, 'g');
        const v = store.openVolume(`d${k}`);
        vols.push(v);
        // Each client writes near the start and somewhere of its own far out.
        await v.write(64, pattern(4096, 10 + k));
        await v.write(((k + 1) * 100 * MiB) / 512, pattern(4096, 20 + k));
      }
      const chunks = (2 * GiB) / (8 * 1024);
      for (const [k, v] of vols.entries()) {
        const core = (v as unknown as { core: VolumeCore }).core;
        // Flat, this was chunks * 8 bytes (2 MiB) per disk; paged, the two pages it wrote.
        expect(core.map.ownBytes).toBeLessThanOrEqual(2 * PAGE * 8);
        expect(core.map.length).toBe(chunks);
        // What it reads: the image, its own writes, zeros in the hole.
        const head = Buffer.from(pattern(MiB, 1).subarray(0, 128 * 512));
        pattern(4096, 10 + k).copy(head, 64 * 512);
        expect((await v.read(0, 128)).equals(head)).toBe(true);
        expect((await v.read(GiB / 512, 8)).equals(pattern(MiB, 2).subarray(0, 4096))).toBe(true);
        expect((await v.read(((k + 1) * 100 * MiB) / 512, 8)).equals(pattern(4096, 20 + k))).toBe(true);
        expect((await v.read((2 * GiB - 4096) / 512, 8)).equals(Buffer.alloc(4096))).toBe(true);
      }
      for (const v of vols.splice(0)) await v.close();
      expect(store.check().problems).toEqual([]);
    } finally {
      for (const v of vols) await v.close();
      await store.close();
    }
  });
});
