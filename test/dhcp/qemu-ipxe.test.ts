/**
 * A real iPXE client (qemu, TCG, Debian's /usr/lib/ipxe/qemu/pxe-e1000.rom) boots against our DHCP
 * service and fetches its per-client script from bootScriptFor(), in full mode and in proxy mode
 * next to dnsmasq as the network's address-only DHCP server (the "router").
 *
 * Topology: namespace A holds bridge br0 (198.18.4.1/24) with qemu's tap0 and a veth to
 * namespace R (198.18.4.2/24, dnsmasq). Nothing listens on iSCSI, so the script's sanboot fails
 * and the script's failure menu shows: the test asserts on the serial log up to that point.
 *
 * The client has CHAP (issue #13): its script, with the secret, comes only through the one-time
 * link in our DHCP answer, redeemed by the appliance's /boot route against the namespace's real
 * neighbour table. Reaching `netboot: sanboot` proves iPXE took the tokened URL and the kernel
 * had the client's MAC for its address when the fetch arrived.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ClientRecord } from '../../appliance/core/model';
import { deleteNamespace, missingTools, netnsUnavailable, sh, startRunner, type Runner } from './helpers/netns';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const ROM = '/usr/lib/ipxe/qemu/pxe-e1000.rom';
const EFI_ROM = '/usr/lib/ipxe/qemu/efi-e1000.rom';
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS.fd';
const skip =
  netnsUnavailable() ??
  (missingTools('qemu-system-x86_64', 'dnsmasq').length ? 'qemu-system-x86_64 or dnsmasq missing' : undefined) ??
  (existsSync(ROM) ? undefined : `${ROM} missing (package ipxe-qemu)`);
const MAC = '52:54:00:12:34:56';
const client: ClientRecord = {
  mac: MAC,
  name: 'qemu-pc',
  image: 'debian',
  disk: 'qemu-pc',
  target: 'iqn.2026-11.local.netboot:qemu-pc',
  lun: 0,
  initiatorName: 'iqn.2026-11.local.netboot:initiator:qemu-pc',
  initiators: [],
  chap: { user: 'qemu-pc', secret: 'qemu-secret-0123' },
  ip: null,
  createdAt: 0,
};
/**
 * iPXE prints the filename from DHCP: the per-client script with a one-time token (then fetches
 * it, showing the URL without its query). The console wraps at 80 columns: match on unwrapped().
 */
const TOKENED = /Filename: (http:\/\/198\.18\.4\.1:8080\/boot\/52-54-00-12-34-56\.ipxe\?t=[A-Za-z0-9_-]{22})/;
const unwrapped = (serial: string) => serial.replace(/\n/g, '');
/** The runner's line for the credentialed script (secret and token never printed). */
const SERVED = /^HTTP .*52-54-00-12-34-56\.ipxe\?t=one-time.*"status":200,"credentials":true,"sanboot":true/;

