/**
 * os-overlay's netboot-fixed-address (issue #14): the static configuration it writes for each
 * network stack, run against a fake root (--root), never against this machine's network.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const SCRIPT = join(__dirname, '../../os-overlay/rootfs/usr/bin/netboot-fixed-address');

describe('netboot-fixed-address', () => {
  const roots: string[] = [];
  afterEach(() => roots.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
  function fakeRoot(files: Record<string, string>): string {
    const root = mkdtempSync(join(tmpdir(), 'nb-fixed-'));
    roots.push(root);
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(join(root, f, '..'), { recursive: true });
      writeFileSync(join(root, f), text);
    }
    return root;
  }
  const run = (root: string, ...args: string[]) => execFileSync('sh', [SCRIPT, '--root', root, ...args], { encoding: 'utf8' });

  it('ifupdown: a static stanza in interfaces.d for dhcp.interface, the DHCP lines commented out, a backup kept', () => {
    const interfaces = 'source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\nallow-hotplug end0\niface end0 inet dhcp\n';
    const root = fakeRoot({
      'etc/network/interfaces': interfaces,
      'etc/netboot/config.json': '{ "dhcp": { "mode": "proxy", "interface": "end0" } }',
      'etc/resolv.conf': 'nameserver 127.0.0.53\nnameserver 192.168.1.1\n',
    });
    run(root, '--address', '192.168.1.5/22', '--gateway', '192.168.1.1');
    expect(readFileSync(join(root, 'etc/network/interfaces.d/netboot-end0'), 'utf8')).toContain(
      'auto end0\niface end0 inet static\n    address 192.168.1.5\n    netmask 255.255.252.0\n    gateway 192.168.1.1\n    dns-nameservers 192.168.1.1\n',
    );
    const now = readFileSync(join(root, 'etc/network/interfaces'), 'utf8');
    expect(now).toContain('# netboot-fixed-address: allow-hotplug end0\n# netboot-fixed-address: iface end0 inet dhcp\n');
    expect(now).toContain('iface lo inet loopback');
    expect(readFileSync(join(root, 'etc/network/interfaces.netboot-bak'), 'utf8')).toBe(interfaces);
  });

  it('networkd: a .network file that sorts before catch-all DHCP ones', () => {
    const root = fakeRoot({});
    run(root, '--stack', 'networkd', '--interface', 'eth0', '--address', '10.0.0.2/24', '--gateway', '10.0.0.1', '--dns', '10.0.0.1 9.9.9.9');
    expect(readFileSync(join(root, 'etc/systemd/network/10-netboot-eth0.network'), 'utf8')).toContain(
      '[Match]\nName=eth0\n\n[Network]\nAddress=10.0.0.2/24\nGateway=10.0.0.1\nDNS=10.0.0.1\nDNS=9.9.9.9\n',
    );
  });

  it('dhcpcd: a static block appended once, replaced by a second run; --dry-run changes nothing', () => {
    const root = fakeRoot({ 'etc/dhcpcd.conf': 'hostname\nclientid\n' });
    run(root, '--stack', 'dhcpcd', '--interface', 'eth0', '--address', '192.168.1.5/24', '--gateway', '192.168.1.1', '--dns', '192.168.1.1');
    run(root, '--stack', 'dhcpcd', '--interface', 'eth0', '--address', '192.168.1.6/24', '--gateway', '192.168.1.1', '--dns', '192.168.1.1');
    const conf = readFileSync(join(root, 'etc/dhcpcd.conf'), 'utf8');
    expect(conf.match(/^interface eth0$/gm)).toHaveLength(1);
    expect(conf).toContain('static ip_address=192.168.1.6/24\nstatic routers=192.168.1.1\n');
    expect(conf).not.toContain('192.168.1.5');
    expect(conf.startsWith('hostname\nclientid\n')).toBe(true);

    const dry = fakeRoot({});
    expect(run(dry, '--dry-run', '--stack', 'networkd', '--interface', 'eth0', '--address', '10.0.0.2/24')).toContain('Address=10.0.0.2/24');
    expect(existsSync(join(dry, 'etc/systemd'))).toBe(false);
  });

  it('refuses an address without a prefix length', () => {
    const root = fakeRoot({});
    expect(() =>
      execFileSync('sh', [SCRIPT, '--root', root, '--stack', 'networkd', '--interface', 'eth0', '--address', '10.0.0.2'], { stdio: 'pipe' }),
    ).toThrow(/A\.B\.C\.D|192\.168\.1\.5\/24/);
  });
});
