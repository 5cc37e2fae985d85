import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * CHAP for iSCSI (RFC 7143 §12.1.3, RFC 1994): MD5 only (CHAP_A=5), which is all iPXE,
 * open-iscsi and Windows implement. Pure functions; the login state machine keeps the state.
 */

/** CHAP_A value for MD5. */
export const CHAP_MD5 = 5;

/** The CHAP response: MD5(identifier byte || secret || challenge). */
export function chapResponse(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5')
    .update(Buffer.from([id & 0xff]))
    .update(Buffer.from(secret, 'utf8'))
    .update(challenge)
    .digest();
}

/**
 * Decodes a CHAP binary value: `0x`/`0X` hex or `0b`/`0B` base64 (§6.1, "binary-value").
 * Returns undefined when malformed. iPXE may send either form.
 */
export function decodeChapBinary(v: string): Buffer | undefined {
  if (/^0x[0-9a-f]+$/i.test(v)) {
    const hex = v.slice(2);
    return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  }
  if (/^0b[A-Za-z0-9+/]+=*$/i.test(v)) return Buffer.from(v.slice(2), 'base64');
  return undefined;
}

/** Encodes a binary value as `0x` hex, the form every initiator accepts. */
export function encodeChapBinary(b: Buffer): string {
  return `0x${b.toString('hex')}`;
}

/** Compares an initiator's CHAP_R with the expected response in constant time. */
export function chapVerify(id: number, secret: string, challenge: Buffer, response: Buffer): boolean {
  const expected = chapResponse(id, secret, challenge);
  return response.length === expected.length && timingSafeEqual(response, expected);
}
