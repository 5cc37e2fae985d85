/**
 * Interop with real DHCP clients and a real second server, in namespaces this file creates:
 * server namespace (vs, 198.18.0.1/24, our service in a runner process) <-veth-> client namespace
 * (vc, MAC 02:00:00:00:00:c1) where dhclient / udhcpc / dnsmasq run as users run them.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodePacket } from '../../appliance/dhcp/packet';
import { getMessageType, getOption, getString, Opt } from '../../appliance/dhcp/options';
import { createPair, missingTools, netnsUnavailable, run, runUntil, startCapture, startRunner, type Runner } from './helpers/netns';

const skip = netnsUnavailable();
const noClients = missingTools('dhclient', 'udhcpc', 'dnsmasq');
const CLIENT_MAC = '02:00:00:00:00:c1';

describe.skipIf(skip !== undefined || noClients.length > 0)(
  `DHCP interop in namespaces${skip ? ` (skipped: ${skip})` : noClients.length ? ` (skipped: missing ${noClients.join(', ')})` : ''}`,
  () => {
    let net: ReturnType<typeof createPair>;
    let runner: Runner | undefined;
    let n = 0;
    /**
     * The runner's boot events once `ready` holds for them, or as they are after 2 s: the DHCP
     * service writes events in batches up to 100 ms after its replies, so a reply can come first.
     */
    const eventsWhen = async (ready: (evs: ReturnType<Runner['events']>) => boolean) => {
      for (let i = 0; i < 40 && !ready(runner!.events()); i++) await new Promise((r) => setTimeout(r, 50));
      return runner!.events();
    };

    beforeAll(() => {
      net = createPair('io');
      writeFileSync(
        join(net.dir, 'dhclient-bios.conf'),
        [
          'option pxe-arch code 93 = unsigned integer 16;',
          'send vendor-class-identifier "PXEClient:Arch:00000:UNDI:002001";',
          'send pxe-arch 0;',
          'request subnet-mask, routers, domain-name-servers, broadcast-address, vendor-encapsulated-options, tftp-server-name, bootfile-name;',
          '',
        ].join('\n'),
      );
      writeFileSync(
        join(net.dir, 'dhclient-efi.conf'),
        ['option pxe-arch code 93 = unsigned integer 16;', 'send vendor-class-identifier "PXEClient:Arch:00007:UNDI:003016";', 'send pxe-arch 7;', ''].join(
          '\n',
        ),
      );
    });
    afterEach(async () => {
      await runner?.stop();
      runner = undefined;
    });
    afterAll(() => net?.cleanup());

    function spec(dhcp: Record<string, unknown>, extra: Record<string, unknown> = {}) {
      return {
        config: { dhcp: { interface: 'vs', ...dhcp }, boot: { unknownClients: 'menu' }, http: { port: 8080 } },
        serverAddress: 'auto',
        dbFile: join(net.dir, 'leases.db'),
        clients: [],
        ...extra,
      };
    }

    const full = {
      mode: 'full',
      range: ['198.18.0.100', '198.18.0.120'],
      router: '198.18.0.1',
      dns: ['198.18.0.1'],
      leaseSeconds: 600,
      conflictProbeSeconds: 1,
    };

    /** dhclient as a user runs it (one try, foreground), until it is bound or `seconds` pass. */
    async function dhclient(conf: string, leases: string, seconds = 20) {
      const out = await runUntil(
        [
          'ip',
          'netns',
          'exec',
          net.client,
          'dhclient',
          '-1',
          '-v',
          '-d',
          '-cf',
          join(net.dir, conf),
          '-lf',
          join(net.dir, leases),
          '-pf',
          join(net.dir, `dhclient-${n++}.pid`),
          '-sf',
          '/bin/true',
          'vc',
        ],
        /bound to|No DHCPOFFERS/,
        seconds * 1000,
      );
      await new Promise((r) => setTimeout(r, 300)); // let the runner's last EVENT lines arrive
      return { out };
    }

    async function sniffProxyOffer(client: () => unknown) {
      const prefix = `sniff${n++}`;
      const cap = startCapture(net.client, net.dir, prefix, 68, 1, 12);
      await cap.ready;
      const [[offer]] = await Promise.all([cap.done, client()]);
      expect(offer, 'no reply reached the client namespace').toBeDefined();
      return decodePacket(offer);
    }

    it('proxy: udhcpc with a BIOS PXE vendor class gets undionly.kpxe and no address', async () => {
      runner = startRunner(net.server, net.dir, 'proxy1', spec({ mode: 'proxy' }));
      await runner.waitFor(/^READY/);
      const offer = await sniffProxyOffer(() => {
        run(
          'ip',
          [
            'netns',
            'exec',
            net.client,
            'udhcpc',
            '-i',
            'vc',
            '-n',
            '-q',
            '-t',
            '2',
            '-T',
            '2',
            '-V',
            'PXEClient:Arch:00000:UNDI:002001',
            '-x',
            '0x5d:0000',
            '-s',
            '/bin/true',
          ],
          15_000,
        );
      });
      expect(getMessageType(offer)).toBe('offer');
      expect(offer.yiaddr).toBe('0.0.0.0');
      expect(offer.siaddr).toBe('198.18.0.1');
      expect(offer.file).toBe('undionly.kpxe');
      expect(getString(offer, Opt.vendorClass)).toBe('PXEClient');
      expect([...getOption(offer, Opt.vendorSpecific)!]).toEqual([6, 1, 8, 255]);
      const evs = await eventsWhen((es) => es.some((e) => e.stage === 'dhcp-offer'));
      const stages = evs.filter((e) => e.mac === CLIENT_MAC).map((e) => e.stage);
      expect(stages).toEqual(expect.arrayContaining(['dhcp-discover', 'dhcp-offer']));
      expect(evs.find((e) => e.stage === 'dhcp-discover')?.detail).toMatchObject({ arch: 0 });
    });

    it('proxy: dhclient sending option 93 = 7 gets ipxe.efi, no address; a plain client gets nothing', async () => {
      runner = startRunner(net.server, net.dir, 'proxy2', spec({ mode: 'proxy' }));
      await runner.waitFor(/^READY/);
      const offer = await sniffProxyOffer(() => dhclient('dhclient-efi.conf', 'efi.leases', 6));
      expect(offer.yiaddr).toBe('0.0.0.0');
      expect(offer.file).toBe('ipxe.efi');
      // A client without a PXE vendor class is not answered at all.
      const r = run('ip', ['netns', 'exec', net.client, 'udhcpc', '-i', 'vc', '-n', '-q', '-t', '2', '-T', '1', '-s', '/bin/true'], 10_000);
      expect(r.out).toMatch(/no lease/);
      const ignored = await runner
        .waitFor(/^READY/)
        .then(() => runner!.stop())
        .then(() => runner!.lines.find((l) => l.startsWith('STOPPED')));
      expect(JSON.parse(ignored!.slice(8))).toMatchObject({ offers: 1 });
    });

    it('full: dhclient gets a lease with the boot file, keeps it across a restart (fresh client and INIT-REBOOT)', async () => {
      runner = startRunner(net.server, net.dir, 'full1', spec(full));
      await runner.waitFor(/^READY/);
      const first = await dhclient('dhclient-bios.conf', 'full.leases');
      const ip = /DHCPACK of (\S+) from 198\.18\.0\.1/.exec(first.out)?.[1];
      expect(ip, first.out).toMatch(/^198\.18\.0\.1(0\d|1[0-2]\d)$/);
      expect(first.out).not.toMatch(/DHCPACK of 0\.0\.0\.0/);
      expect(readFileSync(join(net.dir, 'full.leases'), 'utf8')).toMatch(/filename "undionly.kpxe"/);
      await runner.stop();

      runner = startRunner(net.server, net.dir, 'full1b', spec(full));
      await runner.waitFor(/^READY/);
      // A client with no memory of its lease (DISCOVER) gets the same address from the database.
      const fresh = await dhclient('dhclient-bios.conf', 'fresh.leases');
      expect(fresh.out).toMatch(new RegExp(`DHCPOFFER of ${ip!.replace(/\./g, '\\.')} from 198\\.18\\.0\\.1`));
      // The first client, rebooting with its lease file, verifies it (INIT-REBOOT: REQUEST, no DISCOVER).
      const reboot = await dhclient('dhclient-bios.conf', 'full.leases');
      expect(reboot.out).toMatch(new RegExp(`DHCPREQUEST for ${ip!.replace(/\./g, '\\.')}`));
      expect(reboot.out).toMatch(new RegExp(`DHCPACK of ${ip!.replace(/\./g, '\\.')}`));
      expect(reboot.out).not.toMatch(/DHCPDISCOVER/);
      const requests = (await eventsWhen((es) => es.some((e) => e.stage === 'dhcp-request' && e.detail?.state === 'init-reboot')))
        .filter((e) => e.stage === 'dhcp-request')
        .map((e) => e.detail?.state);
      expect(requests, `${runner.lines.join('\n')}\n--- fresh:\n${fresh.out}\n--- reboot:\n${reboot.out}`).toContain('init-reboot');
    });

    it('full: udhcpc gets a lease and renews it by unicast (RENEWING, on SIGUSR1)', async () => {
      runner = startRunner(net.server, net.dir, 'full2', spec(full));
      await runner.waitFor(/^READY/);
      // A script that really configures the address, so that the renewal goes unicast to us.
      const script = join(net.dir, 'udhcpc.sh');
      writeFileSync(
        script,
        '#!/bin/sh\ncase "$1" in bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/24" dev "$interface";; esac\necho "SCRIPT $1 $ip"\n',
        { mode: 0o755 },
      );
      const proc = spawn(
        'ip',
        ['netns', 'exec', net.client, 'udhcpc', '-f', '-i', 'vc', '-t', '3', '-T', '2', '-V', 'PXEClient:Arch:00000:UNDI:002001', '-s', script],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const waitOut = async (re: RegExp) => {
        for (let i = 0; i < 100 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 100));
        return re.exec(out);
      };
      try {
        const bound = await waitOut(/SCRIPT bound (\S+)/);
        expect(bound, out).not.toBeNull();
        const ip = bound![1];
        expect(ip).toMatch(/^198\.18\.0\.1\d\d$/);
        proc.kill('SIGUSR1');
        expect(await waitOut(/SCRIPT renew/), out).not.toBeNull();
        expect(out).toMatch(new RegExp(`SCRIPT renew ${ip.replace(/\./g, '\\.')}`));
        const isRenewing = (e: ReturnType<Runner['events']>[number]) => e.stage === 'dhcp-request' && e.detail?.state === 'renewing';
        const renewing = (await eventsWhen((es) => es.some(isRenewing))).find(isRenewing);
        expect(renewing?.detail).toMatchObject({ ip });
      } finally {
        proc.kill('SIGTERM');
        run('ip', ['-n', net.client, 'addr', 'flush', 'dev', 'vc']);
      }
    });

    it('full mode refuses to start when another DHCP server (dnsmasq) answers on the interface', async () => {
      run('ip', ['-n', net.client, 'addr', 'add', '198.18.0.2/24', 'dev', 'vc']);
      const dnsmasq = startRunnerless([
        'ip',
        'netns',
        'exec',
        net.client,
        'dnsmasq',
        '--no-daemon',
        '--conf-file=/dev/null',
        '--port=0',
        '--interface=vc',
        '--bind-interfaces',
        '--dhcp-range=198.18.0.150,198.18.0.160,255.255.255.0,10m',
        `--dhcp-leasefile=${join(net.dir, 'dnsmasq.leases')}`,
        '--no-ping',
      ]);
      try {
        await new Promise((r) => setTimeout(r, 800));
        runner = startRunner(net.server, net.dir, 'conflict', spec({ ...full, conflictProbeSeconds: 2 }));
        const fatal = await runner.waitFor(/^FATAL|^READY/, 30_000);
        expect(fatal).toMatch(/^FATAL another DHCP server answers on vs: 198\.18\.0\.2/);
        await new Promise<void>((r) => (runner!.proc.exitCode !== null ? r() : runner!.proc.once('exit', () => r())));
        expect(runner.proc.exitCode).toBe(3);
      } finally {
        dnsmasq.kill('SIGTERM');
        run('ip', ['-n', net.client, 'addr', 'flush', 'dev', 'vc']);
      }
    });
  },
);

function startRunnerless(argv: string[]) {
  return spawn(argv[0], argv.slice(1), { stdio: 'ignore' });
}
