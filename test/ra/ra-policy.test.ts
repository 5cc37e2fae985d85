/** Issue #17: the pure parts of the router-solicitation responder (appliance/ra/). */
import { describe, expect, it } from 'vitest';
import { allowCommand, parseHelperLine } from '../../appliance/ra/helper-protocol';
import { formatIpv6, macToLinkLocal } from '../../appliance/ra/link-local';
import { bootingMacs, decideRa, MAX_ALLOWED, UNKNOWN_BOOT_WINDOW_MS } from '../../appliance/ra/policy';

describe('macToLinkLocal (modified EUI-64, RFC 4291 appendix A)', () => {
  it('matches the addresses iPXE and Linux form', () => {
    // Both seen on the wire: iPXE's "net0: fe80::5054:ff:fee2:200/64" and a Linux veth's.
    expect(macToLinkLocal('52:54:00:e2:02:00')).toBe('fe80::5054:ff:fee2:200');
    expect(macToLinkLocal('52:54:00:aa:00:01')).toBe('fe80::5054:ff:feaa:1');
  });
  it('flips the universal/local bit and accepts dashes and capitals', () => {
    expect(macToLinkLocal('00-1B-21-0A-0B-0C')).toBe('fe80::21b:21ff:fe0a:b0c');
    expect(macToLinkLocal('02:00:00:00:00:00')).toBe('fe80::ff:fe00:0');
  });
  it('refuses what is not a MAC', () => {
    expect(() => macToLinkLocal('52:54:00:e2:02')).toThrow();
    expect(() => macToLinkLocal('52:54:00:e2:02:zz')).toThrow();
  });
  it('writes RFC 5952 text: longest zero run, first of equals, single zeros kept', () => {
    expect(formatIpv6([0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0])).toBe('fe80::ff:fe00:0');
    expect(formatIpv6([1, 0, 0, 2, 0, 0, 3, 4])).toBe('1::2:0:0:3:4');
    expect(formatIpv6([1, 0, 2, 3, 4, 5, 6, 7])).toBe('1:0:2:3:4:5:6:7');
    expect(formatIpv6([0, 0, 0, 0, 0, 0, 0, 1])).toBe('::1');
  });
});

describe('bootingMacs', () => {
  const now = 1_000_000_000;
  const heard = [
    { mac: '52:54:00:00:00:02', lastSeen: now - 1000 },
    { mac: '52:54:00:00:00:03', lastSeen: now - UNKNOWN_BOOT_WINDOW_MS - 1 },
  ];
  it('is every registered client, plus recently heard unknown ones when the policy serves them', () => {
    expect(bootingMacs(['52:54:00:00:00:09', '52:54:00:00:00:01'], heard, 'wait', now)).toEqual([
      '52:54:00:00:00:01',
      '52:54:00:00:00:02',
      '52:54:00:00:00:09',
    ]);
    expect(bootingMacs([], heard, 'enroll', now)).toEqual(['52:54:00:00:00:02']);
  });
  it('leaves unknown machines out under "ignore": the appliance takes no part in their boot', () => {
    expect(bootingMacs(['52:54:00:00:00:01'], heard, 'ignore', now)).toEqual(['52:54:00:00:00:01']);
  });
});

describe('decideRa', () => {
  const base = { now: 10_000, probeUntil: 0, routers: new Map<string, number>(), holdMs: 1_800_000, booting: ['52:54:00:e2:02:00'] };
  it('answers the booting clients by their link-local addresses', () => {
    const d = decideRa(base);
    expect(d.answer && d.allow).toEqual(['fe80::5054:ff:fee2:200']);
    expect(d.answer && d.macByAddress.get('fe80::5054:ff:fee2:200')).toBe('52:54:00:e2:02:00');
  });
  it('allows at most MAX_ALLOWED addresses (what the helper holds)', () => {
    const many = Array.from(
      { length: MAX_ALLOWED + 5 },
      (_, i) =>
        `52:54:00:${((i >> 16) & 0xff).toString(16).padStart(2, '0')}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
    );
    const d = decideRa({ ...base, booting: many });
    expect(d.answer && d.allow.length).toBe(MAX_ALLOWED);
  });
  it('answers nobody while probing, with nobody booting, and while another router was heard within the hold time', () => {
    expect(decideRa({ ...base, probeUntil: 10_001 })).toMatchObject({ answer: false, reason: /other routers/ });
    expect(decideRa({ ...base, booting: [] })).toMatchObject({ answer: false, reason: 'no client to answer' });
    const routers = new Map([['fe80::1', 10_000 - 1_799_999]]);
    expect(decideRa({ ...base, routers })).toMatchObject({ answer: false, router: 'fe80::1' });
    expect(decideRa({ ...base, routers: new Map([['fe80::1', 10_000 - 1_800_000]]) }).answer).toBe(true);
  });
});

describe('helper protocol', () => {
  it("parses the helper's events and refuses malformed ones", () => {
    expect(parseHelperLine('ready 4')).toEqual({ kind: 'ready', ifindex: 4 });
    expect(parseHelperLine('rs fe80::1 answered')).toEqual({ kind: 'rs', source: 'fe80::1', outcome: 'answered' });
    expect(parseHelperLine('ra fe80::1 1800 c0')).toEqual({ kind: 'ra', source: 'fe80::1', lifetime: 1800, flags: 0xc0 });
    expect(parseHelperLine('error socket: Operation not permitted')).toEqual({ kind: 'error', text: 'socket: Operation not permitted' });
    expect(parseHelperLine('rs fe80::1 maybe')).toBeUndefined();
    expect(parseHelperLine('ra fe80::1 x 00')).toBeUndefined();
    expect(parseHelperLine('hello')).toBeUndefined();
  });
  it('writes the allow-list as one line, and refuses anything but link-local text', () => {
    expect(allowCommand([])).toBe('allow\n');
    expect(allowCommand(['fe80::1', 'fe80::5054:ff:fee2:200'])).toBe('allow fe80::1 fe80::5054:ff:fee2:200\n');
    expect(() => allowCommand(['fe80::1\nsolicit'])).toThrow();
    expect(() => allowCommand(['2001:db8::1'])).toThrow();
  });
});
