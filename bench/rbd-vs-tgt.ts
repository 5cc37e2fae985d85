/**
 * Side-by-side on Ceph RBD (issue #19): our iSCSI target over the RBD store backend vs tgt with
 * its RBD backing store (tgt-rbd, `--bstype rbd`), on the same one-node cluster (mon, mgr, one
 * memstore OSD on 127.0.0.1, test/rbd/cluster.ts), the same pool and the same image size, each
 * serving clones of one golden RBD snapshot; fio's rbd engine (librbd directly, no iSCSI) is the
 * floor. Then clone / snapshot / restore latency of the RBD store vs the local store.
 *   npx tsx bench/rbd-vs-tgt.ts [seconds-per-run] [rounds]
 * Rows: 4 KiB random read/write QD32, 1 MiB sequential read/write QD8 (qemu-img bench, one
 * client), and an 8-client storm (8 iscsi-perf initiators, one disk each, 4 KiB random read QD4,
 * at once; summed). Ratios are ours / tgt (higher is better for us) and ours / fio.
 * Best of `rounds` per side, rotating who goes first (the machine is shared).
 * Memstore keeps every object in the OSD's RAM: the numbers measure the I/O paths (librbd,
 * the target, the network stack), not disks.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../appliance/core/clock';
import { silentLogger } from '../appliance/core/log';
import { ImageStore } from '../image-store/store';
import { RbdStore } from '../image-store/rbd/store';
import { startCluster } from '../test/rbd/cluster';
import { ensureAddon } from '../test/rbd/addon';
import { startTgtd, writeRandomDisk } from './tgt-peer';

const run = promisify(execFile);
const SECONDS = Number(process.argv[2] ?? 3);
const ROUNDS = Number(process.argv[3] ?? 2);
const SIZE = 256 * 1024 * 1024;
const CLIENTS = 8;
const INITIATOR = 'iqn.2026-11.local.netboot:initiator:test1';
const TGT_IQN = 'iqn.2026-11.local.netboot:bench-tgt';

interface Endpoint {
  name: string;
  port: number;
  iqn: (k: number) => string;
  lun: number;
}

function qemuOpts(e: Endpoint, k = 0): string {
  return `driver=iscsi,transport=tcp,portal=127.0.0.1:${e.port},target=${e.iqn(k)},lun=${e.lun},initiator-name=${INITIATOR}`;
}

async function qemuBench(e: Endpoint, args: string[], count: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  await run('qemu-img', ['bench', ...args, '-c', String(count), '--image-opts', qemuOpts(e)], { timeout: 180_000 });
  return count / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function iscsiPerf(e: Endpoint, k: number, blocks: number, depth: number): Promise<number> {
  const { stdout } = await run(
    'iscsi-perf',
    ['-i', INITIATOR, '-m', String(depth), '-b', String(blocks), '-t', String(SECONDS), '-r', `iscsi://127.0.0.1:${e.port}/${e.iqn(k)}/${e.lun}`],
    { timeout: (SECONDS + 60) * 1000 },
  );
  const all = [...stdout.matchAll(/iops average (\d+)/g)];
  return Number(all[all.length - 1]?.[1] ?? 0);
}

/** fio's rbd engine on `image`: IOPS. */
async function fio(conf: string, pool: string, image: string, rw: string, bs: string, depth: number, sizeMiB: number): Promise<number> {
  const { stdout } = await run(
    'fio',
    [
      '--name=floor',
      '--ioengine=rbd',
      '--clientname=admin',
      `--pool=${pool}`,
      `--rbdname=${image}`,
      `--rw=${rw}`,
      `--bs=${bs}`,
      `--iodepth=${depth}`,
      `--size=${SIZE}`,
      `--io_size=${sizeMiB}M`,
      '--time_based=0',
      `--runtime=${SECONDS}`,
      '--output-format=json',
      ...(rw.includes('write') ? ['--buffer_pattern=0x5a'] : []),
    ],
    { timeout: 180_000, env: { ...process.env, CEPH_CONF: conf } },
  );
  const j = JSON.parse(stdout) as { jobs: { read: { iops: number }; write: { iops: number } }[] };
  return j.jobs[0]!.read.iops + j.jobs[0]!.write.iops;
}

