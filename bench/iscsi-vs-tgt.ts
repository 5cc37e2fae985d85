/**
 * Side-by-side benchmark: our iSCSI target vs tgt (tgtd 1.0.85), same backing file, same
 * initiators (qemu-img bench and libiscsi's iscsi-perf), one run, loopback.
 *   npx tsx bench/iscsi-vs-tgt.ts [seconds-per-run] [rounds]
 * Rows: 4 KiB random read QD32, 4 KiB random write QD32, 128 KiB sequential read,
 * 1 MiB sequential write; then our RSS. Ratios are ours / tgt (higher is better for us).
 * tgt serves the disk at LUN 1 (LUN 0 is its controller); ours at LUN 0.
 * Ours runs twice: "store" is the product path (the file imported as a golden image into an
 * image store, served as a copy-on-write client disk cloned from it: reads of unwritten blocks
 * go to the image, writes allocate in the clone); "file" serves the raw file as tgt does.
 * Writes carry a non-zero byte pattern (qemu-img bench writes zeros by default, which the
 * store keeps as unallocated zero extents: cheaper than real data, so not a fair measure).
 * ISCSI_BENCH_BACKING=store (or file) runs one of them only. Ours does its file I/O as the
 * product does: on libuv's thread pool, sized by appliance/core/io-threads.ts (2 threads) unless
 * UV_THREADPOOL_SIZE is set; UV_USE_IO_URING=1 measures libuv's io_uring instead.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SECONDS = Number(process.argv[2] ?? 3);
const ROUNDS = Number(process.argv[3] ?? 3);
const SIZE = 512 * 1024 * 1024;
const INITIATOR = 'iqn.2026-11.local.netboot:initiator:test1';
const TGT_IQN = 'iqn.2026-11.local.netboot:bench-tgt';
const OUR_IQN = 'iqn.2026-11.local.netboot:test';
const URING = process.env.UV_USE_IO_URING ?? '0';
const POOL = process.env.UV_THREADPOOL_SIZE ?? 'default (2, io-threads.ts)';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

interface Endpoint { name: string; port: number; iqn: string; lun: number }

function qemuOpts(e: Endpoint): string {
  return `driver=iscsi,transport=tcp,portal=127.0.0.1:${e.port},target=${e.iqn},lun=${e.lun},initiator-name=${INITIATOR}`;
}

/** qemu-img bench for about SECONDS: calibrate count from a short run, return ops/s. */
async function qemuBench(e: Endpoint, args: string[], count: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run('qemu-img', ['bench', ...args, '-c', String(count), '--image-opts', qemuOpts(e)], { timeout: 120_000 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return count / s;
}

/** iscsi-perf for SECONDS; returns average IOPS. */
async function iscsiPerf(e: Endpoint, blocks: number, depth: number, random: boolean): Promise<number> {
  const args = ['-i', INITIATOR, '-m', String(depth), '-b', String(blocks), '-t', String(SECONDS)];
  if (random) args.push('-r');
  args.push(`iscsi://127.0.0.1:${e.port}/${e.iqn}/${e.lun}`);
  const { stdout } = await run('iscsi-perf', args, { timeout: (SECONDS + 30) * 1000 });
  const all = [...stdout.matchAll(/iops average (\d+)/g)];
  return Number(all[all.length - 1]?.[1] ?? 0);
}

async function waitFor(child: ChildProcess, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${re}: ${buf}`)), 60_000);
    const on = (d: Buffer) => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(t);
        resolve(m[1] ?? m[0]);
      }
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${buf}`)));
  });
}

