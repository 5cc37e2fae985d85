import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** A one-node Ceph cluster for tests: how to reach it and how to stop it. */
export interface TestCluster {
  dir: string;
  conf: string;
  pool: string;
  /** A cephx user with only `profile rbd` on the pool (what docs/rbd.md tells users to make). */
  id: string;
  keyring: string;
  /** Seconds from nothing to a pool that takes I/O. */
  startSeconds: number;
  /** Runs the `ceph` tool as client.admin. */
  ceph(args: string[]): Promise<string>;
  /** Runs any Ceph tool (rbd, rados) as client.admin, in the cluster's namespace. */
  run(cmd: string, args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** True when the Ceph daemons and tools are installed (tests skip otherwise). */
export function haveCeph(): boolean {
  return ['ceph-mon', 'ceph-mgr', 'ceph-osd', 'ceph', 'rbd', 'monmaptool', 'ceph-authtool'].every((b) =>
    ['/usr/bin', '/usr/sbin'].some((d) => fs.existsSync(path.join(d, b))),
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/**
 * Starts mon, mgr and one OSD on memstore (RAM, `memoryMiB`), all on 127.0.0.1 with their own
 * conf dir, fsid and ports, as Ceph's vstart.sh dev clusters do; makes pool `pool` with size 1
 * and the least-privilege user. Each daemon runs in the foreground as our child under
 * `timeout` (killed after `maxSeconds` even if the test process dies). About 5-8 s here.
 */
export async function startCluster(dir: string, opts: { pool?: string; memoryMiB?: number; maxSeconds?: number; netns?: string } = {}): Promise<TestCluster> {
  const t0 = Date.now();
  // Inside a namespace (the e2e lab's) every daemon and tool runs through `ip netns exec`: its 127.0.0.1 is the namespace's.
  const wrap = (cmd: string, args: string[]): [string, string[]] => (opts.netns ? ['ip', ['netns', 'exec', opts.netns, cmd, ...args]] : [cmd, args]);
  const run = (cmd: string, args: string[], o: { timeout?: number } = {}) => execFileP(...wrap(cmd, args), { timeout: o.timeout ?? 60_000 });
  const pool = opts.pool ?? 'netboot';
  const maxSeconds = opts.maxSeconds ?? 1800;
  fs.mkdirSync(dir, { recursive: true });
  for (const d of ['mon.a', 'mgr.x', 'osd.0', 'run']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const fsid = randomUUID();
  const port = await freePort();
  const conf = path.join(dir, 'ceph.conf');
  const adminKeyring = path.join(dir, 'admin.keyring');
  fs.writeFileSync(
    conf,
    `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${port}
public network = 127.0.0.1/32
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = ${dir}/run
log file = ${dir}/$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = ${(opts.memoryMiB ?? 1024) * 1024 * 1024}
osd data = ${dir}/osd.$id
mon data = ${dir}/mon.$id
mgr data = ${dir}/mgr.$id
mgr initial modules =
osd max object name len = 460
osd max object namespace len = 64
[client]
keyring = ${adminKeyring}
[mon]
admin socket = ${dir}/run/$name.asok
keyring = ${dir}/mon.keyring
[mgr]
admin socket = ${dir}/run/$name.asok
keyring = ${dir}/mgr.$id/keyring
[osd]
admin socket = ${dir}/run/$name.asok
keyring = ${dir}/osd.$id/keyring
`,
  );
  const children: ChildProcess[] = [];
  const daemon = (args: string[]) => {
    const c = spawn(...wrap('timeout', ['-k', '5', String(maxSeconds), ...args, '-c', conf, '-f']), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (d: Buffer) => (err.length < 8192 ? (err += d) : undefined));
    c.on('exit', (code) => {
      if (code && code !== 124 && code !== 143 && !stopping) process.stderr.write(`test cluster: ${args[0]} exited ${code}: ${err}\n`);
    });
    children.push(c);
  };
  let stopping = false;
  const ceph = async (args: string[]) => (await run('ceph', ['-c', conf, '--connect-timeout', '30', ...args])).stdout;
  const stop = async () => {
    stopping = true;
    // Our own children, by pid: TERM, then KILL after 5 s.
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const k = setTimeout(() => c.kill('SIGKILL'), 5000);
            c.once('exit', () => {
              clearTimeout(k);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
  };
  try {
    await run('ceph-authtool', ['--create-keyring', path.join(dir, 'mon.keyring'), '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('ceph-authtool', [
      '--create-keyring',
      adminKeyring,
      '--gen-key',
      '-n',
      'client.admin',
      '--cap',
      'mon',
      'allow *',
      '--cap',
      'osd',
      'allow *',
      '--cap',
      'mgr',
      'allow *',
    ]);
    await run('ceph-authtool', [path.join(dir, 'mon.keyring'), '--import-keyring', adminKeyring]);
    await run('monmaptool', ['--create', '--add', 'a', `v2:127.0.0.1:${port}`, '--fsid', fsid, path.join(dir, 'monmap')]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', path.join(dir, 'monmap'), '--keyring', path.join(dir, 'mon.keyring')]);
    daemon(['ceph-mon', '-i', 'a']);
    await ceph(['auth', 'get-or-create', 'mgr.x', 'mon', 'allow profile mgr', 'osd', 'allow *', '-o', path.join(dir, 'mgr.x', 'keyring')]);
    daemon(['ceph-mgr', '-i', 'x']);
    const uuid = randomUUID();
    const id = (await ceph(['osd', 'new', uuid])).trim();
    await run('ceph-osd', ['-c', conf, '-i', id, '--mkfs', '--osd-uuid', uuid, '--mkkey', '--no-mon-config']);
    await ceph([
      'auth',
      'add',
      `osd.${id}`,
      'osd',
      'allow *',
      'mon',
      'allow profile osd',
      'mgr',
      'allow profile osd',
      '-i',
      path.join(dir, `osd.${id}`, 'keyring'),
    ]);
    daemon(['ceph-osd', '-i', id]);
    await ceph(['osd', 'pool', 'create', pool, '8', '8']);
    await run('rbd', ['-c', conf, 'pool', 'init', pool], { timeout: 60_000 });
    // The user the appliance runs as: rbd profile on our pool only (docs/rbd.md).
    const keyring = path.join(dir, 'netboot.keyring');
    await ceph(['auth', 'get-or-create', 'client.netboot', 'mon', 'profile rbd', 'osd', `profile rbd pool=${pool}`, '-o', keyring]);
    // The pool takes I/O once its PGs are active: a write through rados waits for that.
    await run('rados', ['-c', conf, '-p', pool, 'put', 'ready-probe', conf], { timeout: 60_000 });
    await run('rados', ['-c', conf, '-p', pool, 'rm', 'ready-probe'], { timeout: 60_000 });
    return {
      dir,
      conf,
      pool,
      id: 'netboot',
      keyring,
      startSeconds: (Date.now() - t0) / 1000,
      ceph,
      run: async (cmd, args) => (await run(cmd, ['-c', conf, ...args])).stdout,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
