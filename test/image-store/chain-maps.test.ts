import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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
