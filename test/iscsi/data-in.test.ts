/** Residuals and Data-In splitting (appliance/iscsi/data-in.ts, RFC 7143 §11.4.5 and §11.7), pure. */
import { describe, expect, it } from 'vitest';
import { BHS_LENGTH } from '../../appliance/iscsi/constants';
import { buildDataIn, residualsOf } from '../../appliance/iscsi/data-in';

const read = (edtl: number) => ({ read: true, write: false, edtl });
const write = (edtl: number) => ({ read: false, write: true, edtl });

describe('residuals', () => {
  it('reads: exact, short (underflow) and long (overflow, data cut to the expected length)', () => {
    expect(residualsOf(read(8), Buffer.alloc(8), 0)).toMatchObject({ underflow: false, overflow: false, residual: 0 });
    expect(residualsOf(read(8), Buffer.alloc(5), 0)).toMatchObject({ underflow: true, residual: 3 });
    const long = residualsOf(read(8), Buffer.alloc(12), 0);
    expect(long).toMatchObject({ overflow: true, residual: 4 });
    expect(long.dataIn?.length).toBe(8);
    expect(residualsOf(read(8), null, 0)).toMatchObject({ underflow: true, residual: 8 });
  });

  it('writes: a write whose data all arrived reports no residual (Linux resent every WRITE otherwise)', () => {
    expect(residualsOf(write(4096), null, 4096)).toMatchObject({ underflow: false, overflow: false, residual: 0 });
    expect(residualsOf(write(4096), null, 512)).toMatchObject({ underflow: true, residual: 3584 });
    expect(residualsOf(write(512), null, 4096)).toMatchObject({ overflow: true, residual: 3584 });
  });

  it('data for a command without the R bit is not sent and counts as overflow', () => {
    expect(residualsOf({ read: false, write: false, edtl: 0 }, Buffer.alloc(36), 0)).toEqual({ underflow: false, overflow: true, residual: 36, dataIn: null });
  });
});

describe('Data-In PDUs', () => {
  const opts = {
    segment: 8192,
    burst: 16384,
    headerDigest: false,
    withStatus: true,
    status: 0,
    residuals: { underflow: false, overflow: false, residual: 0 },
    lun: 0,
    itt: 7,
    statSN: 5,
    expCmdSN: 10,
    maxCmdSN: 40,
  };

  it('segments of MaxRecvDataSegmentLength, F at each burst end, status in the last; payloads are slices', () => {
    const data = Buffer.alloc(20000, 1);
    const pdus: { flags: number; dataSN: number; offset: number; len: number; shared: boolean }[] = [];
    const status = buildDataIn(data, opts, (h, payload) => {
      pdus.push({ flags: h[1]!, dataSN: h.readUInt32BE(36), offset: h.readUInt32BE(40), len: payload.length, shared: payload.buffer === data.buffer });
      expect(h.length).toBe(BHS_LENGTH);
    });
    expect(status).toBe(true);
    expect(pdus.map((p) => [p.offset, p.len, p.dataSN])).toEqual([
      [0, 8192, 0],
      [8192, 8192, 1],
      [16384, 3616, 2],
    ]);
    // F (0x80) ends each burst (16 KiB) and the transfer; S (0x01) only on the last.
    expect(pdus.map((p) => p.flags & 0x81)).toEqual([0x00, 0x80, 0x81]);
    expect(pdus.every((p) => p.shared)).toBe(true);
  });

  it('with sense data to send, no Data-In carries the status', () => {
    const flags: number[] = [];
    expect(buildDataIn(Buffer.alloc(100), { ...opts, withStatus: false }, (h) => flags.push(h[1]!))).toBe(false);
    expect(flags).toEqual([0x80]);
  });
});