describe.skipIf(skip !== undefined)(`iPXE in qemu against the DHCP service${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const A = `nb-dhcp-qa-${process.pid}`;
  const R = `nb-dhcp-qr-${process.pid}`;
  let dir: string;
  let runner: Runner | undefined;
  const procs: ChildProcess[] = [];

  beforeAll(() => {
    for (const ns of [A, R]) deleteNamespace(ns);
    dir = mkdtempSync(join(tmpdir(), 'nb-dhcp-qemu-'));
    sh('ip', ['netns', 'add', A]);
    sh('ip', ['netns', 'add', R]);
    sh('ip', ['-n', A, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', ['-n', A, 'addr', 'add', '198.18.4.1/24', 'dev', 'br0']);
    sh('ip', ['-n', A, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
    sh('ip', ['-n', A, 'link', 'set', 'tap0', 'master', 'br0']);
    sh('ip', ['link', 'add', 'va', 'netns', A, 'type', 'veth', 'peer', 'name', 'vr', 'netns', R]);
    sh('ip', ['-n', A, 'link', 'set', 'va', 'master', 'br0']);
    sh('ip', ['-n', R, 'addr', 'add', '198.18.4.2/24', 'dev', 'vr']);
    for (const [ns, dev] of [
      [A, 'br0'],
      [A, 'tap0'],
      [A, 'va'],
      [A, 'lo'],
      [R, 'vr'],
      [R, 'lo'],
    ])
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) p.kill('SIGKILL');
    await runner?.stop();
    runner = undefined;
  });
  afterAll(() => {
    [A, R].forEach(deleteNamespace);
    if (dir && !process.env.KEEP_QEMU_DIR) rmSync(dir, { recursive: true, force: true });
  });

  function spec(dhcp: Record<string, unknown>) {
    return {
      config: { dhcp: { interface: 'br0', ...dhcp }, http: { port: 8080 }, iscsi: { port: 3260 }, boot: { unknownClients: 'menu' } },
      serverAddress: 'auto',
      dbFile: join(dir, `leases-${Date.now()}.db`),
      clients: [client],
      http: true,
      logLevel: 'info',
    };
  }

  /** Boots qemu until `until` shows on the serial console (or timeout); returns the console text. */
  async function bootQemu(name: string, until: RegExp, timeoutMs = 120_000, uefi = false): Promise<string> {
    const log = join(dir, `${name}.log`);
    let firmware = '';
    if (uefi) {
      copyFileSync(OVMF_VARS, join(dir, `${name}-vars.fd`));
      firmware = `-drive if=pflash,format=raw,readonly=on,file=${OVMF_CODE} -drive if=pflash,format=raw,file=${join(dir, `${name}-vars.fd`)} `;
    }
    const rom = uefi ? EFI_ROM : ROM;
    const q = spawn(
      'sh',
      [
        '-c',
        `exec ip netns exec ${A} qemu-system-x86_64 -nographic -monitor none -m 256 -no-reboot ${firmware}` +
          `-netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device e1000,netdev=n0,mac=${MAC},romfile=${rom},bootindex=1 > ${log} 2>&1`,
      ],
      { stdio: 'ignore' },
    );
    procs.push(q);
    const deadline = Date.now() + timeoutMs;
    let text = '';
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      text = existsSync(log)
        ? readFileSync(log, 'latin1')
            .replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
            .replace(/\r/g, '')
        : '';
      if (until.test(text) || q.exitCode !== null) break;
    }
    q.kill('SIGKILL');
    return text;
  }

  it('full mode: iPXE gets an address and its script URL, fetches the script, runs sanboot', { timeout: 200_000 }, async () => {
    runner = startRunner(A, dir, 'qfull', spec({ mode: 'full', range: ['198.18.4.100', '198.18.4.120'], conflictProbeSeconds: 1 }));
    await runner.waitFor(/^READY/, 30_000);
    const serial = await bootQemu('full', /Retry the iSCSI boot/);
    expect(serial).toMatch(/iPXE initialising devices/);
    expect(serial).toMatch(/net0: 198\.18\.4\.1\d\d\/255\.255\.255\.0/);
    expect(unwrapped(serial)).toMatch(TOKENED);
    expect(serial).toMatch(/netboot: qemu-pc \(52:54:00:12:34:56\) boots disk qemu-pc/);
    expect(serial).toMatch(/netboot: sanboot iscsi:198\.18\.4\.1::3260:0:iqn\.2026-11\.local\.netboot:qemu-pc/);
    // No target listens: the script's failure menu appears instead of a tight retry loop.
    expect(serial).toMatch(/netboot: booting 52:54:00:12:34:56 from [\s\S]*? failed/);
    expect(serial).toMatch(/Retry the iSCSI boot/);
    expect(serial.match(/netboot: sanboot/g)?.length).toBe(1);
    await runner.waitFor(SERVED, 5000);
    const stages = runner
      .events()
      .filter((e) => e.mac === MAC)
      .map((e) => e.stage);
    expect(stages).toEqual(expect.arrayContaining(['dhcp-discover', 'dhcp-offer', 'dhcp-request', 'dhcp-ack', 'script-fetched']));
    expect(runner.events().find((e) => e.stage === 'dhcp-discover')?.detail).toMatchObject({ arch: 0 });
  });

  it('proxy mode next to dnsmasq: address from dnsmasq, boot script from us', { timeout: 200_000 }, async () => {
    const dnsmasq = spawn(
      'ip',
      [
        'netns',
        'exec',
        R,
        'dnsmasq',
        '--no-daemon',
        '--conf-file=/dev/null',
        '--port=0',
        '--interface=vr',
        '--bind-interfaces',
        '--dhcp-range=198.18.4.150,198.18.4.160,255.255.255.0,10m',
        `--dhcp-leasefile=${join(dir, 'dnsmasq.leases')}`,
        '--no-ping',
        '--log-dhcp',
      ],
      { stdio: 'ignore' },
    );
    procs.push(dnsmasq);
    runner = startRunner(A, dir, 'qproxy', spec({ mode: 'proxy' }));
    await runner.waitFor(/^READY/, 30_000);
    const serial = await bootQemu('proxy', /Retry the iSCSI boot/);
    expect(serial).toMatch(/iPXE initialising devices/);
    expect(serial).toMatch(/net0: 198\.18\.4\.15\d\/255\.255\.255\.0/);
    expect(unwrapped(serial)).toMatch(TOKENED);
    expect(serial).toMatch(/netboot: sanboot iscsi:198\.18\.4\.1::3260:0:iqn\.2026-11\.local\.netboot:qemu-pc/);
    await runner.waitFor(SERVED, 5000);
    // Another machine on the LAN (the router's namespace) replaying the link iPXE used, or asking
    // for the static address, gets no secret (the proxy offer carrying the link was broadcast).
    const link = TOKENED.exec(unwrapped(serial))![1];
    for (const url of [link, 'http://198.18.4.1:8080/boot/52-54-00-12-34-56.ipxe']) {
      const r = sh('ip', ['netns', 'exec', R, 'curl', '-sS', '--max-time', '5', url]);
      expect(r).toMatch(/^#!ipxe/);
      expect(r).not.toMatch(/password|qemu-secret|sanboot/);
    }
    const events = runner.events().filter((e) => e.mac === MAC);
    expect(events.some((e) => e.stage === 'dhcp-offer' && e.detail?.proxy === true)).toBe(true);
    // Debian's iPXE (1.0.0+git-20190125) boots from the proxy offer without a port-4011 request;
    // that path is covered by the responder tests.
    expect(events.some((e) => e.stage === 'script-fetched')).toBe(true);
  });

  it.skipIf(!existsSync(OVMF_CODE) || !existsSync(EFI_ROM))(
    'UEFI (OVMF, efi-e1000.rom): iPXE reports arch 7 and gets the same per-client script',
    { timeout: 300_000 },
    async () => {
      runner = startRunner(A, dir, 'quefi', spec({ mode: 'full', range: ['198.18.4.100', '198.18.4.120'], conflictProbeSeconds: 1 }));
      await runner.waitFor(/^READY/, 30_000);
      const serial = await bootQemu('uefi', /Retry the iSCSI boot/, 240_000, true);
      expect(unwrapped(serial)).toMatch(TOKENED);
      expect(serial).toMatch(/netboot: sanboot iscsi:198\.18\.4\.1::3260:0:iqn\.2026-11\.local\.netboot:qemu-pc/);
      const discover = runner.events().find((e) => e.mac === MAC && e.stage === 'dhcp-discover');
      expect(discover?.detail).toMatchObject({ arch: 7 });
      expect(runner.events().some((e) => e.mac === MAC && e.stage === 'script-fetched')).toBe(true);
    },
  );
});
