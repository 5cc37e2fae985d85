import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestBootLink } from '../dhcp/helpers/boot-link';
import { startAppliance, testConfig, type RunningAppliance } from '../helpers/appliance-process';

const hasTools = spawnSync('qemu-io', ['--version']).status === 0 && spawnSync('iscsi-ls', ['--help']).status !== null;

const imageOpts = (port: number, target: string, initiator: string) =>
  `driver=raw,file.driver=iscsi,file.transport=tcp,file.portal=127.0.0.1:${port},file.target=${target},file.lun=0,file.initiator-name=${initiator}`;

/** Keeps an iSCSI session open (an interactive qemu-io) until closed. */
async function holdSession(port: number, target: string, initiator: string): Promise<ChildProcess> {
  const p = spawn('qemu-io', ['--image-opts', imageOpts(port, target, initiator)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (out += d));
  p.stdin!.write('read 0 512\n');
  for (let i = 0; i < 100 && !/read 512\/512/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
  if (!/read 512\/512/.test(out)) throw new Error(`session did not open: ${out}`);
  return p;
}

describe.skipIf(!hasTools)('rescue, one-shot boots, named disks, moving disks, backups (issue 8)', () => {
  let app: RunningAppliance;
  let iscsiPort = 0;
  const dir = mkdtempSync(join(tmpdir(), 'nb-uses-'));
  const A = '52:54:00:00:08:01';
  let proxyPort = 0;
  // A boot's script comes through the one-time link of a DHCP answer (issue #13): the static
  // address never spends a one-shot boot. Asked for as iPXE does on port 4011.
  // (The link names http.port as configured, 0 here: the bound port replaces it.)
  const script = async (mac: string) => (await fetch((await requestBootLink(proxyPort, mac)).replace(/^http:\/\/[^/]+/, app.url))).text();
  const sanbootTarget = (s: string) => /\nsanboot iscsi:[^ ]*:(iqn[^ \n]+)/.exec(s)?.[1];

  beforeAll(async () => {
    // Server-side imports read only from import directories (issue #13): the temp dir is one.
    // CHAP off: qemu-io and iscsi-ls below log in by initiator name (CHAP is tested in test/boot, test/iscsi, e2e).
    app = await startAppliance(
      testConfig(join(dir, 'var'), {
        images: { importDirs: [dir] },
        boot: { chapByDefault: false },
        dhcp: { mode: 'proxy', port: 0, proxyPort: 0 },
      }),
    );
    const st = await app.api('GET', '/api/status');
    iscsiPort = Number(/:(\d+)$/.exec(st.json.services.find((s: { name: string }) => s.name === 'iscsi').listen[0])![1]);
    proxyPort = Number(/:(\d+)$/.exec(st.json.services.find((s: { name: string }) => s.name === 'dhcp').listen.at(-1))![1]);
    for (const name of ['alpha', 'beta', 'rescue']) {
      writeFileSync(join(dir, `${name}.raw`), randomBytes(4 * 1024 * 1024));
      expect((await app.api('POST', '/api/images', { name, path: join(dir, `${name}.raw`) })).status).toBe(202);
    }
    for (let i = 0; i < 100; i++) {
      const imgs = (await app.api('GET', '/api/images')).json.images;
      if (imgs.length === 3 && imgs.every((x: { state: string }) => x.state === 'ready')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await app.api('POST', '/api/clients', { mac: A, image: 'alpha', name: 'tester' })).status).toBe(201);
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('one-shot next boot: boot 1 gets image beta on a throw-away clone, boot 2 the default again', async () => {
    const base = (await app.api('GET', `/api/clients/${A}`)).json;
    expect((await app.api('PUT', `/api/clients/${A}/next-boot`, { image: 'does-not-exist' })).status).toBe(404);
    const set = await app.api('PUT', `/api/clients/${A}/next-boot`, { image: 'beta' });
    expect(set.json.nextBoot).toEqual({ kind: 'image', image: 'beta' });
    expect((await app.api('GET', `/api/clients/${A}`)).json.nextBoot).toEqual({ kind: 'image', image: 'beta' });

    const first = sanbootTarget(await script(A));
    expect(first).toBe(`${base.target}.oneshot`);
    // The one-shot disk really is beta: its first sector is beta's.
    const beta = readFileSync(join(dir, 'beta.raw')).subarray(0, 512);
    const read = execFileSync('qemu-io', ['--image-opts', imageOpts(iscsiPort, first!, base.initiatorName), '-c', 'read -v 0 16'], { encoding: 'utf8' });
    expect(read.replace(/\s+/g, ' ')).toContain([...beta.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' '));

    expect((await app.api('GET', `/api/clients/${A}`)).json.nextBoot).toBeNull();
    expect(sanbootTarget(await script(A))).toBe(base.target);
  });

  it('rescue boot: only images marked rescue; the rescue target carries the own disk as LUN 1', async () => {
    const bad = await app.api('PUT', `/api/clients/${A}/next-boot`, { rescue: 'beta' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.code).toBe('NOT_A_RESCUE_IMAGE');
    expect((await app.api('PATCH', '/api/images/rescue', { rescue: true })).json.rescue).toBe(true);
    expect((await app.api('PUT', `/api/clients/${A}/next-boot`, { rescue: 'rescue' })).status).toBe(200);
    const c = (await app.api('GET', `/api/clients/${A}`)).json;
    const target = sanbootTarget(await script(A));
    expect(target).toBe(`${c.target}.rescue`);
    const ls = execFileSync('iscsi-ls', ['-s', '-i', c.initiatorName, `iscsi://127.0.0.1:${iscsiPort}`], { encoding: 'utf8' });
    const section = ls.split('Target:').find((t) => t.startsWith(target!))!;
    expect(section).toMatch(/Lun:0/);
    expect(section).toMatch(/Lun:1/);
    // Writes through LUN 1 land on the client's own disk.
    const lun1 = imageOpts(iscsiPort, target!, c.initiatorName).replace('file.lun=0', 'file.lun=1');
    execFileSync('qemu-io', ['--image-opts', lun1, '-c', 'write -P 0x5a 65536 4096', '-c', 'flush']);
    const own = execFileSync('qemu-io', ['--image-opts', imageOpts(iscsiPort, c.target, c.initiatorName), '-c', 'read -P 0x5a 65536 4096'], {
      encoding: 'utf8',
    });
    expect(own).not.toMatch(/Pattern verification failed/);
    expect(sanbootTarget(await script(A))).toBe(c.target);
  });

  it('named disks: add, choose the boot disk, refuse deleting the boot disk', async () => {
    const add = await app.api('POST', `/api/clients/${A}/disks`, { name: 'windows', image: 'beta' });
    expect(add.status).toBe(201);
    expect((await app.api('POST', `/api/clients/${A}/disks`, { name: 'windows', image: 'beta' })).status).toBe(409);
    expect((await app.api('POST', `/api/clients/${A}/disks`, { name: 'Bad Name', image: 'beta' })).json.error.code).toBe('BAD_DISK_NAME');
    expect((await app.api('PUT', `/api/clients/${A}/boot-disk`, { disk: 'windows' })).json.bootDisk).toBe('windows');
    expect(sanbootTarget(await script(A))).toMatch(/:client-525400000801\.windows$/);
    expect((await app.api('DELETE', `/api/clients/${A}/disks/windows`)).json.error.code).toBe('DISK_IS_BOOT_DISK');
    expect((await app.api('PUT', `/api/clients/${A}/next-boot`, { disk: 'default' })).status).toBe(200);
    expect(sanbootTarget(await script(A))).toMatch(/:client-525400000801$/);
    expect(sanbootTarget(await script(A))).toMatch(/\.windows$/);
    expect((await app.api('PUT', `/api/clients/${A}/boot-disk`, { disk: 'default' })).status).toBe(200);
    expect((await app.api('DELETE', `/api/clients/${A}/disks/windows`)).status).toBe(204);
    const disks = (await app.api('GET', `/api/clients/${A}/disks`)).json.disks.map((d: { name: string }) => d.name);
    expect(disks).not.toContain('windows');
  });

  it('safety: a second read-write login is refused while the disk is held; moving it is refused too', async () => {
    const c = (await app.api('PATCH', `/api/clients/${A}`, { initiators: ['iqn.2026-11.test:other-host'] })).json;
    const holder = await holdSession(iscsiPort, c.target, c.initiatorName);
    try {
      const second = spawnSync('iscsi-inq', ['-i', 'iqn.2026-11.test:other-host', `iscsi://127.0.0.1:${iscsiPort}/${c.target}/0`], { encoding: 'utf8' });
      expect(second.status).not.toBe(0);
      expect(second.stderr + second.stdout).toMatch(/unavailable|Failed to log in/i);
      const view = (await app.api('GET', `/api/clients/${A}`)).json;
      expect(view.holders.map((h: { initiatorName: string }) => h.initiatorName)).toEqual([c.initiatorName]);
      const move = await app.api('POST', `/api/clients/${A}/move`, { to: '52:54:00:00:08:99' });
      expect(move.status).toBe(409);
      expect(move.json.error.code).toBe('DISK_IN_USE');
    } finally {
      holder.stdin!.end('quit\n');
      await new Promise((r) => holder.once('exit', r));
    }
  });

  it('restore of a held disk is refused naming the holder; force drops the stale session first', async () => {
    const c = (await app.api('GET', `/api/clients/${A}`)).json;
    const snap = (await app.api('POST', `/api/clients/${A}/snapshots`, { name: 'pre-force' })).json;
    const holder = await holdSession(iscsiPort, c.target, c.initiatorName);
    // Frozen like a machine that lost power: it neither answers nor reconnects.
    holder.kill('SIGSTOP');
    try {
      const refused = await app.api('POST', `/api/clients/${A}/snapshots/${snap.id}/restore`);
      expect(refused.status).toBe(409);
      expect(refused.json.error.code).toBe('DISK_IN_USE');
      expect(refused.json.error.message).toContain(c.initiatorName);
      const forced = await app.api('POST', `/api/clients/${A}/snapshots/${snap.id}/restore?force=true`);
      expect(forced.status).toBe(200);
      expect((await app.api('GET', `/api/sessions`)).json.sessions.filter((x: { target: string }) => x.target === c.target)).toHaveLength(0);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
  });

  it('moving a root disk: copy keeps the original, move ends the old machine access', async () => {
    const c = (await app.api('GET', `/api/clients/${A}`)).json;
    execFileSync('qemu-io', ['--image-opts', imageOpts(iscsiPort, c.target, c.initiatorName), '-c', 'write -P 0x77 0 4096', '-c', 'flush']);
    const copy = await app.api('POST', `/api/clients/${A}/move`, { to: '52:54:00:00:08:02', copy: true });
    expect(copy.status).toBe(201);
    const B = (await app.api('GET', '/api/clients/52:54:00:00:08:02')).json;
    expect(
      execFileSync('qemu-io', ['--image-opts', imageOpts(iscsiPort, B.target, B.initiatorName), '-c', 'read -P 0x77 0 4096'], { encoding: 'utf8' }),
    ).not.toMatch(/failed/);
    expect((await app.api('POST', `/api/clients/${A}/move`, { to: '52:54:00:00:08:02' })).json.error.code).toBe('CLIENT_EXISTS');

    const move = await app.api('POST', '/api/clients/52:54:00:00:08:02/move', { to: '52:54:00:00:08:03' });
    expect(move.status).toBe(201);
    expect((await app.api('GET', '/api/clients/52:54:00:00:08:02')).status).toBe(404);
    const old = spawnSync('iscsi-inq', ['-i', B.initiatorName, `iscsi://127.0.0.1:${iscsiPort}/${B.target}/0`], { encoding: 'utf8' });
    expect(old.status).not.toBe(0);
    const C = (await app.api('GET', '/api/clients/52:54:00:00:08:03')).json;
    expect(
      execFileSync('qemu-io', ['--image-opts', imageOpts(iscsiPort, C.target, C.initiatorName), '-c', 'read -P 0x77 0 4096'], { encoding: 'utf8' }),
    ).not.toMatch(/failed/);
  });

  it('backups: snapshot export is resumable with Range; a snapshot becomes a golden image', async () => {
    const snap = (await app.api('POST', `/api/clients/${A}/snapshots`, { name: 'backup' })).json;
    const url = `${app.url}/api/clients/${A}/export?format=raw&snapshot=${snap.id}`;
    const auth = { authorization: `Bearer ${app.token}` };
    const whole = Buffer.from(await (await fetch(url, { headers: auth })).arrayBuffer());
    expect(whole.length).toBe(4 * 1024 * 1024);
    const part = await fetch(url, { headers: { ...auth, range: 'bytes=1000-70000' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-70000/${whole.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(whole.subarray(1000, 70001))).toBe(true);
    expect((await fetch(url, { headers: { ...auth, range: 'bytes=99999999-' } })).status).toBe(416);
    // curl resumes an interrupted download (-C -) into the same bytes.
    const out = join(dir, 'resumed.img');
    writeFileSync(out, whole.subarray(0, 123_457));
    execFileSync('curl', ['-sf', '-C', '-', '-H', `Authorization: Bearer ${app.token}`, '-o', out, url]);
    const resumed = readFileSync(out);
    expect(resumed.length).toBe(whole.length);
    expect(resumed.equals(whole)).toBe(true);

    const promoted = await app.api('POST', `/api/clients/${A}/snapshots/${snap.id}/promote`, { name: 'from-backup' });
    expect(promoted.status).toBe(201);
    expect((await app.api('POST', '/api/clients', { mac: '52:54:00:00:08:04', image: 'from-backup' })).status).toBe(201);
    const D = (await app.api('GET', '/api/clients/52:54:00:00:08:04')).json;
    expect(
      execFileSync('qemu-io', ['--image-opts', imageOpts(iscsiPort, D.target, D.initiatorName), '-c', 'read -P 0x77 0 4096'], { encoding: 'utf8' }),
    ).not.toMatch(/failed/);
  });

  it('scheduled snapshots are configured per client', async () => {
    expect((await app.api('PUT', `/api/clients/${A}/schedule`, { everyMinutes: 0, keep: 3 })).status).toBe(400);
    expect((await app.api('PUT', `/api/clients/${A}/schedule`, { everyMinutes: 1440, keep: 7 })).json.schedule).toEqual({ everyMinutes: 1440, keep: 7 });
    expect((await app.api('POST', '/api/backups/run')).status).toBe(200);
    const snaps = (await app.api('GET', `/api/clients/${A}/snapshots`)).json.snapshots;
    expect(snaps.filter((s: { name: string }) => s.name.startsWith('scheduled-'))).toHaveLength(1);
  });
});
