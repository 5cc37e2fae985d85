import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IscsiServer } from '../../appliance/iscsi/server';
import { capturedPdus, fuzzer, xorshift } from './fuzz-traffic';
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

const rnd = xorshift();

describe('fuzzing the target', () => {
  const disk = new MemoryDisk('fuzz-disk', 16384);
  const victim = new MemoryDisk('fuzz-victim-disk', 16384);
  let server: IscsiServer;
  let port: number;
  const captured = capturedPdus();

  beforeAll(async () => {
    ({ server, port } = await startTarget([
      target(T, [{ lun: 0, open: () => disk.open(), readOnly: false }]),
      target(T_FUZZ, [{ lun: 0, open: () => victim.open(), readOnly: false }]),
    ]));
  });
  afterAll(async () => {
    await server?.stop();
  });

  it(
    `survives ${DURATION_MS / 1000} s of mutated and random PDUs while a good session reads and writes`,
    async () => {
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

      const fuzz = () => fuzzer({ port, targetName: T_FUZZ, initiatorName: IQN_INITIATOR, until: end, rnd, captured });
      const conns = await Promise.all([goodLoop, fuzz(), fuzz(), fuzz()]);
      fuzzConns = conns[1] + conns[2] + conns[3];
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
    },
    DURATION_MS + 60_000,
  );
});
