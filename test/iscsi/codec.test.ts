import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../appliance/iscsi/crc32c';
import { PduFramer, type FramedPdu } from '../../appliance/iscsi/framer';
import {
  decodePdu,
  DecodeError,
  encodeLoginResponse,
  encodeR2T,
  encodeScsiResponse,
  writeDataIn,
  decodeLun,
  encodeLun,
  type InitiatorPdu,
} from '../../appliance/iscsi/pdu';
import { decodeText, encodeText } from '../../appliance/iscsi/text';

const FIX = join(__dirname, '..', 'fixtures', 'iscsi');

/** A readable dump of a decoded PDU: every field except the raw buffers; text segments decoded. */
function dump(p: InitiatorPdu): Record<string, unknown> {
  const { header, data, ...rest } = p as InitiatorPdu & { cdb?: Buffer };
  const out: Record<string, unknown> = { ...rest };
  if ('cdb' in p) out.cdb = p.cdb.toString('hex');
  if (p.op === 'loginRequest' || p.op === 'textRequest') out.text = decodeText(data);
  else out.dataLength = data.length;
  void header;
  return out;
}

function frameAll(stream: Buffer, splits: number[] = []): FramedPdu[] {
  const out: FramedPdu[] = [];
  const f = new PduFramer(1 << 24, (p) => out.push({ ...p, header: Buffer.from(p.header), data: Buffer.from(p.data) }));
  let prev = 0;
  for (const s of [...splits, stream.length]) {
    f.push(stream.subarray(prev, s));
    prev = s;
  }
  expect(f.pendingBytes).toBe(0);
  return out;
}

/** Compares with the stored readable dump; UPDATE_GOLDEN=1 rewrites it. */
function golden(name: string, value: unknown): void {
  const file = join(FIX, `${name}.decoded.json`);
  const text = `${JSON.stringify(value, null, 1)}\n`;
  if (process.env.UPDATE_GOLDEN || !existsSync(file)) writeFileSync(file, text);
  expect(text).toBe(readFileSync(file, 'utf8'));
}

describe('golden initiator traffic (captured from libiscsi and qemu)', () => {
  it('decodes iscsi-inq: login with the keys libiscsi offers, then INQUIRY and logout', () => {
    const stream = readFileSync(join(FIX, 'libiscsi-inq.initiator.bin'));
    const pdus = frameAll(stream).map((f) => decodePdu(f.header, f.data));
    golden('libiscsi-inq', pdus.map(dump));
    const login = pdus[0];
    expect(login.op).toBe('loginRequest');
    if (login.op !== 'loginRequest') return;
    expect(login.immediate).toBe(true);
    expect(login.tsih).toBe(0);
    const keys = new Map(decodeText(login.data));
    expect(keys.get('InitiatorName')).toBe('iqn.2026-11.local.netboot:initiator:test1');
    expect(keys.get('TargetName')).toBe('iqn.2026-11.local.netboot:fixture');
    expect(keys.get('SessionType')).toBe('Normal');
    const inquiry = pdus.find((p) => p.op === 'scsiCommand' && p.cdb[0] === 0x12);
    expect(inquiry).toBeDefined();
    expect(pdus[pdus.length - 1].op).toBe('logoutRequest');
  });

  it('decodes qemu-io: WRITE(16)/WRITE(10) with data, SYNCHRONIZE CACHE, READ', () => {
    const stream = readFileSync(join(FIX, 'qemu-io.initiator.bin'));
    const pdus = frameAll(stream).map((f) => decodePdu(f.header, f.data));
    golden('qemu-io', pdus.map(dump));
    const write = pdus.find((p) => p.op === 'scsiCommand' && (p.cdb[0] === 0x8a || p.cdb[0] === 0x2a));
    expect(write && write.op === 'scsiCommand' && write.write && write.edtl).toBe(4096);
    // Every byte of the 4 KiB written is 0x5a, whether it came as immediate data or Data-Out.
    const payload = pdus.filter((p) => (p.op === 'scsiCommand' && p === write) || p.op === 'dataOut').map((p) => p.data);
    expect(Buffer.concat(payload).equals(Buffer.alloc(4096, 0x5a))).toBe(true);
    expect(pdus.some((p) => p.op === 'scsiCommand' && (p.cdb[0] === 0x35 || p.cdb[0] === 0x91))).toBe(true);
  });
});

