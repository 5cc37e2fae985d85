/**
 * Issue #13 (fsyncgate): a failed fdatasync must never be followed by a commit of the data it
 * was to make durable. On Linux the failed writeback's pages are marked clean, so the data is
 * gone and the next fdatasync of the file succeeds: retrying it and committing the extents made
 * metadata point at chunks holding zeros or another disk's old data.
 */
import fs from 'node:fs';
import path from 'node:path';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { statusRoutes } from '../../appliance/http/routes/status';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { fileIo, type SegmentIo } from '../../image-store/io';
import { ImageStore } from '../../image-store/store';
import { pattern, tempDir } from './helpers';
import { FailingSync, SECTOR } from './volatile-cache';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const open = (dir: string, io: SegmentIo) =>
  ImageStore.open({ dir, clock: new FakeClock(), log: silentLogger(), segmentMiB: 1, chunkKiB: 4, reserveMiB: 0, io });

const SIZE = 256 * 1024;
const CHUNK = 4096;

/** A store with image g (patterned, no zero sectors) and disk d, which owns chunk 0 (flushed). */
async function setup(tag: string): Promise<{ dir: string; golden: Buffer; owned: Buffer }> {
  const work = tempDir(tag);
  dirs.push(work);
  const dir = path.join(work, 'store');
  const golden = pattern(SIZE, 1);
  fs.writeFileSync(path.join(work, 'g.raw'), golden);
  const store = open(dir, fileIo);
  await store.importImage('g', path.join(work, 'g.raw'));
  store.createDisk('d', 'g');
  store.createDisk('e', 'g');
  const vol = store.openVolume('d');
  const owned = pattern(CHUNK, 2);
  await vol.write(0, owned); // the disk owns chunk 0 from here: later writes to it go in place
  await vol.close();
  await store.close();
  return { dir, golden, owned };
}

/** Writes into an owned chunk (in place), a whole fresh chunk and part of another (copy on write). */
async function writeThree(vol: { write(lba: number, d: Buffer): Promise<void> }): Promise<Map<number, Buffer>> {
  const written = new Map<number, Buffer>();
  const put = async (lba: number, data: Buffer) => {
    await vol.write(lba, data);
    for (let k = 0; k < data.length / SECTOR; k++) written.set(lba + k, data.subarray(k * SECTOR, (k + 1) * SECTOR));
  };
  await put(1, pattern(SECTOR, 3)); // chunk 0, in place
  await put(8, pattern(CHUNK, 4)); // chunk 1, whole: a fresh chunk
  await put(17, pattern(2 * SECTOR, 5)); // chunk 2, partial: copied on write
  return written;
}

