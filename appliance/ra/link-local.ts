/**
 * A client's IPv6 link-local address from its MAC: fe80::/64 plus the modified EUI-64 interface
 * identifier (RFC 4291 appendix A: flip the universal/local bit, put ff:fe in the middle). iPXE
 * forms its link-local address this way (net/ipv6.c, ipv6_eui64), and so does Linux unless told
 * otherwise (addr_gen_mode), so the appliance knows a booting client's RS source before it
 * arrives. Pure: no I/O.
 */

/** `aa:bb:cc:dd:ee:ff` -> `fe80::a8bb:ccff:fedd:eeff` (RFC 5952 text). */
export function macToLinkLocal(mac: string): string {
  const b = mac.split(/[:-]/).map((h) => parseInt(h, 16));
  if (b.length !== 6 || b.some((x) => !(x >= 0 && x <= 255))) throw new Error(`not a MAC address: ${mac}`);
  const id = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  const groups = [0xfe80, 0, 0, 0];
  for (let i = 0; i < 8; i += 2) groups.push((id[i]! << 8) | id[i + 1]!);
  return formatIpv6(groups);
}

/**
 * Eight 16-bit groups as RFC 5952 text (§4: lower case, no leading zeros, the longest run of two
 * or more zero groups, the first of equal runs, shortened to "::"). The helper prints addresses
 * with inet_ntop, which follows the same rules, so both sides' strings compare equal.
 */
export function formatIpv6(groups: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: readonly number[]) => g.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}
