import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IscsiServer } from '../../appliance/iscsi/server';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IQN_INITIATOR, startTarget, target } from './harness';
import { TestInitiator } from './initiator';
import { MemoryDisk } from './volumes';

/**
 * Fuzzing: for a bounded time, many connections send mutated captured PDUs, random headers
 * and random bytes (before and after a real login) while one well-behaved session keeps
 * writing and reading, checking every byte. The target must keep serving that session and
 * still accept new logins afterwards.
 */
const DURATION_MS = Number(process.env.ISCSI_FUZZ_MS ?? 20_000);
const T = 'iqn.2026-11.local.netboot:fuzz';
/** The fuzzers log in to their own target: bit flips can turn any CDB into a WRITE. */
const T_FUZZ = 'iqn.2026-11.local.netboot:fuzz-victim';

let seed = 0x2545f491;
function rnd(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return ((seed >>> 0) % n);
}

/** Splits a captured stream into PDUs (48-byte BHS + padded data, no digests). */
function splitPdus(stream: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off + 48 <= stream.length;) {
    const len = 48 + stream[off + 4] * 4 + ((stream.readUIntBE(off + 5, 3) + 3) & ~3);
    out.push(stream.subarray(off, off + len));
    off += len;
  }
  return out;
}

function mutate(pdu: Buffer): Buffer {
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

describe('fuzzing the target', () => {
  const disk = new MemoryDisk('fuzz-disk', 16384);
  const victim = new MemoryDisk('fuzz-victim-disk', 16384);
  let server: IscsiServer;
  let port: number;
  const captured = [
    ...splitPdus(readFileSync(join(__dirname, '..', 'fixtures', 'iscsi', 'libiscsi-inq.initiator.bin'))),
    ...splitPdus(readFileSync(join(__dirname, '..', 'fixtures', 'iscsi', 'qemu-io.initiator.bin'))),
  ];

  beforeAll(async () => {
    ({ server, port } = await startTarget([
      target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }]),
      target(T_FUZZ, [{ lun: 0, open: () => victim.open(), readOnly: false }]),
    ]));
  });
  afterAll(async () => {
    await server?.stop();
  });

  it(`survives ${DURATION_MS / 1000} s of mutated and random PDUs while a good session reads and writes`, async () => {
    const good = await TestInitiator.connect(port);
    expect(await good.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '40000137f000' })).toBe(0);
    const end = Date.now() + DURATION_MS;
    let goodOps = 0;
    let fuzzConns = 0;

    const goodLoop = (async () => {
      while (Date.now() < end) {
        const lba = rnd(1024 - 16);
        const data = randomBytes(512 * (1 + rnd(16)));
        const w = await good.write10(lba, data);
        expect(w.status).toBe(0);
        const r = await good.read10(lba, data.length / 512);
        expect(r.status).toBe(0);
        expect(r.data.equals(data)).toBe(true);
        goodOps++;
      }
    })();

    const fuzzer = async () => {
      while (Date.now() < end) {
        fuzzConns++;
        let c: TestInitiator;
        try {
          c = await TestInitiator.connect(port);
        } catch {
          continue;
        }
        try {
          const mode = rnd(3);
          if (mode > 0) {
            // Log in properly first so the fuzz reaches the full feature phase.
            const st = await Promise.race([
              c.login({ initiatorName: IQN_INITIATOR, targetName: T_FUZZ, isid: `40000137${(0xe000 + rnd(0x1000)).toString(16)}` }),
              new Promise<number>((r) => setTimeout(() => r(-1), 2000)),
            ]);
            if (st !== 0) continue;
          }
          for (let k = 0, n = 1 + rnd(40); k < n && !c.closed; k++) {
            const pick = rnd(10);
            if (pick < 7) {
              c.writeRaw(mutate(captured[rnd(captured.length)]));
            } else if (pick < 9) {
              c.writeRaw(randomBytes(1 + rnd(300)));
            } else {
              c.writeRaw(randomBytes(48));
            }
          }
          await new Promise((r) => setTimeout(r, rnd(30)));
        } finally {
          c.destroy();
        }
      }
    };

    await Promise.all([goodLoop, fuzzer(), fuzzer(), fuzzer()]);
    expect(goodOps).toBeGreaterThan(20);
    expect(fuzzConns).toBeGreaterThan(20);
    expect(good.closed).toBe(false);
    // The good session's blocks hold only what it wrote; a fresh login still works.
    const after = await TestInitiator.connect(port);
    expect(await after.login({ initiatorName: IQN_INITIATOR, targetName: T, isid: '40000137f001' })).toBe(0);
    expect((await after.read10(0, 8)).status).toBe(0);
    after.destroy();
    good.destroy();
    const st = server.status();
    expect(st.state).toBe('running');
    expect(st.counters.errors).toBeGreaterThan(0);
  }, DURATION_MS + 60_000);
});
