/**
 * Side-by-side benchmark: our iSCSI target vs tgt (tgtd 1.0.85), same backing file, same
 * initiators (qemu-img bench and libiscsi's iscsi-perf), one run, loopback.
 *   npx tsx bench/iscsi-vs-tgt.ts [seconds-per-iscsi-perf-run] [rounds]
 * Rows (issue #16's table, then the older iscsi-perf/128 KiB rows): 4 KiB strided read QD32;
 * 4 KiB strided write QD32 with non-zero data and with zero data (qemu-img bench -w's default);
 * 1 MiB sequential write and read QD8; 8 clients reading at once; 10 clients at once, 5 reading
 * and 5 writing. Then RSS, ours next to tgtd's (now, and the peak over the rows), then a fuzz run
 * against both and RSS again. Ratios are ours / tgt (higher is better for us); "CPU/op" is the
 * target process's CPU time (all threads, user + system) per operation, summed over the rounds.
 *
 * Ours runs as the product does: the bundle (esbuild, as dist/appliance.cjs) under plain node,
 * with the environment and node flags of the shipped systemd unit
 * (os-overlay/rootfs/etc/systemd/system/netboot-appliance.service: its Environment= lines and the
 * flags between node and the bundle in ExecStart). "store" is the product path: the file imported
 * as a golden image into an image store and served as a copy-on-write client disk cloned from it.
 * Every round of a row that writes starts on a fresh clone (the disk reset to the image), so each
 * run measures first writes into a clone as a newly enrolled client makes them, not rewrites of
 * blocks an earlier round already copied. tgt serves the raw file at LUN 1 (LUN 0 is its
 * controller); ours at LUN 0. "file" (ISCSI_BENCH_BACKING=store,file) also serves the raw file
 * as tgt does.
 *
 * Environment:
 *   ISCSI_BENCH_BACKING  store (default) | file | store,file
 *   ISCSI_BENCH_ROWS     indices of the rows to run, e.g. 1,2 (while tuning)
 *   ISCSI_BENCH_NODE     the node binary that runs our target (default: this one)
 *   ISCSI_BENCH_ENV      extra environment for our target, e.g. "MALLOC_ARENA_MAX=1" (measuring a knob)
 *   ISCSI_BENCH_FLAGS    extra node flags for our target, e.g. "--max-semi-space-size=1"
 *   ISCSI_BENCH_NO_UNIT=1  do not apply the unit's environment and flags (measuring without them)
 *   ISCSI_BENCH_FUZZ_S   seconds of fuzz traffic against each target (default 20; 0 skips)
 *   ISCSI_BENCH_SOAK_S   soak mode: that many seconds of the 10-client mixed load on ours (tgt idle),
 *                        RSS sampled every 10 s; prints RSS per minute and the growth (600 for the
 *                        issue's 10-minute soak). No rows, no fuzz.
 *   UV_USE_IO_URING / UV_THREADPOOL_SIZE  passed through (the product: pool of 2, io-threads.ts)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { capturedPdus, fuzzer, xorshift } from '../test/iscsi/fuzz-traffic';
import { cpuSeconds, minorFaults, rss, rssKinds, sampleRss } from './proc-stats';
import { startTgtd, writeRandomDisk } from './tgt-peer';
import { parseEnv, unitRuntime } from './unit-runtime';

const run = promisify(execFile);
const SECONDS = Number(process.argv[2] ?? 3);
const ROUNDS = Number(process.argv[3] ?? 3);
const SIZE = 512 * 1024 * 1024;
const INITIATOR = 'iqn.2026-11.local.netboot:initiator:test1';
const TGT_IQN = 'iqn.2026-11.local.netboot:bench-tgt';
const OUR_IQN = 'iqn.2026-11.local.netboot:test';
const URING = process.env.UV_USE_IO_URING ?? '0';
const POOL = process.env.UV_THREADPOOL_SIZE ?? 'default (2, io-threads.ts)';
const FUZZ_S = Number(process.env.ISCSI_BENCH_FUZZ_S ?? 20);
const SOAK_S = Number(process.env.ISCSI_BENCH_SOAK_S ?? 0);
const NODE = process.env.ISCSI_BENCH_NODE ?? process.execPath;
/** 4 KiB at a stride of 1 MiB + 4 KiB: every I/O in another 64 KiB chunk and 1 MiB group. */
const STRIDE = ['-s', '4096', '-S', '1052672'];

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

