import { describe, expect, it } from 'vitest';
import { decodeL2Entry, decodeQcow2Header, DecodeError, encodeQcow2Header, encodeQcow2Metadata, planQcow2, unsupportedFeature } from '../../image-store/qcow2';

describe('qcow2 codec', () => {
  it('round-trips the header it writes', () => {
    const plan = planQcow2(4 * 2 ** 30, [0, 1, 8192, 65535]);
    const h = decodeQcow2Header(encodeQcow2Header(plan));
    expect(h).toMatchObject({
      version: 3,
      clusterBits: 16,
      size: 4 * 2 ** 30,
      l1Size: 8,
      l1TableOffset: 65536,
      refcountOrder: 4,
      headerLength: 104,
      incompatibleFeatures: 0,
    });
    expect(unsupportedFeature(h)).toBeNull();
  });

  it('plans metadata before data and refcounts every used cluster once', () => {
    const plan = planQcow2(2 ** 30, [0, 5, 8192]);
    // header, L1, refcount table, one refcount block, two L2 tables (L1 entries 0 and 1), data.
    expect(plan.l2Indices).toEqual([0, 1]);
    expect(plan.dataOffset).toBe(6 * 65536);
    expect(plan.totalClusters).toBe(9);
    const [l1, , rb, l2a, l2b] = [...encodeQcow2Metadata(plan)];
    expect(l1.readBigUInt64BE(0)).toBe(BigInt(plan.l2Offset) | (1n << 63n));
    expect(l1.readBigUInt64BE(8)).toBe(BigInt(plan.l2Offset + 65536) | (1n << 63n));
    expect(rb.readUInt16BE(8 * 2)).toBe(1);
    expect(rb.readUInt16BE(9 * 2)).toBe(0);
    expect(decodeL2Entry(l2a.readBigUInt64BE(5 * 8), 16, 3)).toEqual({ kind: 'data', offset: plan.dataOffset + 65536 });
    expect(decodeL2Entry(l2b.readBigUInt64BE(0), 16, 3)).toEqual({ kind: 'data', offset: plan.dataOffset + 2 * 65536 });
    expect(decodeL2Entry(l2a.readBigUInt64BE(1 * 8), 16, 3)).toEqual({ kind: 'unallocated' });
  });

  it('decodes compressed and zero L2 entries (qcow2.txt "Compressed Clusters Descriptor")', () => {
    // cluster_bits 16: x = 62 - 8 = 54 bits of offset; 2 additional sectors.
    const e = (1n << 62n) | (2n << 54n) | 0x12345n;
    expect(decodeL2Entry(e, 16, 3)).toEqual({ kind: 'compressed', offset: 0x12345, length: 3 * 512 - (0x12345 & 511) });
    expect(decodeL2Entry(1n, 16, 3)).toEqual({ kind: 'zero' });
    expect(decodeL2Entry(1n, 16, 2)).toEqual({ kind: 'unallocated' });
  });

  it('rejects bad headers with the offset of the bad field', () => {
    const good = encodeQcow2Header(planQcow2(2 ** 20, []));
    expect(() => decodeQcow2Header(good.subarray(0, 50))).toThrow(DecodeError);
    const magic = Buffer.from(good);
    magic[0] = 0;
    expect(() => decodeQcow2Header(magic)).toThrow(expect.objectContaining({ offset: 0 }));
    const version = Buffer.from(good);
    version.writeUInt32BE(4, 4);
    expect(() => decodeQcow2Header(version)).toThrow(expect.objectContaining({ offset: 4 }));
    const cluster = Buffer.from(good);
    cluster.writeUInt32BE(30, 20);
    expect(() => decodeQcow2Header(cluster)).toThrow(expect.objectContaining({ offset: 20 }));
    const l1 = Buffer.from(good);
    l1.writeUInt32BE(0, 36);
    expect(() => decodeQcow2Header(l1)).toThrow(expect.objectContaining({ offset: 36 }));
    const backing = Buffer.from(good);
    backing.writeBigUInt64BE(4096n, 8);
    expect(unsupportedFeature(decodeQcow2Header(backing))).toBe('has a backing file');
  });
});