describe('golden iPXE traffic (captured from ipxe.lkrn sanboot)', () => {
  it('decodes the two login PDUs with the keys iPXE sends, then TUR, READ CAPACITY(10), READ(10)', () => {
    const stream = readFileSync(join(FIX, 'ipxe.initiator.bin'));
    const pdus = frameAll(stream).map((f) => decodePdu(f.header, f.data));
    golden('ipxe', pdus.map(dump));
    const [sec, op] = pdus;
    expect(sec.op === 'loginRequest' && sec.csg === 0 && sec.transit && sec.nsg === 1).toBe(true);
    expect(decodeText(sec.data)).toContainEqual(['AuthMethod', 'None']);
    expect(op.op === 'loginRequest' && op.csg === 1 && op.nsg === 3).toBe(true);
    const keys = new Map(decodeText(op.data));
    expect(keys.get('ImmediateData')).toBe('No');
    expect(keys.get('MaxOutstandingR2T')).toBe('1');
    expect(keys.get('MaxRecvDataSegmentLength')).toBe('8192');
    const cdbs = pdus.filter((p) => p.op === 'scsiCommand').map((p) => (p.op === 'scsiCommand' ? p.cdb[0] : -1));
    expect(cdbs.slice(0, 3)).toEqual([0x00, 0x25, 0x28]);
  });
});

describe('PduFramer', () => {
  const stream = readFileSync(join(FIX, 'qemu-io.initiator.bin'));
  const whole = frameAll(stream);

  it('gives the same PDUs whatever the split point', () => {
    const sig = (ps: FramedPdu[]) => ps.map((p) => `${p.header.toString('hex')}/${p.data.toString('hex')}`).join('|');
    const expected = sig(whole);
    const bad: number[] = [];
    for (let k = 0; k <= stream.length; k++) {
      if (sig(frameAll(stream, [k])) !== expected) bad.push(k);
    }
    expect(bad).toEqual([]);
  });

  it('handles one byte at a time and random three-way splits', () => {
    const bytes = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(frameAll(stream, bytes).map((p) => p.header.toString('hex'))).toEqual(whole.map((p) => p.header.toString('hex')));
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % stream.length;
    for (let n = 0; n < 300; n++) {
      const a = rnd();
      const b = rnd();
      const parts = frameAll(stream, [Math.min(a, b), Math.max(a, b)]);
      expect(parts.map((p) => p.data.toString('hex'))).toEqual(whole.map((p) => p.data.toString('hex')));
    }
  });

  it('rejects a data segment above MaxRecvDataSegmentLength', () => {
    const f = new PduFramer(8192, () => undefined);
    const h = Buffer.alloc(48);
    h[0] = 0x01;
    h.writeUIntBE(8193, 5, 3);
    expect(() => f.push(h)).toThrow(DecodeError);
  });

  it('checks header and data digests (CRC32C) when negotiated', () => {
    const bhs = Buffer.alloc(48);
    bhs[0] = 0x05;
    bhs[1] = 0x80;
    const data = Buffer.from('hello'); // 5 bytes: padded to 8
    bhs.writeUIntBE(data.length, 5, 3);
    const padded = Buffer.concat([data, Buffer.alloc(3)]);
    const hd = Buffer.alloc(4);
    hd.writeUInt32LE(crc32c(bhs));
    const dd = Buffer.alloc(4);
    dd.writeUInt32LE(crc32c(padded));
    const wire = Buffer.concat([bhs, hd, padded, dd]);
    const got: FramedPdu[] = [];
    const f = new PduFramer(8192, (p) => got.push(p));
    f.headerDigest = true;
    f.dataDigest = true;
    for (let k = 0; k <= wire.length; k++) {
      got.length = 0;
      f.push(wire.subarray(0, k));
      f.push(wire.subarray(k));
      expect(got).toHaveLength(1);
      expect(got[0].data.toString()).toBe('hello');
      expect(got[0].dataDigestError).toBe(false);
    }
    const badData = Buffer.from(wire);
    badData[48 + 4] ^= 1;
    got.length = 0;
    f.push(badData);
    expect(got[0].dataDigestError).toBe(true);
    const badHeader = Buffer.from(wire);
    badHeader[10] ^= 1;
    expect(() => new PduFramer(8192, () => undefined).push(badHeader)).not.toThrow(); // digests off: not checked
    const g = new PduFramer(8192, () => undefined);
    g.headerDigest = true;
    expect(() => g.push(badHeader)).toThrow(/header digest/);
  });
});

