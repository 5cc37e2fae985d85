import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IscsiServer } from '../../appliance/iscsi/server';
import type { BootEvent } from '../../appliance/core/model';
import { IQN_INITIATOR, IQN_INITIATOR2, startTarget, target } from './harness';
import { TestInitiator } from './initiator';
import { MemoryDisk } from './volumes';

const T = 'iqn.2026-11.local.netboot:session';
const T_EXCL = 'iqn.2026-11.local.netboot:exclusive';
const T_RO = 'iqn.2026-11.local.netboot:readonly';
const T_FULL = 'iqn.2026-11.local.netboot:full';

describe('iSCSI sessions against the running target (test initiator)', () => {
  const disk = new MemoryDisk('session-disk', 8192);
  const exclDisk = new MemoryDisk('excl-disk', 2048);
  const roDisk = new MemoryDisk('ro-disk', 2048);
  const fullDisk = new MemoryDisk('full-disk', 2048);
  fullDisk.spaceLimitBlocks = 16;
  let server: IscsiServer;
  let port: number;
  let events: BootEvent[];
  const open: TestInitiator[] = [];

  beforeAll(async () => {
    const r = await startTarget(
      [
        target(
          T,
          [
            { lun: 0, open: () => disk.open(), readOnly: false },
            { lun: 1, open: () => roDisk.open(), readOnly: true },
          ],
          { mac: '52:54:00:aa:00:01' },
        ),
        target(T_EXCL, [{ lun: 0, open: () => exclDisk.open(), readOnly: false }], { exclusiveWriter: true }),
        target(T_RO, [{ lun: 0, open: () => roDisk.open(), readOnly: true }], { allowed: [IQN_INITIATOR] }),
        target(T_FULL, [{ lun: 0, open: () => fullDisk.open(), readOnly: false }]),
        // This suite keeps every session open until afterAll, all from 127.0.0.1: more than the
        // product's 8 connections per address (abuse.test.ts tests that cap).
      ],
      { nopInIntervalSeconds: 1, extra: { maxConnectionsPerAddress: 64 } },
    );
    ({ server, port, events } = r);
  });

  afterAll(async () => {
    for (const i of open) i.destroy();
    await server.stop();
  });

  async function session(opts: Partial<Parameters<TestInitiator['login']>[0]> = {}): Promise<TestInitiator> {
    const i = await TestInitiator.connect(port);
    open.push(i);
    const status = await i.login({ initiatorName: IQN_INITIATOR, targetName: T, ...opts });
    expect(status).toBe(0);
    return i;
  }

  it('writes through R2Ts and reads back through split Data-In, many commands in flight', async () => {
    const i = await session();
    const data = randomBytes(1 << 20); // 1 MiB: 16 R2Ts of 64 KiB, 128 Data-In PDUs of 8 KiB back
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x8a;
    cdb.writeUInt32BE(2048 * 1, 10);
    cdb.writeUInt32BE(100, 6);
    const w = await i.command(cdb, { dataOut: data });
    expect(w.status).toBe(0);
    expect(disk.data.subarray(100 * 512, 100 * 512 + data.length).equals(data)).toBe(true);
    const reads = await Promise.all(Array.from({ length: 64 }, (_, k) => i.read10(100 + k * 32, 32)));
    for (let k = 0; k < 64; k++) {
      expect(reads[k].status).toBe(0);
      expect(reads[k].data.equals(data.subarray(k * 32 * 512, (k + 1) * 32 * 512))).toBe(true);
    }
    const writes = await Promise.all(Array.from({ length: 32 }, (_, k) => i.write10(4000 + k * 8, Buffer.alloc(4096, k + 1))));
    expect(writes.every((r) => r.status === 0)).toBe(true);
    for (let k = 0; k < 32; k++) expect(disk.data[(4000 + k * 8) * 512 + 17]).toBe(k + 1);
  });

  it('negotiates CRC32C digests and still moves data', async () => {
    const i = await session({ digests: true, isid: '400001370001' });
    expect(i.negotiated.get('HeaderDigest')).toBe('CRC32C');
    const data = randomBytes(8192 * 3 + 512);
    expect((await i.write10(300, data)).status).toBe(0);
    const r = await i.read10(300, data.length / 512);
    expect(r.data.equals(data)).toBe(true);
    expect((await i.nop(Buffer.from('ping'))).toString()).toBe('ping');
  });

  it('reports underflow residuals and sense data for bad LBAs, unknown LUNs, read-only LUNs and a full store', async () => {
    const i = await session({ isid: '400001370002' });
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x28;
    cdb.writeUInt16BE(1, 7);
    const under = await i.command(cdb, { edtl: 10000 });
    expect(under.status).toBe(0);
    expect(under.underflow).toBe(true);
    expect(under.residual).toBe(10000 - 512);
    const oob = await i.read10(8192, 1);
    expect(oob.status).toBe(2);
    expect([oob.sense![2] & 0x0f, oob.sense![12], oob.sense![13]]).toEqual([0x05, 0x21, 0x00]);
    const tur = Buffer.alloc(6);
    const nolun = await i.command(tur, { lun: 5 });
    expect([nolun.status, nolun.sense![2] & 0x0f, nolun.sense![12]]).toEqual([2, 0x05, 0x25]);
    const ro = await i.command(Buffer.from('2a000000000000000100', 'hex'), { dataOut: Buffer.alloc(512), lun: 1 });
    expect([ro.status, ro.sense![2] & 0x0f, ro.sense![12], ro.sense![13]]).toEqual([2, 0x07, 0x27, 0x00]);
    const inq = await i.command(Buffer.from('120000006000', 'hex'), { edtl: 96, lun: 1 });
    expect(inq.status).toBe(0);

    const f = await session({ targetName: T_FULL, isid: '400001370003' });
    expect((await f.write10(0, Buffer.alloc(16 * 512, 1))).status).toBe(0);
    const full = await f.write10(100, Buffer.alloc(512, 1));
    expect([full.status, full.sense![2] & 0x0f, full.sense![12], full.sense![13]]).toEqual([2, 0x07, 0x27, 0x07]);
  });

  it('gives each disk its own stable NAA identifier in VPD 0x83', async () => {
    const i = await session({ isid: '400001370004' });
    const vpd = async (lun: number) => (await i.command(Buffer.from('12018300ff00', 'hex'), { edtl: 255, lun })).data;
    const a = await vpd(0);
    const b = await vpd(1);
    const naa = (p: Buffer) => p.subarray(8, 16).toString('hex');
    expect(a[4] & 0x0f).toBe(1); // binary
    expect(a[5] & 0x0f).toBe(3); // NAA
    expect(naa(a)[0]).toBe('3');
    expect(naa(a)).not.toBe(naa(b));
    const again = await session({ isid: '400001370005' });
    const a2 = (await again.command(Buffer.from('12018300ff00', 'hex'), { edtl: 255 })).data;
    expect(naa(a2)).toBe(naa(a));
  });

  it('lists sessions with counters and records boot events; logout ends the session', async () => {
    const i = await session({ isid: '400001370006' });
    await i.write10(10, Buffer.alloc(1024, 9));
    await i.read10(10, 2);
    const row = server.sessions().find((s) => s.id === i.tsih)!;
    expect(row).toMatchObject({ initiatorName: IQN_INITIATOR, target: T, readBytes: 1024, writtenBytes: 1024, readCommands: 1, writeCommands: 1 });
    expect(row.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await i.logout()).toBe(0);
    await i.whenClosed();
    await new Promise((r) => setTimeout(r, 50));
    expect(server.sessions().some((s) => s.id === i.tsih)).toBe(false);
    const mine = events.filter((e) => e.mac === '52:54:00:aa:00:01').map((e) => e.stage);
    expect(mine).toContain('iscsi-login');
    expect(mine).toContain('iscsi-first-read');
    expect(mine).toContain('iscsi-logout');
    const st = server.status();
    expect(st.counters.logins).toBeGreaterThan(0);
    expect(st.counters.pdusIn).toBeGreaterThan(0);
  });

  it('reinstates a session that logs in again with the same ISID (TSIH 0)', async () => {
    const a = await session({ isid: '400001370007' });
    const b = await session({ isid: '400001370007' });
    await a.whenClosed();
    expect((await b.read10(0, 1)).status).toBe(0);
    expect(events.some((e) => e.stage === 'iscsi-disconnect')).toBe(true);
  });

  it('refuses a second read-write initiator on an exclusive target, lets the same initiator take over', async () => {
    const a = await session({ targetName: T_EXCL, isid: '400001370008' });
    const other = await TestInitiator.connect(port);
    open.push(other);
    expect(await other.login({ initiatorName: IQN_INITIATOR2, targetName: T_EXCL })).toBe(0x0301);
    expect(events.some((e) => e.stage === 'iscsi-login-refused' && String(e.detail?.reason).includes('in use'))).toBe(true);
    // iPXE never logs out: the OS's login (same IQN from the iBFT, new ISID) replaces it.
    const b = await session({ targetName: T_EXCL, isid: '400001370009' });
    await a.whenClosed();
    expect((await b.read10(0, 1)).status).toBe(0);
  });

  it('refuses unlisted initiators and unknown targets; discovery lists only permitted targets', async () => {
    const x = await TestInitiator.connect(port);
    open.push(x);
    expect(await x.login({ initiatorName: IQN_INITIATOR2, targetName: T_RO })).toBe(0x0202);
    const y = await TestInitiator.connect(port);
    open.push(y);
    expect(await y.login({ initiatorName: IQN_INITIATOR, targetName: 'iqn.2026-11.local.netboot:nope' })).toBe(0x0203);
    const d = await TestInitiator.connect(port);
    open.push(d);
    expect(await d.login({ initiatorName: IQN_INITIATOR2, sessionType: 'Discovery' })).toBe(0);
    const names = (await d.text([['SendTargets', 'All']])).filter(([k]) => k === 'TargetName').map(([, v]) => v);
    expect(names).toContain(T);
    expect(names).not.toContain(T_RO);
  });

  it('keeps an idle session that never answers NOP-In pings (iPXE)', async () => {
    const i = await session({ isid: '40000137000a', answerPings: false });
    await new Promise((r) => setTimeout(r, 3500));
    expect(i.pingsSeen).toBeGreaterThan(0);
    expect(i.closed).toBe(false);
    expect((await i.read10(0, 1)).status).toBe(0);
  });

  it('drops a session that answered the early ping and then went silent (a powered-off Linux client)', async () => {
    const i = await session({ isid: '40000137000c' });
    // The one early probe goes out within a second of login; this initiator answers it...
    for (let k = 0; k < 30 && i.pingsSeen === 0; k++) await new Promise((r) => setTimeout(r, 100));
    expect(i.pingsSeen).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 100));
    // ...then stops answering, like a machine that lost power: dropped after about two intervals.
    i.answerPings = false;
    for (let k = 0; k < 60 && !i.closed; k++) await new Promise((r) => setTimeout(r, 100));
    expect(i.closed).toBe(true);
  });

  it('ignores commands outside the CmdSN window and goes on', async () => {
    const i = await session({ isid: '40000137000b' });
    const saved = i.cmdSN;
    i.cmdSN = (i.maxCmdSN + 1) >>> 0;
    const ignored = i.read10(0, 1);
    let answered = false;
    void ignored.then(
      () => (answered = true),
      () => undefined,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).toBe(false);
    i.cmdSN = saved;
    expect((await i.read10(0, 1)).status).toBe(0);
  });
});

