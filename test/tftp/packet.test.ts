import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DecodeError, decodePacket, encodeError, encodePacket, peekAckBlock, writeDataHeader, type TftpPacket } from '../../appliance/tftp/packet';

const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures/tftp', `${name}.bin`));

// Requests captured from the Debian clients with test/fixtures/tftp/capture.ts.
const golden: Record<string, TftpPacket> = {
  'tftp-hpa-rrq-octet': { op: 'rrq', filename: 'undionly.kpxe', mode: 'octet', options: [] },
  'tftp-hpa-rrq-netascii': { op: 'rrq', filename: 'pxelinux.cfg/default', mode: 'netascii', options: [] },
  'curl-rrq': {
    op: 'rrq',
    filename: 'ipxe.efi',
    mode: 'octet',
    options: [
      { name: 'tsize', value: '0' },
      { name: 'blksize', value: '512' },
      { name: 'timeout', value: '6' },
    ],
  },
  'curl-rrq-blksize-1468': {
    op: 'rrq',
    filename: 'snponly.efi',
    mode: 'octet',
    options: [
      { name: 'tsize', value: '0' },
      { name: 'blksize', value: '1468' },
      { name: 'timeout', value: '6' },
    ],
  },
  'atftp-rrq': { op: 'rrq', filename: 'undionly.kpxe', mode: 'octet', options: [] },
  'atftp-rrq-options': {
    op: 'rrq',
    filename: 'boot/vmlinuz',
    mode: 'octet',
    options: [
      { name: 'tsize', value: '0' },
      { name: 'timeout', value: '3' },
      { name: 'blksize', value: '8192' },
      { name: 'windowsize', value: '16' },
    ],
  },
  'atftp-wrq': { op: 'wrq', filename: 'upload.bin', mode: 'octet', options: [] },
  'curl-rrq-ack': { op: 'ack', block: 1 },
  'atftp-rrq-ack': { op: 'ack', block: 1 },
  'tftp-hpa-rrq-octet-ack': { op: 'ack', block: 1 },
};

describe('golden packets from real clients', () => {
  for (const [name, want] of Object.entries(golden)) {
    it(`${name}: decodes, and re-encodes byte for byte`, () => {
      const bytes = fixture(name);
      expect(decodePacket(bytes)).toEqual(want);
      expect(encodePacket(want).equals(bytes)).toBe(true);
    });
  }

  it('every truncation of a request either throws DecodeError or decodes a prefix of its options', () => {
    const bytes = fixture('atftp-rrq-options');
    for (let cut = 0; cut < bytes.length; cut++) {
      let p: TftpPacket;
      try {
        p = decodePacket(bytes.subarray(0, cut));
      } catch (err) {
        expect(err).toBeInstanceOf(DecodeError);
        continue;
      }
      // Lax on an incomplete trailing option: only complete pairs survive.
      expect(p.op).toBe('rrq');
      const full = golden['atftp-rrq-options'] as { options: unknown[] };
      expect(full.options.slice(0, (p as { options: unknown[] }).options.length)).toEqual((p as { options: unknown[] }).options);
    }
  });
});

describe('decodePacket', () => {
  it('rejects short and unknown packets with the offset', () => {
    expect(() => decodePacket(Buffer.from([0]))).toThrow(DecodeError);
    expect(() => decodePacket(Buffer.from([0, 9, 0, 0]))).toThrow(/unknown opcode 9 at offset 0/);
    expect(() => decodePacket(Buffer.from([0, 4, 0]))).toThrow(/ACK shorter than 4 bytes at offset 2/);
    expect(() => decodePacket(Buffer.from([0, 3, 1]))).toThrow(/DATA shorter/);
    expect(() => decodePacket(Buffer.from('\x00\x01file', 'latin1'))).toThrow(/filename not NUL-terminated at offset 2/);
    expect(() => decodePacket(Buffer.from('\x00\x01file\x00octet', 'latin1'))).toThrow(/mode not NUL-terminated at offset 7/);
  });

  it('ignores NUL padding after the options (some PXE ROMs pad requests)', () => {
    const p = decodePacket(Buffer.from('\x00\x01a\x00octet\x00blksize\x001432\x00\x00\x00\x00', 'latin1'));
    expect(p).toEqual({ op: 'rrq', filename: 'a', mode: 'octet', options: [{ name: 'blksize', value: '1432' }] });
  });

  it('stops the filename at the first NUL, so "a\\0../../x" cannot smuggle a path', () => {
    const p = decodePacket(Buffer.from('\x00\x01a\x00../../x\x00', 'latin1'));
    expect(p).toMatchObject({ filename: 'a', mode: '../../x' });
  });

  it('decodes DATA, ERROR (with and without the final NUL) and OACK', () => {
    expect(decodePacket(Buffer.from('\x00\x03\xff\xfeabc', 'latin1'))).toEqual({ op: 'data', block: 65534, data: Buffer.from('abc') });
    expect(decodePacket(encodeError(8, 'no'))).toEqual({ op: 'error', code: 8, message: 'no' });
    expect(decodePacket(Buffer.from('\x00\x05\x00\x01gone', 'latin1'))).toEqual({ op: 'error', code: 1, message: 'gone' });
    const oack = encodePacket({
      op: 'oack',
      options: [
        { name: 'blksize', value: '1468' },
        { name: 'tsize', value: '42' },
      ],
    });
    expect(oack.toString('latin1')).toBe('\x00\x06blksize\x001468\x00tsize\x0042\x00');
    expect(decodePacket(oack)).toEqual({
      op: 'oack',
      options: [
        { name: 'blksize', value: '1468' },
        { name: 'tsize', value: '42' },
      ],
    });
  });
});

describe('hot-path helpers', () => {
  it('writeDataHeader writes block numbers modulo 65536 (rollover)', () => {
    const b = Buffer.alloc(4);
    writeDataHeader(b, 65535);
    expect([...b]).toEqual([0, 3, 0xff, 0xff]);
    writeDataHeader(b, 65536);
    expect([...b]).toEqual([0, 3, 0, 0]);
    writeDataHeader(b, 65537 + 256);
    expect([...b]).toEqual([0, 3, 1, 1]);
  });

  it('peekAckBlock reads ACKs and nothing else', () => {
    expect(peekAckBlock(fixture('curl-rrq-ack'))).toBe(1);
    expect(peekAckBlock(Buffer.from([0, 4, 0xab, 0xcd, 0]))).toBe(0xabcd);
    expect(peekAckBlock(Buffer.from([0, 3, 0, 1]))).toBe(-1);
    expect(peekAckBlock(Buffer.from([0, 4, 0]))).toBe(-1);
  });
});
