import { describe, expect, it } from 'vitest';
import { VolumeError, type BlockVolume } from '../../image-store/block-volume';
import { LogicalUnit, LuShared, type ScsiResult } from '../../appliance/iscsi/scsi/logical-unit';
import { RangeLock } from '../../appliance/iscsi/scsi/range-lock';
import { MemoryDisk } from './volumes';

/**
 * The SCSI command set over a BlockVolume, driven directly (no iSCSI): COMPARE AND WRITE
 * atomicity against other sessions' writes, unit attentions, software write protect and
 * SANITIZE. Two LogicalUnit objects on one LuShared are two sessions (I_T nexuses) on one LU.
 */

const BS = 512;

function session(volume: BlockVolume, shared: LuShared, readOnly = false): LogicalUnit {
  return new LogicalUnit(0, volume, readOnly, shared, 'iqn.2026-11.local.netboot:test');
}

function run(lu: LogicalUnit, cdb: Buffer, nexus: string, dataOut: Buffer | null = null): Promise<ScsiResult> {
  return lu.execute({ cdb, dataOut, edtl: dataOut?.length ?? 0, nexus });
}

/** [sense key, ASC, ASCQ] of a fixed-format sense buffer. */
function sense(r: ScsiResult): [number, number, number] {
  expect(r.sense, `status ${r.status}`).not.toBeNull();
  return [r.sense![2] & 0x0f, r.sense![12], r.sense![13]];
}

const cdb = {
  tur: () => Buffer.alloc(6),
  inquiry: () => Buffer.from([0x12, 0, 0, 0, 96, 0]),
  requestSense: () => Buffer.from([0x03, 0, 0, 0, 252, 0]),
  read10: (lba: number, n: number) => {
    const b = Buffer.alloc(10);
    b[0] = 0x28;
    b.writeUInt32BE(lba, 2);
    b.writeUInt16BE(n, 7);
    return b;
  },
  write10: (lba: number, n: number) => {
    const b = cdb.read10(lba, n);
    b[0] = 0x2a;
    return b;
  },
  compareAndWrite: (lba: number, n: number) => {
    const b = Buffer.alloc(16);
    b[0] = 0x89;
    b.writeBigUInt64BE(BigInt(lba), 2);
    b[13] = n;
    return b;
  },
  modeSense6Control: () => Buffer.from([0x1a, 0x08, 0x0a, 0, 255, 0]),
  modeSelect6: (len: number) => Buffer.from([0x15, 0x10, 0, 0, len, 0]),
  sanitize: (action: number, flags = 0, paramLen = 0) => {
    const b = Buffer.alloc(10);
    b[0] = 0x48;
    b[1] = flags | action;
    b.writeUInt16BE(paramLen, 7);
    return b;
  },
  reserve6: () => Buffer.from([0x16, 0, 0, 0, 0, 0]),
  reportOpcodes: () => Buffer.from([0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]),
  vpd: (page: number) => Buffer.from([0x12, 0x01, page, 0, 255, 0]),
};

const GOOD = 0x00;
const CHECK_CONDITION = 0x02;
const RESERVATION_CONFLICT = 0x18;

