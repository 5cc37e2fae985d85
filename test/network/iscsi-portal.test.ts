/**
 * The iSCSI portal address follows the box's address (issue #14): the appliance hands
 * IscsiServer an options object whose `portalAddress` is a getter over the link watcher's
 * address, and SendTargets reads it per request, so a client that logs in after an address
 * change is told the new portal.
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

  it('SendTargets announces the current address, read per request', async () => {
    let address = '198.18.0.1';
    const disk = new MemoryDisk('portal-disk', 64);
    server = new IscsiServer({
      host: '127.0.0.1',
      port: 0,
      clock: new FakeClock(),
      log: silentLogger(),
      maxConnections: 4,
      nopInIntervalSeconds: 30,
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
