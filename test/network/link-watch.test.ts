/**
 * LinkWatcher (issue #14) against a fake /sys/class/net tree, a fake address reader and a fake
 * clock: the states a box goes through while its network comes and goes, and address changes.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { ipAddressReader, LinkWatcher, nodeAddresses, parseIpAddr, type LinkAddress, type LinkStatus } from '../../appliance/core/link-watch';
import { silentLogger } from '../../appliance/core/log';

const flush = () => new Promise<void>((r) => setImmediate(r));

describe('LinkWatcher', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  function fakeSys() {
    const root = mkdtempSync(join(tmpdir(), 'nb-sysnet-'));
    dirs.push(root);
    const dev = join(root, 'eth0');
    return {
      root,
      /** flags in hex as sysfs prints them; carrier undefined = file unreadable (interface down). */
      set(flags: string | undefined, carrier?: '0' | '1') {
        rmSync(dev, { recursive: true, force: true });
        if (flags === undefined) return;
        mkdirSync(dev);
        writeFileSync(join(dev, 'flags'), `${flags}\n`);
        if (carrier !== undefined) writeFileSync(join(dev, 'carrier'), `${carrier}\n`);
      },
    };
  }

  it('goes no-interface -> down -> no-carrier -> up and follows address changes, polling on the clock', async () => {
    const sys = fakeSys();
    const clock = new FakeClock(1000);
    let addrs: LinkAddress[] = [];
    const w = new LinkWatcher({ interface: 'eth0', clock, log: silentLogger(), intervalMs: 1500, sysNet: sys.root, addresses: async () => addrs });
    const seen: LinkStatus[] = [];
    w.onChange((s) => seen.push(s));
    await w.start();
    expect(w.link()).toMatchObject({ interface: 'eth0', state: 'no-interface', address: '', since: 1000 });

    sys.set('0x1002'); // exists, not IFF_UP
    clock.advance(1500);
    await flush();
    expect(w.link()).toMatchObject({ state: 'down', since: 2500 });

    sys.set('0x1003', '0'); // up, no carrier, an address already configured (a bridge without ports)
    addrs = [{ address: '198.18.0.1', prefixlen: 24, ifname: 'eth0', dynamic: false }];
    clock.advance(1500);
    await flush();
    expect(w.link()).toMatchObject({ state: 'no-carrier', address: '198.18.0.1', prefixlen: 24, since: 4000 });

    sys.set('0x1003', '1');
    clock.advance(1500);
    await flush();
    expect(w.link()).toMatchObject({ state: 'up', address: '198.18.0.1', dynamic: false });

    // Nothing changes: no event, `since` stays.
    clock.advance(1500);
    await flush();
    expect(seen).toHaveLength(3);

    addrs = [{ address: '198.18.0.7', prefixlen: 24, ifname: 'eth0', dynamic: true }];
    clock.advance(1500);
    await flush();
    expect(w.link()).toMatchObject({ state: 'up', address: '198.18.0.7', dynamic: true, since: 8500 });

    addrs = [];
    clock.advance(1500);
    await flush();
    expect(w.link()).toMatchObject({ state: 'no-address', address: '' });
    expect(seen.map((s) => s.state)).toEqual(['down', 'no-carrier', 'up', 'up', 'no-address']);

    await w.stop();
    expect(clock.pending).toBe(0);
  });

  it('treats a failing address read as no address, and watches every interface for ""', async () => {
    const clock = new FakeClock();
    const sys = fakeSys();
    sys.set('0x1003', '1');
    const failing = new LinkWatcher({
      interface: 'eth0',
      clock,
      log: silentLogger(),
      sysNet: sys.root,
      addresses: async () => {
        throw new Error('Device "eth0" does not exist.');
      },
    });
    await failing.start();
    expect(failing.link().state).toBe('no-address');
    await failing.stop();

    const any = new LinkWatcher({
      interface: '',
      clock,
      log: silentLogger(),
      sysNet: sys.root,
      addresses: async (name) => (name === '' ? [{ address: '10.0.0.5', prefixlen: 8, ifname: 'enp1s0', dynamic: true }] : []),
    });
    await any.start();
    expect(any.link()).toMatchObject({ interface: '', state: 'up', address: '10.0.0.5', dynamic: true });
    await any.stop();
    expect(clock.pending).toBe(0);
  });

  it('parses `ip -j -4 addr`: loopback and host scope left out, dynamic from the flag or a finite lifetime', () => {
    const json = JSON.stringify([
      {
        ifname: 'lo',
        flags: ['LOOPBACK', 'UP'],
        addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host', valid_life_time: 4294967295 }],
      },
      {
        ifname: 'eth0',
        flags: ['BROADCAST', 'UP'],
        addr_info: [
          { family: 'inet', local: '192.168.1.20', prefixlen: 24, scope: 'global', dynamic: true, valid_life_time: 86000 },
          { family: 'inet', local: '192.168.1.21', prefixlen: 24, scope: 'global', valid_life_time: 4294967295 },
          { family: 'inet', local: '192.168.1.22', prefixlen: 24, scope: 'global', valid_life_time: 600 },
        ],
      },
    ]);
    expect(parseIpAddr(json)).toEqual([
      { address: '192.168.1.20', prefixlen: 24, ifname: 'eth0', dynamic: true },
      { address: '192.168.1.21', prefixlen: 24, ifname: 'eth0', dynamic: false },
      { address: '192.168.1.22', prefixlen: 24, ifname: 'eth0', dynamic: true },
    ]);
    expect(parseIpAddr('')).toEqual([]);
    // A named interface (dhcp.interface "lo" in tests) keeps its loopback address.
    expect(parseIpAddr(json, false)[0]).toEqual({ address: '127.0.0.1', prefixlen: 8, ifname: 'lo', dynamic: false });
  });

  it("reads loopback with `ip` and with Node's list alike (the fallback without iproute2)", async () => {
    expect(nodeAddresses('lo')).toEqual([{ address: '127.0.0.1', prefixlen: 8, ifname: 'lo', dynamic: false }]);
    expect(await ipAddressReader('lo')).toEqual(nodeAddresses('lo'));
  });
});
