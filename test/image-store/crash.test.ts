import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { crashBlock, crashOps } from './crash-workload';
import { openStore, pattern, prng, tempDir } from './helpers';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Runs the child until it has printed `READY` and then for `ms`, then SIGKILLs it. Returns the last "F k". */
async function runAndKill(script: string, dir: string, run: number, seed: number, ms: number): Promise<{ flushed: number; issued: number; stderr: string }> {
  const child = spawn(process.execPath, [script, dir, String(run), String(seed), path.join(path.dirname(dir), 'imp.raw')], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      if (line === 'READY') killTimer = setTimeout(() => child.kill('SIGKILL'), ms);
      else if (line.startsWith('F ')) flushed = Number(line.slice(2));
      else if (line.startsWith('I ')) issued = Number(line.slice(2));
    }
  });
  const safety = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await new Promise<void>((resolve) => child.on('close', () => resolve()));
  clearTimeout(safety);
  if (killTimer) clearTimeout(killTimer);
  return { flushed, issued, stderr };
}

describe('crash safety with real processes killed by SIGKILL', () => {
  it('after every kill: check is clean and every write acknowledged before the last flush reads back', async () => {
    const work = tempDir('crash');
    dirs.push(work);
    // Bundle the child once: `node child.cjs` starts in ~100 ms, where tsx takes about a second.
    const script = path.join(work, 'crash-child.cjs');
    await build({ entryPoints: [path.join(__dirname, 'crash-child.ts')], bundle: true, platform: 'node', format: 'cjs', outfile: script, external: ['better-sqlite3', 'pino', 'pino-pretty'], nodePaths: [path.resolve(__dirname, '../../node_modules')], logLevel: 'silent' });
    fs.symlinkSync(path.resolve(__dirname, '../../node_modules'), path.join(work, 'node_modules'));

    const dir = path.join(work, 'store');
    const golden = Buffer.alloc(4 << 20);
    pattern(64 * 1024, 5).copy(golden, 1 << 20);
    fs.writeFileSync(path.join(work, 'g.raw'), golden);
    const imp = pattern(2 << 20, 77);
    fs.writeFileSync(path.join(work, 'imp.raw'), imp);
    let imports = 0;
    let store = openStore(dir);
    await store.importImage('g', path.join(work, 'g.raw'));
    store.createDisk('d', 'g');
    await store.close();

    let baseline: Buffer = golden;
    const blocks = golden.length / 512;
    const master = Number(process.env.STORE_SEED ?? Date.now() % 100000);
    const rnd = prng(master);
    const deadline = Date.now() + 45_000;
    let runs = 0;
    let flushedTotal = 0;
    for (let run = 1; run <= 60 && Date.now() < deadline; run++) {
      const seed = master * 100 + run;
      const ms = 20 + Math.floor(rnd() * 400);
      const { flushed, issued, stderr } = await runAndKill(script, dir, run, seed, ms);
      expect(stderr, `child failed (seed ${seed})`).toBe('');
      runs++;
      flushedTotal += flushed;

      store = openStore(dir);
      const rep = store.check();
      expect(rep.problems, `check after kill, master seed ${master} run ${run}: ${JSON.stringify(rep.problems)}`).toEqual([]);
      const vol = store.openVolume('d', { readOnly: true });
      const now = await vol.read(0, blocks);
      await vol.close();
      // Imports the child finished are whole; unfinished ones are gone (open() removed them).
      for (const img of store.listImages().filter((i) => i.name.startsWith('imp-'))) {
        const iv = store.openVolume(img.name);
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
      const maxIdx = issued;
      for (const op of crashOps(seed, blocks)) {
        if (op.kind !== 'write') continue;
        if (op.idx >= maxIdx) break;
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
    console.log(`crash test: ${runs} kills, ${flushedTotal} writes acknowledged by flushes, ${imports} imports completed`);
    expect(runs).toBeGreaterThanOrEqual(5);
    expect(flushedTotal, 'children flushed nothing: the kills came too early to test anything').toBeGreaterThan(0);
  }, 120_000);
});
