import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestInitiator } from './initiator';

/**
 * Fuzz traffic for an iSCSI target (test/iscsi/fuzz.test.ts, and bench/iscsi-vs-tgt.ts, which
 * measures the target's memory after it): connections that send mutated captured PDUs, random
 * headers and random bytes, half of them after a real login so the fuzz reaches the full
 * feature phase. Deterministic for a seed (xorshift32).
 */

/** A small deterministic generator: rnd(n) is in [0, n). */
export function xorshift(seed = 0x2545f491): (n: number) => number {
  let s = seed;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

/** Splits a captured stream into PDUs (48-byte BHS + padded data, no digests). */
export function splitPdus(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off + 48 <= stream.length; ) {
    const len = 48 + stream[off + 4] * 4 + ((stream.readUIntBE(off + 5, 3) + 3) & ~3);
    out.push(stream.subarray(off, off + len));
    off += len;
  }
  return out;
}

/** The initiator PDUs captured from libiscsi and qemu-io (test/fixtures/iscsi). */
export function capturedPdus(): Buffer[] {
  const dir = join(__dirname, '..', 'fixtures', 'iscsi');
  return [...splitPdus(readFileSync(join(dir, 'libiscsi-inq.initiator.bin'))), ...splitPdus(readFileSync(join(dir, 'qemu-io.initiator.bin')))];
}

/** One mutation of a PDU: bit flips, absurd lengths, a random opcode, truncation or random fields. */
export function mutate(pdu: Buffer, rnd: (n: number) => number): Buffer {
  const b = Buffer.from(pdu);
  switch (rnd(6)) {
    case 0: // flip some bits anywhere
      for (let k = 0, n = 1 + rnd(8); k < n; k++) b[rnd(b.length)] ^= 1 << rnd(8);
      return b;
    case 1: // absurd lengths
      b[4] = rnd(256);
      b.writeUIntBE(rnd(1 << 24), 5, 3);
      return b;
    case 2: // random opcode
      b[0] = rnd(256);
      return b;
    case 3: // truncated
      return b.subarray(0, rnd(b.length));
    case 4: // random BHS, real data
      randomBytes(48).copy(b, 0);
      return b;
    default: // random fields except the lengths
      randomBytes(40).copy(b, 8);
      return b;
  }
}

export interface FuzzOptions {
  port: number;
  host?: string;
  /** Target the fuzzers log in to (bit flips can turn any CDB into a WRITE: not a disk anyone needs). */
  targetName: string;
  initiatorName: string;
  /** Stop starting connections at this Date.now(). */
  until: number;
  rnd: (n: number) => number;
  captured: Buffer[];
  /** A login the target drops counts as a fuzz connection (a peer under test); else it fails the run. */
  tolerateLoginFailure?: boolean;
}

/** One fuzzer: connection after connection until `until`; resolves with how many it opened. */
export async function fuzzer(o: FuzzOptions): Promise<number> {
  const { rnd } = o;
  let conns = 0;
  while (Date.now() < o.until) {
    conns++;
    let c: TestInitiator;
    try {
      c = await TestInitiator.connect(o.port, o.host);
    } catch {
      continue;
    }
    try {
      if (rnd(3) > 0) {
        // Log in properly first so the fuzz reaches the full feature phase.
        const st = await Promise.race([
          c.login({ initiatorName: o.initiatorName, targetName: o.targetName, isid: `40000137${(0xe000 + rnd(0x1000)).toString(16)}` }).catch((err: Error) => {
            if (o.tolerateLoginFailure) return -1;
            throw err;
          }),
          new Promise<number>((r) => setTimeout(() => r(-1), 2000)),
        ]);
        if (st !== 0) continue;
      }
      for (let k = 0, n = 1 + rnd(40); k < n && !c.closed; k++) {
        const pick = rnd(10);
        if (pick < 7) c.writeRaw(mutate(o.captured[rnd(o.captured.length)], rnd));
        else if (pick < 9) c.writeRaw(randomBytes(1 + rnd(300)));
        else c.writeRaw(randomBytes(48));
      }
      await new Promise((r) => setTimeout(r, rnd(30)));
    } finally {
      c.destroy();
    }
  }
  return conns;
}