describe('PduFramer data placement (placeData)', () => {
  /** Two Data-Out PDUs (data 13 and 1000 bytes: padded, digested) then a NOP-Out, on the wire. */
  function wire(digests: boolean): { bytes: Buffer; datas: Buffer[] } {
    const datas = [Buffer.from('thirteen byte'), Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff))];
    const parts: Buffer[] = [];
    datas.forEach((data, i) => {
      const bhs = Buffer.alloc(48);
      bhs[0] = 0x05;
      bhs.writeUIntBE(data.length, 5, 3);
      bhs.writeUInt32BE(i + 1, 16);
      parts.push(bhs);
      if (digests) parts.push(Buffer.from(new Uint32Array([crc32c(bhs)]).buffer));
      const pad = Buffer.concat([data, Buffer.alloc((4 - (data.length % 4)) % 4)]);
      parts.push(pad);
      if (digests) parts.push(Buffer.from(new Uint32Array([crc32c(pad)]).buffer));
    });
    const nop = Buffer.alloc(48);
    parts.push(nop);
    if (digests) parts.push(Buffer.from(new Uint32Array([crc32c(nop)]).buffer));
    return { bytes: Buffer.concat(parts), datas };
  }

  for (const digests of [false, true]) {
    it(`gathers a segment that spans chunks straight into the consumer's buffer, at every split (digests ${digests ? 'on' : 'off'})`, () => {
      const { bytes, datas } = wire(digests);
      for (let k = 1; k < bytes.length; k++) {
        const dests = datas.map((d) => Buffer.alloc(d.length + 8, 0xee).subarray(4, 4 + d.length));
        const got: FramedPdu[] = [];
        const f = new PduFramer(8192, (p) => got.push(p));
        f.headerDigest = digests;
        f.dataDigest = digests;
        f.placeData = (h, len) => (h.readUInt32BE(16) === 2 && len === datas[1]!.length ? dests[1] : h.readUInt32BE(16) === 1 ? dests[0] : undefined);
        f.push(bytes.subarray(0, k));
        f.push(bytes.subarray(k));
        expect(
          got.map((p) => p.data.toString('hex')),
          `split ${k}`,
        ).toEqual([...datas.map((d) => d.toString('hex')), '']);
        expect(
          got.every((p) => !p.dataDigestError),
          `split ${k}`,
        ).toBe(true);
        expect(f.pendingBytes).toBe(0);
        datas.forEach((d, i) => {
          const start = 48 + (digests ? 4 : 0) + (i === 1 ? 48 + (digests ? 8 : 0) + 16 : 0);
          const spans = k > start && k < start + d.length + ((4 - (d.length % 4)) % 4) + (digests ? 4 : 0);
          // Gathered across the split: handed on as the consumer's own buffer, nothing written
          // past it (the padding and digest went elsewhere). Inside one chunk: a view of it.
          expect(got[i]!.data === dests[i], `split ${k} pdu ${i}`).toBe(spans);
          if (spans) expect(dests[i]!.equals(d)).toBe(true);
          const outer = Buffer.from(dests[i]!.buffer, dests[i]!.byteOffset - 4, d.length + 8);
          expect(outer.subarray(0, 4).every((b) => b === 0xee) && outer.subarray(4 + d.length).every((b) => b === 0xee)).toBe(true);
        });
      }
    });
  }

  it('still reports a data digest error for a placed segment', () => {
    const { bytes } = wire(true);
    const bad = Buffer.from(bytes);
    bad[48 + 4 + 48 + 4 + 16 + 4 + 500] ^= 1; // inside the second PDU's data
    const got: FramedPdu[] = [];
    const f = new PduFramer(8192, (p) => got.push(p));
    f.headerDigest = true;
    f.dataDigest = true;
    const dest = Buffer.alloc(1000);
    f.placeData = (h) => (h.readUInt32BE(16) === 2 ? dest : undefined);
    f.push(bad.subarray(0, 200));
    f.push(bad.subarray(200));
    expect(got[1]!.data).toBe(dest);
    expect(got.map((p) => p.dataDigestError)).toEqual([false, true, false]);
  });
});

