import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BootEvent } from '../../appliance/core/model';
import type { IscsiServer } from '../../appliance/iscsi/server';
import { IQN_INITIATOR, IQN_INITIATOR2, startTarget, target } from './harness';
import { TestInitiator } from './initiator';
import { MemoryDisk } from './volumes';

/**
 * Interop with real initiators (Debian libiscsi-bin, qemu-utils + qemu-block-extra) against
 * the running target on 127.0.0.1. Skipped only when a tool is missing.
 */
const run = promisify(execFile);
const have = (bin: string) => ['/usr/bin/', '/usr/sbin/', '/bin/'].some((d) => existsSync(d + bin));
const LIBISCSI = have('iscsi-inq') && have('iscsi-ls') && have('iscsi-readcapacity16');
const QEMU = have('qemu-io') && have('qemu-img') && existsSync('/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so');

const T = 'iqn.2026-11.local.netboot:interop';
const T_CHAP = 'iqn.2026-11.local.netboot:chap';
const T_MUTUAL = 'iqn.2026-11.local.netboot:mutual';
const T_EXCL = 'iqn.2026-11.local.netboot:excl';
const IQN_CHAP = 'iqn.2026-11.local.netboot:initiator:chap';
const CHAP = { user: 'client7', secret: 'client7-secret16' };
const MUTUAL = { ...CHAP, targetUser: 'netboot', targetSecret: 'target-secret-16' };

describe.skipIf(!LIBISCSI)('interop: libiscsi tools', () => {
  const disk = new MemoryDisk('interop-disk', 65536);
  let server: IscsiServer;
  let port: number;
  let events: BootEvent[];
  const url = (t: string, lun = 0) => `iscsi://127.0.0.1:${port}/${t}/${lun}`;
  const held: TestInitiator[] = [];

  beforeAll(async () => {
    ({ server, port, events } = await startTarget([
      target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }], { mac: '52:54:00:11:22:33' }),
      target(T_CHAP, [{ lun: 0, open: () => disk.open(), readOnly: false }], { chap: CHAP, mac: '52:54:00:11:22:44', allowed: [IQN_CHAP] }),
      target(T_MUTUAL, [{ lun: 0, open: () => disk.open(), readOnly: false }], { chap: MUTUAL, allowed: [IQN_CHAP] }),
      target(T_EXCL, [{ lun: 0, open: () => disk.open(), readOnly: false }], { exclusiveWriter: true, allowed: [IQN_CHAP, IQN_INITIATOR2] }),
    ]));
  });
  afterAll(async () => {
    for (const h of held) h.destroy();
    await server?.stop();
  });

  it('iscsi-inq reads standard INQUIRY and the VPD pages', async () => {
    const { stdout } = await run('iscsi-inq', ['-i', IQN_INITIATOR, url(T)]);
    expect(stdout).toMatch(/Peripheral Device Type:DIRECT_ACCESS/);
    expect(stdout).toMatch(/Vendor:NETBOOT/);
    const vpd = await run('iscsi-inq', ['-i', IQN_INITIATOR, '-e', '1', '-c', '0x00', url(T)]);
    for (const p of [
      'SUPPORTED_VPD_PAGES',
      'UNIT_SERIAL_NUMBER',
      'DEVICE_IDENTIFICATION',
      'BLOCK_LIMITS',
      'BLOCK_DEVICE_CHARACTERISTICS',
      'LOGICAL_BLOCK_PROVISIONING',
    ]) {
      expect(vpd.stdout).toContain(p);
    }
    const id = await run('iscsi-inq', ['-i', IQN_INITIATOR, '-e', '1', '-c', '131', url(T)]);
    expect(id.stdout).toMatch(/NAA/);
    expect(events.some((e) => e.mac === '52:54:00:11:22:33' && e.stage === 'iscsi-login')).toBe(true);
  });

  it('iscsi-ls discovers the targets this initiator may use, with LUN sizes', async () => {
    const { stdout } = await run('iscsi-ls', ['-i', IQN_INITIATOR, '-s', `iscsi://127.0.0.1:${port}`]);
    expect(stdout).toContain(`Target:${T} Portal:127.0.0.1:${port},1`);
    expect(stdout).not.toContain(T_CHAP);
    expect(stdout).toMatch(/Lun:0\s+Type:DIRECT_ACCESS \(Size:\d+M\)/);
  });

  it('iscsi-readcapacity16 sees the size and thin provisioning (LBPME, LBPRZ)', async () => {
    const { stdout } = await run('iscsi-readcapacity16', ['-i', IQN_INITIATOR, url(T)]);
    expect(stdout).toContain('RETURNED LOGICAL BLOCK ADDRESS:65535');
    expect(stdout).toContain('LOGICAL BLOCK LENGTH IN BYTES:512');
    expect(stdout).toContain('LBPME:1 LBPRZ:1');
  });

  it('accepts one-way and mutual CHAP with the right secrets and refuses wrong ones', async () => {
    const env = (u: string, p: string, extra: Record<string, string> = {}) => ({
      env: { ...process.env, LIBISCSI_CHAP_USERNAME: u, LIBISCSI_CHAP_PASSWORD: p, ...extra },
    });
    await run('iscsi-inq', ['-i', IQN_CHAP, url(T_CHAP)], env(CHAP.user, CHAP.secret));
    await expect(run('iscsi-inq', ['-i', IQN_CHAP, url(T_CHAP)], env(CHAP.user, 'wrong-secret-123'))).rejects.toThrow();
    await expect(run('iscsi-inq', ['-i', IQN_CHAP, url(T_CHAP)])).rejects.toThrow();
    await run(
      'iscsi-inq',
      ['-i', IQN_CHAP, url(T_MUTUAL)],
      env(CHAP.user, CHAP.secret, { LIBISCSI_CHAP_TARGET_USERNAME: MUTUAL.targetUser, LIBISCSI_CHAP_TARGET_PASSWORD: MUTUAL.targetSecret }),
    );
    // libiscsi checks our mutual response: a wrong target secret on its side must fail the login.
    await expect(
      run(
        'iscsi-inq',
        ['-i', IQN_CHAP, url(T_MUTUAL)],
        env(CHAP.user, CHAP.secret, { LIBISCSI_CHAP_TARGET_USERNAME: MUTUAL.targetUser, LIBISCSI_CHAP_TARGET_PASSWORD: 'not-the-secret-x' }),
      ),
    ).rejects.toThrow();
    const refused = events.filter((e) => e.mac === '52:54:00:11:22:44' && e.stage === 'iscsi-login-refused');
    expect(refused.length).toBeGreaterThanOrEqual(2);
    expect(refused[0].detail?.status).toBe('0x0201');
  });

  it('refuses an initiator that is not listed', async () => {
    await expect(run('iscsi-inq', ['-i', 'iqn.2026-11.local.netboot:initiator:stranger', url(T)])).rejects.toThrow();
    const refused = events.filter((e) => e.stage === 'iscsi-login-refused' && e.detail?.initiator === 'iqn.2026-11.local.netboot:initiator:stranger');
    expect(refused[0]?.detail?.status).toBe('0x0202');
  });

  it('refuses a second read-write login while another initiator holds an exclusive disk', async () => {
    const holder = await TestInitiator.connect(port);
    held.push(holder);
    expect(await holder.login({ initiatorName: IQN_CHAP, targetName: T_EXCL })).toBe(0);
    await expect(run('iscsi-inq', ['-i', IQN_INITIATOR2, url(T_EXCL)])).rejects.toThrow();
    expect(await holder.logout()).toBe(0);
    await holder.whenClosed();
    await new Promise((r) => setTimeout(r, 100));
    await run('iscsi-inq', ['-i', IQN_INITIATOR2, url(T_EXCL)]);
  });
});

