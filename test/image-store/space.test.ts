import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VolumeError } from '../../image-store/block-volume';
import { fillUntilFailure, openStore, pattern, tempDir } from './helpers';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('disk full', () => {
  it('fails writes with NO_SPACE, harms nothing else, and works again once space is freed', async () => {
    const dir = tempDir('full');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    const golden = Buffer.alloc(8 << 20);
    pattern(256 * 1024, 1).copy(golden, 0);
    fs.writeFileSync(raw, golden);
    // 4 segments of 1 MiB: the image takes 256 KiB, leaving ~3.75 MiB for two 8 MiB disks.
    const store = openStore(path.join(dir, 'store'), { capacityBytes: 4 << 20 });
    await store.importImage('g', raw);
    store.createDisk('a', 'g');
    store.createDisk('b', 'g');
    const a = store.openVolume('a');
    const b = store.openVolume('b');
    const bData = pattern(1 << 20, 2);
    await b.write(0, bData);
    await b.flush();
    const snap = await store.createSnapshot('b', 'keep');

    // Fill the store from disk a, 64 KiB at a time, until a write is refused.
    const { written, err } = await fillUntilFailure(a, 128, 100);
    expect(err).toBeInstanceOf(VolumeError);
    expect((err as VolumeError).code).toBe('NO_SPACE');
    expect(written).toBeGreaterThan(0);
    expect(store.usage().freeBytes).toBeLessThan(64 * 1024);
    // Everything acknowledged is intact and durable; the other disk is untouched.
    await a.flush();
    for (let lba = 0; lba < written; lba += 128) expect((await a.read(lba, 128)).equals(pattern(65536, 100 + lba)), `a @${lba}`).toBe(true);
    expect((await b.read(0, 2048)).equals(bData)).toBe(true);
    // Overwriting chunks the disk already owns needs no space and still works.
    await a.write(0, pattern(65536, 7));
    // Reads of never-written regions still show the golden image.
    expect((await a.read(a.blockCount - 8, 8)).equals(golden.subarray(golden.length - 4096))).toBe(true);
    // An import while full fails with NO_SPACE and leaves nothing.
    const small = path.join(dir, 'small.raw');
    fs.writeFileSync(small, pattern(1 << 20, 9));
    await expect(store.importImage('small', small)).rejects.toMatchObject({ code: 'NO_SPACE' });
    expect(store.getImage('small')).toBeUndefined();
    await b.close();
    expect(store.check().problems).toEqual([]);

    // Free space: delete b's snapshot and then b itself; a's writes work again.
    await store.deleteSnapshot('b', snap.id);
    store.deleteDisk('b');
    const next = written;
    await a.write(next, pattern(65536, 555));
    await a.flush();
    expect((await a.read(next, 128)).equals(pattern(65536, 555))).toBe(true);
    await a.close();
    expect(store.check().problems).toEqual([]);
    await store.close();
  });

  it('keeps the configured reserve free on the filesystem', async () => {
    const dir = tempDir('reserve');
    dirs.push(dir);
    const st = fs.statfsSync(dir);
    const avail = st.bavail * st.bsize;
    // A reserve larger than what the filesystem has: the store may not grow at all.
    const store = openStore(path.join(dir, 'store'), { reserveMiB: Math.ceil(avail / 2 ** 20) + 1024 });
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, pattern(65536, 3));
    await expect(store.importImage('g', raw)).rejects.toMatchObject({ code: 'NO_SPACE' });
    expect(store.usage().capacityBytes).toBe(0);
    await store.close();
  });
});

