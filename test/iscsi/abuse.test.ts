import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { LoginStatus } from '../../appliance/iscsi/constants';
import { IscsiServer } from '../../appliance/iscsi/server';
import { IQN_INITIATOR, StaticDirectory, startTarget, target } from './harness';
import { TestInitiator } from './initiator';
import { MemoryDisk } from './volumes';

/**
 * Issue #13, the iSCSI target under abuse: session takeover by a weaker login, connection
 * slots held by one address, logins and discovery sessions that never end. (Data-In held for
 * an initiator that never reads is in data-in-bound.test.ts: it measures a child's RSS.)
 */

const T = 'iqn.2026-11.local.netboot:abuse';
const CHAP = { user: 'client1', secret: 'abuse-secret-16c' };
const MUTUAL = { ...CHAP, targetUser: 'target1', targetSecret: 'target-secret-16' };
const settle = (ms = 50) => new Promise((r) => setTimeout(r, ms));
/** True when the target closes `i` within ms (real time). */
const closedWithin = (i: TestInitiator, ms: number) => Promise.race([i.whenClosed().then(() => true), settle(ms).then(() => false)]);

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startWith(chap: typeof CHAP | typeof MUTUAL | null) {
  const disk = new MemoryDisk('abuse-disk', 2048);
  const entry = target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }], { chap, exclusiveWriter: true });
  const r = await startTarget([entry], { nopInIntervalSeconds: 0 });
  cleanups.push(() => r.server.stop());
  return { ...r, disk, entry };
}

async function connect(port: number, localAddress?: string): Promise<TestInitiator> {
  const i = await TestInitiator.connect(port, '127.0.0.1', localAddress);
  cleanups.push(() => i.destroy());
  return i;
}

describe('session takeover needs a login at least as strong as the live session (issue #13)', () => {
  it('with CHAP on: a login without CHAP, same name, same or new ISID, is refused; the live session keeps reading', async () => {
    // Regression guard: this already held before the fix (CHAP is required by the target).
    const { port } = await startWith(CHAP);
    const live = await connect(port);
    expect(await live.login({ initiatorName: IQN_INITIATOR, targetName: T, chap: CHAP, isid: '400001370001' })).toBe(0);
    for (const isid of ['400001370001', '400001370002']) {
      const weak = await connect(port);
      expect(await weak.login({ initiatorName: IQN_INITIATOR, targetName: T, isid })).not.toBe(0);
    }
    await settle();
    expect(live.closed).toBe(false);
    expect((await live.read10(0, 8)).status).toBe(0);
  });

  it("a CHAP session is not taken over by a no-CHAP login after the client's CHAP was switched off", async () => {
    // Failed before the fix: the live CHAP session was closed by the unauthenticated login.
    const { port, directory, entry } = await startWith(CHAP);
    const live = await connect(port);
    expect(await live.login({ initiatorName: IQN_INITIATOR, targetName: T, chap: CHAP, isid: '400001370001' })).toBe(0);
    // The integrator now resolves the target without CHAP (an operator turned it off).
    directory.targets = [{ ...entry, chap: null }];
    for (const isid of ['400001370001', '400001370003']) {
      const weak = await connect(port);
      expect(await weak.login({ initiatorName: IQN_INITIATOR, targetName: T, isid })).toBe(LoginStatus.ServiceUnavailable);
    }
    await settle();
    expect(live.closed).toBe(false);
    expect((await live.read10(0, 8)).status).toBe(0);
  });

  it('a mutual-CHAP session is not reinstated by a one-way CHAP login of the same ISID', async () => {
    // Failed before the fix.
    const { port } = await startWith(MUTUAL);
    const live = await connect(port);
    expect(await live.login({ initiatorName: IQN_INITIATOR, targetName: T, chap: { ...CHAP, mutual: true }, isid: '400001370001' })).toBe(0);
    const weaker = await connect(port);
    expect(await weaker.login({ initiatorName: IQN_INITIATOR, targetName: T, chap: CHAP, isid: '400001370001' })).toBe(LoginStatus.ServiceUnavailable);
    await settle();
    expect(live.closed).toBe(false);
    expect((await live.read10(0, 8)).status).toBe(0);
  });

  it('a CHAP login of the same name takes over a CHAP session (iscsistart after iPXE, iBFT credentials, new ISID)', async () => {
    const { port } = await startWith(CHAP);
    const ipxe = await connect(port);
    expect(await ipxe.login({ initiatorName: IQN_INITIATOR, targetName: T, chap: CHAP, isid: '400001370a01', answerPings: false })).toBe(0);
    const os = await connect(port);
    expect(await os.login({ initiatorName: IQN_INITIATOR, targetName: T, chap: CHAP, isid: '400001370b02' })).toBe(0);
    await ipxe.whenClosed();
    expect((await os.write10(4, Buffer.alloc(512, 9))).status).toBe(0);
    // And iscsid's reinstatement (same ISID, TSIH 0) after a dropped connection.
    const again = await connect(port);
    expect(await again.login({ initiatorName: IQN_INITIATOR, targetName: T, chap: CHAP, isid: '400001370b02' })).toBe(0);
    await os.whenClosed();
    expect((await again.read10(4, 1)).data[0]).toBe(9);
  });

  it('with CHAP off, a login of the same name takes over as before', async () => {
    const { port } = await startWith(null);
    const first = await connect(port);
    expect(await first.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '400001370001' })).toBe(0);
    const second = await connect(port);
    expect(await second.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '400001370002' })).toBe(0);
    await first.whenClosed();
    expect((await second.read10(0, 1)).status).toBe(0);
  });
});

