import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RbdStore } from '../../image-store/rbd/store';
import { openStore, pattern, tempDir } from '../image-store/helpers';
import { liveSnapshot, runModel, type ModelHarness } from '../image-store/model-body';
import { haveCeph, type TestCluster } from './cluster';
import { haveLibrbdDev, openRbdStore, useTestCluster } from './helpers';

/**
 * The RBD store backend against a real one-node Ceph cluster (mon, mgr, one memstore OSD on
 * 127.0.0.1, started here and stopped in afterAll): the image store's model test and live-snapshot
 * test (same bodies as test/image-store/model.test.ts), the local store's errors, and what a
 * restart with queued cluster operations leaves.
 */
const ok = haveCeph() && haveLibrbdDev();
const dirs: string[] = [];
let cluster: TestCluster;
let seq = 0;
const prefix = () => `t${process.pid}-${seq++}-`;

const rbd: ModelHarness<RbdStore> & { prefixes: Map<string, string> } = {
  dirs,
  prefixes: new Map(),
  async open(dir) {
    // One pool for every test: each store directory keeps its own image-name prefix.
    if (!rbd.prefixes.has(dir)) rbd.prefixes.set(dir, prefix());
    return openRbdStore(cluster, dir, rbd.prefixes.get(dir)!);
  },
  async check(store) {
    await store.settle();
    return (await store.check()).problems;
  },
  async expectEmpty(store) {
    await store.settle();
    expect(await store.poolImages()).toEqual([]);
  },
};

describe.skipIf(!ok)('RBD store backend on a one-node Ceph cluster', () => {
  const c = useTestCluster('ceph', dirs);
  beforeAll(() => {
    cluster = c();
  });

  it('passes the image store model test (writes, unmaps, snapshots, restores, resets, copies, promotes, deletes, reopens)', async () => {
    const seed = Number(process.env.STORE_SEED ?? Date.now() % 100000);
    await runModel(rbd, seed, Number(process.env.RBD_MODEL_STEPS ?? 150));
  }, 240_000);

  it('a snapshot of a live disk holds exactly the writes issued before it was called', async () => {
    await liveSnapshot(rbd);
  }, 60_000);

  it("answers every refused call with the local store's error code", async () => {
    const dir = tempDir('errors');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, pattern(1 << 20, 3));
    // A qcow2 naming a backing file: refused before anything is read.
    const backed = path.join(dir, 'backed.qcow2');
    const { execFileSync } = await import('node:child_process');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', raw, '-F', 'raw', backed]);
    const codes = async (s: {
      importImage(n: string, f: string): Promise<unknown>;
      createDisk(n: string, i: string): unknown;
      deleteDisk(n: string): void;
      deleteImage(n: string): void;
      openVolume(n: string, o?: { snapshot?: number }): { close(): Promise<void> };
      restoreSnapshot(d: string, id: number): Promise<void>;
      createSnapshot(d: string, n: string): Promise<unknown>;
      copyDisk(a: string, b: string, o?: { snapshot?: number }): Promise<unknown>;
      resetDisk(d: string, i?: string): Promise<void>;
      promoteSnapshot(d: string, id: number, n: string): unknown;
      close(): Promise<void>;
    }) => {
      const out: Record<string, string> = {};
      const code = async (k: string, f: () => unknown) => {
        try {
          await f();
          out[k] = 'ok';
        } catch (err) {
          out[k] = (err as { code?: string }).code ?? String(err);
        }
      };
      await code('import', () => s.importImage('g', raw));
      await code('import again', () => s.importImage('g', raw));
      await code('import bad name', () => s.importImage('../x', raw));
      await code('import backing file', () => s.importImage('b', backed));
      await code('import missing file', () => s.importImage('m', path.join(dir, 'nope.raw')));
      await code('disk of missing image', () => s.createDisk('d', 'nope'));
      await code('disk', () => s.createDisk('d', 'g'));
      await code('disk again', () => s.createDisk('d', 'g'));
      await code('disk named like image', () => s.createDisk('g', 'g'));
      await code('delete image in use', () => s.deleteImage('g'));
      const v = s.openVolume('d');
      await code('delete open disk', () => s.deleteDisk('d'));
      await code('restore missing snapshot', () => s.restoreSnapshot('d', 999));
      await code('snapshot bad name', () => s.createSnapshot('d', 'a b'));
      await code('snapshot of missing disk', () => s.createSnapshot('nope', 's'));
      await code('copy to existing', () => s.copyDisk('d', 'd'));
      await code('copy missing snapshot', () => s.copyDisk('d', 'e', { snapshot: 999 }));
      await code('reset open disk', () => s.resetDisk('d'));
      await code('promote missing snapshot', () => s.promoteSnapshot('d', 999, 'p'));
      await code('open missing', () => s.openVolume('nope'));
      await v.close();
      await code('delete missing disk', () => s.deleteDisk('nope'));
      await code('delete disk', () => s.deleteDisk('d'));
      await code('delete image', () => s.deleteImage('g'));
      await s.close();
      await code('after close', () => s.createDisk('x', 'g'));
      return out;
    };
    const local = await codes(openStore(path.join(dir, 'local')));
    const remote = await codes(await rbd.open(path.join(dir, 'rbd')));
    expect(remote).toEqual(local);
    expect(local['delete open disk']).toBe('DISK_IN_USE');
    expect(local['import backing file']).toBe('IMAGE_REFERENCES_FILE');
  }, 60_000);

  it('restore swaps in a clone and keeps newer snapshots; a reopen applies queued operations and leaves nothing behind', async () => {
    const dir = tempDir('restore');
    dirs.push(dir);
    const raw = path.join(dir, 'g.raw');
    fs.writeFileSync(raw, pattern(4 << 20, 1));
    let s = await rbd.open(path.join(dir, 'store'));
    await s.importImage('g', raw);
    s.createDisk('d', 'g');
    let v = s.openVolume('d');
    await v.write(0, pattern(4096, 2));
    const s1 = await s.createSnapshot('d', 'one');
    await v.write(0, pattern(4096, 3));
    const s2 = await s.createSnapshot('d', 'two');
    await v.close();
    await s.restoreSnapshot('d', s1.id);
    expect(s.listSnapshots('d').map((x) => x.name)).toEqual(['one', 'two']);
    v = s.openVolume('d');
    expect((await v.read(0, 8)).equals(pattern(4096, 2))).toBe(true);
    await v.close();
    const sv = s.openVolume('d', { snapshot: s2.id });
    expect((await sv.read(0, 8)).equals(pattern(4096, 3))).toBe(true);
    await sv.close();
    // Queued but not applied (createDisk's clone, deleteDisk's gc) when the process goes away.
    s.createDisk('e', 'g');
    await s.close();
    s = await rbd.open(path.join(dir, 'store'));
    const ev = s.openVolume('e');
    expect((await ev.read(0, 8)).equals(pattern(4096, 1))).toBe(true);
    await ev.close();
    expect(await rbd.check(s)).toEqual([]);
    s.deleteDisk('d');
    s.deleteDisk('e');
    s.deleteImage('g');
    await rbd.expectEmpty(s);
    await s.close();
  }, 60_000);
});
