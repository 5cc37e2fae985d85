/**
 * The whole appliance's memory as it ships, next to tgtd's (issue #16: RSS ≤ 100 MiB with 10
 * clients reading and writing at once, and after the fuzz run).
 *   npx tsx bench/appliance-memory.ts [seconds-of-fuzz]
 *
 * bench/iscsi-vs-tgt.ts measures the iSCSI target with its image store alone (test/iscsi/serve.ts);
 * this one runs dist/appliance.cjs `serve` itself, every service on: proxyDHCP on an interface,
 * TFTP, HTTP API and UI, the iSCSI target, mDNS, with the environment and node flags of the shipped
 * systemd unit. It runs in a network namespace of its own (the bench re-executes itself inside
 * `nb-mem-<pid>`, deleted at the end): a veth pair whose end m0 holds 198.18.99.1/24 (RFC 2544's
 * benchmarking range); nothing leaves the namespace.
 *
 * Steps: start the appliance (RSS idle); import a 512 MiB golden image through the API and
 * enrol 10 clients, each with its own copy-on-write disk (RSS after enrolment); 10 qemu-img
 * sessions at once, one per client, 5 reading and 5 writing 4 KiB QD4, against ours and then
 * tgtd serving the same file, two alternating rounds (IOPS, CPU per I/O, RSS peak); the iSCSI
 * fuzz traffic of test/iscsi/fuzz-traffic.ts against both; RSS after it. V8's own figures come
 * from the appliance's GET /api/status.
 *
 * Environment:
 *   APPMEM_ENV    extra environment for the appliance, e.g. "MALLOC_ARENA_MAX=1" (measuring a knob)
 *   APPMEM_FLAGS  extra node flags for the appliance
 *   APPMEM_NODE   the node binary that runs the appliance (default: this one)
 *   APPMEM_BUNDLE another build of the appliance (a candidate change), with its addon beside it
 *   APPMEM_DISK_GIB the golden image's size in GiB (default 0.5): its first 512 MiB random data, the
 *                 rest a hole, as an installed OS leaves most of a disk of tens of GiB
 *   APPMEM_KEEP_LOG=1 keep the appliance's log (it is kept anyway when something failed)
 *   APPMEM_SOAK_S after the load, that many seconds of the 10 clients in a loop on ours (each run
 *                 new sessions), RSS at the end of each minute and the growth from minute 1 to the
 *                 end (600: issue #16's 10-minute soak); then the fuzz as usual
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { capturedPdus, fuzzer, xorshift } from '../test/iscsi/fuzz-traffic';
import { cpuSeconds, rss, rssByMapping, rssKinds, sampleRss } from './proc-stats';
import { startTgtd, writeRandomDisk } from './tgt-peer';
import { parseEnv, unitRuntime } from './unit-runtime';

const run = promisify(execFile);
const FUZZ_S = Number(process.argv[2] ?? 20);
const ROUNDS = 2;
const SIZE = 512 * 1024 * 1024;
/** The golden image's size as clients see it: SIZE of data, then a hole up to this (a real OS disk is tens of GiB). */
const DISK_BYTES = Number(process.env.APPMEM_DISK_GIB ?? 0.5) * 2 ** 30;
const CLIENTS = 10;
const ADDR = '198.18.99.1';
const API = `http://${ADDR}:8080`;
const TGT_PORT = 3261;
const TGT_IQN = 'iqn.2026-11.local.netboot:bench-tgt';
const BUNDLE = process.env.APPMEM_BUNDLE ?? join(__dirname, '..', 'dist', 'appliance.cjs');
const NODE = process.env.APPMEM_NODE ?? process.execPath;
const SOAK_S = Number(process.env.APPMEM_SOAK_S ?? 0);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Outside the namespace: create it, run this file inside it, delete it whatever happens. */
function outside(): void {
  if (process.getuid?.() !== 0) throw new Error('needs root (a network namespace of its own)');
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run \`make build\` first`);
  const ns = `nb-mem-${process.pid}`;
  const ip = (...a: string[]) => {
    const r = spawnSync('ip', a, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${a.join(' ')}: ${r.stderr}`);
  };
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'link', 'add', 'm0', 'type', 'veth', 'peer', 'name', 'm1');
    ip('-n', ns, 'addr', 'add', `${ADDR}/24`, 'dev', 'm0');
    ip('-n', ns, 'link', 'set', 'm0', 'up');
    ip('-n', ns, 'link', 'set', 'm1', 'up');
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, __filename, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, APPMEM_INSIDE: '1' },
      timeout: 30 * 60_000,
    });
    process.exitCode = r.status ?? 1;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

interface Target {
  iqn: string;
  lun: number;
  initiator: string;
}

/** One qemu-img bench session of `count` 4 KiB requests at QD4 in slice k of the disk. */
async function qemuClient(port: number, t: Target, k: number, count: number, timeoutMs = 300_000): Promise<void> {
  const slice = Math.floor(SIZE / CLIENTS / 4096) * 4096;
  const write = k % 2 === 1;
  const opts = `driver=iscsi,transport=tcp,portal=${ADDR}:${port},target=${t.iqn},lun=${t.lun},initiator-name=${t.initiator}`;
  const args = ['bench', ...(write ? ['-w', '--pattern=90'] : []), '-d', '4', '-s', '4096', '-S', '1052672', '-o', String(k * slice)];
  await run('qemu-img', [...args, '-c', String(count), '--image-opts', opts], { timeout: timeoutMs });
}

/** I/Os in one run of client k: the writers (odd k) do fewer, so both halves take about as long. */
const runLength = (k: number) => (k % 2 ? 2500 : 4000);

/** The 10 clients at once; resolves with the I/O count and wall seconds. */
async function tenClients(port: number, targets: Target[]): Promise<{ ops: number; s: number }> {
  const t0 = process.hrtime.bigint();
  const counts = targets.map((_, k) => runLength(k));
  await Promise.all(targets.map((t, k) => qemuClient(port, t, k, counts[k]!)));
  return { ops: counts.reduce((a, b) => a + b, 0), s: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** Set when something failed: the appliance's log is kept for a look (its path is printed). */
let keepLog = process.env.APPMEM_KEEP_LOG === '1';

async function inside(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `nb-appmem-${process.pid}-`));
  const children: ChildProcess[] = [];
  const say = (line: string) => console.log(line);
  try {
    const disk = join(dir, 'golden.raw');
    writeRandomDisk(disk, SIZE);
    if (DISK_BYTES > SIZE) truncateSync(disk, DISK_BYTES);
    const dataDir = join(dir, 'var');
    const config = {
      dataDir,
      serverAddress: ADDR,
      log: { level: 'info', format: 'json' },
      http: { host: ADDR, port: 8080 },
      tftp: { enabled: true, host: '0.0.0.0', port: 69 },
      // The 10 sessions come from one address here (on a LAN, from 10): raise the per-address cap.
      iscsi: { enabled: true, host: ADDR, port: 3260, maxConnectionsPerAddress: 64 },
      dhcp: { mode: 'proxy', interface: 'm0' },
      boot: { ipxeDir: '/usr/lib/ipxe' },
      images: { importDirs: [dir] },
      mdns: { enabled: true, name: 'netboot' },
    };
    const configFile = join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify(config));
    const unit = unitRuntime();
    const env = { ...unit.env, ...parseEnv(process.env.APPMEM_ENV) };
    const flags = [...unit.flags, ...(process.env.APPMEM_FLAGS ?? '').split(/\s+/).filter(Boolean)];
    const logFd = openSync(join(dir, 'appliance.log'), 'w');
    const app = spawn(NODE, [...flags, BUNDLE, 'serve', '--config', configFile], {
      stdio: ['ignore', logFd, logFd],
      env: { ...process.env, ...env },
    });
    children.push(app);
    const pid = app.pid!;
    say(
      `appliance: node ${(await run(NODE, ['--version'])).stdout.trim()} ${flags.join(' ')}, env ${Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );

    // Up: the admin token written and GET /api/status answering (bounded).
    let token = '';
    const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
      const res = await fetch(API + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
      const text = await res.text();
      try {
        return { status: res.status, json: JSON.parse(text) };
      } catch {
        return { status: res.status, json: text };
      }
    };
    for (let deadline = Date.now() + 60_000; ; await sleep(250)) {
      if (app.exitCode !== null) throw new Error(`the appliance exited: ${readFileSync(join(dir, 'appliance.log'), 'utf8').slice(-2000)}`);
      if (Date.now() > deadline) throw new Error('the appliance did not answer within 60 s');
      if (!token && existsSync(join(dataDir, 'admin.token'))) token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
      if (token && (await api('GET', '/api/status').catch(() => ({ status: 0 }))).status === 200) break;
    }
    // V8's own figures from GET /api/status (not /metrics: its first scrape loads prom-client).
    const v8 = async () => {
      const m = (await api('GET', '/api/status')).json.memory;
      const f = (n: number) => (n / 2 ** 20).toFixed(1);
      return `V8 heap used ${f(m.heapUsedBytes)} MiB of ${f(m.heapTotalBytes)}, external ${f(m.externalBytes)} MiB`;
    };
    await sleep(3000);
    say(`idle, every service up: ${rssKinds(pid)}; ${await v8()}`);
    say(`  by mapping: ${rssByMapping(pid)}`);

    // A golden image and 10 enrolled clients, each on its own copy-on-write disk.
    const imp = await api('POST', '/api/images', { name: 'golden', path: disk });
    if (imp.status !== 201 && imp.status !== 202) throw new Error(`POST /api/images -> ${imp.status}: ${JSON.stringify(imp.json)}`);
    for (let deadline = Date.now() + 300_000; ; await sleep(250)) {
      const img = (await api('GET', '/api/images/golden')).json;
      if (img.state === 'ready') break;
      if (img.state === 'failed' || Date.now() > deadline) throw new Error(`import: ${JSON.stringify(img)}`);
    }
    const ours: Target[] = [];
    for (let k = 0; k < CLIENTS; k++) {
      const mac = `52:54:00:99:00:${k.toString(16).padStart(2, '0')}`;
      const initiator = `iqn.2026-11.local.netboot:bench-${k}`;
      const r = await api('POST', '/api/clients', { mac, image: 'golden', chap: null, initiators: [initiator] });
      if (r.status !== 201 && r.status !== 200) throw new Error(`POST /api/clients -> ${r.status}: ${JSON.stringify(r.json)}`);
      const c = (await api('GET', `/api/clients/${mac}`)).json;
      ours.push({ iqn: c.target, lun: 0, initiator });
    }
    say(`after importing ${DISK_BYTES / 2 ** 30} GiB (512 MiB of data) and enrolling ${CLIENTS} clients: ${rssKinds(pid)}; ${await v8()}`);

    // tgtd on the same file, one target the 10 sessions share.
    const { child: tgtd, serveFile } = await startTgtd(`${ADDR}:${TGT_PORT}`);
    children.push(tgtd);
    await serveFile(1, TGT_IQN, disk);
    const tgt = Array.from({ length: CLIENTS }, (_, k) => ({ iqn: TGT_IQN, lun: 1, initiator: `iqn.2026-11.local.netboot:bench-${k}` }));

    // The load: two rounds, alternating who goes first; RSS sampled throughout.
    const sides = [
      { name: 'ours', pid, port: 3260, targets: ours, best: 0, cpu: 0, ops: 0 },
      { name: 'tgtd', pid: tgtd.pid!, port: TGT_PORT, targets: tgt, best: 0, cpu: 0, ops: 0 },
    ];
    await tenClients(3260, ours); // warm-up (JIT, page cache, first copies)
    await tenClients(TGT_PORT, tgt);
    const sampler = sampleRss(sides.map((s) => s.pid));
    for (let r = 0; r < ROUNDS; r++) {
      for (const s of r % 2 ? [...sides].reverse() : sides) {
        const c0 = cpuSeconds(s.pid);
        const { ops, s: secs } = await tenClients(s.port, s.targets);
        s.cpu += cpuSeconds(s.pid) - c0;
        s.ops += ops;
        s.best = Math.max(s.best, ops / secs);
      }
    }
    const [peakOurs, peakTgt] = sampler.stop();
    const [a, b] = sides;
    say(
      `10 clients at once, 5 reading + 5 writing 4 KiB QD4: ours ${a!.best.toFixed(0)} IOPS, tgtd ${b!.best.toFixed(0)} IOPS, ` +
        `${(a!.best / b!.best).toFixed(2)}x; CPU/op ours ${((a!.cpu / a!.ops) * 1e6).toFixed(1)} µs, tgtd ${((b!.cpu / b!.ops) * 1e6).toFixed(1)} µs`,
    );
    say(`RSS peak during the load: ours ${peakOurs!.toFixed(0)} MiB, tgtd ${peakTgt!.toFixed(0)} MiB`);
    say(`after the load: ${rssKinds(pid)}; ${await v8()}; tgtd ${rssKinds(tgtd.pid!)}`);

    if (SOAK_S > 0) await soak(pid, ours, say);

    if (FUZZ_S > 0) {
      const captured = capturedPdus();
      for (const [port, t] of [
        [3260, ours[0]!],
        [TGT_PORT, tgt[0]!],
      ] as const) {
        const rnd = xorshift(0x2545f491);
        const until = Date.now() + FUZZ_S * 1000;
        await Promise.all(
          [0, 1, 2].map(() => fuzzer({ host: ADDR, port, targetName: t.iqn, initiatorName: t.initiator, until, rnd, captured, tolerateLoginFailure: true })),
        );
      }
      await sleep(3000);
      const died = tgtd.exitCode !== null || tgtd.signalCode !== null ? ' (tgtd DIED under the fuzz)' : '';
      say(`after ${FUZZ_S} s of fuzz each: ${rssKinds(pid)} (peak ${rss(pid).hwm.toFixed(0)}); ${await v8()}; tgtd ${rssKinds(tgtd.pid!)}${died}`);
      say(`  by mapping: ${rssByMapping(pid)}`);
      // V8's memory reducer collects the old generation once the process has been idle a while.
      await sleep(15_000);
      say(`15 s later, idle: ${rssKinds(pid)}; ${await v8()}`);
    }
    if (app.exitCode !== null) throw new Error('the appliance died during the bench');
  } catch (err) {
    keepLog = true;
    throw err;
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await sleep(1000);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (keepLog) {
      const kept = join(tmpdir(), `nb-appmem-${process.pid}-appliance.log`);
      copyFileSync(join(dir, 'appliance.log'), kept);
      console.log(`the appliance's log: ${kept}`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The 10 clients in a loop for SOAK_S seconds, RSS sampled every 10 s. */
async function soak(pid: number, ours: Target[], say: (line: string) => void): Promise<void> {
  const t0 = Date.now();
  const samples: { t: number; rss: number }[] = [];
  const timer = setInterval(() => samples.push({ t: (Date.now() - t0) / 1000, rss: rss(pid).rss }), 10_000);
  let runs = 0;
  let ops = 0;
  // Each client in a loop of its own (new sessions each run); a run that fails or takes over
  // 60 s (2000 I/Os take a second or two) is counted and reported, not fatal.
  const failures: string[] = [];
  await Promise.all(
    ours.map(async (t, k) => {
      const count = runLength(k) / 2;
      while (Date.now() < t0 + SOAK_S * 1000) {
        const started = new Date().toISOString();
        try {
          await qemuClient(3260, t, k, count, 60_000);
          ops += count;
        } catch (err) {
          failures.push(`client ${k} run started ${started}: ${(err as { killed?: boolean }).killed ? 'no answer in 60 s' : String(err).slice(0, 200)}`);
        }
        runs++;
      }
    }),
  );
  clearInterval(timer);
  samples.push({ t: (Date.now() - t0) / 1000, rss: rss(pid).rss });
  const at = (sec: number) => samples.filter((x) => x.t <= sec + 5).pop()?.rss ?? NaN;
  const minutes = Array.from({ length: Math.floor(SOAK_S / 60) }, (_, m) => at((m + 1) * 60).toFixed(0));
  const first = at(60);
  const last = samples[samples.length - 1]!.rss;
  say(`soak: ${SOAK_S} s of the 10 clients on ours, ${runs} sessions, ${ops} I/Os; RSS at the end of each minute (MiB): ${minutes.join(' ')}`);
  say(`soak: ${failures.length} runs failed${failures.length ? `:\n  ${failures.slice(0, 20).join('\n  ')}` : ''}`);
  if (failures.length) keepLog = true;
  say(
    `soak: RSS after minute 1 ${first.toFixed(0)} MiB, at the end ${last.toFixed(0)} MiB (growth ${(last - first).toFixed(0)} MiB), max ${Math.max(...samples.map((x) => x.rss)).toFixed(0)} MiB`,
  );
}

if (process.env.APPMEM_INSIDE === '1') {
  void inside().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
} else {
  outside();
}