describe('CRC32C', () => {
  it('matches the standard check value and the RFC 3720 B.4 examples', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    const inc = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    expect(crc32c(inc)).toBe(0x46dd794e);
    // Continuation over two pieces equals one pass.
    expect(crc32c(inc.subarray(5), crc32c(inc.subarray(0, 5)))).toBe(0x46dd794e);
  });
});

describe('encoders (RFC 7143 §11 layouts, byte for byte)', () => {
  it('SCSI Response with underflow residual', () => {
    const b = encodeScsiResponse({
      itt: 0x11223344,
      status: 0x02,
      response: 0,
      underflow: true,
      overflow: false,
      residual: 0x200,
      expDataSN: 0,
      dataLength: 20,
      statSN: 5,
      expCmdSN: 6,
      maxCmdSN: 0x85,
    });
    expect(b.toString('hex')).toBe(
      '21820002' + '00000014' + '0000000000000000' + '11223344' + '00000000' + '00000005' + '00000006' + '00000085' + '00000000' + '00000000' + '00000200',
    );
  });

  it('Data-In with status (S and F bits) and R2T', () => {
    const b = Buffer.alloc(48);
    writeDataIn(b, 0, {
      final: true,
      statusFlag: true,
      status: 0,
      underflow: false,
      overflow: true,
      residual: 512,
      lun: 0,
      itt: 7,
      dataSN: 3,
      bufferOffset: 0x3000,
      dataLength: 0x1000,
      statSN: 9,
      expCmdSN: 10,
      maxCmdSN: 137,
    });
    expect(b.toString('hex')).toBe(
      '25850000' + '00001000' + '0000000000000000' + '00000007' + 'ffffffff' + '00000009' + '0000000a' + '00000089' + '00000003' + '00003000' + '00000200',
    );
    const r = encodeR2T({ lun: 1, itt: 7, ttt: 0x42, r2tSN: 2, bufferOffset: 65536, length: 8192, statSN: 9, expCmdSN: 10, maxCmdSN: 137 });
    expect(r.toString('hex')).toBe(
      '31800000' + '00000000' + '0001000000000000' + '00000007' + '00000042' + '00000009' + '0000000a' + '00000089' + '00000002' + '00010000' + '00002000',
    );
  });

  it('Login Response carries ISID, TSIH, stages and status', () => {
    const b = encodeLoginResponse({
      transit: true,
      cont: false,
      csg: 1,
      nsg: 3,
      versionMax: 0,
      versionActive: 0,
      isid: '400001370000',
      tsih: 0x0102,
      itt: 1,
      status: 0x0202,
      dataLength: 0,
      statSN: 1,
      expCmdSN: 2,
      maxCmdSN: 3,
    });
    expect(b.toString('hex')).toBe(
      '23870000' + '00000000' + '4000013700000102' + '00000001' + '00000000' + '00000001' + '00000002' + '00000003' + '02020000' + '00000000' + '00000000',
    );
  });
});

describe('LUN and text codecs', () => {
  it('round-trips peripheral and flat LUNs and refuses multi-level ones', () => {
    const b = Buffer.alloc(8);
    for (const lun of [0, 1, 255, 256, 16383]) {
      encodeLun(b, 0, lun);
      expect(decodeLun(b, 0)).toBe(lun);
    }
    expect(decodeLun(Buffer.from('0001000200000000', 'hex'), 0)).toBe(-1);
    expect(decodeLun(Buffer.from('8001000000000000', 'hex'), 0)).toBe(-1);
  });

  it('decodes key=value pairs and rejects a pair without =', () => {
    expect(
      decodeText(
        encodeText([
          ['A', '1'],
          ['B', 'x=y'],
        ]),
      ),
    ).toEqual([
      ['A', '1'],
      ['B', 'x=y'],
    ]);
    expect(decodeText(Buffer.from('A=1\0B=2'))).toEqual([
      ['A', '1'],
      ['B', '2'],
    ]);
    expect(() => decodeText(Buffer.from('novalue\0'))).toThrow(DecodeError);
  });

  it('refuses a header shorter than a BHS', () => {
    expect(() => decodePdu(Buffer.alloc(40), Buffer.alloc(0))).toThrow(DecodeError);
  });
});