describe('SendTargets longer than MaxRecvDataSegmentLength', () => {
  it('spans several Text Responses (C bit, TTT) and loses no pair', async () => {
    const many = Array.from({ length: 300 }, (_, k) => target(`iqn.2026-11.local.netboot:client-${k}`, [], { allowed: [IQN_INITIATOR] }));
    const { server, port } = await startTarget(many);
    try {
      const d = await TestInitiator.connect(port);
      expect(await d.login({ initiatorName: IQN_INITIATOR, sessionType: 'Discovery' })).toBe(0);
      const pairs = await d.text([['SendTargets', 'All']]);
      expect(d.textPieces).toBeGreaterThan(1);
      const names = pairs.filter(([k]) => k === 'TargetName').map(([, v]) => v);
      expect(names).toEqual(many.map((t) => t.name));
      expect(pairs.filter(([k, v]) => k === 'TargetAddress' && v === `127.0.0.1:${port},1`)).toHaveLength(300);
      d.destroy();
    } finally {
      await server.stop();
    }
  });
});

describe('IscsiServer lifecycle', () => {
  it('start() reports a port in use; stop() lets a write finish, flushes the volume and leaves no timer', async () => {
    const { FakeClock } = await import('../../appliance/core/clock');
    const { silentLogger } = await import('../../appliance/core/log');
    const { IscsiServer } = await import('../../appliance/iscsi/server');
    const { StaticDirectory } = await import('./harness');
    const clock = new FakeClock();
    const disk = new MemoryDisk('lifecycle-disk', 2048);
    let release: () => void = () => undefined;
    const slowOpen = () => {
      const v = disk.open();
      const write = v.write.bind(v);
      // The first write waits until the test lets it go: it is in flight when stop() starts.
      let first = true;
      v.write = async (lba, data, o) => {
        if (first) {
          first = false;
          await new Promise<void>((r) => (release = r));
        }
        return write(lba, data, o);
      };
      return v;
    };
    const dir = new StaticDirectory([target(T, [{ lun: 0, open: slowOpen, readOnly: false }])]);
    const mk = (port: number) =>
      new IscsiServer({
        host: '127.0.0.1',
        port,
        directory: dir,
        clock,
        log: silentLogger(),
        maxConnections: 4,
        nopInIntervalSeconds: 5,
        portalAddress: '127.0.0.1',
      });
    const server = mk(0);
    await server.start();
    await expect(mk(server.port).start()).rejects.toThrow(/already in use/);
    const i = await TestInitiator.connect(server.port);
    expect(await i.login({ initiatorName: IQN_INITIATOR, targetName: T })).toBe(0);
    const w = i.write10(7, Buffer.alloc(512, 0x77));
    await new Promise((r) => setTimeout(r, 100));
    const flushes = disk.flushes;
    const stopped = server.stop();
    await new Promise((r) => setTimeout(r, 50));
    release();
    expect((await w).status).toBe(0);
    await stopped;
    expect(disk.data[7 * 512]).toBe(0x77);
    expect(disk.flushes).toBeGreaterThan(flushes);
    expect(server.status().state).toBe('stopped');
    expect(clock.pending).toBe(0);
    await i.whenClosed();
  });
});

