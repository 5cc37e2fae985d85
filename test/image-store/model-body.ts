import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import type { BlockVolume } from '../../image-store/block-volume';
import { pattern, prng, tempDir } from './helpers';

const BS = 512;

/** A volume as the model uses it. */
export type ModelVolume = Pick<BlockVolume, 'read' | 'write' | 'flush' | 'unmap'> & { close(): Promise<void> };

/** The management calls the model makes: what the local ImageStore and the RbdStore share. */
export interface ModelStore {
  importImage(name: string, file: string): Promise<unknown>;
  createDisk(name: string, image: string): unknown;
  openVolume(name: string, opts?: { snapshot?: number }): ModelVolume;
  createSnapshot(disk: string, name: string): Promise<{ id: number }>;
  restoreSnapshot(disk: string, id: number): Promise<void>;
  deleteSnapshot(disk: string, id: number): Promise<void>;
  resetDisk(disk: string, image?: string): Promise<void>;
  copyDisk(from: string, to: string, opts?: { snapshot?: number }): Promise<unknown>;
  deleteDisk(name: string): void;
  promoteSnapshot(disk: string, id: number, image: string): unknown;
  deleteImage(name: string): void;
  listDisks(): { image: string | null }[];
  close(): Promise<void>;
}

/** How to open, check and audit one backend (test/image-store/model.test.ts, test/rbd/store.test.ts). */
export interface ModelHarness<S extends ModelStore> {
  /** Temp dirs made here, for the caller's afterAll. */
  dirs: string[];
  open(dir: string): Promise<S>;
  /** The backend's consistency check: problems found (none expected). */
  check(store: S): Promise<string[]>;
  /** After every disk and image was deleted: nothing may be left (chunks, RBD images). */
  expectEmpty(store: S): Promise<void>;
}

/**
 * Model-based test: random writes, flushes, unmaps, snapshots, restores, resets, copies, deletes,
 * promotes and store reopens across several clients of one golden image, each checked against
 * plain Buffers. Geometry is tiny (4 KiB chunks, 1 MiB segments) so chunk edges, COW, merges and
 * segment growth are hit constantly. A failure names the seed and step to replay.
 */