describe('connections per source address (issue #13)', () => {
  it('closes the 9th connection from 127.0.0.1 while 127.0.0.2 still logs in', async () => {
    // Failed before the fix: all 9 stayed open (one host could hold every slot).
    const { port, server } = await startWith(null);
    const held: TestInitiator[] = [];
    for (let k = 0; k < 8; k++) held.push(await connect(port));
    const ninth = await connect(port);
    expect(await closedWithin(ninth, 2000)).toBe(true);
    expect(held.some((h) => h.closed)).toBe(false);
    const other = await connect(port, '127.0.0.2');
    expect(await other.login({ initiatorName: IQN_INITIATOR, targetName: T })).toBe(0);
    expect(server.status().counters.connectionsRefused).toBeGreaterThanOrEqual(1);
    // A slot freed by a close is usable again.
    held[0].destroy();
    await settle(100);
    const tenth = await connect(port);
    expect(await tenth.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '400001370009' })).toBe(0);
  });
});

describe('login and discovery timeouts on a fake clock (issue #13)', () => {
  async function fakeServer() {
    const clock = new FakeClock();
    const disk = new MemoryDisk('timeout-disk', 2048);
    const server = new IscsiServer({
      host: '127.0.0.1',
      port: 0,
      clock,
      log: silentLogger(),
      maxConnections: 16,
      nopInIntervalSeconds: 0,
      portalAddress: '127.0.0.1',
      directory: new StaticDirectory([target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }])]),
      loginTimeoutSeconds: 15,
      discoveryTimeoutSeconds: 30,
    });
    await server.start();
    cleanups.push(async () => {
      await server.stop();
      expect(clock.pending).toBe(0);
    });
    return { clock, server };
  }

  it('closes a connection that has not logged in after 15 s; a normal session stays', async () => {
    const { clock, server } = await fakeServer();
    const idle = await connect(server.port);
    const normal = await connect(server.port);
    expect(await normal.login({ initiatorName: IQN_INITIATOR, targetName: T })).toBe(0);
    await settle();
    clock.advance(14_000);
    await settle();
    expect(idle.closed).toBe(false);
    clock.advance(1_000);
    expect(await closedWithin(idle, 2000)).toBe(true);
    clock.advance(600_000);
    await settle();
    expect(normal.closed).toBe(false);
    expect((await normal.read10(0, 1)).status).toBe(0);
  });

  it('closes a discovery session after 30 s, even one that keeps asking', async () => {
    const { clock, server } = await fakeServer();
    const d = await connect(server.port);
    expect(await d.login({ initiatorName: IQN_INITIATOR, sessionType: 'Discovery' })).toBe(0);
    for (let t = 0; t < 29; t++) {
      clock.advance(1_000);
      expect(new Map(await d.text([['SendTargets', 'All']])).get('TargetName')).toBe(T);
    }
    expect(d.closed).toBe(false);
    clock.advance(1_000);
    expect(await closedWithin(d, 2000)).toBe(true);
  });
});

