/**
 * Issue #17: the whole appliance (appliance/main/main.ts serve, run with tsx) answering IPv6
 * router solicitations on a bridge in namespaces this file creates and deletes, with real
 * peers: rdisc6 (ndisc6) sends the solicitations and prints the advertisements, udhcpc plays a
 * PXE client's DHCP, Debian's radvd is "another router", tcpdump watches the bridge.
 *
 * - Only booting clients get an answer: a PXE client DHCP heard (unknown, boot.unknownClients
 *   "wait") does, a machine that never network-booted or DHCPed as an ordinary host does not.
 * - Nothing is sent unasked: every RA seen on the bridge from the appliance answers an RS.
 * - Silent while another router advertises, answering again once it has gone quiet.
 * - ra.enabled false: no answer to the same client.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { macToLinkLocal } from '../../appliance/ra/link-local';
import { deleteNamespace, missingTools, netnsUnavailable, run, sh } from '../dhcp/helpers/netns';

const REPO = join(__dirname, '../..');
const TOOLS = ['rdisc6', 'radvd', 'udhcpc', 'curl', 'tcpdump', 'cc'];
const skip =
  netnsUnavailable() ??
  (missingTools(...TOOLS).length ? `missing ${missingTools(...TOOLS).join(', ')} (Debian: ndisc6, radvd, udhcpc, curl, tcpdump, gcc)` : undefined);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const MAC1 = '52:54:00:17:00:01'; // a PXE client: DHCPs with PXEClient, then solicits
const MAC2 = '52:54:00:17:00:02'; // never network-boots
const MAC3 = '52:54:00:17:00:03'; // an ordinary host: DHCPs without PXEClient

describe.skipIf(skip !== undefined)(`router solicitation answers, in namespaces${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const server = `nb-ra-${process.pid}`;
  const hosts = { c1: `${server}-c1`, c2: `${server}-c2`, c3: `${server}-c3`, rt: `${server}-rt` };
  const dir = mkdtempSync(join(tmpdir(), 'nb-ra-'));
  const helper = join(dir, 'ra-responder');
  let proc: ChildProcess | undefined;
  let output = '';
  let capture: { stop: () => Promise<string>; text: () => string } | undefined;
  let applianceLl = '';

  beforeAll(() => {
    sh('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', helper, join(REPO, 'appliance/ra/ra-responder.c')]);
    for (const ns of [server, ...Object.values(hosts)]) deleteNamespace(ns);
    sh('ip', ['netns', 'add', server]);
    sh('ip', ['-n', server, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', server, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', ['-n', server, 'link', 'set', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    sh('ip', ['-n', server, 'addr', 'add', '198.18.0.1/24', 'dev', 'br0']);
    const macs: Record<string, string> = { c1: MAC1, c2: MAC2, c3: MAC3, rt: '52:54:00:17:00:fe' };
    for (const [name, ns] of Object.entries(hosts)) {
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['link', 'add', `p${name}`, 'netns', server, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      sh('ip', ['-n', server, 'link', 'set', `p${name}`, 'master', 'br0']);
      sh('ip', ['-n', server, 'link', 'set', `p${name}`, 'up']);
      sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'address', macs[name]!]);
      // The hosts' kernels stay quiet (no RS of their own, no DAD wait): rdisc6 solicits.
      sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.eth0.router_solicitations=0', 'net.ipv6.conf.eth0.accept_dad=0']);
      sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    }
    sh('ip', ['-n', server, 'link', 'set', 'br0', 'up']);
  });

  afterAll(async () => {
    await stopAppliance();
    await capture?.stop();
    for (const ns of [...Object.values(hosts), server]) deleteNamespace(ns);
    rmSync(dir, { recursive: true, force: true });
  });

  /** tcpdump on the bridge: router advertisements only (ICMPv6 type 134, no extension headers). */
  function startRaCapture(): Promise<NonNullable<typeof capture>> {
    const p = spawn('ip', ['netns', 'exec', server, 'tcpdump', '-lnn', '-i', 'br0', 'icmp6 and ip6[40] == 134'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    const listening = new Promise<void>((r) => {
      p.stderr!.on('data', (d: Buffer) => /listening on/.test(d.toString()) && r());
      setTimeout(r, 3000);
    });
    return listening.then(() => ({
      text: () => out,
      async stop() {
        await sleep(300);
        p.kill('SIGINT');
        await Promise.race([exited, sleep(3000)]);
        return out;
      },
    }));
  }

  /** RA lines in the capture sent by the appliance. */
  const appliancesRas = (text: string) => text.split('\n').filter((l) => l.includes(`${applianceLl} >`));

  async function startAppliance(ra: Record<string, unknown>): Promise<void> {
    const config = {
      dataDir: join(dir, 'data'),
      serverAddress: '198.18.0.1',
      http: { host: '0.0.0.0', port: 8080 },
      iscsi: { host: '0.0.0.0', port: 3260 },
      tftp: { host: '0.0.0.0', port: 6969 },
      dhcp: {
        mode: 'full',
        interface: 'br0',
        range: ['198.18.0.100', '198.18.0.120'],
        netmask: '255.255.255.0',
        router: '',
        dns: [],
        leaseSeconds: 600,
        conflictProbeSeconds: 0,
      },
      boot: { ipxeDir: '/usr/lib/ipxe', unknownClients: 'wait' },
      mdns: { enabled: false },
      log: { level: 'debug', format: 'json' },
      ra: { helper, probeSeconds: 0.5, routerHoldSeconds: 5, ...ra },
    };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    output = '';
    proc = spawn(
      'ip',
      ['netns', 'exec', server, join(REPO, 'node_modules/.bin/tsx'), join(REPO, 'appliance/main/main.ts'), 'serve', '--config', join(dir, 'config.json')],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.on('data', (d) => (output += d));
    proc.stderr!.on('data', (d) => (output += d));
    for (let i = 0; i < 150 && !existsSync(join(dir, 'data/admin.token')); i++) await sleep(100);
  }

  async function stopAppliance(): Promise<void> {
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc!.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(8000)]);
    }
    proc = undefined;
  }

  /** The ra service's status from GET /api/status. */
  function raStatus(): { state: string; detail?: string; counters: Record<string, number> } | undefined {
    try {
      const token = readFileSync(join(dir, 'data/admin.token'), 'utf8').trim();
      const r = run(
        'ip',
        ['netns', 'exec', server, 'curl', '-sS', '--max-time', '3', '-H', `Authorization: Bearer ${token}`, 'http://127.0.0.1:8080/api/status'],
        5000,
      );
      return (JSON.parse(r.out) as { services: { name: string; state: string; detail?: string; counters: Record<string, number> }[] }).services.find(
        (s) => s.name === 'ra',
      );
    } catch {
      return undefined;
    }
  }

  async function until(ok: (s: NonNullable<ReturnType<typeof raStatus>>) => boolean, what: string, ms = 15_000) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
      last = raStatus();
      if (last && ok(last)) return last;
      await sleep(250);
    }
    throw new Error(`timed out waiting for ${what}; last ra status: ${JSON.stringify(last)}\n${output.slice(-3000)}`);
  }

  /** rdisc6 from a host: one RS, every RA heard within waitMs (source and router lifetime). */
  function solicit(ns: string, waitMs = 1500): { from: string; lifetime: number }[] {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'rdisc6', '-r', '1', '-w', String(waitMs), 'eth0'], { encoding: 'utf8', timeout: waitMs + 5000 });
    const ras: { from: string; lifetime: number }[] = [];
    for (const block of r.stdout.split(/\n\s*\n/)) {
      const from = /^\s*from (\S+)/m.exec(block)?.[1];
      const lifetime = /Router lifetime\s*:\s*(\d+)/.exec(block)?.[1];
      if (from && lifetime !== undefined) ras.push({ from, lifetime: Number(lifetime) });
    }
    return ras;
  }

  /** A DHCP exchange from a host; `pxe` adds a PXE ROM's vendor class (option 60). */
  function dhcp(ns: string, pxe: boolean): void {
    run(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'udhcpc',
        '-i',
        'eth0',
        '-n',
        '-q',
        '-t',
        '2',
        '-T',
        '1',
        '-s',
        '/bin/true',
        ...(pxe ? ['-V', 'PXEClient:Arch:00000:UNDI:002001'] : []),
      ],
      10_000,
    );
  }

  it('answers only the clients it boots, with lifetime 0, and never unasked', async () => {
    capture = await startRaCapture();
    await startAppliance({});
    applianceLl = /inet6 (fe80::[0-9a-f:]+)\//.exec(sh('ip', ['-n', server, '-6', 'addr', 'show', 'dev', 'br0', 'scope', 'link']))![1]!;
    await until((s) => s.state === 'running' && /no client to answer/.test(s.detail ?? ''), 'the responder up with nobody to answer');

    // A bounded while with the responder up and nobody soliciting: nothing on the wire.
    await sleep(3000);
    expect(appliancesRas(capture.text())).toEqual([]);

    // Nobody booting yet: no answer to anyone.
    expect(solicit(hosts.c1).filter((r) => r.from === applianceLl)).toEqual([]);

    // c1 DHCPs as a PXE ROM (unknown, "wait" serves it): it is booting now. c3 DHCPs as an
    // ordinary host, c2 not at all: the boot policy would ignore both.
    dhcp(hosts.c1, true);
    dhcp(hosts.c3, false);
    await until((s) => /answering 1 client/.test(s.detail ?? ''), 'c1 on the allow-list');

    const toC1 = solicit(hosts.c1);
    expect(toC1).toEqual([{ from: applianceLl, lifetime: 0 }]);
    expect(solicit(hosts.c2)).toEqual([]);
    expect(solicit(hosts.c3)).toEqual([]);

    // Exactly one RA left the appliance, to c1's link-local address: the answer.
    await sleep(500);
    const sent = appliancesRas(capture.text());
    expect(sent).toHaveLength(1);
    expect(sent[0]).toContain(`${applianceLl} > ${macToLinkLocal(MAC1)}:`);
    const s = raStatus()!;
    expect(s.counters.answered).toBe(1);
    expect(s.counters.refused).toBeGreaterThanOrEqual(3); // c1 before it booted, c2, c3
  }, 60_000);

  it('keeps quiet while another router advertises, and answers again once it has gone', async () => {
    const conf = join(dir, 'router-radvd.conf');
    writeFileSync(
      conf,
      'interface eth0 {\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 4;\n  AdvDefaultLifetime 600;\n  prefix 2001:db8:17::/64 { };\n};\n',
      { mode: 0o644 },
    );
    const router = spawn('ip', ['netns', 'exec', hosts.rt, 'radvd', '-n', '-m', 'stderr', '-C', conf, '-p', join(dir, 'router-radvd.pid')], {
      stdio: 'ignore',
    });
    const routerExited = new Promise((r) => router.once('exit', r));
    try {
      const routerLl = macToLinkLocal('52:54:00:17:00:fe');
      await until((s) => /another router advertises/.test(s.detail ?? ''), 'the responder to hear the other router');
      const before = appliancesRas(capture!.text()).length;
      const heard = solicit(hosts.c1, 2500);
      expect(heard.some((r) => r.from === routerLl)).toBe(true);
      expect(heard.filter((r) => r.from === applianceLl)).toEqual([]);
      await sleep(300);
      expect(appliancesRas(capture!.text()).length).toBe(before);
    } finally {
      router.kill('SIGTERM');
      await Promise.race([routerExited, sleep(5000)]);
    }
    // routerHoldSeconds is 5 here: answers resume once the router has been quiet that long.
    await until((s) => /answering 1 client/.test(s.detail ?? ''), 'answers to resume after the router went', 20_000);
    expect(solicit(hosts.c1)).toEqual([{ from: applianceLl, lifetime: 0 }]);
  }, 60_000);

  it('ra.enabled false: the same booting client gets no answer', async () => {
    await stopAppliance();
    const before = appliancesRas(capture!.text()).length;
    await startAppliance({ enabled: false });
    await until((s) => s.state === 'disabled', 'the responder disabled');
    dhcp(hosts.c1, true);
    await sleep(1500);
    expect(solicit(hosts.c1)).toEqual([]);
    await sleep(300);
    expect(appliancesRas(capture!.text()).length).toBe(before);
    expect(raStatus()!.detail).toMatch(/ra.enabled is false/);
  }, 60_000);
});
