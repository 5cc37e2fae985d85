import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseArpTable, peerIPv4, procNeighbours } from '../../appliance/boot/neighbours';
import { ScriptTokens } from '../../appliance/boot/script-tokens';
import { FakeClock } from '../../appliance/core/clock';

const MAC = '52:54:00:12:34:56';
const OTHER = '52:54:00:99:99:99';
/** A fetch from `peer`, whose neighbour entry is `neighbourMac` (null: none, an off-link peer). */
const at = (peer: string, neighbourMac: string | null = MAC, mac = MAC) => ({ mac, peer, neighbourMac: neighbourMac ?? undefined });

describe('one-time script tokens (issue #13)', () => {
  it('are 22 base64url characters, unique, and single use (a replay is refused as spent)', () => {
    const tokens = new ScriptTokens({ clock: new FakeClock(), ttlMs: 120_000 });
    const a = tokens.mint(MAC);
    const b = tokens.mint(MAC);
    expect(a).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(b).not.toBe(a);
    expect(tokens.redeem(a, at('198.18.0.100'))).toEqual({ ok: true });
    expect(tokens.redeem(a, at('198.18.0.100'))).toEqual({ ok: false, reason: 'spent' });
    // Redeeming retired the MAC's other token (same exchange or an older answer).
    expect(tokens.redeem(b, at('198.18.0.100'))).toEqual({ ok: false, reason: 'unknown' });
    expect(tokens.redeem('never-minted-token-xx', at('198.18.0.100'))).toEqual({ ok: false, reason: 'unknown' });
  });

  it('expire after ttl on the injected clock', () => {
    const clock = new FakeClock();
    const tokens = new ScriptTokens({ clock, ttlMs: 120_000 });
    const early = tokens.mint(MAC);
    clock.advance(119_999);
    const late = tokens.mint(MAC);
    expect(tokens.redeem(early, at('198.18.0.100'))).toEqual({ ok: true });
    clock.advance(120_000);
    expect(tokens.redeem(late, at('198.18.0.100'))).toEqual({ ok: false, reason: 'unknown' }); // retired by the redeem above
    const t = tokens.mint(MAC);
    clock.advance(120_000);
    expect(tokens.redeem(t, at('198.18.0.100'))).toEqual({ ok: false, reason: 'expired' });
    expect(tokens.size()).toBe(0);
  });

  it('refuse another machine without spending the token: other MAC in the URL, wrong neighbour, wrong DHCP address, off-link peer', () => {
    const tokens = new ScriptTokens({ clock: new FakeClock(), ttlMs: 120_000 });
    const t = tokens.mint(MAC);
    expect(tokens.redeem(t, at('198.18.0.100', MAC, OTHER))).toEqual({ ok: false, reason: 'other-mac' });
    expect(tokens.redeem(t, at('198.18.0.100', OTHER))).toEqual({ ok: false, reason: 'wrong-neighbour' });
    expect(tokens.redeem(t, at('198.18.0.100', null))).toEqual({ ok: false, reason: 'no-neighbour' });
    // Still good for the real client after the sniffer's attempts.
    expect(tokens.redeem(t, at('198.18.0.100'))).toEqual({ ok: true });

    const bound = tokens.mint(MAC, { address: '198.18.0.100' });
    expect(tokens.redeem(bound, at('198.18.0.101'))).toEqual({ ok: false, reason: 'wrong-address' });
    expect(tokens.redeem(bound, at('198.18.0.100', OTHER))).toEqual({ ok: false, reason: 'wrong-neighbour' });
    expect(tokens.redeem(bound, at('198.18.0.100'))).toEqual({ ok: true });
    // A relayed client is off-link (no neighbour entry): the DHCP-given address vouches for it.
    const relayed = tokens.mint(MAC, { address: '198.19.5.20' });
    expect(tokens.redeem(relayed, at('198.19.5.20', null))).toEqual({ ok: true });
  });

  it('are bounded per MAC (oldest first) and overall', () => {
    const tokens = new ScriptTokens({ clock: new FakeClock(), ttlMs: 120_000, maxPerMac: 2, maxTotal: 3 });
    const [a, b, c] = [tokens.mint(MAC), tokens.mint(MAC), tokens.mint(MAC)];
    expect(tokens.size()).toBe(2);
    expect(tokens.redeem(a, at('198.18.0.100'))).toEqual({ ok: false, reason: 'unknown' });
    const others = Array.from({ length: 5 }, (_, i) => tokens.mint(`02:00:00:00:00:0${i}`));
    expect(tokens.size()).toBe(3);
    expect(tokens.redeem(b, at('198.18.0.100'))).toEqual({ ok: false, reason: 'unknown' });
    expect(tokens.redeem(c, at('198.18.0.100'))).toEqual({ ok: false, reason: 'unknown' });
    expect(tokens.redeem(others[4]!, at('198.18.0.100', '02:00:00:00:00:04', '02:00:00:00:00:04'))).toEqual({ ok: true });
  });
});

describe('neighbour table', () => {
  const table = [
    'IP address       HW type     Flags       HW address            Mask     Device',
    '198.18.0.100     0x1         0x2         52:54:00:12:34:56     *        br0',
    '198.18.0.101     0x1         0x0         00:00:00:00:00:00     *        br0',
    '198.18.0.102     0x1         0x6         52:54:00:AB:CD:EF     *        br0',
    '',
  ].join('\n');

  it('reads complete entries only, lower-cased', async () => {
    const m = parseArpTable(table);
    expect(m.get('198.18.0.100')).toBe(MAC);
    expect(m.has('198.18.0.101')).toBe(false);
    expect(m.get('198.18.0.102')).toBe('52:54:00:ab:cd:ef');
    const file = join(mkdtempSync(join(tmpdir(), 'nb-arp-')), 'arp');
    writeFileSync(file, table);
    expect(await procNeighbours(file)('198.18.0.100')).toBe(MAC);
    const errors: unknown[] = [];
    expect(await procNeighbours(join(file, 'missing'), (e) => errors.push(e))('198.18.0.100')).toBeUndefined();
    expect(errors).toHaveLength(1);
  });

  it('unwraps IPv4-mapped peers and ignores IPv6 ones', () => {
    expect(peerIPv4('::ffff:198.18.0.100')).toBe('198.18.0.100');
    expect(peerIPv4('198.18.0.100')).toBe('198.18.0.100');
    expect(peerIPv4('fe80::1')).toBeUndefined();
    expect(peerIPv4(undefined)).toBeUndefined();
  });
});