describe.skipIf(!QEMU)('interop: qemu-img / qemu-io over iscsi://', () => {
  const disk = new MemoryDisk('qemu-disk', 131072); // 64 MiB
  let server: IscsiServer;
  let port: number;
  let opts: string;

  beforeAll(async () => {
    ({ server, port } = await startTarget([target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }])]));
    opts = `driver=iscsi,transport=tcp,portal=127.0.0.1:${port},target=${T},lun=0,initiator-name=${IQN_INITIATOR}`;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('writes, flushes and reads back patterns that match a model of the disk', async () => {
    const model = Buffer.alloc(disk.data.length);
    const cmds: string[] = [];
    let seed = 42;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    for (let k = 0; k < 40; k++) {
      const len = (1 + rnd(64)) * 4096;
      const off = rnd((model.length - len) / 4096) * 4096;
      const pat = 1 + rnd(254);
      cmds.push('-c', `write -P ${pat} ${off} ${len}`);
      model.fill(pat, off, off + len);
    }
    cmds.push('-c', 'flush');
    const flushesBefore = disk.flushes;
    await run('qemu-io', ['--image-opts', ...cmds, opts]);
    expect(disk.flushes).toBeGreaterThan(flushesBefore);
    expect(disk.data.equals(model)).toBe(true);
    // Read back through the initiator: qemu-io -P fails the command on any mismatch.
    const reads: string[] = [];
    for (let k = 0; k < 20; k++) {
      const off = rnd(model.length / 65536) * 65536;
      reads.push('-c', `read -P ${model[off]} ${off} 512`);
    }
    const { stdout } = await run('qemu-io', ['--image-opts', ...reads, opts]);
    expect(stdout).not.toMatch(/Pattern verification failed/);
  });

  it('converts a random image in and out byte-exact (qemu-img convert + compare)', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(`${tmpdir()}/nb-iscsi-${process.pid}-`);
    try {
      const src = `${dir}/src.raw`;
      writeFileSync(src, randomBytes(64 * 1024 * 1024));
      await run('qemu-img', ['convert', '-n', '-f', 'raw', '--target-image-opts', src, opts]);
      await run('qemu-img', ['compare', '--image-opts', `driver=raw,file.filename=${src}`, opts]);
      const out = `${dir}/out.raw`;
      await run('qemu-img', ['convert', '--image-opts', opts, '-O', 'raw', out]);
      await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, out]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