/** A volume whose reads wait until released: a window in which another command can race. */
function slowReads(volume: BlockVolume) {
  const waiting: (() => void)[] = [];
  const slow: BlockVolume = {
    ...volume,
    read: async (lba, blocks) => {
      await new Promise<void>((resolve) => waiting.push(resolve));
      return volume.read(lba, blocks);
    },
  };
  return { volume: slow, waiting };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('RangeLock', () => {
  it('lets shared holders overlap, makes an exclusive one wait for them, and queues later writes behind it', async () => {
    const lock = new RangeLock();
    const w1 = lock.tryAcquire(0, 8, false);
    const w2 = lock.tryAcquire(4, 8, false);
    expect(w1).not.toBeNull();
    expect(w2).not.toBeNull();
    const order: string[] = [];
    const caw = lock.acquire(6, 1, true).then((hold) => {
      order.push('caw');
      return hold;
    });
    // A write arriving after the waiting COMPARE AND WRITE, overlapping it, waits too...
    expect(lock.tryAcquire(6, 1, false)).toBeNull();
    const later = lock.acquire(0, 16, false).then((hold) => {
      order.push('later');
      return hold;
    });
    // ...but one elsewhere goes ahead.
    const elsewhere = lock.tryAcquire(100, 8, false);
    expect(elsewhere).not.toBeNull();
    lock.release(elsewhere!);
    lock.release(w1!);
    await tick();
    expect(order).toEqual([]);
    lock.release(w2!);
    const cawHold = await caw;
    await tick();
    expect(order).toEqual(['caw']);
    lock.release(cawHold);
    lock.release(cawHold); // a second release is harmless
    lock.release(await later);
    expect(order).toEqual(['caw', 'later']);
    expect(lock.size).toBe(0);
  });
});

describe('COMPARE AND WRITE', () => {
  it('is atomic against a WRITE to the same LBA from another session (the WRITE waits for it)', async () => {
    const disk = new MemoryDisk('caw', 64);
    const shared = new LuShared();
    const { volume, waiting } = slowReads(disk.open());
    const a = session(volume, shared);
    const b = session(disk.open(), shared);
    const old = Buffer.alloc(BS, 0x11);
    const mine = Buffer.alloc(BS, 0x22);
    const theirs = Buffer.alloc(BS, 0x33);
    old.copy(disk.data, 5 * BS);

    const caw = run(a, cdb.compareAndWrite(5, 1), 'A', Buffer.concat([old, mine]));
    await tick();
    expect(waiting).toHaveLength(1); // CAW has read nothing yet: it is between its start and its write
    let writeDone = false;
    const write = run(b, cdb.write10(5, 1), 'B', theirs).then((r) => {
      writeDone = true;
      return r;
    });
    await tick();
    expect(writeDone).toBe(false); // held back by the CAW's exclusive range
    waiting.shift()!();
    expect((await caw).status).toBe(GOOD);
    expect((await write).status).toBe(GOOD);
    // Serial order CAW then WRITE: the WRITE's data is what stays.
    expect(disk.data.subarray(5 * BS, 6 * BS)).toEqual(theirs);
  });

  it('does not hold back writes to other LBAs', async () => {
    const disk = new MemoryDisk('caw2', 64);
    const shared = new LuShared();
    const { volume, waiting } = slowReads(disk.open());
    const a = session(volume, shared);
    const b = session(disk.open(), shared);
    const caw = run(a, cdb.compareAndWrite(5, 1), 'A', Buffer.alloc(2 * BS));
    await tick();
    const r = await run(b, cdb.write10(6, 1), 'B', Buffer.alloc(BS, 0x44));
    expect(r.status).toBe(GOOD);
    waiting.shift()!();
    expect((await caw).status).toBe(GOOD);
  });

  it('reports MISCOMPARE with the offset of the first differing byte and writes nothing', async () => {
    const disk = new MemoryDisk('caw3', 64);
    const lu = session(disk.open(), new LuShared());
    const verify = Buffer.alloc(BS);
    verify[7] = 1;
    const r = await run(lu, cdb.compareAndWrite(0, 1), 'A', Buffer.concat([verify, Buffer.alloc(BS, 0x55)]));
    expect(r.status).toBe(CHECK_CONDITION);
    expect(sense(r)).toEqual([0x0e, 0x1d, 0x00]);
    expect(r.sense!.readUInt32BE(3)).toBe(7);
    expect(disk.data.subarray(0, BS).every((x) => x === 0)).toBe(true);
  });
});

describe('unit attentions', () => {
  it('a LU reset is reported once to every session, not to INQUIRY, and not to a session that logs in later', async () => {
    const disk = new MemoryDisk('ua', 64);
    const shared = new LuShared();
    const a = session(disk.open(), shared);
    const b = session(disk.open(), shared);
    expect((await run(a, cdb.tur(), 'A')).status).toBe(GOOD);
    shared.reservations.reset(); // what the TMF code calls for LOGICAL UNIT RESET
    expect((await run(a, cdb.inquiry(), 'A')).status).toBe(GOOD);
    const ua = await run(a, cdb.tur(), 'A');
    expect(ua.status).toBe(CHECK_CONDITION);
    expect(sense(ua)).toEqual([0x06, 0x29, 0x00]);
    expect((await run(a, cdb.tur(), 'A')).status).toBe(GOOD);
    // B learns it through REQUEST SENSE, which returns it as data and clears it.
    const rs = await run(b, cdb.requestSense(), 'B');
    expect(rs.status).toBe(GOOD);
    expect([rs.dataIn![2] & 0x0f, rs.dataIn![12], rs.dataIn![13]]).toEqual([0x06, 0x29, 0x00]);
    expect((await run(b, cdb.read10(0, 1), 'B')).status).toBe(GOOD);
    const c = session(disk.open(), shared);
    expect((await run(c, cdb.tur(), 'C')).status).toBe(GOOD);
  });
});

/** MODE SELECT(6) data setting SWP in the control page, from MODE SENSE's current page. */
async function swpParameterList(lu: LogicalUnit, nexus: string, on: boolean): Promise<Buffer> {
  const ms = await run(lu, cdb.modeSense6Control(), nexus);
  expect(ms.status).toBe(GOOD);
  const page = Buffer.from(ms.dataIn!.subarray(4 + ms.dataIn![3]));
  expect(page[0] & 0x3f).toBe(0x0a);
  page[0] &= 0x3f; // PS is reserved in MODE SELECT
  page[4] = on ? page[4] | 0x08 : page[4] & ~0x08;
  return Buffer.concat([Buffer.alloc(4), page]);
}

describe('software write protect (control mode page SWP)', () => {
  it('is changeable, protects the LU for every session, tells the others, and ends with a reset', async () => {
    const disk = new MemoryDisk('swp', 64);
    const shared = new LuShared();
    const a = session(disk.open(), shared);
    const b = session(disk.open(), shared);
    const changeable = await run(a, Buffer.from([0x1a, 0x08, 0x4a, 0, 255, 0]), 'A');
    expect(changeable.dataIn![4 + 4] & 0x08).toBe(0x08);

    const list = await swpParameterList(a, 'A', true);
    expect((await run(a, cdb.modeSelect6(list.length), 'A', list)).status).toBe(GOOD);
    const w = await run(a, cdb.write10(0, 1), 'A', Buffer.alloc(BS, 1));
    expect(sense(w)).toEqual([0x07, 0x27, 0x02]);
    expect((await run(a, cdb.read10(0, 1), 'A')).status).toBe(GOOD);
    const header = await run(a, cdb.modeSense6Control(), 'A');
    expect(header.dataIn![2] & 0x80).toBe(0x80); // WP
    expect(header.dataIn![4 + header.dataIn![3] + 4] & 0x08).toBe(0x08);

    expect(sense(await run(b, cdb.tur(), 'B'))).toEqual([0x06, 0x2a, 0x01]); // MODE PARAMETERS CHANGED
    expect(sense(await run(b, cdb.write10(0, 1), 'B', Buffer.alloc(BS, 1)))).toEqual([0x07, 0x27, 0x02]);

    // Any other change to the control page is refused: nothing else is changeable.
    const bad = await swpParameterList(a, 'A', false);
    bad[4 + 2] |= 0x04; // D_SENSE
    expect(sense(await run(a, cdb.modeSelect6(bad.length), 'A', bad))).toEqual([0x05, 0x26, 0x00]);

    shared.reservations.reset();
    expect(sense(await run(a, cdb.tur(), 'A'))).toEqual([0x06, 0x29, 0x00]);
    expect((await run(a, cdb.write10(0, 1), 'A', Buffer.alloc(BS, 1))).status).toBe(GOOD);
  });

  it('is dropped when the last session of the LU closes, not before', async () => {
    const disk = new MemoryDisk('swp2', 64);
    const shared = new LuShared();
    const a = session(disk.open(), shared);
    session(disk.open(), shared); // B
    const list = await swpParameterList(a, 'A', true);
    expect((await run(a, cdb.modeSelect6(list.length), 'A', list)).status).toBe(GOOD);
    shared.reservations.nexusLost('A'); // what the session code calls when a session ends
    expect(shared.softwareWriteProtect).toBe(true); // B is still there and was told
    shared.reservations.nexusLost('B');
    const c = session(disk.open(), shared);
    expect((await run(c, cdb.write10(0, 1), 'C', Buffer.alloc(BS, 1))).status).toBe(GOOD);
  });
});

describe('SANITIZE', () => {
  it('BLOCK ERASE deallocates every block of a thin disk: reads return zeros and GET LBA STATUS shows no mapping', async () => {
    const disk = new MemoryDisk('san', 1024);
    const lu = session(disk.open(), new LuShared());
    expect((await run(lu, cdb.write10(0, 8), 'A', Buffer.alloc(8 * BS, 0x61))).status).toBe(GOOD);
    expect((await run(lu, cdb.write10(1016, 8), 'A', Buffer.alloc(8 * BS, 0x61))).status).toBe(GOOD);
    const flushesBefore = disk.flushes;
    expect((await run(lu, cdb.sanitize(0x02), 'A')).status).toBe(GOOD);
    expect(disk.flushes).toBe(flushesBefore + 1);
    for (const lba of [0, 1016]) {
      const r = await run(lu, cdb.read10(lba, 8), 'A');
      expect(r.dataIn!.every((x) => x === 0)).toBe(true);
    }
    expect(disk.mapped.every((m) => m === 0)).toBe(true);
  });

  it('checks its CDB: parameter list length, reserved bits and bytes, unsupported service actions', async () => {
    const disk = new MemoryDisk('san2', 64);
    const lu = session(disk.open(), new LuShared());
    const invalid = [0x05, 0x24, 0x00];
    expect(sense(await run(lu, cdb.sanitize(0x02, 0, 8), 'A', Buffer.alloc(8)))).toEqual(invalid);
    expect(sense(await run(lu, cdb.sanitize(0x02, 0x40), 'A'))).toEqual(invalid);
    const reserved = cdb.sanitize(0x02);
    reserved[4] = 1;
    expect(sense(await run(lu, reserved, 'A'))).toEqual(invalid);
    for (const sa of [0x00, 0x01, 0x03, 0x04, 0x1e]) expect(sense(await run(lu, cdb.sanitize(sa), 'A'))).toEqual(invalid);
  });

  it('with IMMED answers at once; meanwhile every command but INQUIRY and REQUEST SENSE is NOT READY, SANITIZE IN PROGRESS', async () => {
    const disk = new MemoryDisk('san3', 64);
    const shared = new LuShared();
    const base = disk.open();
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    const held: BlockVolume = {
      ...base,
      unmap: async (lba, n) => {
        await gate;
        return base.unmap(lba, n);
      },
    };
    const a = session(held, shared);
    const b = session(disk.open(), shared);
    expect((await run(a, cdb.sanitize(0x02, 0x80), 'A')).status).toBe(GOOD);
    expect(sense(await run(b, cdb.tur(), 'B'))).toEqual([0x02, 0x04, 0x1b]);
    expect(sense(await run(b, cdb.read10(0, 1), 'B'))).toEqual([0x02, 0x04, 0x1b]);
    expect((await run(b, cdb.inquiry(), 'B')).status).toBe(GOOD);
    const rs = await run(b, cdb.requestSense(), 'B');
    expect([rs.dataIn![2] & 0x0f, rs.dataIn![12], rs.dataIn![13]]).toEqual([0x02, 0x04, 0x1b]);
    expect(rs.dataIn![15] & 0x80).toBe(0x80); // SKSV: progress indication
    letGo();
    await shared.sanitize.done;
    expect((await run(b, cdb.tur(), 'B')).status).toBe(GOOD);
  });

  it('after a failed erase refuses medium access until a new SANITIZE; EXIT FAILURE MODE only when AUSE was set', async () => {
    const disk = new MemoryDisk('san4', 64);
    const shared = new LuShared();
    const base = disk.open();
    let broken = true;
    const flaky: BlockVolume = {
      ...base,
      unmap: async (lba, n) => {
        if (broken) throw new VolumeError('IO', 'disk gone');
        return base.unmap(lba, n);
      },
    };
    const lu = session(flaky, shared);
    const failed = [0x03, 0x31, 0x03];
    expect(sense(await run(lu, cdb.sanitize(0x02), 'A'))).toEqual(failed);
    expect(sense(await run(lu, cdb.read10(0, 1), 'A'))).toEqual(failed);
    expect((await run(lu, cdb.inquiry(), 'A')).status).toBe(GOOD);
    // AUSE was 0: EXIT FAILURE MODE is refused, a new SANITIZE is the way out.
    expect(sense(await run(lu, cdb.sanitize(0x1f), 'A'))).toEqual([0x05, 0x24, 0x00]);
    broken = false;
    expect((await run(lu, cdb.sanitize(0x02), 'A')).status).toBe(GOOD);
    expect((await run(lu, cdb.read10(0, 1), 'A')).status).toBe(GOOD);
    // AUSE=1: EXIT FAILURE MODE leaves the failure mode (the data is then whatever remains).
    broken = true;
    expect(sense(await run(lu, cdb.sanitize(0x02, 0x20), 'A'))).toEqual(failed);
    expect((await run(lu, cdb.sanitize(0x1f), 'A')).status).toBe(GOOD);
    expect((await run(lu, cdb.read10(0, 1), 'A')).status).toBe(GOOD);
  });

  it('meets reservations and write protection like any write', async () => {
    const disk = new MemoryDisk('san5', 64);
    const shared = new LuShared();
    const a = session(disk.open(), shared);
    const b = session(disk.open(), shared);
    expect((await run(b, cdb.reserve6(), 'B')).status).toBe(GOOD);
    expect((await run(a, cdb.sanitize(0x02), 'A')).status).toBe(RESERVATION_CONFLICT);
    const ro = session(disk.open(true), new LuShared(), true);
    expect(sense(await run(ro, cdb.sanitize(0x02), 'R'))).toEqual([0x07, 0x27, 0x00]);
  });

  it('is offered (REPORT SUPPORTED OPERATION CODES, VPD 0xB1 WABEREQ) only where unmapped blocks read as zeros', async () => {
    const listed = async (volume: BlockVolume) => {
      const lu = session(volume, new LuShared());
      const r = await run(lu, cdb.reportOpcodes(), 'A');
      const ops: number[] = [];
      for (let off = 4; off < r.dataIn!.length; off += 8) ops.push(r.dataIn![off]);
      const b1 = await run(lu, cdb.vpd(0xb1), 'A');
      const erase = await run(lu, cdb.sanitize(0x02), 'A');
      return { sanitize: ops.includes(0x48), wabereq: b1.dataIn![7] >> 6, erase: erase.sense ? sense(erase) : erase.status };
    };
    const thin = new MemoryDisk('thin', 64).open();
    expect(await listed(thin)).toEqual({ sanitize: true, wabereq: 1, erase: GOOD });
    // A clone whose unmapped blocks show the golden image again: unmapping would not erase.
    const base: BlockVolume = { ...new MemoryDisk('clone', 64).open(), thin: { provisioned: true, unmappedReads: 'base', granularityBlocks: 8 } };
    expect(await listed(base)).toEqual({ sanitize: false, wabereq: 0, erase: [0x05, 0x20, 0x00] });
  });
});

describe('WRITE ATOMIC(16)', () => {
  const writeAtomic16 = (lba: bigint, n: number, byte1 = 0, boundary = 0) => {
    const b = Buffer.alloc(16);
    b[0] = 0x9c;
    b[1] = byte1;
    b.writeBigUInt64BE(lba, 2);
    b.writeUInt16BE(boundary, 10);
    b.writeUInt16BE(n, 12);
    return b;
  };
  const maxAtomic = async (lu: LogicalUnit) => (await run(lu, cdb.vpd(0xb0), 'A')).dataIn!.readUInt32BE(44);

  it('is not offered on a volume that does not promise all-or-nothing writes', async () => {
    const lu = session(new MemoryDisk('plain', 64).open(), new LuShared());
    expect(await maxAtomic(lu)).toBe(0);
    expect(sense(await run(lu, writeAtomic16(0n, 1), 'A', Buffer.alloc(BS)))).toEqual([0x05, 0x20, 0x00]);
  });

  it("writes up to the volume's atomic limit and checks its CDB (range first, then length)", async () => {
    const disk = new MemoryDisk('atomic', 1024);
    const lu = session({ ...disk.open(), atomicWriteBlocks: 256 } as BlockVolume, new LuShared());
    expect(await maxAtomic(lu)).toBe(256);
    const data = Buffer.alloc(256 * BS, 0x5a);
    expect((await run(lu, writeAtomic16(768n, 256), 'A', data)).status).toBe(GOOD);
    expect(disk.data.subarray(768 * BS)).toEqual(data);
    expect((await run(lu, writeAtomic16(0n, 0), 'A')).status).toBe(GOOD);
    const invalid = (byte: number) => [0x05, 0x24, 0x00, byte];
    const field = (r: ScsiResult) => [...sense(r), r.sense!.readUInt16BE(16)];
    expect(field(await run(lu, writeAtomic16(0n, 257), 'A', Buffer.alloc(257 * BS)))).toEqual(invalid(12));
    expect(field(await run(lu, writeAtomic16(0n, 1, 0, 8), 'A', Buffer.alloc(BS)))).toEqual(invalid(10));
    expect(field(await run(lu, writeAtomic16(0n, 1, 0x20), 'A', Buffer.alloc(BS)))).toEqual(invalid(1));
    expect(sense(await run(lu, writeAtomic16(1020n, 257), 'A', Buffer.alloc(257 * BS)))).toEqual([0x05, 0x21, 0x00]);
    expect(sense(await run(lu, writeAtomic16(1n << 63n, 0), 'A'))).toEqual([0x05, 0x21, 0x00]);
    // Less Data-Out than the blocks need: nothing is written (a plain WRITE would write what came).
    const short = await run(lu, writeAtomic16(0n, 2), 'A', Buffer.alloc(BS, 0x77));
    expect(short.status).toBe(CHECK_CONDITION);
    expect(disk.data.subarray(0, 2 * BS).every((x) => x === 0)).toBe(true);
  });

  it('holds its range exclusively: an overlapping WRITE from another session waits for it', async () => {
    const disk = new MemoryDisk('atomic2', 64);
    const shared = new LuShared();
    const base = disk.open();
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    const slow = {
      ...base,
      atomicWriteBlocks: 64,
      write: async (lba: number, d: Buffer) => {
        await gate;
        return base.write(lba, d);
      },
    } as BlockVolume;
    const a = session(slow, shared);
    const b = session(disk.open(), shared);
    const atomic = run(a, writeAtomic16(0n, 8), 'A', Buffer.alloc(8 * BS, 0x01));
    await tick();
    let writeDone = false;
    const plain = run(b, cdb.write10(4, 1), 'B', Buffer.alloc(BS, 0x02)).then((r) => {
      writeDone = true;
      return r;
    });
    await tick();
    expect(writeDone).toBe(false);
    letGo();
    expect((await atomic).status).toBe(GOOD);
    expect((await plain).status).toBe(GOOD);
    expect(disk.data[4 * BS]).toBe(0x02);
    expect(disk.data[3 * BS]).toBe(0x01);
  });
});