describe('what one connection can make the target hold (issue #13)', () => {
  it('grants only the CmdSN slots unanswered commands leave free: the 129th queued command is ignored, not held', async () => {
    // Failed before the fix: the window moved with ExpCmdSN, so a peer could keep any number of
    // commands waiting on a slow disk (160 accepted here).
    const disk = new MemoryDisk('window-disk', 2048);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const open = async () => {
      const v = await disk.open();
      const read = v.read.bind(v);
      v.read = async (lba, blocks) => {
        await gate;
        return read(lba, blocks);
      };
      return v;
    };
    const r = await startTarget([target(T, [{ lun: 0, open, readOnly: false }])], { nopInIntervalSeconds: 0 });
    cleanups.push(() => r.server.stop());
    const i = await connect(r.port);
    expect(await i.login({ initiatorName: IQN_INITIATOR, targetName: T })).toBe(0);
    const first = i.cmdSN;
    let answered = 0;
    // Sent blindly, ignoring MaxCmdSN, as an abusive initiator would.
    for (let k = 0; k < 160; k++)
      void i.read10(k, 1).then(
        () => answered++,
        () => undefined,
      );
    await settle(200);
    release();
    await settle(500);
    expect(answered).toBe(128);
    // The window moved on by what was answered: CmdSN first+128 (never accepted) is usable now.
    i.cmdSN = (first + 128) >>> 0;
    expect((await i.read10(0, 1)).status).toBe(0);
    expect(i.maxCmdSN - i.cmdSN).toBeGreaterThanOrEqual(100);
  });

  it('writes past the 64 MiB write-buffer budget with unsolicited first bursts land intact', async () => {
    // The over-budget path: the 9th-12th 8 MiB writes hold only their 64 KiB first burst (immediate
    // data + unsolicited Data-Out) until earlier writes free their buffers, then get R2Ts.
    const disk = new MemoryDisk('burst-disk', 12 * 16384);
    const r = await startTarget([target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }])], { nopInIntervalSeconds: 0 });
    cleanups.push(() => r.server.stop());
    const i = await connect(r.port);
    expect(
      await i.login({
        initiatorName: IQN_INITIATOR,
        targetName: T,
        keys: [
          ['InitialR2T', 'No'],
          ['ImmediateData', 'Yes'],
          ['FirstBurstLength', '65536'],
          ['MaxBurstLength', '16776192'],
          ['MaxRecvDataSegmentLength', '262144'],
          ['MaxOutstandingR2T', '1'],
          ['ErrorRecoveryLevel', '0'],
        ],
      }),
    ).toBe(0);
    const datas = Array.from({ length: 12 }, (_, k) => Buffer.alloc(8 << 20, k + 1));
    const results = await Promise.all(
      datas.map((d, k) => {
        const cdb = Buffer.alloc(10);
        cdb[0] = 0x2a;
        cdb.writeUInt32BE(k * 16384, 2);
        cdb.writeUInt16BE(16384, 7);
        return i.command(cdb, { dataOut: d, immediate: 32768, unsolicited: 32768 });
      }),
    );
    expect(results.map((x) => x.status)).toEqual(Array(12).fill(0));
    for (let k = 0; k < 12; k++) {
      const at = k * (8 << 20);
      expect([disk.data[at], disk.data[at + 40000], disk.data[at + (8 << 20) - 1]]).toEqual([k + 1, k + 1, k + 1]);
    }
  }, 30_000);

  it('warns once per address, not once per refused connection', async () => {
    const lines: string[] = [];
    const pino = (await import('pino')).default;
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
    const disk = new MemoryDisk('warn-disk', 64);
    const r = await startTarget([target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }])], { log, extra: { maxConnectionsPerAddress: 1 } });
    cleanups.push(() => r.server.stop());
    await connect(r.port);
    const refused: TestInitiator[] = [];
    for (let k = 0; k < 20; k++) refused.push(await connect(r.port));
    for (const x of refused) expect(await closedWithin(x, 2000)).toBe(true);
    expect(r.server.status().counters.connectionsRefused).toBe(20);
    expect(lines.filter((l) => l.includes('too many connections')).length).toBe(1);
  });
});