async function waitFor(child: ChildProcess, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${re}: ${buf}`)), 120_000);
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

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function main(): Promise<void> {
  ensureAddon();
  const dir = mkdtempSync(join(tmpdir(), `nb-rbd-bench-${process.pid}-`));
  const file = join(dir, 'golden.raw');
  writeRandomDisk(file, SIZE);
  const tStart = Date.now();
  const cluster = await startCluster(join(dir, 'ceph'), { memoryMiB: 3072, maxSeconds: 1800 });
  console.log(`cluster up in ${cluster.startSeconds.toFixed(1)} s (mon, mgr, memstore OSD)`);
  const children: ChildProcess[] = [];
  // Interrupted: stop what we started (by pid) before leaving.
  const onSignal = () => {
    for (const c of children) c.kill('SIGKILL');
    void cluster.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const rbd = (...a: string[]) => cluster.run('rbd', ['-p', cluster.pool, ...a]);
  const out: string[] = [];
  try {
    // Ours: the product path (RbdStore: golden = RBD image + protected snapshot, disks = clones).
    const bundle = join(dir, 'rbd-serve.cjs');
    await run(join(__dirname, '..', 'node_modules', '.bin', 'esbuild'), [
      join(__dirname, 'rbd-serve.ts'),
      '--bundle',
      '--platform=node',
      '--format=cjs',
      '--target=node24',
      `--outfile=${bundle}`,
      '--log-level=warning',
      '--define:__BUNDLE__=true',
    ]);
    // better-sqlite3 13 ships its Node-API addon per platform (prebuilds/); a source build wins.
    const bsq = join(__dirname, '..', 'node_modules', 'better-sqlite3');
    const built = join(bsq, 'build', 'Release', 'better_sqlite3.node');
    copyFileSync(existsSync(built) ? built : join(bsq, 'prebuilds', `${process.platform}-${process.arch}.node`), join(dir, 'better_sqlite3.node'));
    copyFileSync(join(__dirname, '..', 'image-store', 'rbd', 'addon', 'build', 'Release', 'rbd_io.node'), join(dir, 'rbd_io.node'));
    const t0 = process.hrtime.bigint();
    const ours = spawn(process.execPath, [bundle, cluster.conf, 'admin', '', cluster.pool, file, String(CLIENTS), join(dir, 'ours-store')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(ours);
    const ourPort = Number(await waitFor(ours, /PORT (\d+)/));
    console.log(`ours: imported ${SIZE >> 20} MiB and made ${CLIENTS} clones in ${(ms(t0) / 1000).toFixed(1)} s`);
    const ourE: Endpoint = { name: 'ours', port: ourPort, iqn: (k) => `iqn.2026-11.local.netboot:rbd-${k}`, lun: 0 };

    // tgt: clones of the same golden snapshot, one target per client, LUN 1 (LUN 0 is its controller).
    const golden = (JSON.parse(await rbd('ls', '-l', '--format', 'json')) as { image: string; snapshot?: string }[]).find(
      (e) => e.snapshot === 'golden',
    )!.image;
    for (let k = 0; k < CLIENTS; k++) await rbd('clone', `${cluster.pool}/${golden}@golden`, `${cluster.pool}/tgt-${k}`);
    await rbd('clone', `${cluster.pool}/${golden}@golden`, `${cluster.pool}/fio-floor`);
    const tgtPort = 20000 + (process.pid % 20000);
    const { child: tgtd, adm } = await startTgtd(`127.0.0.1:${tgtPort}`, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CEPH_CONF: cluster.conf },
    });
    children.push(tgtd);
    for (let k = 0; k < CLIENTS; k++) {
      await adm('--op', 'new', '--mode', 'target', '--tid', String(k + 1), '-T', `${TGT_IQN}-${k}`);
      await adm(
        '--op',
        'new',
        '--mode',
        'logicalunit',
        '--tid',
        String(k + 1),
        '--lun',
        '1',
        '--bstype',
        'rbd',
        '-b',
        `${cluster.pool}/tgt-${k}`,
        '--bsopts',
        `conf=${cluster.conf};id=admin`,
      );
      await adm('--op', 'bind', '--mode', 'target', '--tid', String(k + 1), '-I', 'ALL');
    }
    const tgtE: Endpoint = { name: 'tgt', port: tgtPort, iqn: (k) => `${TGT_IQN}-${k}`, lun: 1 };

    for (const e of [tgtE, ourE]) {
      await qemuBench(e, ['-d', '8', '-s', '1048576', '-S', '1048576'], 128);
      await qemuBench(e, ['-d', '32', '-s', '4096', '-S', '1052672'], 4000);
    }
    type Row = { name: string; unit: string; f: (e: Endpoint) => Promise<number>; floor?: () => Promise<number> };
    const rows: Row[] = [
      {
        name: '4 KiB random read, QD32',
        unit: 'IOPS',
        f: (e) => qemuBench(e, ['-d', '32', '-s', '4096', '-S', '1052672'], 20000),
        floor: () => fio(cluster.conf, cluster.pool, 'fio-floor', 'randread', '4k', 32, 80),
      },
      {
        name: '4 KiB random write, QD32',
        unit: 'IOPS',
        f: (e) => qemuBench(e, ['-w', '--pattern=90', '-d', '32', '-s', '4096', '-S', '1052672'], 10000),
        floor: () => fio(cluster.conf, cluster.pool, 'fio-floor', 'randwrite', '4k', 32, 40),
      },
      {
        name: '1 MiB sequential read, QD8',
        unit: 'MB/s',
        f: async (e) => (await qemuBench(e, ['-d', '8', '-s', '1048576', '-S', '1048576'], 256)) * 1.048576,
        floor: async () => (await fio(cluster.conf, cluster.pool, 'fio-floor', 'read', '1M', 8, 256)) * 1.048576,
      },
      {
        name: '1 MiB sequential write, QD8',
        unit: 'MB/s',
        f: async (e) => (await qemuBench(e, ['-w', '--pattern=90', '-d', '8', '-s', '1048576', '-S', '1048576'], 256)) * 1.048576,
        floor: async () => (await fio(cluster.conf, cluster.pool, 'fio-floor', 'write', '1M', 8, 256)) * 1.048576,
      },
      {
        name: `${CLIENTS}-client storm, 4 KiB rand read QD4 each`,
        unit: 'IOPS',
        f: async (e) => (await Promise.all(Array.from({ length: CLIENTS }, (_, k) => iscsiPerf(e, k, 8, 4)))).reduce((a, b) => a + b, 0),
      },
    ];
    const pad = (s: string, n: number) => s.padEnd(n);
    out.push(`best of ${ROUNDS} rounds; image ${SIZE >> 20} MiB, clones of one golden snapshot, pool ${cluster.pool} (size 1, memstore)`);
    out.push(`${pad('workload', 44)}${pad('fio rbd (floor)', 17)}${pad('tgt bs_rbd', 14)}${pad('ours', 14)}${pad('ours/tgt', 10)}ours/fio`);
    for (const row of rows) {
      const all = [tgtE, ourE];
      const best = new Map<Endpoint, number>(all.map((e) => [e, 0]));
      let floor = 0;
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < all.length; k++) {
          const e = all[(k + r) % all.length]!;
          best.set(e, Math.max(best.get(e)!, await row.f(e)));
        }
        if (row.floor) floor = Math.max(floor, await row.floor());
      }
      const t = best.get(tgtE)!;
      const o = best.get(ourE)!;
      const line = `${pad(row.name, 44)}${pad(row.floor ? `${floor.toFixed(0)} ${row.unit}` : '-', 17)}${pad(`${t.toFixed(0)} ${row.unit}`, 14)}${pad(`${o.toFixed(0)} ${row.unit}`, 14)}${pad(`${(o / t).toFixed(2)}x`, 10)}${row.floor ? `${(o / floor).toFixed(2)}x` : '-'}`;
      out.push(line);
      console.log(line);
    }
    out.push(`RSS ours: ${rssMiB(ours.pid!).toFixed(0)} MiB, tgtd: ${rssMiB(tgtd.pid!).toFixed(0)} MiB`);

    // Management latency: RBD store vs local store (median of N).
    const N = 10;
    const lat = async (label: string, open: () => Promise<{ s: any; done: () => Promise<void> }>) => {
      const { s, done } = await open();
      await s.importImage('g', file);
      const clone: number[] = [];
      const snap: number[] = [];
      const restore: number[] = [];
      for (let i = 0; i < N; i++) {
        let t = process.hrtime.bigint();
        s.createDisk(`d${i}`, 'g');
        if (s.settle) await s.settle(); // RBD: the clone is applied (queued by createDisk)
        const v = s.openVolume(`d${i}`);
        await v.write(0, Buffer.alloc(4096, i + 1));
        clone.push(ms(t));
        t = process.hrtime.bigint();
        const sn = await s.createSnapshot(`d${i}`, 'one');
        snap.push(ms(t));
        await v.close();
        t = process.hrtime.bigint();
        await s.restoreSnapshot(`d${i}`, sn.id);
        restore.push(ms(t));
      }
      await done();
      return `${pad(label, 14)}clone+open+first write ${median(clone).toFixed(1)} ms   snapshot (live disk) ${median(snap).toFixed(1)} ms   restore ${median(restore).toFixed(1)} ms`;
    };
    const localLine = await lat('local store', async () => {
      const s = ImageStore.open({ dir: join(dir, 'local-store'), clock: systemClock, log: silentLogger(), reserveMiB: 0 });
      return { s, done: () => s.close() };
    });
    const rbdLine = await lat('RBD store', async () => {
      const s = await RbdStore.open({
        dir: join(dir, 'lat-store'),
        clock: systemClock,
        log: silentLogger(),
        rbd: { conf: cluster.conf, id: cluster.id, keyring: cluster.keyring, pool: cluster.pool, prefix: 'lat-' },
      });
      return { s, done: () => s.close() };
    });
    out.push(`median of ${N}:`, localLine, rbdLine);
    out.push(`whole run ${((Date.now() - tStart) / 1000).toFixed(0)} s`);
    console.log(`\n${out.join('\n')}`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
