/**
 * Issue #16, item 3: the firmware tarball on an ARM64 box, not only unpacked. An arm64 Debian 12
 * (test/arm64-box/build-root.sh: mmdebstrap --architectures=arm64 from Debian's packages, cached
 * in test/.cache/arm64-box/debian12-arm64-<key>/) boots in qemu-system-aarch64 (TCG, -M virt,
 * cortex-a57, direct kernel boot of its own kernel and initramfs). At boot the box runs
 * box-run.sh from a read-only PAYLOAD disk: it unpacks `make firmware`'s tarball, runs
 * os-overlay/install.sh and `netboot prepare-disk` on an empty disk as README.md says, and prints
 * what systemd shows of the unit. From the host, through qemu's port forward to the box's port 80
 * (127.0.0.1 only; the box's network is `restrict=on`, nothing leaves it): GET /api/status, an
 * image imported, a client added, a snapshot taken. The box sees the snapshot, stops the service
 * (SIGTERM, clean exit) and powers off.
 *
 * Slow (TCG emulates every arm64 instruction): building the root takes ~20 min once, a run ~5-10
 * min. Not part of `make test`; `make arm64-box` runs it (ARM64_BOX=1). Logs and the serial console
 * stay in test-artifacts/arm64-box/<run>/.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const HERE = join(ROOT, 'test/arm64-box');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const TARBALL = join(ROOT, 'dist', `netboot-appliance-${pkg.version}-arm64.tar.gz`);
const LOCK_VERSION = /^version (\S+)$/m.exec(readFileSync(join(ROOT, 'tools/node.lock'), 'utf8'))![1]!;
const MAC = '52:54:00:16:00:64';
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const tools = ['qemu-system-aarch64', 'qemu-img', 'mkfs.ext4', 'mmdebstrap', 'qemu-aarch64-static'];
const skipReason = process.env.ARM64_BOX !== '1' ? 'set ARM64_BOX=1 (make arm64-box): boots an emulated arm64 box, ~10 min'
  : tools.filter((t) => !has(t)).length ? `missing ${tools.filter((t) => !has(t)).join(', ')} (.ci/apt-packages.txt)`
    : !existsSync(TARBALL) ? `${TARBALL} is missing: make firmware` : '';

/** The cached arm64 root: keyed by the recipe (the scripts and the package list it installs). */
function arm64Root(): { dir: string; built: boolean; seconds: number } {
  const h = createHash('sha256');
  for (const f of ['test/arm64-box/build-root.sh', 'test/arm64-box/payload.service', 'os-overlay/packages.txt']) h.update(readFileSync(join(ROOT, f)));
  const key = h.digest('hex').slice(0, 16);
  const base = join(ROOT, 'test/.cache/arm64-box');
  const dir = join(base, `debian12-arm64-${key}`);
  if (existsSync(join(dir, 'root.img'))) return { dir, built: false, seconds: Number(readFileSync(join(dir, 'build-seconds'), 'utf8')) };
  mkdirSync(base, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  const t0 = Date.now();
  const r = spawnSync('bash', [join(HERE, 'build-root.sh'), tmp], { encoding: 'utf8', timeout: 60 * 60_000 });
  if (r.status !== 0) throw new Error(`build-root.sh failed:\n${r.stderr}`);
  const seconds = Math.round((Date.now() - t0) / 1000);
  writeFileSync(join(tmp, 'build-seconds'), String(seconds));
  // Older recipes' roots go (each is ~1.5 GiB).
  for (const old of readdirSync(base)) if (old.startsWith('debian12-arm64-') && join(base, old) !== dir) rmSync(join(base, old), { recursive: true, force: true });
  renameSync(tmp, dir);
  return { dir, built: true, seconds };
}

/** A free TCP port on 127.0.0.1 for the forward. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

describe.skipIf(skipReason)('the firmware on an emulated arm64 Debian 12 box (issue #16)', () => {
  const art = join(ROOT, 'test-artifacts/arm64-box', `${Date.now()}`);
  const serial = join(art, 'serial.log');
  let qemu: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  let port = 0;
  let t0 = 0;
  const timings: Record<string, number> = {};
  const console_ = () => (existsSync(serial) ? readFileSync(serial, 'latin1') : '');
  /** Lines the box printed with `say` (box-run.sh), without the prefix. */
  // systemd prefixes console lines ("[   29.43] sh[255]: "): take what follows the tag.
  const boxLines = () => console_().split(/\r?\n/).filter((l) => l.includes('ARM64-BOX ')).map((l) => l.slice(l.indexOf('ARM64-BOX ') + 'ARM64-BOX '.length).trimEnd());
  const boxLine = (word: string) => boxLines().find((l) => l === word || l.startsWith(`${word} `));
  async function waitFor(word: string, seconds: number): Promise<string> {
    const end = Date.now() + seconds * 1000;
    for (;;) {
      const l = boxLine(word);
      if (l !== undefined) { timings[word] ??= (Date.now() - t0) / 1000; return l; }
      if (Date.now() > end) throw new Error(`the box did not print "${word}" within ${seconds} s; serial console: ${serial}\n${console_().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  let token = '';
  const api = async (method: string, url: string, body?: unknown) => {
    const res = await fetch(`http://127.0.0.1:${port}${url}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };

  beforeAll(async () => {
    mkdirSync(art, { recursive: true });
    const root = arm64Root();
    console.log(`arm64 root: ${root.dir} (${root.built ? 'built' : 'cached'}; its build took ${root.seconds} s)`);
    // The root stays pristine: the box writes to a qcow2 overlay.
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(root.dir, 'root.img'), join(art, 'root.qcow2')]);
    // The data disk: empty, as a new USB disk is; `netboot prepare-disk` makes it.
    run('truncate', ['-s', '1G', join(art, 'data.img')]);
    // The payload: the tarball, the script, a 16 MiB golden image with a marker, the client's MAC.
    const payload = join(art, 'payload');
    mkdirSync(payload);
    copyFileSync(TARBALL, join(payload, `netboot-appliance-${pkg.version}-arm64.tar.gz`));
    copyFileSync(join(HERE, 'box-run.sh'), join(payload, 'run.sh'));
    const golden = Buffer.alloc(16 << 20);
    golden.write('ARM64-BOX GOLDEN IMAGE', 0x100000);
    writeFileSync(join(payload, 'golden.raw'), golden);
    writeFileSync(join(payload, 'mac'), MAC);
    run('mkfs.ext4', ['-q', '-L', 'PAYLOAD', '-d', payload, join(art, 'payload.img'), '128M']);

    port = await freePort();
    const args = [
      '-M', 'virt', '-cpu', 'cortex-a57', '-smp', '2', '-m', '1024', '-nographic', '-monitor', 'none',
      '-serial', `file:${serial}`,
      '-kernel', join(root.dir, 'vmlinuz'), '-initrd', join(root.dir, 'initrd.img'),
      '-append', 'root=LABEL=ARM64ROOT rw console=ttyAMA0 net.ifnames=0 systemd.show_status=1',
      '-drive', `if=none,id=root,file=${join(art, 'root.qcow2')},format=qcow2`, '-device', 'virtio-blk-pci,drive=root',
      '-drive', `if=none,id=data,file=${join(art, 'data.img')},format=raw`, '-device', 'virtio-blk-pci,drive=data,serial=netboot-data',
      '-drive', `if=none,id=payload,file=${join(art, 'payload.img')},format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=payload',
      '-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:80`, '-device', `virtio-net-pci,netdev=n0,mac=${MAC.replace(/00:64$/, '00:01')}`,
    ];
    writeFileSync(join(art, 'qemu-args.txt'), args.join('\n'));
    t0 = Date.now();
    qemu = spawn('qemu-system-aarch64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    qemu.stderr!.on('data', (d) => { stderr += d; });
    exited = new Promise((resolve) => qemu!.once('exit', (code) => { writeFileSync(join(art, 'qemu-stderr.txt'), stderr); resolve(code); }));
    console.log(`arm64 box: serial console ${serial}, API forwarded to 127.0.0.1:${port}`);
  }, 70 * 60_000);

  afterAll(async () => {
    if (qemu && qemu.exitCode === null) {
      // It powers itself off at the end; give it a minute, then stop it.
      const t = setTimeout(() => qemu!.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(t);
    }
    console.log(`arm64 box timings (s from qemu start): ${JSON.stringify(timings)}`);
    rmSync(join(art, 'root.qcow2'), { force: true });
    rmSync(join(art, 'data.img'), { force: true });
    rmSync(join(art, 'payload'), { recursive: true, force: true });
  }, 3 * 60_000);

  it('boots arm64 Debian 12 and installs the tarball as README.md says (install.sh, prepare-disk)', async () => {
    const start = await waitFor('payload-start', 15 * 60);
    expect(start).toMatch(/arch=aarch64 /);
    expect(start).toMatch(/os=Debian_GNU\/Linux_12/);
    // The box has no Node.js of its own: only the tarball's.
    expect(await waitFor('os-node', 60)).toBe('os-node none');
    expect(await waitFor('install-ok', 10 * 60)).toBe('install-ok');
    expect(await waitFor('prepare-disk-ok', 10 * 60)).toMatch(/^prepare-disk-ok \/dev\/vd[a-z]$/);
    // Whether 99-netboot-disk.rules started the service by itself when the NETBOOT filesystem
    // appeared (box-run.sh starts it by hand otherwise, as prepare-disk's message says).
    console.log(`arm64 box: ${await waitFor('autostart', 5 * 60)}`);
  }, 40 * 60_000);

  it('runs the unit under systemd: active, as netboot, with the bundled Node 24 for aarch64 and only CAP_NET_BIND_SERVICE', async () => {
    await waitFor('ready', 15 * 60);
    const unit = boxLine('unit')!;
    expect(unit).toMatch(/active=active enabled=enabled sub=running pid=\d+ user=netboot exe=\/opt\/netboot\/node\/bin\/node$/);
    expect(boxLine('exe-version')).toBe(`exe-version v${LOCK_VERSION} arm64`);
    // CAP_NET_BIND_SERVICE is bit 10: 0x400, effective and ambient, nothing else.
    expect(boxLine('caps')).toMatch(/CapEff:\s+0000000000000400\s+CapAmb:\s+0000000000000400/);
    expect(boxLine('mount')).toMatch(/^mount \/dev\/vd[a-z]1\s+ext4\s+\S*noexec/);
    const listening = boxLine('listening')!;
    for (const p of ['tcp:0.0.0.0:80', 'udp:0.0.0.0:69', 'tcp:0.0.0.0:3260']) expect(listening).toContain(p);
  }, 20 * 60_000);

  it('answers GET /api/status from the host, imports an image, adds a client and takes a snapshot through the API', async () => {
    token = (await waitFor('token', 5 * 60)).slice('token '.length);
    expect(token.length).toBeGreaterThan(16);
    const status = await api('GET', '/api/status');
    expect(status.status).toBe(200);
    expect(status.json.version).toBe(pkg.version);
    timings['api-status'] = (Date.now() - t0) / 1000;
    expect((await fetch(`http://127.0.0.1:${port}/api/status`)).status).toBe(401); // no token, no status

    expect((await api('POST', '/api/images', { name: 'golden', path: '/srv/netboot/import/golden.raw' })).status).toBe(202);
    let image: { state: string } = { state: 'importing' };
    for (let i = 0; i < 600 && image.state === 'importing'; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      image = (await api('GET', '/api/images/golden')).json;
    }
    expect(image.state).toBe('ready');
    timings['image-ready'] = (Date.now() - t0) / 1000;
    const client = await api('POST', '/api/clients', { mac: MAC, image: 'golden', name: 'arm64-proof-client' });
    expect(client.status, JSON.stringify(client.json)).toBe(201);
    const snap = await api('POST', `/api/clients/${MAC}/snapshots`, { name: 'arm64-proof' });
    expect(snap.status, JSON.stringify(snap.json)).toBe(201);
    const list = await api('GET', `/api/clients/${MAC}/snapshots`);
    expect(list.json.snapshots.map((s: { name: string }) => s.name)).toContain('arm64-proof');
    timings['snapshot'] = (Date.now() - t0) / 1000;
  }, 20 * 60_000);

  it('the box sees the snapshot, stops the service cleanly and powers off', async () => {
    await waitFor('snapshot-seen', 5 * 60);
    expect(await waitFor('stopped', 5 * 60)).toBe('stopped result=success status=0');
    await waitFor('done', 5 * 60);
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5 * 60_000))]);
    expect(code).toBe(0);
    timings['powered-off'] = (Date.now() - t0) / 1000;
    const rss = Number(boxLine('rss-kib')?.split(' ')[1]);
    console.log(`appliance RSS on the arm64 box after the API run: ${(rss / 1024).toFixed(1)} MiB`);
  }, 15 * 60_000);
});
