import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DecodeError, decodePacket, encodePacket, hardwareAddress, type BootRequest } from '../../appliance/dhcp/packet';
import {
  build,
  decodeSubOptions,
  dumpPacket,
  encodeSubOptions,
  getClientArchs,
  getIp,
  getMessageType,
  getOption,
  Opt,
  readRequest,
} from '../../appliance/dhcp/options';

const dir = join(__dirname, '../fixtures/dhcp');
const fixtures = readdirSync(dir).filter((f) => f.endsWith('.bin'));
const load = (name: string) => readFileSync(join(dir, name));

describe('golden packets from real clients', () => {
  it('has the captured fixtures', () => {
    expect(fixtures).toEqual(
      expect.arrayContaining([
        'dhclient-pxe-discover.bin',
        'udhcpc-pxe-discover.bin',
        'ipxe-e1000-discover.bin',
        'ipxe-e1000-request.bin',
        'ipxe-efi-e1000-discover.bin',
        'dnsmasq-offer.bin',
      ]),
    );
  });

  for (const f of fixtures) {
    it(`${f} decodes to its readable dump and re-encodes byte for byte`, () => {
      const bytes = load(f);
      const p = decodePacket(bytes);
      expect(dumpPacket(p)).toBe(readFileSync(join(dir, f.replace(/\.bin$/, '.txt')), 'utf8'));
      expect(encodePacket(p, { minLength: bytes.length }).equals(bytes)).toBe(true);
    });

    it(`${f}: every truncation either decodes or throws DecodeError`, () => {
      const bytes = load(f);
      for (let n = 0; n < bytes.length; n++) {
        try {
          decodePacket(bytes.subarray(0, n));
        } catch (err) {
          expect(err).toBeInstanceOf(DecodeError);
        }
      }
    });
  }

  it('reads what the boot policy needs from iPXE', () => {
    const p = decodePacket(load('ipxe-e1000-discover.bin'));
    const info = readRequest(p, hardwareAddress(p));
    expect(info).toMatchObject({
      mac: '52:54:00:12:34:56',
      type: 'discover',
      arch: 0,
      userClass: 'iPXE',
      vendorClass: 'PXEClient:Arch:00000:UNDI:002001',
      maxMessageSize: 1472,
    });
    expect(info.ipxe?.get(0x13)).toEqual(Buffer.from([1])); // HTTP feature
    expect(info.uuid?.length).toBe(17);
    expect(info.parameterRequestList).toContain(203);
  });

  it("reads a SELECTING REQUEST from iPXE and the UEFI build's architecture", () => {
    const r = decodePacket(load('ipxe-e1000-request.bin'));
    const info = readRequest(r, hardwareAddress(r));
    expect(info).toMatchObject({ type: 'request', serverId: '198.18.8.1', requestedIp: '198.18.8.100' });
    const u = decodePacket(load('ipxe-efi-e1000-discover.bin'));
    const uinfo = readRequest(u, hardwareAddress(u));
    expect(uinfo.arch).toBe(7);
    expect(uinfo.ipxe?.has(0x24)).toBe(true); // EFI feature
  });

  it('reads option 93/97 from udhcpc and finds no 97 in dhclient', () => {
    const u = decodePacket(load('udhcpc-pxe-discover.bin'));
    expect(getClientArchs(u)).toEqual([7]);
    expect(readRequest(u, hardwareAddress(u)).uuid?.toString('hex')).toBe('00112233445566778899aabbccddeeff00');
    const d = decodePacket(load('dhclient-pxe-discover.bin'));
    expect(readRequest(d, hardwareAddress(d)).uuid).toBeUndefined();
    expect(getClientArchs(d)).toEqual([0]);
  });

  it('reads a server reply (dnsmasq offer)', () => {
    const p = decodePacket(load('dnsmasq-offer.bin'));
    expect(p.op).toBe('reply');
    expect(p.yiaddr).toBe('198.18.0.133');
    expect(p.file).toBe('undionly.kpxe');
    expect(getMessageType(p)).toBe('offer');
    expect(getIp(p, Opt.serverId)).toBe('198.18.0.1');
  });
});

function minimal(): BootRequest {
  return {
    op: 'request',
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x01020304,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.from('02000000000100000000000000000000', 'hex'),
    sname: '',
    file: '',
    hasCookie: true,
    options: [build.messageType('discover')],
  };
}