describe('NOP-In pings on a fake clock (the default 5 s interval)', () => {
  it('drops a powered-off initiator that answers pings 10 s after its last word, keeps a live one, and never drops an iPXE-like one', async () => {
    const { FakeClock } = await import('../../appliance/core/clock');
    const { silentLogger } = await import('../../appliance/core/log');
    const { IscsiServer } = await import('../../appliance/iscsi/server');
    const { parseConfig } = await import('../../appliance/core/config');
    const { StaticDirectory, target } = await import('./harness');
    const { MemoryDisk } = await import('./volumes');
    const clock = new FakeClock();
    const disk = new MemoryDisk('nop-disk', 2048);
    const T = 'iqn.2026-11.local.netboot:nop';
    const nopInIntervalSeconds = parseConfig({}).iscsi.nopInIntervalSeconds;
    expect(nopInIntervalSeconds).toBe(5);
    const server = new IscsiServer({
      host: '127.0.0.1',
      port: 0,
      clock,
      log: silentLogger(),
      maxConnections: 4,
      nopInIntervalSeconds,
      portalAddress: '127.0.0.1',
      directory: new StaticDirectory([target(T, [{ lun: 0, open: () => disk.open(), readOnly: true }])]),
    });
    await server.start();
    const settle = () => new Promise((r) => setTimeout(r, 50));
    try {
      const dead = await TestInitiator.connect(server.port);
      expect(await dead.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '400001370101' })).toBe(0);
      const alive = await TestInitiator.connect(server.port);
      expect(await alive.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '400001370103' })).toBe(0);
      const ipxe = await TestInitiator.connect(server.port);
      expect(await ipxe.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '400001370102', answerPings: false })).toBe(0);
      await settle();
      clock.advance(1_000); // the early probe: two answer, one does not
      await settle();
      expect(dead.pingsSeen).toBe(1);
      expect(ipxe.pingsSeen).toBe(1);
      // Power cut 0.5 s later, with the timer out of phase with the last word.
      clock.advance(500);
      await settle();
      dead.answerPings = false;
      const lastWord = 1.5; // the probe answer, at 1 s (plus the half second)
      let closedAt = -1;
      for (let t = 2; t <= 60 && closedAt < 0; t++) {
        clock.advance(t === 2 ? 500 : 1_000);
        await settle();
        if (dead.closed) closedAt = t;
      }
      // Pinged 5 s after its last word, dropped 5 s after that: between 10 and 11 s on this 1 s grid.
      expect(closedAt - lastWord).toBeGreaterThanOrEqual(9.5);
      expect(closedAt - lastWord).toBeLessThanOrEqual(11);
      expect(server.sessions().length).toBe(2);
      // A live Linux initiator answers every ping and stays; iPXE never answers and stays too.
      for (let t = 0; t < 120; t += 1) {
        clock.advance(1_000);
        await settle();
      }
      expect(alive.closed).toBe(false);
      expect(alive.pingsSeen).toBeGreaterThan(10);
      expect(ipxe.closed).toBe(false);
      expect(ipxe.pingsSeen).toBeGreaterThan(10);
      alive.destroy();
      ipxe.destroy();
    } finally {
      await server.stop();
    }
  });
});

describe('connection limits', () => {
  it('drops a connection that never completes its login after 15 s, the default loginTimeoutSeconds (no NOP needed)', async () => {
    const { FakeClock } = await import('../../appliance/core/clock');
    const { silentLogger } = await import('../../appliance/core/log');
    const { IscsiServer } = await import('../../appliance/iscsi/server');
    const { StaticDirectory } = await import('./harness');
    const clock = new FakeClock();
    const server = new IscsiServer({
      host: '127.0.0.1',
      port: 0,
      directory: new StaticDirectory([]),
      clock,
      log: silentLogger(),
      maxConnections: 4,
      nopInIntervalSeconds: 0,
      portalAddress: '127.0.0.1',
    });
    await server.start();
    try {
      const idle = await TestInitiator.connect(server.port);
      await new Promise((r) => setTimeout(r, 100));
      clock.advance(14_000);
      await new Promise((r) => setTimeout(r, 100));
      expect(idle.closed).toBe(false);
      clock.advance(1_000);
      await idle.whenClosed();
      expect(idle.closed).toBe(true);
    } finally {
      await server.stop();
    }
    expect(clock.pending).toBe(0);
  });
});