describe('unmap', () => {
  it('reads zeros after unmap (LBPRZ), frees owned chunks, and reports mapping', async () => {
    const dir = tempDir('unmap');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, pattern(1 << 20, 4));
    const store = openStore(path.join(dir, 'store'));
    await store.importImage('g', raw);
    store.createDisk('d', 'g');
    const v = store.openVolume('d');
    expect(v.thin).toEqual({ provisioned: true, unmappedReads: 'zero', granularityBlocks: 8 });
    await v.write(0, pattern(65536, 8));
    await v.flush();
    const used = store.usage().usedBytes;
    await v.unmap(0, 128); // owned chunks: freed
    await v.unmap(200, 13); // golden chunks, partial edges: zero-filled
    await v.flush();
    expect(store.usage().usedBytes).toBeLessThan(used);
    expect((await v.read(0, 128)).equals(Buffer.alloc(65536))).toBe(true);
    expect((await v.read(200, 13)).equals(Buffer.alloc(13 * 512))).toBe(true);
    expect((await v.read(199, 1)).equals(pattern(1 << 20, 4).subarray(199 * 512, 200 * 512))).toBe(true);
    const m = await v.mapping!(0, 256);
    expect(m[0]).toEqual({ lba: 0, blocks: 128, mapped: false });
    expect(m.some((r) => r.mapped)).toBe(true);
    await v.close();
    expect(store.check().problems).toEqual([]);
    await store.close();
  });
});

describe('read-only views', () => {
  it('an export of a snapshot deleted meanwhile keeps reading the snapshot, and its space is freed after', async () => {
    const dir = tempDir('pin');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, pattern(1 << 20, 4));
    const store = openStore(path.join(dir, 'store'));
    await store.importImage('g', raw);
    store.createDisk('d', 'g');
    const v = store.openVolume('d');
    await v.write(0, pattern(256 * 1024, 5));
    const snap = await store.createSnapshot('d', 's');
    await v.write(0, pattern(256 * 1024, 6));
    await v.flush();
    const sv = store.openVolume('d', { snapshot: snap.id });
    await store.deleteSnapshot('d', snap.id);
    expect(store.check().problems).toEqual([]);
    // Churn the disk so freed chunks would be reused if the pinned layer had been collected.
    for (let i = 0; i < 4; i++) {
      await store.createSnapshot('d', `c${i}`);
      await v.write(0, pattern(256 * 1024, 10 + i));
      await v.flush();
    }
    expect((await sv.read(0, 512)).equals(pattern(256 * 1024, 5))).toBe(true);
    const used = store.usage().usedBytes;
    await sv.close();
    expect(store.usage().usedBytes).toBeLessThan(used);
    await v.close();
    expect(store.check().problems).toEqual([]);
    await store.close();
  });
});

describe('management', () => {
  it('renames a disk with its snapshots, refuses while open, and copies in O(1) from a live disk', async () => {
    const dir = tempDir('mgmt');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, pattern(1 << 20, 4));
    const store = openStore(path.join(dir, 'store'));
    await store.importImage('g', raw);
    store.createDisk('aa:bb', 'g');
    const v = store.openVolume('aa:bb');
    await v.write(0, pattern(4096, 9));
    const snap = await store.createSnapshot('aa:bb', 'one');
    expect(() => store.renameDisk('aa:bb', 'cc:dd')).toThrow(expect.objectContaining({ code: 'DISK_IN_USE' }));
    // A copy of the live disk sees acknowledged writes, though nothing was flushed by the caller.
    await v.write(8, pattern(4096, 10));
    const copy = await store.copyDisk('aa:bb', 'copy');
    expect(copy.image).toBe('g');
    const cv = store.openVolume('copy');
    expect((await cv.read(0, 16)).equals(Buffer.concat([pattern(4096, 9), pattern(4096, 10)]))).toBe(true);
    await cv.close();
    await v.close();
    const renamed = store.renameDisk('aa:bb', 'cc:dd');
    expect(renamed.snapshots).toBe(1);
    expect(store.getDisk('aa:bb')).toBeUndefined();
    expect(store.listSnapshots('cc:dd').map((s) => s.id)).toEqual([snap.id]);
    expect(() => store.renameDisk('cc:dd', 'copy')).toThrow(expect.objectContaining({ code: 'DISK_EXISTS' }));
    expect(() => store.createDisk('g', 'g')).toThrow(expect.objectContaining({ code: 'DISK_EXISTS' }));
    expect(() => store.createDisk('x', 'nope')).toThrow(expect.objectContaining({ code: 'IMAGE_NOT_FOUND' }));
    expect(() => store.deleteImage('g')).toThrow(expect.objectContaining({ code: 'IMAGE_IN_USE' }));
    await expect(store.restoreSnapshot('cc:dd', 999)).rejects.toMatchObject({ code: 'SNAPSHOT_NOT_FOUND' });
    expect(store.check().problems).toEqual([]);
    await store.close();
  });
});
