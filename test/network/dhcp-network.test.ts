/**
 * The DHCP service riding out its network (issue #14), in namespaces this file creates and deletes:
 *  - started before its bridge has an address or carrier, it serves once they come;
 *  - the bridge's address changes under it: the next answers carry the new one;
 *  - every request is answered exactly once, counted on the wire (the double-answer bug).
 * The service runs in test/dhcp/helpers/runner.ts with the appliance's LinkWatcher (`watch`).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { getIp, getMessageType, Opt } from '../../appliance/dhcp/options';
import { decodePacket } from '../../appliance/dhcp/packet';
import {
  deleteNamespace,
  dhcpTypes,
  missingTools,
  netnsUnavailable,
  run,
  sh,
  startCapture,
  startRunner,
  startTcpdump,
  type Runner,
} from '../dhcp/helpers/netns';

const skip = netnsUnavailable() ?? (missingTools('udhcpc', 'tcpdump').length ? `missing ${missingTools('udhcpc', 'tcpdump').join(', ')}` : undefined);
const MAC = '02:00:00:00:00:c1';
/** udhcpc options making it an iPXE client (user class "iPXE", option 77) on BIOS (option 93 = 0). */
const IPXE = ['-V', 'PXEClient:Arch:00000:UNDI:002001', '-x', '0x5d:0000', '-x', '0x4d:69505845'];

