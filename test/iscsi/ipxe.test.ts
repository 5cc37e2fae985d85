import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IQN_INITIATOR, startTarget, target } from './harness';
import { MemoryDisk } from './volumes';

/**
 * iPXE `sanboot` against the running target: qemu (TCG) boots Debian's ipxe.lkrn with a
 * script; the guest's user-mode network reaches the host's 127.0.0.1 as 10.0.2.2, so no
 * traffic leaves loopback. The disk's boot sector prints a marker on COM1: seeing it means
 * iPXE logged in, read the capacity and INT13-read the MBR through our target.
 */
const QEMU = '/usr/bin/qemu-system-x86_64';
const LKRN = '/usr/lib/ipxe/ipxe.lkrn';
const HAVE = existsSync(QEMU) && existsSync(LKRN);
const MARKER = 'NETBOOT-SANBOOT-OK';

/** A boot sector that writes MARKER to COM1 (0x3f8) and halts (hand-assembled 16-bit code). */
function bootSector(): Buffer {
  const code = [0x31, 0xc0, 0x8e, 0xd8, 0xbe, 0x16, 0x7c, 0xba, 0xf8, 0x03, 0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xfa, 0xf4, 0xeb, 0xfd];
  const s = Buffer.alloc(512);
  Buffer.from(code).copy(s, 0);
  s.write(`\r\n${MARKER}\r\n\0`, code.length, 'latin1');
  s[510] = 0x55;
  s[511] = 0xaa;
  return s;
}

describe.skipIf(!HAVE)('iPXE sanboot (qemu TCG, ipxe.lkrn)', () => {
  const dir = mkdtempSync(join(tmpdir(), `nb-iscsi-ipxe-${process.pid}-`));
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  async function boot(port: number, script: string[]): Promise<string> {
    const file = join(dir, `boot-${children.length}.ipxe`);
    writeFileSync(file, ['#!ipxe', 'dhcp', ...script, ''].join('\n'));
    const q = spawn(
      QEMU,
      ['-nographic', '-monitor', 'none', '-m', '128', '-kernel', LKRN, '-initrd', file, '-netdev', 'user,id=n0', '-device', 'e1000,netdev=n0', '-no-reboot'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(q);
    let out = '';
    q.stdout!.on('data', (d) => (out += d.toString('latin1')));
    const deadline = Date.now() + 100_000;
    while (Date.now() < deadline && !out.includes(MARKER) && !/Could not boot|No such|Permission denied|Connection refused/.test(out)) {
      await new Promise((r) => setTimeout(r, 500));
    }
    q.kill('SIGKILL');
    void port;
    return out;
  }

  it('boots the disk at LUN 0, with and without CHAP, and reports the session', async () => {
    const disk = new MemoryDisk('ipxe-disk', 16384);
    bootSector().copy(disk.data, 0);
    const T = 'iqn.2026-11.local.netboot:ipxe';
    const T_CHAP = 'iqn.2026-11.local.netboot:ipxe-chap';
    const chap = { user: 'ipxeclient', secret: 'ipxe-secret-1234' };
    const { server, port, events } = await startTarget([
      target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }], { mac: '52:54:00:12:34:56' }),
      target(T_CHAP, [{ lun: 0, open: () => disk.open(), readOnly: false }], { chap, mac: '52:54:00:12:34:57' }),
    ]);
    try {
      const out = await boot(port, [`set initiator-iqn ${IQN_INITIATOR}`, `sanboot iscsi:10.0.2.2::${port}:0:${T}`]);
      expect(out).toContain('Booting from SAN device');
      expect(out).toContain(MARKER);
      const stages = events.filter((e) => e.mac === '52:54:00:12:34:56').map((e) => e.stage);
      expect(stages).toContain('iscsi-login');
      expect(stages).toContain('iscsi-first-read');

      const out2 = await boot(port, [
        `set initiator-iqn ${IQN_INITIATOR}`,
        `set username ${chap.user}`,
        `set password ${chap.secret}`,
        `sanboot iscsi:10.0.2.2::${port}:0:${T_CHAP}`,
      ]);
      expect(out2).toContain(MARKER);
      const bad = await boot(port, [
        `set initiator-iqn ${IQN_INITIATOR}`,
        `set username ${chap.user}`,
        'set password wrong-secret-123',
        `sanboot iscsi:10.0.2.2::${port}:0:${T_CHAP}`,
      ]);
      expect(bad).not.toContain(MARKER);
      expect(events.some((e) => e.mac === '52:54:00:12:34:57' && e.stage === 'iscsi-login-refused' && e.detail?.status === '0x0201')).toBe(true);
    } finally {
      await server.stop();
    }
  }, 330_000);
});
