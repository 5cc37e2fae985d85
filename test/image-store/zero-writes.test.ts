import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { ImageStore } from '../../image-store/store';
import { pattern, tempDir } from './helpers';

/**
 * Zeros written to a clone (issue #16): an OS writes zeros when it makes a file system or swap.
 * Zeros onto blocks that read as zeros take no space and no I/O; zeros over data read back as
 * zeros after a restart, and a snapshot taken before still sees the data. Also: the scratch
 * buffers copy on write merges in (reused, not allocated per write) never mix two writes.
 */
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const KIB = 1024;
const CHUNK = 64 * KIB;

/** A 2 MiB image: the first MiB zeros, the second a pattern. 64 KiB chunks. */
async function setup(tag: string): Promise<{ dir: string; store: ImageStore; image: Buffer }> {
  const work = tempDir(tag);
  dirs.push(work);
  const image = Buffer.concat([Buffer.alloc(1024 * KIB), pattern(1024 * KIB, 7)]);
  fs.writeFileSync(path.join(work, 'g.raw'), image);
  const dir = path.join(work, 'store');
  const store = open(dir);
  await store.importImage('g', path.join(work, 'g.raw'));
  store.createDisk('d', 'g');
  return { dir, store, image };
}

function open(dir: string): ImageStore {
  return ImageStore.open({ dir, clock: new FakeClock(), log: silentLogger(), segmentMiB: 16, chunkKiB: CHUNK / KIB, reserveMiB: 0 });
}

describe('zero writes on a clone', () => {
  it('zeros onto blocks that read as zeros take no space and read back as zeros after a restart', async () => {
    const { dir, store } = await setup('zero-on-zero');
    const before = store.usage().usedBytes;
    const vol = store.openVolume('d');
    // 4 KiB zero writes all over the image's zero half (every chunk), and a whole zero chunk.
    await Promise.all(Array.from({ length: 16 }, (_, k) => vol.write((k * CHUNK + 8 * KIB) / 512, Buffer.alloc(4 * KIB))));
    await vol.write((3 * CHUNK) / 512, Buffer.alloc(CHUNK));
    await vol.flush();
    expect(store.usage().usedBytes).toBe(before);
    await vol.close();
    await store.close();

    const again = open(dir);
    expect(again.check().problems).toEqual([]);
    const v = again.openVolume('d');
    expect((await v.read(0, (1024 * KIB) / 512)).equals(Buffer.alloc(1024 * KIB))).toBe(true);
    await v.close();
    await again.close();
  });

  it('zeros over data read back as zeros after a restart; a snapshot taken before keeps the data', async () => {
    const { dir, store, image } = await setup('zero-on-data');
    const vol = store.openVolume('d');
    // The disk's own data in one chunk of the zero half, then a snapshot.
    const own = pattern(CHUNK, 11);
    await vol.write((2 * CHUNK) / 512, own);
    const snap = await store.createSnapshot('d', 'before');
    // Zeros: 4 KiB into the image's data (copy on write), 4 KiB into the disk's own chunk (now
    // frozen in the snapshot: copy on write too), and a whole chunk of the image's data.
    const imgChunk = 1024 * KIB + 5 * CHUNK;
    await vol.write((imgChunk + 12 * KIB) / 512, Buffer.alloc(4 * KIB));
    await vol.write((2 * CHUNK + 60 * KIB) / 512, Buffer.alloc(4 * KIB));
    await vol.write((1024 * KIB + 9 * CHUNK) / 512, Buffer.alloc(CHUNK));
    await vol.flush();
    await vol.close();
    await store.close();

    const again = open(dir);
    expect(again.check().problems).toEqual([]);
    const v = again.openVolume('d');
    const want = Buffer.from(image);
    own.copy(want, 2 * CHUNK);
    want.fill(0, imgChunk + 12 * KIB, imgChunk + 16 * KIB);
    want.fill(0, 2 * CHUNK + 60 * KIB, 3 * CHUNK);
    want.fill(0, 1024 * KIB + 9 * CHUNK, 1024 * KIB + 10 * CHUNK);
    expect((await v.read(0, want.length / 512)).equals(want)).toBe(true);
    await v.close();

    const s = again.openVolume('d', { snapshot: snap.id, readOnly: true });
    const old = Buffer.from(image);
    own.copy(old, 2 * CHUNK);
    expect((await s.read(0, old.length / 512)).equals(old)).toBe(true);
    await s.close();
    await again.close();
  });

  it('copy on write merges of many writes at once never mix their data (scratch buffers are reused)', async () => {
    const { store, image } = await setup('scratch');
    const vol = store.openVolume('d');
    const want = Buffer.from(image);
    // Three rounds of 32 concurrent 4 KiB writes, each into another chunk the disk does not own
    // yet (round 2 and 3 land in chunks of the image's data half, at other offsets).
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 32 }, (_, k) => {
          const at = (k % 32) * CHUNK + round * 20 * KIB;
          const data = pattern(4 * KIB, 100 * round + k);
          data.copy(want, at);
          return vol.write(at / 512, data);
        }),
      );
    }
    expect((await vol.read(0, want.length / 512)).equals(want)).toBe(true);
    await vol.close();
    await store.close();
  });
});
