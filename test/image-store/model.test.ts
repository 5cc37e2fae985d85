import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ImageStore } from '../../image-store/store';
import { openStore, pattern, tempDir } from './helpers';
import { liveSnapshot, runModel, type ModelHarness } from './model-body';

const BS = 512;
const dirs: string[] = [];
const local: ModelHarness<ImageStore> = {
  dirs,
  open: async (dir) => openStore(dir),
  check: async (store) => store.check().problems.map((p) => JSON.stringify(p)),
  expectEmpty: async (store) => {
    expect(store.usage().usedBytes).toBe(0);
  },
};
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('image store against an in-memory model', () => {
  const base = Number(process.env.STORE_SEED ?? Date.now() % 100000);
  for (let k = 0; k < 4; k++) {
    it(`seed ${base + k}`, async () => {
      await runModel(local, base + k, 1500);
    });
  }

  it('a snapshot of a live disk holds exactly the writes issued before it was called', async () => {
    await liveSnapshot(local);
  });

  it('concurrent writes to one chunk during copy-on-write all land', async () => {
    const dir = tempDir('cow');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, pattern(64 * 1024, 1));
    const store = openStore(path.join(dir, 'store'), { chunkKiB: 16 });
    await store.importImage('g', raw);
    store.createDisk('d', 'g');
    const v = store.openVolume('d');
    const want = Buffer.from(pattern(64 * 1024, 1));
    await Promise.all(
      Array.from({ length: 32 }, (_, i) => {
        const b = pattern(BS, 100 + i);
        b.copy(want, i * BS * 3);
        return v.write(i * 3, b);
      }),
    );
    expect((await v.read(0, 128)).equals(want)).toBe(true);
    await v.close();
    expect(store.check().ok).toBe(true);
    await store.close();
  });
});
