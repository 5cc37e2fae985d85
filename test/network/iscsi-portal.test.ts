/**
 * The iSCSI portal address should follow the box's address (issue #14). The appliance hands
 * IscsiServer an options object whose `portalAddress` is a getter over the link watcher's
 * address, but IscsiServer builds its connection context once (ctxCache) with the portal as a
 * string, so SendTargets keeps the address of the first connection. Marked `it.fails` until
 * appliance/iscsi/server.ts reads the portal per request (its owner's change; then flip it).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { IscsiServer } from '../../appliance/iscsi/server';
import { IQN_INITIATOR, StaticDirectory, target } from '../iscsi/harness';
import { TestInitiator } from '../iscsi/initiator';
import { MemoryDisk } from '../iscsi/volumes';

const T = 'iqn.2026-11.local.netboot:portal';

describe('iSCSI portal address', () => {
  const open: TestInitiator[] = [];
  let server: IscsiServer | undefined;
  afterAll(async () => {
    for (const i of open) i.destroy();
    await server?.stop();
  });

  it('SendTargets announces the current address, read per request (fails: the portal is cached at the first connection)', async () => {
    let address = '198.18.0.1';
    const disk = new MemoryDisk('portal-disk', 64);
    server = new IscsiServer({
      host: '127.0.0.1', port: 0, clock: new FakeClock(), log: silentLogger(), maxConnections: 4, nopInIntervalSeconds: 30,
      directory: new StaticDirectory([target(T, [{ lun: 0, open: () => disk.open(), readOnly: true }])]),
      get portalAddress() {
        return address;
      },
    });
    await server.start();
    const discover = async () => {
      const d = await TestInitiator.connect(server!.port);
      open.push(d);
      expect(await d.login({ initiatorName: IQN_INITIATOR, sessionType: 'Discovery' })).toBe(0);
      return (await d.text([['SendTargets', 'All']])).filter(([k]) => k === 'TargetAddress').map(([, v]) => v);
    };
    expect(await discover()).toEqual([`198.18.0.1:${server.port},1`]);
    address = '198.18.0.2';
    expect(await discover()).toEqual([`198.18.0.2:${server.port},1`]);
  });
});