export async function runModel<S extends ModelStore>(h: ModelHarness<S>, seed: number, steps: number): Promise<void> {
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const dir = tempDir('model');
  h.dirs.push(dir);
  const SIZE = 192 * 1024 + 3 * BS; // not a chunk multiple: the last chunk is partial
  const blocks = SIZE / BS;
  const golden = Buffer.alloc(SIZE);
  for (let i = 0; i < 20; i++) pattern(BS * (1 + int(16)), seed + i).copy(golden, int(blocks - 16) * BS);
  const raw = path.join(dir, 'golden.raw');
  fs.writeFileSync(raw, golden);

  let store: S = await h.open(path.join(dir, 'store'));
  await store.importImage('golden', raw);
  const images = new Map<string, Buffer>([['golden', golden]]);
  const disks = new Map<string, { data: Buffer; vol: ModelVolume | null; snaps: Map<number, Buffer> }>();
  let nameSeq = 0;
  let tag = seed * 1000;

  const vol = (name: string) => {
    const d = disks.get(name)!;
    d.vol ??= store.openVolume(name);
    return d.vol;
  };
  const closeVol = async (name: string) => {
    const d = disks.get(name)!;
    if (d.vol) await d.vol.close();
    d.vol = null;
  };
  const newDisk = (image: string) => {
    const name = `c${nameSeq++}`;
    store.createDisk(name, image);
    disks.set(name, { data: Buffer.from(images.get(image)!), vol: null, snaps: new Map() });
  };
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  const verifyAll = async () => {
    for (const [name, d] of disks) {
      const got = await vol(name).read(0, blocks);
      expect(got.equals(d.data), `disk ${name} differs from the model`).toBe(true);
      for (const [id, want] of d.snaps) {
        const sv = store.openVolume(name, { snapshot: id });
        const snapData = await sv.read(0, blocks);
        await sv.close();
        expect(snapData.equals(want), `snapshot ${id} of ${name} differs`).toBe(true);
      }
    }
    for (const [name, want] of images) {
      const iv = store.openVolume(name);
      expect((await iv.read(0, blocks)).equals(want), `image ${name} differs`).toBe(true);
      await iv.close();
    }
  };

  for (let i = 0; i < 3; i++) newDisk('golden');
  let step = 0;
  try {
    for (step = 0; step < steps; step++) {
      const names = [...disks.keys()];
      const name = pick(names);
      const d = disks.get(name)!;
      const r = rnd();
      if (r < 0.4) {
        const lba = int(blocks);
        const n = 1 + int(Math.min(24, blocks - lba));
        const buf = rnd() < 0.1 ? Buffer.alloc(n * BS) : pattern(n * BS, tag++);
        await vol(name).write(lba, buf, { fua: rnd() < 0.05 });
        buf.copy(d.data, lba * BS);
      } else if (r < 0.55) {
        const lba = int(blocks);
        const n = 1 + int(Math.min(40, blocks - lba));
        const got = await vol(name).read(lba, n);
        expect(got.equals(d.data.subarray(lba * BS, (lba + n) * BS)), `read ${name} ${lba}+${n}`).toBe(true);
      } else if (r < 0.62) {
        await vol(name).flush();
      } else if (r < 0.66) {
        const lba = int(blocks);
        const n = 1 + int(Math.min(30, blocks - lba));
        await vol(name).unmap(lba, n);
        d.data.fill(0, lba * BS, (lba + n) * BS);
      } else if (r < 0.73) {
        const s = await store.createSnapshot(name, `s${step}`);
        d.snaps.set(s.id, Buffer.from(d.data));
      } else if (r < 0.79 && d.snaps.size > 0) {
        const id = pick([...d.snaps.keys()]);
        if (d.vol) await expect(store.restoreSnapshot(name, id)).rejects.toMatchObject({ code: 'DISK_IN_USE' });
        await closeVol(name);
        await store.restoreSnapshot(name, id);
        d.data = Buffer.from(d.snaps.get(id)!);
      } else if (r < 0.83 && d.snaps.size > 0) {
        const id = pick([...d.snaps.keys()]);
        await store.deleteSnapshot(name, id);
        d.snaps.delete(id);
      } else if (r < 0.85) {
        await closeVol(name);
        const image = pick([...images.keys()]);
        await store.resetDisk(name, image);
        d.data = Buffer.from(images.get(image)!);
      } else if (r < 0.87 && disks.size < 6) {
        const to = `c${nameSeq++}`;
        const useSnap = d.snaps.size > 0 && rnd() < 0.5 ? pick([...d.snaps.keys()]) : undefined;
        await store.copyDisk(name, to, { snapshot: useSnap });
        disks.set(to, { data: Buffer.from(useSnap === undefined ? d.data : d.snaps.get(useSnap)!), vol: null, snaps: new Map() });
      } else if (r < 0.89 && disks.size > 2) {
        if (d.vol) expect(() => store.deleteDisk(name)).toThrow(expect.objectContaining({ code: 'DISK_IN_USE' }));
        await closeVol(name);
        store.deleteDisk(name);
        disks.delete(name);
      } else if (r < 0.9 && d.snaps.size > 0 && images.size < 4) {
        const id = pick([...d.snaps.keys()]);
        const img = `img${step}`;
        store.promoteSnapshot(name, id, img);
        images.set(img, Buffer.from(d.snaps.get(id)!));
        if (disks.size < 6) newDisk(img);
      } else if (r < 0.91 && images.size > 1) {
        const img = pick([...images.keys()].filter((x) => x !== 'golden'));
        const users = store.listDisks().filter((x) => x.image === img);
        if (users.length > 0) expect(() => store.deleteImage(img)).toThrow(expect.objectContaining({ code: 'IMAGE_IN_USE' }));
        else {
          store.deleteImage(img);
          images.delete(img);
        }
      } else if (r < 0.92) {
        for (const n of disks.keys()) await closeVol(n);
        await store.close();
        store = await h.open(path.join(dir, 'store'));
      } else if (r < 0.94) {
        for (const n of disks.keys()) await closeVol(n);
        const problems = await h.check(store);
        expect(problems, JSON.stringify(problems)).toEqual([]);
      }
      if (process.env.STORE_CHECK_EVERY) {
        const problems = await h.check(store);
        expect(problems, `after op r=${r.toFixed(3)} on ${name}: ${JSON.stringify(problems)}`).toEqual([]);
      }
    }
    await verifyAll();
    for (const n of disks.keys()) await closeVol(n);
    const problems = await h.check(store);
    expect(problems, JSON.stringify(problems)).toEqual([]);
    // Deleting everything returns every chunk (every RBD image): nothing leaks.
    for (const n of [...disks.keys()]) store.deleteDisk(n);
    for (const n of [...images.keys()]) store.deleteImage(n);
    await h.expectEmpty(store);
    expect(await h.check(store)).toEqual([]);
    await store.close();
  } catch (err) {
    (err as Error).message = `model test failed: seed=${seed} step=${step}: ${(err as Error).message}`;
    throw err;
  }
}

/** A snapshot of a live disk holds exactly the writes issued before it was called. */
export async function liveSnapshot<S extends ModelStore>(h: ModelHarness<S>): Promise<void> {
  const dir = tempDir('live');
  h.dirs.push(dir);
  const raw = path.join(dir, 'g.raw');
  fs.writeFileSync(raw, Buffer.alloc(1 << 20));
  const store = await h.open(path.join(dir, 'store'));
  await store.importImage('g', raw);
  store.createDisk('d', 'g');
  const v = store.openVolume('d');
  const before = Array.from({ length: 50 }, (_, i) => v.write(i * 40, pattern(BS * 3, i)));
  const snap = store.createSnapshot('d', 'live');
  const after = Array.from({ length: 50 }, (_, i) => v.write(i * 40, pattern(BS * 3, 500 + i)));
  await Promise.all([...before, snap, ...after]);
  const sv = store.openVolume('d', { snapshot: (await snap).id });
  for (let i = 0; i < 50; i++) {
    expect((await sv.read(i * 40, 3)).equals(pattern(BS * 3, i)), `snapshot block ${i}`).toBe(true);
    expect((await v.read(i * 40, 3)).equals(pattern(BS * 3, 500 + i)), `disk block ${i}`).toBe(true);
  }
  await sv.close();
  await v.close();
  expect(await h.check(store)).toEqual([]);
  await store.close();
}
