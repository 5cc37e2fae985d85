import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { addonPath } from '../../image-store/rbd/native';
import type { RbdStore } from '../../image-store/rbd/store';
import { bundleCrashChild, runCrash } from '../image-store/crash-body';
import { pattern, tempDir } from '../image-store/helpers';
import { haveCeph, type TestCluster } from './cluster';
import { haveLibrbdDev, openRbdStore, useTestCluster } from './helpers';

/**
 * The local store's crash test on the RBD backend: a child process with its own RADOS connection
 * runs writes, flushes, snapshots and imports on a clone of a golden RBD snapshot and is SIGKILLed
 * at a random moment (its exclusive lock and watch die with it); after each kill the store reopens
 * (replaying queued cluster operations), its catalogue matches the pool, every write a completed
 * flush acknowledged reads back, nothing else changed, and an import is whole or gone.
 */
const ok = haveCeph() && haveLibrbdDev();
const dirs: string[] = [];
let cluster: TestCluster;

describe.skipIf(!ok)('RBD store backend: crash safety with real processes killed by SIGKILL', () => {
  const c = useTestCluster('ceph-crash', dirs);
  beforeAll(() => {
    cluster = c();
  });

  it('after every kill: catalogue and pool agree and every write acknowledged before the last flush reads back', async () => {
    const work = tempDir('rbd-crash');
    dirs.push(work);
    const script = await bundleCrashChild(work, addonPath());
    const prefix = `c${process.pid}-`;
    const started = Date.now();
    const { runs, flushedTotal, imports } = await runCrash<RbdStore>(
      {
        work,
        open: (dir) => openRbdStore(cluster, dir, prefix),
        check: async (store) => {
          await store.settle();
          return (await store.check()).problems;
        },
        childArgs: ['--rbd', JSON.stringify({ conf: cluster.conf, id: cluster.id, keyring: cluster.keyring, pool: cluster.pool, prefix })],
        maxRuns: 12,
        budgetMs: 60_000,
        minRuns: 4,
        childTimeoutMs: 30_000,
      },
      script,
    );
    console.log(
      `RBD crash test: ${runs} kills in ${((Date.now() - started) / 1000).toFixed(1)} s, ${flushedTotal} writes acknowledged by flushes, ${imports} imports completed`,
    );
    expect(runs).toBeGreaterThanOrEqual(4);
    expect(flushedTotal, 'children flushed nothing: the kills came too early to test anything').toBeGreaterThan(0);
  }, 180_000);

  it('a restart writes at once to a disk whose lock a killed process held, and that process is fenced', async () => {
    const work = tempDir('rbd-takeover');
    dirs.push(work);
    const prefix = `k${process.pid}-`;
    const dir = path.join(work, 'store');
    fs.writeFileSync(path.join(work, 'g.raw'), pattern(4 << 20, 9));
    let store = await openRbdStore(cluster, dir, prefix);
    await store.importImage('g', path.join(work, 'g.raw'));
    store.createDisk('d', 'g');
    await store.close();
    const [rbdName] = await storeRbdNames(dir);

    // A process of ours opens the disk, writes (so it owns the exclusive lock), then dies by SIGKILL.
    const script = await bundleCrashChild(work, addonPath());
    const child = spawn(
      process.execPath,
      [
        script,
        dir,
        '1',
        '42',
        path.join(work, 'g.raw'),
        '--rbd',
        JSON.stringify({ conf: cluster.conf, id: cluster.id, keyring: cluster.keyring, pool: cluster.pool, prefix }),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], detached: true },
    );
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the child never flushed a write')), 30_000);
      child.stdout.on('data', (d: Buffer) => {
        if (/^F [1-9]/m.test(d.toString())) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const owners = JSON.parse(await cluster.run('rbd', ['lock', 'ls', '--format', 'json', '-p', cluster.pool, rbdName!])) as unknown;
    process.kill(-child.pid!, 'SIGKILL');
    await new Promise<void>((r) => child.on('close', () => r()));
    expect(JSON.stringify(owners), 'the child held the exclusive lock').toContain('auto');

    // librbd would wait for the dead owner's watch to time out (osd_client_watch_timeout, 30 s).
    const t0 = Date.now();
    store = await openRbdStore(cluster, dir, prefix);
    const vol = store.openVolume('d');
    await vol.write(0, pattern(4096, 10));
    await vol.flush();
    const ms = Date.now() - t0;
    await vol.close();
    await store.close();
    console.log(`RBD-TAKEOVER reopen + first write after SIGKILL: ${ms} ms`);
    expect(ms, 'the first write waited for the dead owner').toBeLessThan(15_000);
    const blocklist = await cluster.ceph(['osd', 'blocklist', 'ls']);
    const lockerAddress = (owners as { address?: string }[])[0]?.address ?? Object.values(owners as Record<string, { address: string }>)[0]?.address;
    expect(lockerAddress, JSON.stringify(owners)).toBeTruthy();
    expect(blocklist, 'the dead owner is blocklisted, so it cannot write again').toContain(lockerAddress!);
  }, 120_000);
});

/** The RBD image names of a store's disks, read from its catalogue. */
async function storeRbdNames(dir: string): Promise<string[]> {
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(path.join(dir, 'rbd.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT rbd FROM disks').all() as { rbd: string }[]).map((r) => r.rbd);
  } finally {
    db.close();
  }
}
