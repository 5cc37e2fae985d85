/**
 * Issue #16, item 3: the firmware tarball on an ARM64 box, not only unpacked. An arm64 Debian 12
 * (test/arm64-box/build-root.sh: mmdebstrap --architectures=arm64 from Debian's packages, cached
 * in test/.cache/arm64-box/debian12-arm64-<key>/) boots in qemu-system-aarch64 (TCG, -M virt,
 * cortex-a57, direct kernel boot of its own kernel and initramfs). At boot the box runs
 * box-run.sh from a read-only PAYLOAD disk: it unpacks `make firmware`'s tarball, runs
 * os-overlay/install.sh and `netboot prepare-disk` on an empty disk as README.md says, and prints
 * what systemd shows of the unit. The box has two NICs: qemu's user network (`restrict=on`: nothing
 * leaves it; only so network-online.target is reached as on a LAN) and a tap on the e2e lab's
 * bridge (test/e2e/lab.ts, a namespace this test creates and deletes), where it has 198.18.0.2 and
 * the appliance serves full DHCP. From the lab: GET /api/status, the e2e test disk imported as a
 * golden image, a client added, an x86 BIOS PC (qemu TCG, iPXE ROM) network-booted from the box
 * to its ext4 root on the box's iSCSI target, then a snapshot taken. The box sees the snapshot,
 * stops the service (SIGTERM, clean exit) and powers off.
 *
 * Slow (TCG emulates every arm64 instruction): building the root takes ~20 min once, a run ~5-10
 * min. Not part of `make test`; `make arm64-box` runs it (ARM64_BOX=1). Logs and the serial console
 * stay in test-artifacts/arm64-box/<run>/.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestDisk, BUILD_TOOLS } from '../e2e/build-disk';
import { formatBoot, formatTimeline, Lab, labUnavailableReason, missingTools, type BootResult } from '../e2e/lab';

const ROOT = join(import.meta.dirname, '..', '..');
const HERE = join(ROOT, 'test/arm64-box');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const TARBALL = join(ROOT, 'dist', `netboot-appliance-${pkg.version}-arm64.tar.gz`);
const LOCK_VERSION = /^version (\S+)$/m.exec(readFileSync(join(ROOT, 'tools/node.lock'), 'utf8'))![1]!;
const MAC = '52:54:00:16:00:64'; // the PC that boots from the box
const BOX_LAN_MAC = '52:54:00:16:00:02';
const BOX = '198.18.0.2';
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const tools = ['qemu-system-aarch64', 'qemu-img', 'mkfs.ext4', 'mmdebstrap', 'qemu-aarch64-static'];
const skipReason =
  process.env.ARM64_BOX !== '1'
    ? 'set ARM64_BOX=1 (make arm64-box): boots an emulated arm64 box, ~10 min'
    : tools.filter((t) => !has(t)).length
      ? `missing ${tools.filter((t) => !has(t)).join(', ')} (.ci/apt-packages.txt)`
      : !existsSync(TARBALL)
        ? `${TARBALL} is missing: make firmware`
        : (labUnavailableReason() ?? (missingTools(BUILD_TOOLS).length ? `missing ${missingTools(BUILD_TOOLS).join(', ')}` : ''));

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
  for (const old of readdirSync(base))
    if (old.startsWith('debian12-arm64-') && join(base, old) !== dir && join(base, old) !== tmp) rmSync(join(base, old), { recursive: true, force: true });
  renameSync(tmp, dir);
  return { dir, built: true, seconds };
}

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

describe.skipIf(skipReason)('the firmware on an emulated arm64 Debian 12 box (issue #16)', () => {
  const art = join(ROOT, 'test-artifacts/arm64-box', `${Date.now()}`);
  const serial = join(art, 'serial.log');
  const lab = new Lab({ id: 'a64', workDir: art });
  let qemu: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  let t0 = 0;
  const timings: Record<string, number> = {};
  const console_ = () => (existsSync(serial) ? readFileSync(serial, 'latin1') : '');
  /** Lines the box printed with `say` (box-run.sh), without the prefix. */
  // systemd prefixes console lines ("[   29.43] sh[255]: "): take what follows the tag.
  const boxLines = () =>
    console_()
      .split(/\r?\n/)
      .filter((l) => l.includes('ARM64-BOX '))
      .map((l) => l.slice(l.indexOf('ARM64-BOX ') + 'ARM64-BOX '.length).trimEnd());
  const boxLine = (word: string) => boxLines().find((l) => l === word || l.startsWith(`${word} `));
  async function waitFor(word: string, seconds: number): Promise<string> {
    const end = Date.now() + seconds * 1000;
    for (;;) {
      const l = boxLine(word);
      if (l !== undefined) {
        timings[word] ??= (Date.now() - t0) / 1000;
        return l;
      }
      if (Date.now() > end) throw new Error(`the box did not print "${word}" within ${seconds} s; serial console: ${serial}\n${console_().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  let token = '';
  /** One API call to the box, by curl inside the lab namespace (the box is 198.18.0.2 there). */
  const api = (method: string, url: string, body?: unknown, auth = true) =>
    new Promise<{ status: number; json: any }>((resolve) => {
      const args = ['netns', 'exec', lab.ns, 'curl', '-sS', '--max-time', '120', '-X', method, '-w', '\n%{http_code}'];
      if (auth) args.push('-H', `Authorization: Bearer ${token}`);
      if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
      const child = spawn('ip', [...args, `http://${BOX}${url}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('exit', () => {
        const nl = out.lastIndexOf('\n');
        const text = out.slice(0, Math.max(nl, 0));
        let json: any = text;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          /* not JSON */
        }
        resolve({ status: Number(out.slice(nl + 1)) || 0, json });
      });
    });

  beforeAll(async () => {
    mkdirSync(art, { recursive: true });
    const root = arm64Root();
    console.log(`arm64 root: ${root.dir} (${root.built ? 'built' : 'cached'}; its build took ${root.seconds} s)`);
    // The root stays pristine: the box writes to a qcow2 overlay.
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', join(root.dir, 'root.img'), join(art, 'root.qcow2')]);
    // The data disk: empty, as a new USB disk is; `netboot prepare-disk` makes it.
    run('truncate', ['-s', '1G', join(art, 'data.img')]);
    // The payload: the tarball, the script, the golden image (the e2e test disk: syslinux, a
    // Debian kernel, a busybox initramfs that logs in again from the iBFT, an ext4 root), the
    // client's MAC and the MAC of the box's LAN NIC.
    const payload = join(art, 'payload');
    mkdirSync(payload);
    copyFileSync(TARBALL, join(payload, `netboot-appliance-${pkg.version}-arm64.tar.gz`));
    copyFileSync(join(HERE, 'box-run.sh'), join(payload, 'run.sh'));
    copyFileSync(buildTestDisk().path, join(payload, 'golden.raw'));
    writeFileSync(join(payload, 'mac'), MAC);
    writeFileSync(join(payload, 'lan-mac'), BOX_LAN_MAC);
    run('mkfs.ext4', ['-q', '-L', 'PAYLOAD', '-d', payload, join(art, 'payload.img'), '256M']);

    lab.create();
    const tap = lab.addTap();
    const args = [
      '-M',
      'virt',
      '-cpu',
      'cortex-a57',
      '-smp',
      '2',
      '-m',
      '1024',
      '-nographic',
      '-monitor',
      'none',
      '-serial',
      `file:${serial}`,
      '-kernel',
      join(root.dir, 'vmlinuz'),
      '-initrd',
      join(root.dir, 'initrd.img'),
      '-append',
      'root=LABEL=ARM64ROOT rw console=ttyAMA0 net.ifnames=0 systemd.show_status=1',
      '-drive',
      `if=none,id=root,file=${join(art, 'root.qcow2')},format=qcow2`,
      '-device',
      'virtio-blk-pci,drive=root',
      '-drive',
      `if=none,id=data,file=${join(art, 'data.img')},format=raw`,
      '-device',
      'virtio-blk-pci,drive=data,serial=netboot-data',
      '-drive',
      `if=none,id=payload,file=${join(art, 'payload.img')},format=raw,readonly=on`,
      '-device',
      'virtio-blk-pci,drive=payload',
      '-netdev',
      'user,id=n0,restrict=on',
      '-device',
      'virtio-net-pci,netdev=n0,mac=52:54:00:16:00:01',
      '-netdev',
      `tap,id=n1,ifname=${tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,netdev=n1,mac=${BOX_LAN_MAC}`,
    ];
    writeFileSync(join(art, 'qemu-args.txt'), args.join('\n'));
    t0 = Date.now();
    qemu = spawn('ip', ['netns', 'exec', lab.ns, 'qemu-system-aarch64', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    qemu.stderr!.on('data', (d) => {
      stderr += d;
    });
    exited = new Promise((resolve) =>
      qemu!.once('exit', (code) => {
        writeFileSync(join(art, 'qemu-stderr.txt'), stderr);
        resolve(code);
      }),
    );
    console.log(`arm64 box: serial console ${serial}, API at http://${BOX} in namespace ${lab.ns}`);
  }, 70 * 60_000);

  afterAll(async () => {
    if (qemu && qemu.exitCode === null) {
      // It powers itself off at the end; give it a minute, then stop it.
      const t = setTimeout(() => qemu!.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(t);
    }
    console.log(`arm64 box timings (s from qemu start): ${JSON.stringify(timings)}`);
    await lab.destroy();
    rmSync(join(art, 'root.qcow2'), { force: true });
    rmSync(join(art, 'data.img'), { force: true });
    rmSync(join(art, 'payload'), { recursive: true, force: true });
  }, 3 * 60_000);

  it(
    'boots arm64 Debian 12 and installs the tarball as README.md says (install.sh, prepare-disk)',
    async () => {
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
    },
    40 * 60_000,
  );

  it(
    "runs the unit under systemd: active, as netboot, with the bundled Node 24 for aarch64 and only the unit's capabilities",
    async () => {
      await waitFor('ready', 15 * 60);
      const unit = boxLine('unit')!;
      expect(unit).toMatch(/active=active enabled=enabled sub=running pid=\d+ user=netboot exe=\/opt\/netboot\/node\/bin\/node$/);
      expect(boxLine('exe-version')).toBe(`exe-version v${LOCK_VERSION} arm64`);
      // Effective and ambient capabilities are exactly the unit's AmbientCapabilities (bits from
      // linux/capability.h), nothing more.
      const unitFile = readFileSync(join(ROOT, 'os-overlay/rootfs/etc/systemd/system/netboot-appliance.service'), 'utf8');
      const names = /^AmbientCapabilities=(.*)$/m.exec(unitFile)![1]!.trim().split(/\s+/);
      const bits: Record<string, number> = { CAP_NET_BIND_SERVICE: 10, CAP_NET_RAW: 13 };
      for (const n of names) expect(bits, `a capability this test does not know: ${n}`).toHaveProperty(n);
      const mask = names
        .reduce((m, n) => m | (1n << BigInt(bits[n]!)), 0n)
        .toString(16)
        .padStart(16, '0');
      expect(boxLine('caps')).toMatch(new RegExp(`CapEff:\\s+${mask}\\s+CapAmb:\\s+${mask}`));
      // jemalloc preloaded by the unit under its sandbox (LD_PRELOAD by name, found on aarch64).
      expect(boxLine('allocator')).toMatch(/^allocator jemalloc-mappings=[1-9]/);
      expect(boxLine('mount')).toMatch(/^mount \/dev\/vd[a-z]1\s+ext4\s+\S*noexec/);
      const listening = boxLine('listening')!;
      for (const p of ['tcp:0.0.0.0:80', 'udp:0.0.0.0:69', 'tcp:0.0.0.0:3260']) expect(listening).toContain(p);
    },
    20 * 60_000,
  );

  it(
    'answers GET /api/status, imports an image, adds a client, boots an x86 PC from the box and takes a snapshot through the API',
    async () => {
      token = (await waitFor('token', 5 * 60)).slice('token '.length);
      expect(token.length).toBeGreaterThan(16);
      const status = await api('GET', '/api/status');
      expect(status.status).toBe(200);
      expect(status.json.version).toBe(pkg.version);
      timings['api-status'] = (Date.now() - t0) / 1000;
      expect((await api('GET', '/api/status', undefined, false)).status).toBe(401); // no token, no status

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

      // An x86 BIOS PC on the lab bridge: DHCP, TFTP and the iPXE script from the box, the disk
      // over the box's iSCSI target, the kernel reads its root from there too and writes a line.
      const q = lab.startQemu({ name: 'pc-from-arm64-box', mac: MAC, firmware: 'bios', timeoutMs: 20 * 60_000 });
      const boot: BootResult = await q.result();
      console.log(`${formatBoot(boot)}\n    ${formatTimeline(boot)}`);
      expect(boot.timedOut, q.tail()).toBe(false);
      expect(boot.rootMountedMs, q.tail()).toBeDefined();
      expect(boot.wroteLine).toBe(1);
      timings['pc-root-mounted-s'] = boot.rootMountedMs! / 1000;
      timings['pc-boot-total-s'] = boot.totalMs / 1000;
      // The box saw it: the client's boot timeline through the API.
      const events = await api('GET', `/api/clients/${MAC}/events`);
      expect(events.json.events.map((e: { stage: string }) => e.stage)).toContain('iscsi-login');

      const snap = await api('POST', `/api/clients/${MAC}/snapshots`, { name: 'arm64-proof' });
      expect(snap.status, JSON.stringify(snap.json)).toBe(201);
      const list = await api('GET', `/api/clients/${MAC}/snapshots`);
      expect(list.json.snapshots.map((s: { name: string }) => s.name)).toContain('arm64-proof');
      timings['snapshot'] = (Date.now() - t0) / 1000;
    },
    40 * 60_000,
  );

  it(
    'the box sees the snapshot, stops the service cleanly and powers off',
    async () => {
      await waitFor('snapshot-seen', 5 * 60);
      expect(await waitFor('stopped', 5 * 60)).toBe('stopped result=success status=0');
      await waitFor('done', 5 * 60);
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5 * 60_000))]);
      expect(code).toBe(0);
      timings['powered-off'] = (Date.now() - t0) / 1000;
      const rss = Number(boxLine('rss-kib')?.split(' ')[1]);
      console.log(`appliance RSS on the arm64 box after the API run: ${(rss / 1024).toFixed(1)} MiB`);
    },
    15 * 60_000,
  );
});