describe('a failed fdatasync (issue #13)', () => {
  it('is never followed by a commit of extents whose data it dropped', async () => {
    const { dir, golden, owned } = await setup('fsyncgate');
    const io = new FailingSync();
    let store = open(dir, io);
    const vol = store.openVolume('d');
    const written = await writeThree(vol);
    io.failSyncs = 1;
    await vol.flush().catch(() => {});
    // The retry an initiator (or the store's own destage) makes: the kernel has nothing left
    // to write, so fdatasync succeeds. Before the fix this committed the dropped chunks.
    await vol.flush().catch(() => {});
    await vol.flush().catch(() => {});
    expect(io.syncCalls, 'the failing sync ran').toBeGreaterThan(0);
    // Power cut: whatever was never synced is lost.
    await io.cut(() => 1);
    store.db.close();
    store.space.close();

    store = open(dir, fileIo);
    const problems = store.check().problems.filter((p) => p.kind !== 'degraded');
    expect(problems).toEqual([]);
    const ro = store.openVolume('d', { readOnly: true });
    const now = await ro.read(0, SIZE / SECTOR);
    await ro.close();
    const durable = Buffer.from(golden);
    owned.copy(durable, 0);
    for (let s = 0; s < 3 * (CHUNK / SECTOR); s++) {
      const got = now.subarray(s * SECTOR, (s + 1) * SECTOR);
      const ok = got.equals(durable.subarray(s * SECTOR, (s + 1) * SECTOR)) || (written.get(s)?.equals(got) ?? false);
      expect(ok, `sector ${s} reads neither the last durable data nor what was written (lost data committed)`).toBe(true);
    }
    await store.close();
  });

  it("fails the flush, every later flush and the disk's I/O, marks the store degraded until check --repair", async () => {
    const { dir, golden, owned } = await setup('fsyncgate-loud');
    const io = new FailingSync();
    let store = open(dir, io);
    expect(store.health().state).toBe('ok');
    const other = store.openVolume('e');
    await other.write(0, pattern(CHUNK, 9));
    await other.flush(); // e has nothing unflushed when d's sync fails

    const vol = store.openVolume('d');
    await writeThree(vol);
    io.failSyncs = 1;
    await expect(vol.flush()).rejects.toMatchObject({ name: 'VolumeError', code: 'IO' });
    // fsync retried: the kernel says yes, the store must not.
    await expect(vol.flush()).rejects.toMatchObject({ code: 'IO' });
    await expect(vol.write(40, pattern(SECTOR, 6))).rejects.toMatchObject({ code: 'IO' });
    await expect(vol.write(0, pattern(SECTOR, 6), { fua: true })).rejects.toMatchObject({ code: 'IO' });
    // Reads too: a dropped page re-read from the disk is the chunk's old contents (another
    // disk's freed data, for a fresh chunk).
    await expect(vol.read(8, 8)).rejects.toMatchObject({ code: 'IO' });

    const health = store.health();
    expect(health.state).toBe('degraded');
    expect(health.degraded?.disks).toEqual(['d']);
    expect(health.degraded?.reason).toMatch(/EIO/);
    expect(store.check().problems.map((p) => p.kind)).toContain('degraded');

    // A disk with nothing unflushed at the failure keeps working.
    await other.write(8, pattern(CHUNK, 10));
    await other.flush();
    expect((await other.read(8, 8)).equals(pattern(CHUNK, 10))).toBe(true);

    // Reconnecting (every handle closed, opened again) shows the last durable state.
    await vol.close();
    const again = store.openVolume('d');
    const head = await again.read(0, 24);
    expect(head.subarray(0, CHUNK).equals(owned)).toBe(true);
    expect(head.subarray(CHUNK, 3 * CHUNK).equals(golden.subarray(CHUNK, 3 * CHUNK))).toBe(true);
    await again.write(8, pattern(CHUNK, 11));
    await again.flush();
    await again.close();
    await other.close();
    await store.close();

    // Degraded is persisted: a restart does not hide it.
    store = open(dir, fileIo);
    expect(store.health().state).toBe('degraded');
    const rep = store.check();
    const deg = rep.problems.find((p) => p.kind === 'degraded');
    expect(deg?.detail).toMatch(/fdatasync/);
    expect(rep.problems.filter((p) => p.kind !== 'degraded' && p.kind !== 'leaked-chunks')).toEqual([]);
    const fixed = store.check({ repair: true });
    expect(fixed.repaired.join('\n')).toMatch(/degraded/);
    expect(store.health().state).toBe('ok');
    expect(store.check().problems).toEqual([]);
    const v = store.openVolume('d', { readOnly: true });
    expect((await v.read(8, 8)).equals(pattern(CHUNK, 11))).toBe(true);
    await v.close();
    await store.close();
  });

  it('shows in GET /api/status', async () => {
    const { dir } = await setup('fsyncgate-status');
    const io = new FailingSync();
    const store = open(dir, io);
    const app = Fastify();
    await app.register(
      statusRoutes({
        version: 't',
        startedAt: 0,
        now: () => 0,
        serverAddress: '127.0.0.1',
        services: () => [],
        storage: async () => ({ dataDir: dir, filesystem: { totalBytes: 1, freeBytes: 1, availableBytes: 1 } }),
        storeHealth: () => store.health(),
      }),
    );
    expect((await app.inject({ method: 'GET', url: '/api/status' })).json().storeHealth).toEqual({ state: 'ok' });
    const vol = store.openVolume('d');
    await vol.write(8, pattern(CHUNK, 4));
    io.failSyncs = 1;
    await expect(vol.flush()).rejects.toMatchObject({ code: 'IO' });
    const st = (await app.inject({ method: 'GET', url: '/api/status' })).json().storeHealth;
    expect(st).toMatchObject({ state: 'degraded', degraded: { failures: 1, disks: ['d'], segments: [0] } });
    expect(st.degraded.reason).toMatch(/fdatasync of segment 0 failed: EIO/);
    await app.close();
    await vol.close();
    await store.close();
  });
});