function rss(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `nb-iscsi-bench-${process.pid}-`));
  const file = join(dir, 'disk.raw');
  const fd = openSync(file, 'w');
  const chunk = randomBytes(8 << 20);
  for (let off = 0; off < SIZE; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, off);
  closeSync(fd);

  const children: ChildProcess[] = [];
  const ctl = 10000 + (process.pid % 20000);
  let tgtPid = 0;
  try {
    // tgt, with its own control port so it never touches another tgtd.
    const tgtPort = await freePort();
    const tgtd = spawn('tgtd', ['-f', '-C', String(ctl), '--iscsi', `portal=127.0.0.1:${tgtPort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(tgtd);
    tgtPid = tgtd.pid!;
    await new Promise((r) => setTimeout(r, 1000));
    const adm = (...a: string[]) => run('tgtadm', ['-C', String(ctl), '--lld', 'iscsi', ...a]);
    await adm('--op', 'new', '--mode', 'target', '--tid', '1', '-T', TGT_IQN);
    await adm('--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', '1', '-b', file);
    await adm('--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL');

    // Ours, in its own process, bundled by esbuild and run by plain node as the product is
    // (dist/appliance.cjs): running under tsx's loader hooks costs measurably per request.
    const blocks = SIZE / 512;
    const bundle = join(dir, 'serve.cjs');
    await run(join(__dirname, '..', 'node_modules', '.bin', 'esbuild'), [join(__dirname, '..', 'test', 'iscsi', 'serve.ts'),
      '--bundle', '--platform=node', '--format=cjs', '--target=node20', `--outfile=${bundle}`, '--log-level=warning',
      '--define:__BUNDLE__=true']);
    // The store's SQLite addon ships beside the bundle, as in dist/.
    copyFileSync(join(__dirname, '..', 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'), join(dir, 'better_sqlite3.node'));
    const backings = (process.env.ISCSI_BENCH_BACKING ?? 'store,file').split(',');
    const ours: { e: Endpoint; pid: number }[] = [];
    for (const backing of backings) {
      const child = spawn(process.execPath, [bundle, '0', `${backing}:${file}`, String(blocks)],
        { stdio: ['ignore', 'pipe', 'pipe'], cwd: join(__dirname, '..'), env: { ...process.env, UV_USE_IO_URING: URING } });
      children.push(child);
      const port = Number(await waitFor(child, /PORT (\d+)/));
      ours.push({ e: { name: `ours (${backing})`, port, iqn: OUR_IQN, lun: 0 }, pid: child.pid! });
    }
    const tgt: Endpoint = { name: 'tgt', port: tgtPort, iqn: TGT_IQN, lun: 1 };

    // Warm all (JIT, page cache) with a short sequential read pass.
    for (const e of [tgt, ...ours.map((o) => o.e)]) {
      await qemuBench(e, ['-d', '32', '-s', '131072', '-S', '131072'], 2048);
      await qemuBench(e, ['-d', '32', '-s', '4096', '-S', '1052672'], 10000);
      await qemuBench(e, ['-w', '--pattern=90', '-d', '32', '-s', '4096', '-S', '1052672'], 5000);
    }

    const rows: { name: string; unit: string; f: (e: Endpoint) => Promise<number> }[] = [
      { name: '4 KiB random read, QD32 (iscsi-perf -r)', unit: 'IOPS', f: (e) => iscsiPerf(e, 8, 32, true) },
      { name: '4 KiB scattered read, QD32 (qemu-img bench)', unit: 'IOPS', f: (e) => qemuBench(e, ['-d', '32', '-s', '4096', '-S', '1052672'], 30000) },
      { name: '4 KiB scattered write, QD32 (qemu-img bench -w)', unit: 'IOPS', f: (e) => qemuBench(e, ['-w', '--pattern=90', '-d', '32', '-s', '4096', '-S', '1052672'], 20000) },
      { name: '128 KiB sequential read, QD8 (iscsi-perf)', unit: 'MB/s', f: async (e) => (await iscsiPerf(e, 256, 8, false)) * 131072 / 1e6 },
      { name: '128 KiB sequential read, QD8 (qemu-img bench)', unit: 'MB/s', f: async (e) => (await qemuBench(e, ['-d', '8', '-s', '131072', '-S', '131072'], 6000)) * 131072 / 1e6 },
      { name: '1 MiB sequential write, QD8 (qemu-img bench -w)', unit: 'MB/s', f: async (e) => (await qemuBench(e, ['-w', '--pattern=90', '-d', '8', '-s', '1048576', '-S', '1048576'], 600)) * 1048576 / 1e6 },
    ];
    const out: string[] = [];
    const pad = (s: string, n: number) => s.padEnd(n);
    out.push(`ours with UV_USE_IO_URING=${URING}, UV_THREADPOOL_SIZE=${POOL}; best of ${ROUNDS} rounds of ${SECONDS} s`);
    out.push(`${pad('workload', 50)}${pad('tgt', 12)}${ours.map((o) => pad(o.e.name, 18) + pad('ratio', 8)).join('')}`);
    // ISCSI_BENCH_ROWS=0,2 runs a subset (while tuning).
    const pick = process.env.ISCSI_BENCH_ROWS?.split(',').map(Number);
    for (const row of rows.filter((_, i) => !pick || pick.includes(i))) {
      // The machine is shared: run ROUNDS rounds, rotating which target goes first, and keep
      // each side's best, so a load spike from a neighbour does not decide the ratio.
      const all = [tgt, ...ours.map((o) => o.e)];
      const best = new Map<Endpoint, number>(all.map((e) => [e, 0]));
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < all.length; k++) {
          const e = all[(k + r) % all.length]!;
          best.set(e, Math.max(best.get(e)!, await row.f(e)));
        }
      }
      const a = best.get(tgt)!;
      const cells = ours.map((o) => {
        const b = best.get(o.e)!;
        return pad(`${b.toFixed(0)} ${row.unit}`, 18) + pad(`${a > 0 ? (b / a).toFixed(2) : '0'}x`, 8);
      });
      const line = `${pad(row.name, 50)}${pad(`${a.toFixed(0)} ${row.unit}`, 12)}${cells.join('')}`;
      out.push(line);
      console.log(line);
    }
    const tmem = rss(tgtPid);
    for (const o of ours) {
      const mem = rss(o.pid);
      out.push(`RSS ${o.e.name}: ${mem.rss.toFixed(0)} MiB (peak ${mem.hwm.toFixed(0)} MiB)`);
    }
    out.push(`RSS tgtd: ${tmem.rss.toFixed(0)} MiB (peak ${tmem.hwm.toFixed(0)} MiB)`);
    console.log(`\n${out.join('\n')}`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
