/**
 * mDNS follows the box's address (issue #14): after the address changes and the advertiser's
 * refresh() (the appliance calls it on the link watcher's change), a resolver (avahi in a second
 * namespace across a veth pair) resolves `<name>.local` to the new address at once, not after
 * ciao's own 15 s interface poll and the old record's TTL.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const NS_A = `nb-net-mdns-${process.pid}-a`;
const NS_B = `nb-net-mdns-${process.pid}-b`;
const ROOT = join(__dirname, '..', '..');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['ip', 'unshare', 'nsenter', 'avahi-daemon', 'dbus-daemon', 'avahi-resolve'].filter((c) => !has(c));
const skip = process.getuid?.() !== 0 ? 'needs root for network namespaces' : missing.length ? `missing ${missing.join(', ')}` : undefined;

function sh(cmd: string, args: string[], timeoutMs = 10_000) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe.skipIf(skip !== undefined)(`mDNS follows the address${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'nb-net-mdns-'));
  const procs: ChildProcess[] = [];
  afterAll(async () => {
    for (const p of procs.reverse()) {
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGTERM');
        await Promise.race([new Promise((r) => p.once('exit', r)), sleep(5000)]);
      }
    }
    for (const ns of [NS_A, NS_B]) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('resolves <name>.local to the new address right after refresh()', async () => {
    for (const ns of [NS_A, NS_B]) {
      spawnSync('ip', ['netns', 'del', ns]);
      sh('ip', ['netns', 'add', ns]);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    sh('ip', ['-n', NS_A, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS_B]);
    for (const [ns, addr] of [
      [NS_A, '198.18.0.1/24'],
      [NS_B, '198.18.0.9/24'],
    ]) {
      sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'multicast', 'on', 'up']);
      sh('ip', ['-n', ns, 'addr', 'add', addr, 'dev', 'eth0']);
      sh('ip', ['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
    }
    writeFileSync(
      join(dir, 'avahi.conf'),
      [
        '[server]',
        'host-name=nb-querier',
        'use-ipv4=yes',
        'use-ipv6=no',
        'allow-interfaces=eth0',
        '[publish]',
        'publish-addresses=no',
        'publish-hinfo=no',
        'publish-workstation=no',
        'publish-domain=no',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(dir, 'resolver.sh'),
      [
        'set -e',
        'mount -t tmpfs none /run',
        'mkdir -p /run/dbus /run/avahi-daemon',
        'dbus-daemon --system --nofork --nopidfile & D=$!',
        'for i in 1 2 3 4 5 6 7 8 9 10; do [ -S /run/dbus/system_bus_socket ] && break; sleep 0.2; done',
        'avahi-daemon --no-drop-root --no-chroot -f "$1" & A=$!',
        "trap 'kill $A $D 2>/dev/null; wait; exit 0' TERM INT",
        'wait',
        '',
      ].join('\n'),
    );
    const avahi = spawn('ip', ['netns', 'exec', NS_B, 'unshare', '-m', 'sh', join(dir, 'resolver.sh'), join(dir, 'avahi.conf')], { stdio: 'ignore' });
    procs.push(avahi);
    const resolve = () =>
      spawnSync('nsenter', ['-t', String(avahi.pid), '-m', '-n', 'avahi-resolve', '-4', '-n', 'nbfollow.local'], {
        encoding: 'utf8',
        timeout: 8000,
      }).stdout?.trim() ?? '';

    const adv = spawn('ip', ['netns', 'exec', NS_A, process.execPath, '--import', 'tsx', 'test/network/mdns-runner.ts', 'nbfollow', 'eth0'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    procs.push(adv);
    let out = '';
    adv.stdout!.on('data', (d) => (out += d));
    const lines = async (n: number) => {
      for (let i = 0; i < 150 && out.split('\n').filter(Boolean).length < n; i++) await sleep(100);
      return out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    };
    expect((await lines(1))[0]).toMatchObject({ names: { host: 'nbfollow.local' } });
    let seen = '';
    for (let i = 0; i < 20 && !seen.endsWith('198.18.0.1'); i++, await sleep(250)) seen = resolve();
    expect(seen).toBe('nbfollow.local\t198.18.0.1');

    sh('ip', ['-n', NS_A, 'addr', 'del', '198.18.0.1/24', 'dev', 'eth0']);
    sh('ip', ['-n', NS_A, 'addr', 'add', '198.18.0.3/24', 'dev', 'eth0']);
    const t0 = Date.now();
    adv.kill('SIGUSR2');
    expect((await lines(2))[1]).toMatchObject({ names: { host: 'nbfollow.local' } });
    for (let i = 0; i < 20 && !seen.endsWith('198.18.0.3'); i++, await sleep(250)) seen = resolve();
    expect(seen).toBe('nbfollow.local\t198.18.0.3');
    // Well inside ciao's own 15 s poll.
    expect(Date.now() - t0).toBeLessThan(10_000);
  }, 60_000);
});
