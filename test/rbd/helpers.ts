import fs from 'node:fs';
import path from 'node:path';
import { systemClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { RbdStore } from '../../image-store/rbd/store';
import { afterAll, beforeAll } from 'vitest';
import { tempDir } from '../image-store/helpers';
import { startCluster, type TestCluster } from './cluster';

// The addon helpers live in addon.ts, which benches import (this file imports vitest).
import { ensureAddon } from './addon';

export { ensureAddon, haveLibrbdDev } from './addon';

/** Opens an RbdStore on the test cluster as the least-privilege user; `prefix` keeps stores apart in one pool. */
export function openRbdStore(c: TestCluster, dir: string, prefix: string): Promise<RbdStore> {
  return RbdStore.open({ dir, clock: systemClock, log: silentLogger(), rbd: { conf: c.conf, id: c.id, keyring: c.keyring, pool: c.pool, prefix } });
}

/**
 * Starts a one-node cluster for the enclosing describe (beforeAll) and stops it, removing every
 * directory pushed on `dirs`, afterwards. `cluster()` is the running cluster.
 */
export function useTestCluster(tag: string, dirs: string[]): () => TestCluster {
  let cluster: TestCluster | undefined;
  beforeAll(async () => {
    ensureAddon();
    const dir = tempDir(tag);
    dirs.push(dir);
    cluster = await startCluster(path.join(dir, 'cluster'));
    console.log(`RBD-CLUSTER-START ${cluster.startSeconds.toFixed(1)} s`);
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  }, 30_000);
  return () => cluster!;
}