describe.skipIf(skip !== undefined)(`DHCP service and its network, in namespaces${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** Server namespace with bridge br0 (down, no address, no ports) and an empty client namespace. */
  function lab(tag: string) {
    const server = `nb-net-${tag}s-${process.pid}`;
    const client = `nb-net-${tag}c-${process.pid}`;
    for (const ns of [server, client]) deleteNamespace(ns);
    const dir = mkdtempSync(join(tmpdir(), `nb-net-${tag}-`));
    cleanups.push(() => {
      [client, server].forEach(deleteNamespace);
      rmSync(dir, { recursive: true, force: true });
    });
    sh('ip', ['netns', 'add', server]);
    sh('ip', ['netns', 'add', client]);
    for (const ns of [server, client]) sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', server, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', ['-n', server, 'link', 'set', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    return { server, client, dir };
  }

  function startService(net: { server: string; dir: string }, name: string, conflictProbeSeconds = 0): Runner {
    const r = startRunner(net.server, net.dir, name, {
      config: {
        dhcp: {
          mode: 'full',
          interface: 'br0',
          range: ['198.18.0.100', '198.18.0.120'],
          netmask: '255.255.255.0',
          router: '',
          dns: [],
          leaseSeconds: 600,
          conflictProbeSeconds,
        },
        boot: { unknownClients: 'menu' },
        http: { port: 8080 },
      },
      serverAddress: 'auto',
      dbFile: join(net.dir, `${name}.db`),
      clients: [],
      watch: { intervalMs: 300 },
      logLevel: 'info',
    });
    cleanups.push(() => r.stop());
    return r;
  }

  /** One udhcpc run in the client namespace; returns the replies a socket beside it received. */
  async function ask(net: { client: string; dir: string }, dev: string, prefix: string, extra: string[] = []) {
    const cap = startCapture(net.client, net.dir, prefix, 68, 2, 8);
    await cap.ready;
    const r = run('ip', ['netns', 'exec', net.client, 'udhcpc', '-i', dev, '-n', '-q', '-t', '3', '-T', '1', '-s', '/bin/true', ...extra], 15_000);
    const replies = (await cap.done).map((b) => decodePacket(b));
    return { out: r.out, replies };
  }

  it('starts before its bridge is up, has carrier or an address, serves once they come, and follows an address change', async () => {
    const net = lab('up');
    const dhcp = startService(net, 'late');
    const ready = await dhcp.waitFor(/^READY/);
    // No address: running is not claimed, the reason is given, nothing is bound.
    expect(JSON.parse(ready.slice(6))).toMatchObject({
      state: 'starting',
      listen: [],
      detail: expect.stringMatching(/waiting for an IPv4 address on br0 \(down\)/),
    });

    // The bridge's one port is up but its far end (the client's cable) is not: no carrier.
    sh('ip', ['link', 'add', 'p0', 'netns', net.server, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', net.client]);
    sh('ip', ['-n', net.client, 'link', 'set', 'eth0', 'address', MAC]);
    sh('ip', ['-n', net.server, 'link', 'set', 'p0', 'master', 'br0']);
    sh('ip', ['-n', net.server, 'link', 'set', 'p0', 'up']);
    sh('ip', ['-n', net.server, 'link', 'set', 'br0', 'up']);
    await dhcp.waitFor(/^NETWORK .*"state":"no-carrier","address":""/, 10_000);
    // With an address (still no carrier) the service binds already.
    sh('ip', ['-n', net.server, 'addr', 'add', '198.18.0.1/24', 'dev', 'br0']);
    await dhcp.waitFor(/^NETWORK .*"state":"no-carrier".*"address":"198\.18\.0\.1"/, 10_000);
    const bound = await dhcp.waitFor(/^DHCP .*198\.18\.0\.1/, 10_000);
    expect(JSON.parse(bound.slice(5))).toMatchObject({ state: 'running', listen: ['udp 0.0.0.0:67', 'udp 198.18.0.1:67'] });

    // The client's end comes up: carrier.
    sh('ip', ['-n', net.client, 'link', 'set', 'eth0', 'up']);
    await dhcp.waitFor(/^NETWORK .*"state":"up"/, 10_000);

    const first = await ask(net, 'eth0', 'a', IPXE);
    expect(first.out).toMatch(/lease of 198\.18\.0\.1\d\d obtained from 198\.18\.0\.1/);
    const offer = first.replies.find((p) => getMessageType(p) === 'offer')!;
    expect(offer.siaddr).toBe('198.18.0.1');
    expect(getIp(offer, Opt.serverId)).toBe('198.18.0.1');
    expect(offer.file).toMatch(/^http:\/\/198\.18\.0\.1:8080\/boot\/02-00-00-00-00-c1\.ipxe/);

    // The router hands the box a new address.
    sh('ip', ['-n', net.server, 'addr', 'del', '198.18.0.1/24', 'dev', 'br0']);
    sh('ip', ['-n', net.server, 'addr', 'add', '198.18.0.2/24', 'dev', 'br0']);
    const moved = await dhcp.waitFor(/^DHCP .*"address":"198\.18\.0\.2"/, 10_000);
    expect(JSON.parse(moved.slice(5))).toMatchObject({ state: 'running', listen: ['udp 0.0.0.0:67', 'udp 198.18.0.2:67'] });

    const second = await ask(net, 'eth0', 'b', IPXE);
    expect(second.out).toMatch(/obtained from 198\.18\.0\.2/);
    for (const p of second.replies) {
      expect(p.siaddr).toBe('198.18.0.2');
      expect(getIp(p, Opt.serverId)).toBe('198.18.0.2');
      expect(p.file).toMatch(/^http:\/\/198\.18\.0\.2:8080\/boot\//);
    }
    expect(second.replies.map(getMessageType)).toEqual(['offer', 'ack']);

    // Losing the address stops serving, and says so.
    sh('ip', ['-n', net.server, 'addr', 'del', '198.18.0.2/24', 'dev', 'br0']);
    const lost = await dhcp.waitFor(/^DHCP .*waiting for an IPv4 address on br0 \(no-address\)/, 10_000);
    expect(JSON.parse(lost.slice(5))).toMatchObject({ state: 'starting', listen: [] });
  }, 60_000);

  it('answers each request once when the box hears the client on two interfaces of one LAN (regression: double OFFER/ACK)', async () => {
    // Client namespace: a switch (bridge sw) with the client's own port and two cables to the box,
    // one into the box's bridge br0 (198.18.0.1/24), one to its second NIC eth1 (198.18.0.9/24):
    // a box with two interfaces on one LAN (a Pi on Ethernet and Wi-Fi, a host whose bridge and
    // uplink both see the clients). Every broadcast reaches the wildcard socket twice.
    const net = lab('once');
    sh('ip', ['-n', net.server, 'addr', 'add', '198.18.0.1/24', 'dev', 'br0']);
    sh('ip', ['-n', net.server, 'link', 'set', 'br0', 'up']);
    sh('ip', ['-n', net.client, 'link', 'add', 'sw', 'type', 'bridge']);
    sh('ip', ['-n', net.client, 'link', 'set', 'sw', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    sh('ip', ['-n', net.client, 'link', 'set', 'sw', 'up']);
    sh('ip', ['link', 'add', 'p0', 'netns', net.server, 'type', 'veth', 'peer', 'name', 'up0', 'netns', net.client]);
    sh('ip', ['link', 'add', 'eth1', 'netns', net.server, 'type', 'veth', 'peer', 'name', 'up1', 'netns', net.client]);
    sh('ip', ['-n', net.client, 'link', 'add', 'cl', 'type', 'veth', 'peer', 'name', 'eth0']);
    sh('ip', ['-n', net.client, 'link', 'set', 'eth0', 'address', MAC]);
    sh('ip', ['-n', net.server, 'link', 'set', 'p0', 'master', 'br0']);
    sh('ip', ['-n', net.server, 'addr', 'add', '198.18.0.9/24', 'dev', 'eth1']);
    for (const dev of ['p0', 'eth1']) sh('ip', ['-n', net.server, 'link', 'set', dev, 'up']);
    for (const dev of ['up0', 'up1', 'cl']) sh('ip', ['-n', net.client, 'link', 'set', dev, 'master', 'sw']);
    for (const dev of ['up0', 'up1', 'cl', 'eth0']) sh('ip', ['-n', net.client, 'link', 'set', dev, 'up']);

    const dhcp = startService(net, 'once');
    await dhcp.waitFor(/^DHCP .*"state":"running"|^READY .*"state":"running"/, 10_000);
    const wire = startTcpdump(net.client, 'eth0');
    await wire.ready;
    const r = run('ip', ['netns', 'exec', net.client, 'udhcpc', '-i', 'eth0', '-n', '-q', '-t', '3', '-T', '2', '-s', '/bin/true'], 15_000);
    expect(r.out).toMatch(/lease of 198\.18\.0\.1\d\d obtained/);
    await new Promise((res) => setTimeout(res, 500)); // a late second copy would arrive within this
    const types = dhcpTypes(await wire.stop());
    // udhcpc may repeat a DISCOVER the moment the ports come up; each request it sends is one
    // answer on the wire, never two.
    const count = (t: string) => types.filter((x) => x === t).length;
    expect(count('Request')).toBe(1);
    expect({ offers: count('Offer'), acks: count('ACK') }).toEqual({ offers: 1, acks: 1 });
    await dhcp.stop();
    const counters = JSON.parse(dhcp.lines.find((l) => l.startsWith('STOPPED'))!.slice(8));
    // Every request reached the service twice; the second copies were dropped.
    expect(counters).toMatchObject({ offers: 1, requests: 1, acks: 1, ignored: counters.discovers + 1 });
  }, 45_000);

  it.skipIf(missingTools('dnsmasq').length > 0)(
    'full mode probes again on a new address and refuses to serve where another DHCP server answers',
    async () => {
      const net = lab('probe');
      sh('ip', ['link', 'add', 'p0', 'netns', net.server, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', net.client]);
      sh('ip', ['-n', net.server, 'link', 'set', 'p0', 'master', 'br0']);
      for (const [ns, dev] of [
        [net.server, 'p0'],
        [net.server, 'br0'],
        [net.client, 'eth0'],
      ])
        sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      sh('ip', ['-n', net.server, 'addr', 'add', '198.18.0.1/24', 'dev', 'br0']);
      const dhcp = startService(net, 'probe', 1);
      await dhcp.waitFor(/^READY .*"state":"running"/, 15_000);

      // Another DHCP server appears on the segment (the box was moved, or someone plugged a router in).
      sh('ip', ['-n', net.client, 'addr', 'add', '198.18.0.50/24', 'dev', 'eth0']);
      const other = spawn(
        'ip',
        [
          'netns',
          'exec',
          net.client,
          'dnsmasq',
          '--no-daemon',
          '--conf-file=/dev/null',
          '--port=0',
          '--interface=eth0',
          '--bind-interfaces',
          '--dhcp-range=198.18.0.200,198.18.0.210,255.255.255.0,10m',
          `--dhcp-leasefile=${join(net.dir, 'dnsmasq.leases')}`,
          '--no-ping',
        ],
        { stdio: 'ignore' },
      );
      cleanups.push(() => void other.kill('SIGTERM'));
      await new Promise((r) => setTimeout(r, 800));

      sh('ip', ['-n', net.server, 'addr', 'del', '198.18.0.1/24', 'dev', 'br0']);
      sh('ip', ['-n', net.server, 'addr', 'add', '198.18.0.2/24', 'dev', 'br0']);
      const refused = await dhcp.waitFor(/^DHCP .*"state":"failed"/, 15_000);
      expect(JSON.parse(refused.slice(5))).toMatchObject({ listen: [], detail: expect.stringMatching(/another DHCP server answers on br0: 198\.18\.0\.50/) });
    },
    45_000,
  );

  it('of two appliance processes started together only one serves DHCP (a per-namespace lock on port 67)', async () => {
    const net = lab('two');
    sh('ip', ['link', 'add', 'p0', 'netns', net.server, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', net.client]);
    sh('ip', ['-n', net.client, 'link', 'set', 'eth0', 'address', MAC]);
    sh('ip', ['-n', net.server, 'link', 'set', 'p0', 'master', 'br0']);
    for (const [ns, dev] of [
      [net.server, 'p0'],
      [net.server, 'br0'],
      [net.client, 'eth0'],
    ])
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    sh('ip', ['-n', net.server, 'addr', 'add', '198.18.0.1/24', 'dev', 'br0']);
    // Two processes started together (on a loaded machine either may get there first): exactly
    // one serves, the other stops at once naming the port.
    const first = startService(net, 'first', 2);
    await new Promise((r) => setTimeout(r, 300));
    const second = startService(net, 'second', 2);
    const outcomes = await Promise.all([first, second].map((p) => p.waitFor(/^FATAL|^READY/, 20_000)));
    expect(outcomes.filter((o) => /^FATAL .*port 67/.test(o)).length, outcomes.join('\n')).toBe(1);
    expect(outcomes.filter((o) => /^READY .*"state":"running"/.test(o)).length, outcomes.join('\n')).toBe(1);

    const wire = startTcpdump(net.client, 'eth0');
    await wire.ready;
    const r = run('ip', ['netns', 'exec', net.client, 'udhcpc', '-i', 'eth0', '-n', '-q', '-t', '3', '-T', '2', '-s', '/bin/true'], 15_000);
    expect(r.out).toMatch(/obtained from 198\.18\.0\.1,/);
    await new Promise((res) => setTimeout(res, 500));
    const types = dhcpTypes(await wire.stop());
    expect({ offers: types.filter((t) => t === 'Offer').length, acks: types.filter((t) => t === 'ACK').length }).toEqual({ offers: 1, acks: 1 });
  }, 45_000);
});
