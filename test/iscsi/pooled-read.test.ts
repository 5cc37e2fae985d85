import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../appliance/core/clock';
import { ImageStore } from '../../image-store';
import { IQN_INITIATOR, IQN_INITIATOR2, startTarget, target } from './harness';
import { TestInitiator } from './initiator';

/**
 * A large read's Data-In goes out of a buffer shared by every session (appliance/iscsi/buffer-pool.ts),
 * and the pool hands out memory uninitialised: it holds the last command's data, whoever's it was.
 * What one client reads must still be its own disk only, zeros where its disk has never been written.
 * Two clients on copy-on-write disks of one golden image, through the real image store.
 */
const A = 'iqn.2026-12.local.netboot:pool-a';
const B = 'iqn.2026-12.local.netboot:pool-b';
const MIB = 1 << 20;

describe('pooled Data-In buffers between clients', () => {
  let dir: string;
  let store: ImageStore;
  let server: { stop(): Promise<void> };
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nb-pooled-read-'));
    // The golden image: 1 MiB of 0x5a, then 7 MiB never written (a hole, unmapped in the store).
    const raw = join(dir, 'golden.raw');
    const fd = openSync(raw, 'w');
    writeSync(fd, Buffer.alloc(MIB, 0x5a), 0, MIB, 0);
    writeSync(fd, Buffer.alloc(1), 0, 1, 8 * MIB - 1);
    closeSync(fd);
    store = ImageStore.open({ dir: join(dir, 'store'), clock: systemClock, log: pino({ level: 'silent' }), reserveMiB: 0 });
    await store.importImage('golden', raw);
    store.createDisk('a', 'golden');
    store.createDisk('b', 'golden');
    ({ server, port } = await startTarget([
      target(A, [{ lun: 0, open: () => store.openVolume('a'), readOnly: false }], { allowed: [IQN_INITIATOR] }),
      target(B, [{ lun: 0, open: () => store.openVolume('b'), readOnly: false }], { allowed: [IQN_INITIATOR2], mac: '52:54:00:00:00:02' }),
    ]));
  });
  afterAll(async () => {
    await server?.stop();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("never shows one client another's data: unwritten blocks read as zeros after the buffers held a neighbour's", async () => {
    const a = await TestInitiator.connect(port);
    const b = await TestInitiator.connect(port);
    expect(await a.login({ initiatorName: IQN_INITIATOR, targetName: A })).toBe(0);
    expect(await b.login({ initiatorName: IQN_INITIATOR2, targetName: B, isid: '400001370001' })).toBe(0);
    try {
      // A fills 2 MiB of its own disk (over the golden data and into the hole) with its secret.
      const secret = Buffer.alloc(2 * MIB, 0xa7);
      expect((await a.write10(0, secret)).status).toBe(0);
      for (let round = 0; round < 4; round++) {
        // A reads its secret back, 1 MiB at a time: pooled buffers now hold 0xa7.
        const [r1, r2] = await Promise.all([a.read10(0, 2048), a.read10(2048, 2048)]);
        expect(r1.data.equals(secret.subarray(0, MIB))).toBe(true);
        expect(r2.data.equals(secret.subarray(MIB))).toBe(true);
        // B reads what its own disk holds there: the golden image's 0x5a, then zeros.
        const [g, hole, span] = await Promise.all([b.read10(0, 2048), b.read10(4096, 2048), b.read10(1024, 2048)]);
        expect(g.status).toBe(0);
        expect(g.data.equals(Buffer.alloc(MIB, 0x5a))).toBe(true);
        expect(hole.data.equals(Buffer.alloc(MIB))).toBe(true);
        // Half golden data, half hole: one read over both.
        expect(span.data.equals(Buffer.concat([Buffer.alloc(MIB / 2, 0x5a), Buffer.alloc(MIB / 2)]))).toBe(true);
      }
    } finally {
      a.destroy();
      b.destroy();
    }
  });
});