interface Endpoint {
  name: string;
  port: number;
  iqn: string;
  lun: number;
  pid: number;
  /** Resets a store disk to a fresh clone of its image (null: the raw file, nothing to reset). */
  reset: (() => Promise<void>) | null;
  /** Our target's memory by kind (serve.ts MEM), for the log. */
  mem?: () => Promise<string>;
}

function qemuOpts(e: Endpoint): string {
  return `driver=iscsi,transport=tcp,portal=127.0.0.1:${e.port},target=${e.iqn},lun=${e.lun},initiator-name=${INITIATOR}`;
}

/** One qemu-img bench run of `count` requests; resolves with its wall time in seconds. */
async function qemuBench(e: Endpoint, args: string[], count: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run('qemu-img', ['bench', ...args, '-c', String(count), '--image-opts', qemuOpts(e)], { timeout: 300_000 });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** Several qemu-img bench runs at once (one session each); resolves with the wall time of all. */
async function qemuClients(e: Endpoint, clients: { args: string[]; count: number }[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  await Promise.all(clients.map((c) => qemuBench(e, c.args, c.count)));
  return Number(process.hrtime.bigint() - t0) / 1e9;
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

/** Lines a child prints, matched as they come. */
class Lines {
  private buf = '';
  private waiters: (() => void)[] = [];
  private exited: string | null = null;
  constructor(child: ChildProcess) {
    const on = (d: Buffer) => {
      this.buf += d.toString();
      for (const w of this.waiters.splice(0)) w();
    };
    child.stdout?.on('data', on);
    child.stderr?.on('data', on);
    child.once('exit', (code) => {
      this.exited = `exited ${code}: ${this.buf}`;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** The first match of re in what came since the last match (group 1 if any). */
  async next(re: RegExp, timeoutMs = 60_000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m.index + m[0].length);
        return m[1] ?? m[0];
      }
      if (this.exited) throw new Error(this.exited);
      if (Date.now() > end) throw new Error(`timeout waiting for ${re}: ${this.buf}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 1000);
      });
    }
  }
}

/** The 10-client load: 5 sessions reading and 5 writing 4 KiB QD4, each in its own 1/10 of the disk. */
function tenClients(scale = 1): { args: string[]; count: number }[] {
  const slice = Math.floor(SIZE / 10 / 4096) * 4096;
  return Array.from({ length: 10 }, (_, k) => ({
    args: [...(k % 2 ? ['-w', '--pattern=90'] : []), '-d', '4', ...STRIDE, '-o', String(k * slice)],
    count: Math.round((k % 2 ? 2500 : 4000) * scale),
  }));
}

interface Row {
  name: string;
  unit: string;
  /** Starts each round of ours on a fresh clone (rows that write). */
  fresh: boolean;
  /** Runs once; returns the figure (in `unit`) and how many operations it made. */
  f: (e: Endpoint) => Promise<{ value: number; ops: number }>;
}

function perSecond(ops: number, bytes: number, unit: 'IOPS' | 'MB/s') {
  return (s: number) => ({ value: unit === 'IOPS' ? ops / s : (ops * bytes) / 1e6 / s, ops });
}

const ROWS: Row[] = [
  {
    name: '4 KiB strided read QD32',
    unit: 'IOPS',
    fresh: false,
    f: async (e) => perSecond(30000, 4096, 'IOPS')(await qemuBench(e, ['-d', '32', ...STRIDE], 30000)),
  },
  {
    name: '4 KiB strided write QD32, non-zero data',
    unit: 'IOPS',
    fresh: true,
    f: async (e) => perSecond(20000, 4096, 'IOPS')(await qemuBench(e, ['-w', '--pattern=90', '-d', '32', ...STRIDE], 20000)),
  },
  {
    name: '4 KiB strided write QD32, zero data',
    unit: 'IOPS',
    fresh: true,
    f: async (e) => perSecond(20000, 4096, 'IOPS')(await qemuBench(e, ['-w', '-d', '32', ...STRIDE], 20000)),
  },
  {
    name: '1 MiB sequential write QD8',
    unit: 'MB/s',
    fresh: true,
    f: async (e) => perSecond(512, 1 << 20, 'MB/s')(await qemuBench(e, ['-w', '--pattern=90', '-d', '8', '-s', '1048576', '-S', '1048576'], 512)),
  },
  {
    name: '1 MiB sequential read QD8',
    unit: 'MB/s',
    fresh: false,
    f: async (e) => perSecond(1024, 1 << 20, 'MB/s')(await qemuBench(e, ['-d', '8', '-s', '1048576', '-S', '1048576'], 1024)),
  },
  {
    name: '8 clients at once, 4 KiB reads QD4',
    unit: 'IOPS',
    fresh: false,
    f: async (e) => {
      const clients = Array.from({ length: 8 }, (_, k) => ({ args: ['-d', '4', ...STRIDE, '-o', String(k * (SIZE / 8))], count: 4000 }));
      return perSecond(32000, 4096, 'IOPS')(await qemuClients(e, clients));
    },
  },
  {
    name: '10 clients at once, 4 KiB reads+writes QD4',
    unit: 'IOPS',
    fresh: true,
    f: async (e) => {
      const clients = tenClients();
      const ops = clients.reduce((a, c) => a + c.count, 0);
      return perSecond(ops, 4096, 'IOPS')(await qemuClients(e, clients));
    },
  },
  {
    name: '4 KiB random read QD32 (iscsi-perf -r)',
    unit: 'IOPS',
    fresh: false,
    f: async (e) => {
      const iops = await iscsiPerf(e, 8, 32, true);
      return { value: iops, ops: iops * SECONDS };
    },
  },
  {
    name: '128 KiB sequential read QD8 (iscsi-perf)',
    unit: 'MB/s',
    fresh: false,
    f: async (e) => {
      const iops = await iscsiPerf(e, 256, 8, false);
      return { value: (iops * 131072) / 1e6, ops: iops * SECONDS };
    },
  },
];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `nb-iscsi-bench-${process.pid}-`));
  const file = join(dir, 'disk.raw');
  writeRandomDisk(file, SIZE);

  const children: ChildProcess[] = [];
  try {
    const tgtPort = await freePort();
    const tgtd = await startTgtd(`127.0.0.1:${tgtPort}`, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(tgtd.child);
    await tgtd.serveFile(1, TGT_IQN, file);
    const tgt: Endpoint = { name: 'tgt', port: tgtPort, iqn: TGT_IQN, lun: 1, pid: tgtd.child.pid!, reset: null };

    // Ours, in its own process, bundled by esbuild and run by plain node as the product is
    // (dist/appliance.cjs): running under tsx's loader hooks costs measurably per request.
    const blocks = SIZE / 512;
    const bundle = join(dir, 'serve.cjs');
    await run(join(__dirname, '..', 'node_modules', '.bin', 'esbuild'), [
      join(__dirname, '..', 'test', 'iscsi', 'serve.ts'),
      '--bundle',
      '--platform=node',
      '--format=cjs',
      '--target=node24',
      // As appliance/build.mjs bundles the product (whitespace out: the source stays on V8's heap).
      '--minify-syntax',
      '--minify-whitespace',
      `--outfile=${bundle}`,
      '--log-level=warning',
      '--define:__BUNDLE__=true',
    ]);
    // The store's SQLite addon ships beside the bundle, as in dist/.
    // better-sqlite3 13 ships its Node-API addon per platform (prebuilds/); a source build wins.
    const bsq = join(__dirname, '..', 'node_modules', 'better-sqlite3');
    const built = join(bsq, 'build', 'Release', 'better_sqlite3.node');
    copyFileSync(existsSync(built) ? built : join(bsq, 'prebuilds', `${process.platform}-${process.arch}.node`), join(dir, 'better_sqlite3.node'));
    const unit = process.env.ISCSI_BENCH_NO_UNIT === '1' ? { env: {}, flags: [] } : unitRuntime();
    const extraEnv = { ...unit.env, ...parseEnv(process.env.ISCSI_BENCH_ENV) };
    const flags = [...unit.flags, ...(process.env.ISCSI_BENCH_FLAGS ?? '').split(/\s+/).filter(Boolean)];
    const backings = (process.env.ISCSI_BENCH_BACKING ?? 'store').split(',');
    const ours: Endpoint[] = [];
    for (const backing of backings) {
      const child = spawn(NODE, [...flags, bundle, '0', `${backing}:${file}`, String(blocks)], {
        stdio: ['pipe', 'pipe', 'pipe'],
        cwd: join(__dirname, '..'),
        env: { ...process.env, UV_USE_IO_URING: URING, ...extraEnv },
      });
      children.push(child);
      const lines = new Lines(child);
      const port = Number(await lines.next(/PORT (\d+)/, 300_000));
      const reset =
        backing === 'store'
          ? async () => {
              child.stdin!.write('RESET\n');
              const r = await lines.next(/RESET (done|failed.*)/);
              if (r !== 'done') throw new Error(`RESET ${r}`);
            }
          : null;
      const mem = async () => {
        child.stdin!.write('MEM\n');
        return lines.next(/MEM (.*)/);
      };
      ours.push({ name: `ours (${backing})`, port, iqn: OUR_IQN, lun: 0, pid: child.pid!, reset, mem });
    }
    const all = [tgt, ...ours];
    const head =
      `ours: node ${(await run(NODE, ['--version'])).stdout.trim()}${flags.length ? ` ${flags.join(' ')}` : ''}` +
      `${
        Object.keys(extraEnv).length
          ? `, env ${Object.entries(extraEnv)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')}`
          : ''
      }` +
      `, UV_USE_IO_URING=${URING}, UV_THREADPOOL_SIZE=${POOL}`;
    console.log(head);

    // Warm all (JIT, page cache); a store grows its segments once (a one-time cost of a new
    // store: later clones reuse the space a reset frees), then its disk is a fresh clone again.
    for (const e of all) {
      await qemuBench(e, ['-d', '32', '-s', '131072', '-S', '131072'], 4096);
      await qemuBench(e, ['-d', '32', ...STRIDE], 10000);
      await qemuBench(e, ['-w', '--pattern=90', '-d', '8', '-s', '1048576', '-S', '1048576'], 512);
      await qemuBench(e, ['-w', '--pattern=90', '-d', '32', ...STRIDE], 5000);
      await e.reset?.();
    }

    if (SOAK_S > 0) {
      await soak(ours, tgt);
      return;
    }

    const out: string[] = [
      head,
      `best of ${ROUNDS} rounds, alternating who goes first; CPU/op: target CPU time per operation (all threads); faults/op: its minor page faults per operation`,
    ];
    const pad = (s: string, n: number) => s.padEnd(n);
    out.push(
      `${pad('workload', 52)}${pad('tgt', 12)}${ours.map((o) => pad(o.name, 14) + pad('ratio', 7)).join('')}  CPU/op tgt | ${ours.map((o) => o.name).join(' | ')}   faults/op tgt | ${ours.map((o) => o.name).join(' | ')}`,
    );
    const pick = process.env.ISCSI_BENCH_ROWS?.split(',').map(Number);
    const peakDuring = new Map<string, number[]>();
    for (const row of ROWS.filter((_, i) => !pick || pick.includes(i))) {
      // The machine is shared: run ROUNDS rounds, rotating which target goes first, and keep
      // each side's best, so a load spike from a neighbour does not decide the ratio.
      const best = new Map<Endpoint, number>(all.map((e) => [e, 0]));
      const cpu = new Map<Endpoint, { s: number; faults: number; ops: number }>(all.map((e) => [e, { s: 0, faults: 0, ops: 0 }]));
      const sampler = sampleRss(all.map((e) => e.pid));
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < all.length; k++) {
          const e = all[(k + r) % all.length]!;
          if (row.fresh) await e.reset?.();
          const c0 = cpuSeconds(e.pid);
          const f0 = minorFaults(e.pid);
          const { value, ops } = await row.f(e);
          const c = cpu.get(e)!;
          c.s += cpuSeconds(e.pid) - c0;
          c.faults += minorFaults(e.pid) - f0;
          c.ops += ops;
          best.set(e, Math.max(best.get(e)!, value));
        }
      }
      peakDuring.set(row.name, sampler.stop());
      const a = best.get(tgt)!;
      const cells = ours.map((o) => {
        const b = best.get(o)!;
        return pad(`${b.toFixed(0)}`, 14) + pad(`${a > 0 ? (b / a).toFixed(2) : '0'}x`, 7);
      });
      const us = (e: Endpoint) => `${((cpu.get(e)!.s / Math.max(1, cpu.get(e)!.ops)) * 1e6).toFixed(1)} µs`;
      const faults = (e: Endpoint) => (cpu.get(e)!.faults / Math.max(1, cpu.get(e)!.ops)).toFixed(2);
      const line = `${pad(`${row.name} (${row.unit})`, 52)}${pad(`${a.toFixed(0)}`, 12)}${cells.join('')}  ${us(tgt)} | ${ours.map(us).join(' | ')}   ${faults(tgt)} | ${ours.map(faults).join(' | ')}`;
      out.push(line);
      console.log(line);
      for (const o of ours) console.log(`  ${o.name}: ${rssKinds(o.pid)}, ${await o.mem?.()}`);
    }
    const memLine = (what: string) => {
      // A target the fuzz killed has no /proc entry left: say so rather than NaN.
      const mem = (pid: number) => {
        const m = rss(pid);
        return Number.isNaN(m.rss) ? 'gone' : `${m.rss.toFixed(0)} MiB (peak ${m.hwm.toFixed(0)})`;
      };
      return `RSS ${what}: ${ours.map((o) => `${o.name} ${mem(o.pid)}`).join(', ')}; tgtd ${mem(tgt.pid)}`;
    };
    out.push(memLine('after the rows'));
    for (const [name, peaks] of peakDuring) {
      if (name.startsWith('10 clients'))
        out.push(
          `RSS peak during "${name}": ${ours.map((o) => `${o.name} ${peaks[all.indexOf(o)]!.toFixed(0)} MiB`).join(', ')}; tgtd ${peaks[0]!.toFixed(0)} MiB`,
        );
    }
    console.log(out[out.length - 1]);

    if (FUZZ_S > 0) {
      // The fuzzers log in to the disk's own target (there is no other): run last.
      const captured = capturedPdus();
      const fuzzed: string[] = [];
      // Ours first: tgtd 1.0.85 has been seen to die under this traffic (its exit is reported).
      for (const e of [...ours, tgt]) {
        const rnd = xorshift(0x2545f491);
        const until = Date.now() + FUZZ_S * 1000;
        const n = await Promise.all(
          [0, 1, 2].map(() => fuzzer({ port: e.port, targetName: e.iqn, initiatorName: INITIATOR, until, rnd, captured, tolerateLoginFailure: true })),
        );
        const child = children.find((c) => c.pid === e.pid)!;
        const died = child.exitCode !== null || child.signalCode !== null ? ` (DIED: ${child.signalCode ?? `exit ${child.exitCode}`})` : '';
        fuzzed.push(`${e.name} ${n.reduce((x, y) => x + y, 0)} connections${died}`);
      }
      out.push(`fuzz: ${FUZZ_S} s each, ${fuzzed.join(', ')}`);
      // Let the targets settle (sessions torn down, a GC or two) before reading RSS.
      await new Promise((r) => setTimeout(r, 3000));
      out.push(memLine('after the fuzz run'));
    }
    console.log(`\n${out.join('\n')}`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Soak: the 10-client load in a loop against ours for SOAK_S seconds (each client a new session
 * per run, so logins and teardowns are part of it), RSS sampled every 10 s. Prints RSS at the end
 * of each minute and the growth from the end of the first minute (warm) to the end.
 */
async function soak(ours: Endpoint[], tgt: Endpoint): Promise<void> {
  const e = ours[0]!;
  const t0 = Date.now();
  const end = t0 + SOAK_S * 1000;
  const samples: { t: number; rss: number }[] = [];
  const timer = setInterval(() => samples.push({ t: (Date.now() - t0) / 1000, rss: rss(e.pid).rss }), 10_000);
  let runs = 0;
  let ops = 0;
  const clients = tenClients(0.5);
  await Promise.all(
    clients.map(async (c) => {
      while (Date.now() < end) {
        await qemuBench(e, c.args, c.count);
        runs++;
        ops += c.count;
      }
    }),
  );
  clearInterval(timer);
  samples.push({ t: (Date.now() - t0) / 1000, rss: rss(e.pid).rss });
  const at = (sec: number) => samples.filter((s) => s.t <= sec + 5).pop()?.rss ?? NaN;
  const minutes = Math.floor(SOAK_S / 60);
  const lines = [`soak: ${SOAK_S} s of 10 clients (5 reading, 5 writing 4 KiB QD4) on ${e.name}: ${runs} sessions, ${ops} I/Os`];
  lines.push(`RSS at the end of each minute (MiB): ${Array.from({ length: minutes }, (_, m) => at((m + 1) * 60).toFixed(0)).join(' ')}`);
  const first = at(60);
  const last = samples[samples.length - 1]!.rss;
  const max = Math.max(...samples.map((s) => s.rss));
  lines.push(
    `RSS ${e.name}: after minute 1 ${first.toFixed(0)} MiB, at the end ${last.toFixed(0)} MiB (growth ${(last - first).toFixed(0)} MiB), max ${max.toFixed(0)} MiB, peak ${rss(e.pid).hwm.toFixed(0)}; tgtd (idle) ${rss(tgt.pid).rss.toFixed(0)} MiB`,
  );
  console.log(`\n${lines.join('\n')}`);
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
