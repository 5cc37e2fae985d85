/**
 * The crash test's body, shared by the local store (crash.test.ts) and the RBD backend
 * (test/rbd/crash.test.ts): a child process (crash-child.ts) runs a seeded workload of writes,
 * flushes, snapshots and imports on disk "d" and is SIGKILLed at a random moment; the parent
 * reopens the store and checks that it is consistent, that every write acknowledged before the
 * child's last completed flush reads back, that nothing else changed, and that imports are whole
 * or absent. Then again, from where the last run left the disk.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { expect } from 'vitest';
import { crashBlock, crashOps } from './crash-workload';
import { pattern, prng } from './helpers';

/** What the parent needs of a store: the local ImageStore and RbdStore both have it. */
export interface CrashStore {
  importImage(name: string, file: string): Promise<unknown>;
  createDisk(name: string, image: string): unknown;
  openVolume(name: string, opts?: { readOnly?: boolean }): { read(lba: number, blocks: number): Promise<Buffer>; close(): Promise<void> };
  listImages(): { name: string }[];
  deleteImage(name: string): void;
  close(): Promise<void>;
}

export interface CrashHarness<S extends CrashStore> {
  /** A scratch directory of the test's own (removed by the caller). */
  work: string;
  open(dir: string): Promise<S>;
  /** Consistency problems after a reopen (empty when clean). */
  check(store: S): Promise<unknown[]>;
  /** Extra arguments for the child: how it opens the same store. */
  childArgs: string[];
  /** Runs at most this many kills, for at most this long. */
  maxRuns: number;
  budgetMs: number;
  /**
   * Goes on past the budget until this many kills ran (still at most maxRuns): a machine busy
   * with other work makes each run slower, and a test that checked two kills proved less than
   * it claims. The test's own timeout bounds it.
   */
  minRuns?: number;
  /** The child's own time limit, from start to kill. */
  childTimeoutMs: number;
}

/**
 * Bundles crash-child.ts into `work` (`node child.cjs` starts in ~100 ms, where tsx takes about a
 * second), with node_modules reachable and the RBD addon beside it when it is built.
 */
export async function bundleCrashChild(work: string, rbdAddon?: string): Promise<string> {
  const script = path.join(work, 'crash-child.cjs');
  await build({
    entryPoints: [path.join(__dirname, 'crash-child.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    outfile: script,
    external: ['better-sqlite3', 'pino', 'pino-pretty'],
    nodePaths: [path.resolve(__dirname, '../../node_modules')],
    logLevel: 'silent',
  });
  fs.symlinkSync(path.resolve(__dirname, '../../node_modules'), path.join(work, 'node_modules'));
  if (rbdAddon) fs.copyFileSync(rbdAddon, path.join(work, 'rbd_io.node'));
  return script;
}

/**
 * Runs the child until it has printed `READY` and then for `ms`, then SIGKILLs its whole process
 * group (as systemd kills the unit's cgroup: a tool it was running dies with it). Returns the last
 * "F k" and "I n".
 */
async function runAndKill(args: string[], ms: number, limitMs: number): Promise<{ flushed: number; issued: number; stderr: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  let flushed = 0;
  let issued = 0;
  let out = '';
  let stderr = '';
  let killTimer: NodeJS.Timeout | undefined;
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      if (line === 'READY') killTimer = setTimeout(kill, ms);
      else if (line.startsWith('F ')) flushed = Number(line.slice(2));
      else if (line.startsWith('I ')) issued = Number(line.slice(2));
    }
  });
  const safety = setTimeout(kill, limitMs);
  await new Promise<void>((resolve) => child.on('close', () => resolve()));
  kill(); // anything the child started that outlived it
  clearTimeout(safety);
  if (killTimer) clearTimeout(killTimer);
  return { flushed, issued, stderr };
}

