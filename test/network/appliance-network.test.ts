/**
 * The whole appliance (appliance/main/main.ts serve, run with tsx) riding out its network
 * (issue #14), in namespaces this file creates and deletes: started while its bridge is down and
 * without carrier or address, GET /api/status shows each state; DHCP serves a real client once
 * carrier and an address come, and follows the address when it changes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deleteNamespace, dhcpTypes, missingTools, netnsUnavailable, run, sh, startTcpdump } from '../dhcp/helpers/netns';

const REPO = join(__dirname, '../..');
const TOOLS = ['udhcpc', 'curl', 'tcpdump'];
const skip = netnsUnavailable() ?? (missingTools(...TOOLS).length ? `missing ${missingTools(...TOOLS).join(', ')}` : undefined);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe.skipIf(skip !== undefined)(`appliance network status, in namespaces${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const server = `nb-net-aps-${process.pid}`;
  const client = `nb-net-apc-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'nb-net-app-'));
  let proc: ChildProcess | undefined;
  let output = '';
  afterAll(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM');
      await Promise.race([new Promise((r) => proc!.once('exit', r)), sleep(8000)]);
    }
    [client, server].forEach(deleteNamespace);
    rmSync(dir, { recursive: true, force: true });
  });

  /** GET /api/status inside the server namespace (as localhost: the Host check admits it). */
  async function status(): Promise<{
    serverAddress: string;
    network: Record<string, unknown>;
    services: { name: string; state: string; listen: string[]; detail?: string }[];
  }> {
    const token = readFileSync(join(dir, 'data/admin.token'), 'utf8').trim();
    const r = run(
      'ip',
      ['netns', 'exec', server, 'curl', '-sS', '--max-time', '3', '-H', `Authorization: Bearer ${token}`, 'http://127.0.0.1:8080/api/status'],
      5000,
    );
    return JSON.parse(r.out);
  }
  /** Polls status until `ok` holds (bounded). */
  async function until(ok: (s: Awaited<ReturnType<typeof status>>) => boolean, what: string, ms = 10_000) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
      try {
        last = await status();
        if (ok(last)) return last;
      } catch {
        /* not up yet */
      }
      await sleep(200);
    }
    throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(last)}\n${output.slice(-3000)}`);
  }
  const dhcpOf = (s: Awaited<ReturnType<typeof status>>) => s.services.find((x) => x.name === 'dhcp')!;

  it('starts without carrier or address, reports each state, serves once they come and follows a new address', async () => {
    for (const ns of [server, client]) deleteNamespace(ns);
    sh('ip', ['netns', 'add', server]);
    sh('ip', ['netns', 'add', client]);
    for (const ns of [server, client]) sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', server, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', ['-n', server, 'link', 'set', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
    sh('ip', ['link', 'add', 'p0', 'netns', server, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client]);
    sh('ip', ['-n', server, 'link', 'set', 'p0', 'master', 'br0']);
    sh('ip', ['-n', server, 'link', 'set', 'p0', 'up']);
    sh('ip', ['-n', client, 'link', 'set', 'eth0', 'address', '02:00:00:00:00:c1']);

    const config = {
      dataDir: join(dir, 'data'),
      serverAddress: 'auto',
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
        conflictProbeSeconds: 1,
      },
      boot: { ipxeDir: '/usr/lib/ipxe' },
      mdns: { enabled: false },
      log: { level: 'info', format: 'json' },
    };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    proc = spawn(
      'ip',
      ['netns', 'exec', server, join(REPO, 'node_modules/.bin/tsx'), join(REPO, 'appliance/main/main.ts'), 'serve', '--config', join(dir, 'config.json')],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.on('data', (d) => (output += d));
    proc.stderr!.on('data', (d) => (output += d));
    for (let i = 0; i < 100 && !existsSync(join(dir, 'data/admin.token')); i++) await sleep(100);

    // br0 is down: the appliance runs anyway and says why DHCP waits.
    let s = await until((x) => x.network?.state === 'down', 'state down', 30_000);
    expect(s.network).toMatchObject({ interface: 'br0', address: '', leased: false });
    expect(dhcpOf(s)).toMatchObject({ state: 'starting', listen: [], detail: expect.stringMatching(/waiting for an IPv4 address on br0/) });

    sh('ip', ['-n', server, 'link', 'set', 'br0', 'up']);
    s = await until((x) => x.network?.state === 'no-carrier', 'no-carrier');
    expect(s.network.address).toBe('');

    sh('ip', ['-n', server, 'addr', 'add', '198.18.0.1/24', 'dev', 'br0']);
    s = await until((x) => x.network?.address === '198.18.0.1' && dhcpOf(x).state === 'running', 'an address and DHCP running');
    expect(s.network.state).toBe('no-carrier');
    expect(s.serverAddress).toBe('198.18.0.1');
    expect(dhcpOf(s).listen).toEqual(['udp 0.0.0.0:67', 'udp 198.18.0.1:67']);

    sh('ip', ['-n', client, 'link', 'set', 'eth0', 'up']);
    await until((x) => x.network?.state === 'up', 'up');
    const first = run('ip', ['netns', 'exec', client, 'udhcpc', '-i', 'eth0', '-n', '-q', '-t', '3', '-T', '1', '-s', '/bin/true'], 15_000);
    expect(first.out).toMatch(/lease of 198\.18\.0\.1\d\d obtained from 198\.18\.0\.1,/);

    sh('ip', ['-n', server, 'addr', 'del', '198.18.0.1/24', 'dev', 'br0']);
    sh('ip', ['-n', server, 'addr', 'add', '198.18.0.2/24', 'dev', 'br0']);
    s = await until((x) => x.serverAddress === '198.18.0.2' && dhcpOf(x).listen.includes('udp 198.18.0.2:67'), 'the new address');
    expect(s.network).toMatchObject({ state: 'up', address: '198.18.0.2' });
    const second = run('ip', ['netns', 'exec', client, 'udhcpc', '-i', 'eth0', '-n', '-q', '-t', '3', '-T', '1', '-s', '/bin/true'], 15_000);
    expect(second.out).toMatch(/obtained from 198\.18\.0\.2,/);

    // Regression (the double answer): two DHCP mode changes at once each started a DHCP service,
    // both held port 67, and every broadcast request got two answers (events recorded twice).
    const token = readFileSync(join(dir, 'data/admin.token'), 'utf8').trim();
    const patch = (mode: string) =>
      new Promise<void>((res) =>
        spawn(
          'ip',
          [
            'netns',
            'exec',
            server,
            'curl',
            '-sS',
            '--max-time',
            '10',
            '-X',
            'PATCH',
            '-H',
            `Authorization: Bearer ${token}`,
            '-H',
            'Content-Type: application/json',
            '--data',
            JSON.stringify({ dhcp: { mode } }),
            'http://127.0.0.1:8080/api/settings',
          ],
          { stdio: 'ignore' },
        ).once('exit', () => res()),
      );
    await Promise.all([patch('proxy'), patch('proxy')]);
    await Promise.all([patch('full'), patch('full')]);
    s = await until((x) => dhcpOf(x).state === 'running' && dhcpOf(x).listen.includes('udp 198.18.0.2:67'), 'DHCP back in full mode');
    expect(s.services.filter((x) => x.name === 'dhcp')).toHaveLength(1);
    const wire = startTcpdump(client, 'eth0');
    await wire.ready;
    const third = run('ip', ['netns', 'exec', client, 'udhcpc', '-i', 'eth0', '-n', '-q', '-t', '3', '-T', '2', '-s', '/bin/true'], 15_000);
    expect(third.out).toMatch(/obtained from 198\.18\.0\.2,/);
    await sleep(500);
    const types = dhcpTypes(await wire.stop());
    expect({ offers: types.filter((t) => t === 'Offer').length, acks: types.filter((t) => t === 'ACK').length }).toEqual({ offers: 1, acks: 1 });
  }, 90_000);
});
