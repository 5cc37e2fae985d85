import { DecodeError } from './pdu';

/**
 * Text key=value pairs of Login and Text PDUs (RFC 7143 §6.1): UTF-8 `key=value` strings, each
 * terminated by a NUL. Pure codec.
 */

/** One key=value pair, in the order received (order matters for responses). */
export type TextPair = [key: string, value: string];

/** Decodes a data segment into pairs. Tolerates a missing final NUL; rejects a pair without '='. */
export function decodeText(data: Buffer): TextPair[] {
  const pairs: TextPair[] = [];
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(0, start);
    if (end < 0) end = data.length;
    if (end > start) {
      const s = data.toString('utf8', start, end);
      const eq = s.indexOf('=');
      if (eq <= 0) throw new DecodeError(`text pair without key=value: ${JSON.stringify(s.slice(0, 64))}`, start);
      pairs.push([s.slice(0, eq), s.slice(eq + 1)]);
    }
    start = end + 1;
  }
  return pairs;
}

/** Encodes pairs as NUL-terminated key=value strings. */
export function encodeText(pairs: readonly TextPair[]): Buffer {
  if (pairs.length === 0) return Buffer.alloc(0);
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}