describe('decoder strictness', () => {
  it('rejects a packet shorter than the BOOTP header with the offset', () => {
    expect(() => decodePacket(Buffer.alloc(235))).toThrowError(DecodeError);
    try {
      decodePacket(Buffer.alloc(100));
    } catch (e) {
      expect((e as DecodeError).offset).toBe(100);
    }
  });

  it('rejects an unknown op and an hlen beyond chaddr', () => {
    const b = encodePacket(minimal());
    b[0] = 3;
    expect(() => decodePacket(b)).toThrow(/op 3/);
    b[0] = 1;
    b[2] = 17;
    expect(() => decodePacket(b)).toThrow(/hlen 17/);
  });

  it('rejects an option whose length overruns the packet, naming the offset of its length byte', () => {
    const b = Buffer.concat([encodePacket(minimal()).subarray(0, 240), Buffer.from([53, 1, 1, 60, 10, 65, 66])]);
    try {
      decodePacket(b);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(DecodeError);
      expect((e as DecodeError).offset).toBe(244);
    }
  });

  it('keeps unknown options and skips pad bytes; ends at the buffer end without END', () => {
    const b = Buffer.concat([encodePacket(minimal()).subarray(0, 240), Buffer.from([53, 1, 1, 0, 0, 250, 2, 0xab, 0xcd])]);
    const p = decodePacket(b);
    expect(p.options.map((o) => o.code)).toEqual([53, 250]);
    expect(getOption(p, 250)).toEqual(Buffer.from([0xab, 0xcd]));
  });

  it('treats a packet without the magic cookie as plain BOOTP', () => {
    const p = decodePacket(Buffer.concat([encodePacket(minimal()).subarray(0, 236), Buffer.alloc(64)]));
    expect(p.hasCookie).toBe(false);
    expect(getMessageType(p)).toBeUndefined();
  });

  it('reads options overloaded into file and sname (RFC 2132 9.3), file first', () => {
    const b = encodePacket({ ...minimal(), options: [build.messageType('discover'), build.u8(52, 3)] });
    Buffer.from([12, 3, 0x61, 0x62, 0x63, 255]).copy(b, 108); // host name in file
    Buffer.from([15, 1, 0x78, 255]).copy(b, 44); // domain in sname
    const p = decodePacket(b);
    expect(p.file).toBe('');
    expect(p.sname).toBe('');
    expect(p.options.map((o) => o.code)).toEqual([53, 52, 12, 15]);
  });

  it('rejects a bad message type length and a bad option 93', () => {
    const p = {
      ...minimal(),
      options: [
        { code: 53, data: Buffer.from([1, 2]) },
        { code: 93, data: Buffer.from([0]) },
      ],
    };
    const d = decodePacket(encodePacket(p));
    expect(() => getMessageType(d)).toThrowError(DecodeError);
    expect(() => getClientArchs(d)).toThrowError(DecodeError);
  });
});

describe('encoder', () => {
  it('splits an option longer than 255 bytes and the decoder joins it again (RFC 3396)', () => {
    const long = Buffer.alloc(300, 0x41);
    const bytes = encodePacket({ ...minimal(), options: [build.messageType('discover'), { code: 17, data: long }] });
    const p = decodePacket(bytes);
    expect(p.options.filter((o) => o.code === 17).map((o) => o.data.length)).toEqual([255, 45]);
    expect(getOption(p, 17)).toEqual(long);
  });

  it('pads to 300 bytes by default and refuses a boot file that does not fit', () => {
    expect(encodePacket(minimal()).length).toBe(300);
    expect(() => encodePacket({ ...minimal(), file: 'x'.repeat(129) })).toThrow(RangeError);
  });

  it('PXE option 43 sub-options round-trip and end with 255', () => {
    const data = build.pxeUseFile().data;
    expect([...data]).toEqual([6, 1, 8, 255]);
    expect(decodeSubOptions(data)).toEqual([{ code: 6, data: Buffer.from([8]) }]);
    expect(encodeSubOptions(decodeSubOptions(data), true)).toEqual(data);
    expect(() => decodeSubOptions(Buffer.from([6, 5, 1]))).toThrowError(DecodeError);
  });
});