/** The kill loop; returns how many kills ran and how many writes flushes acknowledged. */
export async function runCrash<S extends CrashStore>(h: CrashHarness<S>, script: string): Promise<{ runs: number; flushedTotal: number; imports: number }> {
  const dir = path.join(h.work, 'store');
  const golden = Buffer.alloc(4 << 20);
  pattern(64 * 1024, 5).copy(golden, 1 << 20);
  fs.writeFileSync(path.join(h.work, 'g.raw'), golden);
  const imp = pattern(2 << 20, 77);
  const impFile = path.join(h.work, 'imp.raw');
  fs.writeFileSync(impFile, imp);
  let imports = 0;
  let store = await h.open(dir);
  await store.importImage('g', path.join(h.work, 'g.raw'));
  store.createDisk('d', 'g');
  await store.close();

  let baseline: Buffer = golden;
  const blocks = golden.length / 512;
  const master = Number(process.env.STORE_SEED ?? Date.now() % 100000);
  const rnd = prng(master);
  const deadline = Date.now() + h.budgetMs;
  let runs = 0;
  let flushedTotal = 0;
  const minRuns = h.minRuns ?? 0;
  for (let run = 1; run <= h.maxRuns && (Date.now() < deadline || runs < minRuns); run++) {
    const seed = master * 100 + run;
    const ms = 20 + Math.floor(rnd() * 400);
    const { flushed, issued, stderr } = await runAndKill([script, dir, String(run), String(seed), impFile, ...h.childArgs], ms, h.childTimeoutMs);
    expect(stderr, `child failed (seed ${seed})`).toBe('');
    runs++;
    flushedTotal += flushed;

    store = await h.open(dir);
    const problems = await h.check(store);
    expect(problems, `check after kill, master seed ${master} run ${run}: ${JSON.stringify(problems)}`).toEqual([]);
    const vol = store.openVolume('d', { readOnly: true });
    const now = await vol.read(0, blocks);
    await vol.close();
    // Imports the child finished are whole; unfinished ones are gone (open() removed them).
    for (const img of store.listImages().filter((i) => i.name.startsWith('imp-'))) {
      const iv = store.openVolume(img.name, { readOnly: true });
      expect((await iv.read(0, imp.length / 512)).equals(imp), `image ${img.name} incomplete (master seed ${master})`).toBe(true);
      await iv.close();
      store.deleteImage(img.name);
      imports++;
    }
    await store.close();

    // Replay the workload: for each block, the last write before `flushed` must be there,
    // unless a later (unacknowledged-at-flush) write to that block replaced it.
    const must = new Int32Array(blocks).fill(-1);
    const later: Set<number>[] = [];
    for (const op of crashOps(seed, blocks)) {
      if (op.kind !== 'write') continue;
      if (op.idx >= issued) break;
      for (let b = op.lba; b < op.lba + op.blocks; b++) {
        if (op.idx < flushed) must[b] = op.idx;
        else (later[b] ??= new Set()).add(op.idx);
      }
    }
    for (let b = 0; b < blocks; b++) {
      const got = now.subarray(b * 512, (b + 1) * 512);
      const isOurs = got.readUInt32LE(0) === 0xc0ffee00 && got.readUInt32LE(4) === run;
      const idx = isOurs ? got.readUInt32LE(8) : -1;
      const where = `master seed ${master} run ${run} block ${b} (flushed ${flushed})`;
      if (isOurs) {
        expect(got.equals(crashBlock(run, idx, b)), `torn/foreign block: ${where}`).toBe(true);
        const ok = idx === must[b] || (later[b]?.has(idx) ?? false);
        expect(ok, `block holds write ${idx}, expected ${must[b]} or a later one: ${where}`).toBe(true);
      } else {
        expect(must[b], `acknowledged+flushed write ${must[b]} lost: ${where}`).toBe(-1);
        expect(got.equals(baseline.subarray(b * 512, (b + 1) * 512)), `block neither baseline nor ours: ${where}`).toBe(true);
      }
    }
    baseline = now;
  }
  return { runs, flushedTotal, imports };
}
