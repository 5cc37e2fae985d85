import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { ImageStore } from '../../image-store/store';
import { bundleCrashChild, runCrash } from './crash-body';
import { openStore, tempDir } from './helpers';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('crash safety with real processes killed by SIGKILL', () => {
  it('after every kill: check is clean and every write acknowledged before the last flush reads back', async () => {
    const work = tempDir('crash');
    dirs.push(work);
    const script = await bundleCrashChild(work);
    const { runs, flushedTotal, imports } = await runCrash<ImageStore>(
      {
        work,
        open: async (dir) => openStore(dir),
        check: async (store) => store.check().problems,
        childArgs: [],
        maxRuns: 60,
        budgetMs: 45_000,
        minRuns: 5,
        childTimeoutMs: 15_000,
      },
      script,
    );
    console.log(`crash test: ${runs} kills, ${flushedTotal} writes acknowledged by flushes, ${imports} imports completed`);
    expect(runs).toBeGreaterThanOrEqual(5);
    expect(flushedTotal, 'children flushed nothing: the kills came too early to test anything').toBeGreaterThan(0);
  }, 120_000);
});
