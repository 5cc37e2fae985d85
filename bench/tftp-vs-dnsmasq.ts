/**
 * TFTP throughput: our server vs dnsmasq's, side by side in one run.
 *
 *   npx tsx bench/tftp-vs-dnsmasq.ts [--size-mib 32] [--reps 3]
 *
 * Needs root (network namespace), dnsmasq, curl and atftp. dnsmasq's TFTP only listens on port 69,
 * so both servers and the clients run inside a namespace of our own (nb-tftpbench-<pid>, lo only),
 * which is deleted at the end. Each case fetches one random file and checks its sha256; the cases
 * alternate between the servers; the median and the best of the repetitions are reported (on a
 * shared machine the best run is the least disturbed one). Ratio = dnsmasq time / our time
 * (above 1.0: we are faster). The load average is printed: compare runs only at similar load.
 *
 * A third server, bench/tftp-floor-serve.ts, is the least any lock-step sender on Node.js can do
 * per block (data in memory, no checks, no timers, connected socket): its ratio is the ceiling
 * for a TFTP server written for Node at that block size. It does no windowsize (n/a there).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const sizeMiB = arg('--size-mib', 32);
const reps = arg('--reps', 3);
const NS = `nb-tftpbench-${process.pid}`;
const OUR_PORT = 6969;
const FLOOR_PORT = 6970;

interface Case {
  name: string;
  tool: 'curl' | 'atftp';
  blksize: number;
  windowsize?: number;
}
const cases: Case[] = [
  { name: 'curl blksize 512', tool: 'curl', blksize: 512 },
  { name: 'curl blksize 1468', tool: 'curl', blksize: 1468 },
  { name: 'curl blksize 8192', tool: 'curl', blksize: 8192 },
  { name: 'atftp blksize 512', tool: 'atftp', blksize: 512 },
  { name: 'atftp blksize 1468', tool: 'atftp', blksize: 1468 },
  { name: 'atftp blksize 8192', tool: 'atftp', blksize: 8192 },
  { name: 'atftp 1468 windowsize 16', tool: 'atftp', blksize: 1468, windowsize: 16 },
  { name: 'atftp 8192 windowsize 16', tool: 'atftp', blksize: 8192, windowsize: 16 },
];

function nsExec(cmd: string, cmdArgs: string[], timeoutMs = 120_000): void {
  execFileSync('ip', ['netns', 'exec', NS, cmd, ...cmdArgs], { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeoutMs });
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function fetchOnce(c: Case, port: number, out: string): number {
  rmSync(out, { force: true });
  const t0 = process.hrtime.bigint();
  if (c.tool === 'curl') {
    nsExec('curl', ['-s', '-S', '--tftp-blksize', String(c.blksize), '-o', out, `tftp://127.0.0.1:${port}/bench.bin`]);
  } else {
    const opts = ['--option', `blksize ${c.blksize}`];
    if (c.windowsize) opts.push('--option', `windowsize ${c.windowsize}`);
    nsExec('atftp', [...opts, '-g', '-r', 'bench.bin', '-l', out, '127.0.0.1', String(port)]);
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function waitForPort(port: number): Promise<void> {
  // A tiny RRQ for a missing file: any ERROR reply means the server is up.
  for (let i = 0; i < 50; i++) {
    try {
      nsExec('curl', ['-s', '-o', '/dev/null', '--max-time', '1', `tftp://127.0.0.1:${port}/nonexistent-probe`], 3000);
    } catch (err) {
      const status = (err as { status?: number }).status;
      if (status === 68) return; // curl: "TFTP: File Not Found"
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`server on port ${port} did not come up`);
}

/** CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tftpbench-'));
  const root = path.join(dir, 'root');
  execFileSync('mkdir', ['-p', root]);
  const data = randomBytes(sizeMiB * 1024 * 1024);
  writeFileSync(path.join(root, 'bench.bin'), data);
  const want = createHash('sha256').update(data).digest('hex');
  const procs: ChildProcess[] = [];
  try {
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    const dnsmasq = spawn(
      'ip',
      [
        'netns',
        'exec',
        NS,
        'dnsmasq',
        '--keep-in-foreground',
        '--port=0',
        '--enable-tftp',
        `--tftp-root=${root}`,
        '--user=root',
        '--group=root',
        `--pid-file=${dir}/dnsmasq.pid`,
        '--log-facility=-',
        '--conf-file=/dev/null',
      ],
      { stdio: 'ignore' },
    );
    procs.push(dnsmasq);
    const ours = spawn(
      'ip',
      ['netns', 'exec', NS, process.execPath, '--import', 'tsx', path.join(__dirname, 'tftp-serve.ts'), root, String(OUR_PORT), '127.0.0.1'],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    procs.push(ours);
    const floor = spawn(
      'ip',
      [
        'netns',
        'exec',
        NS,
        process.execPath,
        '--import',
        'tsx',
        path.join(__dirname, 'tftp-floor-serve.ts'),
        path.join(root, 'bench.bin'),
        String(FLOOR_PORT),
        '127.0.0.1',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    procs.push(floor);
    await waitForPort(69);
    await waitForPort(OUR_PORT);
    await new Promise((r) => setTimeout(r, 1000)); // the floor server answers no probe (no ERROR packets)
    process.stderr.write(
      `load average at start: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}\n`,
    );
    // Warm up both (JIT, page cache).
    fetchOnce(cases[1]!, 69, path.join(dir, 'warm'));
    fetchOnce(cases[1]!, OUR_PORT, path.join(dir, 'warm'));

    const rows: string[][] = [];
    for (const c of cases) {
      const t: Record<'dnsmasq' | 'ours' | 'floor', number[]> = { dnsmasq: [], ours: [], floor: [] };
      const cpu: Record<'dnsmasq' | 'ours' | 'floor', number[]> = { dnsmasq: [], ours: [], floor: [] };
      const servers = [
        ['dnsmasq', 69, dnsmasq],
        ['ours', OUR_PORT, ours],
        ['floor', FLOOR_PORT, floor],
      ] as const;
      for (let r = 0; r < reps; r++) {
        for (const [who, port, proc] of servers) {
          if (who === 'floor' && c.windowsize) continue;
          const out = path.join(dir, `out-${who}`);
          const pid = proc.pid!;
          const c0 = cpuSeconds(pid);
          t[who].push(fetchOnce(c, port, out));
          cpu[who].push(cpuSeconds(pid) - c0);
          const got = sha256(out);
          if (got !== want) throw new Error(`${who} ${c.name}: sha256 mismatch`);
        }
      }
      const d = median(t.dnsmasq);
      const o = median(t.ours);
      const dBest = Math.min(...t.dnsmasq);
      const oBest = Math.min(...t.ours);
      const fBest = t.floor.length ? Math.min(...t.floor) : NaN;
      rows.push([
        c.name,
        d.toFixed(2),
        o.toFixed(2),
        (d / o).toFixed(2),
        dBest.toFixed(2),
        oBest.toFixed(2),
        (dBest / oBest).toFixed(2),
        `${(sizeMiB / oBest).toFixed(1)}`,
        median(cpu.dnsmasq).toFixed(2),
        median(cpu.ours).toFixed(2),
        t.floor.length ? fBest.toFixed(2) : 'n/a',
        t.floor.length ? (dBest / fBest).toFixed(2) : 'n/a',
      ]);
      process.stderr.write(
        `${c.name}: dnsmasq ${t.dnsmasq.map((x) => x.toFixed(2)).join('/')}, ours ${t.ours.map((x) => x.toFixed(2)).join('/')}, floor ${t.floor.map((x) => x.toFixed(2)).join('/')}\n`,
      );
    }
    const head = [
      'case',
      'dnsmasq med s',
      'ours med s',
      'ratio',
      'dnsmasq best s',
      'ours best s',
      'ratio',
      'ours best MiB/s',
      'dnsmasq cpu s',
      'ours cpu s',
      'node floor best s',
      'floor ratio',
    ];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (r: string[]) => r.map((x, i) => (i === 0 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join('  ');
    console.log(
      `\nTFTP ${sizeMiB} MiB, ${reps} runs each, sha256 verified; ratio = dnsmasq time / our time; load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    console.log(line(head));
    for (const r of rows) console.log(line(r));
  } finally {
    for (const p of procs)
      if (p.pid)
        try {
          process.kill(p.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
    await new Promise((r) => setTimeout(r, 500));
    try {
      execFileSync('ip', ['netns', 'del', NS]);
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
