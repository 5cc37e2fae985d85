/**
 * Write assembly (appliance/iscsi/write-assembly.ts, RFC 7143 §13.13-13.15) with a fake host:
 * R2Ts bounded by MaxOutstandingR2T and MaxBurstLength, data gathered in order, DataSN per
 * sequence, the per-connection buffer budget deferring R2Ts until a reservation is released.
 */
import { describe, expect, it } from 'vitest';
import { RESERVED_TAG } from '../../appliance/iscsi/constants';
import { defaultParams, type SessionParams } from '../../appliance/iscsi/params';
import type { DataOut, ScsiCommand } from '../../appliance/iscsi/pdu';
import { newTask, type Task } from '../../appliance/iscsi/task';
import { MAX_WRITE_BUFFERED, WriteAssembly } from '../../appliance/iscsi/write-assembly';

function setup(over: Partial<SessionParams> = {}) {
  const params: SessionParams = {
    ...defaultParams(262144),
    initialR2T: true,
    immediateData: true,
    maxBurstLength: 65536,
    firstBurstLength: 65536,
    maxOutstandingR2T: 1,
    ...over,
  };
  const tasks = new Map<number, Task>();
  const r2ts: { itt: number; ttt: number; r2tSN: number; bufferOffset: number; length: number }[] = [];
  const errors: string[] = [];
  const ready: number[] = [];
  let ttt = 0;
  const w = new WriteAssembly({
    params: () => params,
    task: (itt) => tasks.get(itt),
    acquire: (n) => Buffer.alloc(n),
    takeTtt: () => ++ttt,
    sendR2T: (r) => r2ts.push(r),
    protocolError: (reason) => errors.push(reason),
    ready: (t) => ready.push(t.itt),
    inFullFeature: () => true,
    closed: () => false,
    debug: () => undefined,
  });
  const task = (itt: number, edtl: number, imm = Buffer.alloc(0), final = true): Task => {
    const cmd = {
      op: 'scsiCommand',
      immediate: false,
      itt,
      header: Buffer.alloc(48),
      data: imm,
      final,
      read: false,
      write: true,
      attr: 0,
      lun: 0,
      edtl,
      cmdSN: 0,
      expStatSN: 0,
      cdb: Buffer.alloc(16),
    } as ScsiCommand;
    const t = newTask(cmd, null, true);
    tasks.set(itt, t);
    return t;
  };
  const dataOut = (itt: number, ttt: number, dataSN: number, bufferOffset: number, data: Buffer, final = true): DataOut =>
    ({ op: 'dataOut', immediate: false, itt, header: Buffer.alloc(48), data, final, lun: 0, ttt, expStatSN: 0, dataSN, bufferOffset }) as DataOut;
  return { w, task, dataOut, r2ts, errors, ready };
}

describe('write assembly', () => {
  it('a write that came whole as immediate data needs no R2T', () => {
    const s = setup();
    const t = s.task(1, 4096, Buffer.alloc(4096, 7));
    expect(s.w.begin(t)).toBe('started');
    expect(s.r2ts).toHaveLength(0);
    expect(t.buf?.[0]).toBe(7);
  });

  it('R2Ts one burst at a time (MaxOutstandingR2T 1); data lands at its offsets; ready after the last', () => {
    const s = setup();
    const t = s.task(2, 150_000, Buffer.alloc(1000, 1));
    expect(s.w.begin(t)).toBe('started');
    expect(s.r2ts).toEqual([{ lun: 0, itt: 2, ttt: 1, r2tSN: 0, bufferOffset: 1000, length: 65536 }]);
    s.w.onDataOut(s.dataOut(2, 1, 0, 1000, Buffer.alloc(65536, 2)));
    expect(s.r2ts.map((r) => [r.bufferOffset, r.length, r.r2tSN])).toEqual([
      [1000, 65536, 0],
      [66536, 65536, 1],
    ]);
    s.w.onDataOut(s.dataOut(2, 2, 0, 66536, Buffer.alloc(65536, 3)));
    s.w.onDataOut(s.dataOut(2, 3, 0, 132072, Buffer.alloc(150_000 - 132072, 4)));
    expect(t.received).toBe(150_000);
    expect([t.buf![0], t.buf![1000], t.buf![66536], t.buf![149_999]]).toEqual([1, 2, 3, 4]);
    expect(s.errors).toEqual([]);
  });

  it('a DataSN gap fails the command (data phase error), data beyond EDTL or an unknown TTT is a protocol error', () => {
    const s = setup();
    const t = s.task(3, 8192);
    s.w.begin(t);
    s.w.onDataOut(s.dataOut(3, 1, 1, 0, Buffer.alloc(4096), false));
    expect(t.dataError).toBe(true);
    s.w.onDataOut(s.dataOut(3, 1, 2, 8000, Buffer.alloc(4096)));
    s.w.onDataOut(s.dataOut(3, 99, 0, 0, Buffer.alloc(10)));
    expect(s.errors).toEqual(['Data-Out beyond the expected data transfer length', 'Data-Out with unknown TTT 99']);
  });

  it('immediate data when ImmediateData=No is refused; unsolicited data stops at FirstBurstLength', () => {
    const s = setup({ immediateData: false });
    expect(s.w.begin(s.task(4, 8192, Buffer.alloc(512)))).toBe('refused');
    const u = setup({ initialR2T: false, firstBurstLength: 4096 });
    const t = u.task(5, 16384, Buffer.alloc(0), false);
    u.w.begin(t);
    u.w.onDataOut(u.dataOut(5, RESERVED_TAG, 0, 0, Buffer.alloc(8192)));
    expect(u.errors).toEqual(['unsolicited Data-Out beyond the first burst']);
  });

  it('over the write-buffer budget a write waits for its R2Ts until a reservation is released', () => {
    const s = setup();
    const big = s.task(6, 16 * 1024 * 1024);
    const fill = Math.ceil(MAX_WRITE_BUFFERED / big.cmd.edtl);
    const held: Task[] = [big];
    expect(s.w.begin(big)).toBe('started');
    for (let i = 1; i < fill; i++) {
      const t = s.task(100 + i, 16 * 1024 * 1024);
      expect(s.w.begin(t)).toBe('started');
      held.push(t);
    }
    const r2tsBefore = s.r2ts.length;
    const late = s.task(7, 1024 * 1024);
    expect(s.w.begin(late)).toBe('waiting');
    expect(s.r2ts.length).toBe(r2tsBefore);
    s.w.released(held[0]!);
    expect(s.r2ts.at(-1)).toMatchObject({ itt: 7, bufferOffset: 0 });
  });
});
