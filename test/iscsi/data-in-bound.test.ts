import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IQN_INITIATOR, IQN_INITIATOR2 } from './harness';
import { TestInitiator } from './initiator';

/**
 * Issue #13: one session that queued 128 READs of 8 MiB and never read its socket made the
 * target hold ~1.1 GiB (every command executed, every Data-In queued on the socket). The
 * target runs in a child process (test/iscsi/serve.ts, a 64 MiB in-memory disk) so its RSS is
 * its own; an honest initiator must keep being answered meanwhile.
 */

const ROOT = join(__dirname, '..', '..');
const T = 'iqn.2026-11.local.netboot:test';
const MiB = 1024 * 1024;
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

describe('an initiator that never reads its Data-In (issue #13)', () => {
  let child: ChildProcess;
  let port = 0;
  const initiators: TestInitiator[] = [];

  beforeAll(async () => {
    child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/iscsi/serve.ts'), '0', 'memory', '131072'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`target did not start: ${out}`)), 20_000);
      child.stdout!.on('data', (d) => {
        out += d;
        const m = /PORT (\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.stderr!.on('data', (d) => (out += d));
      child.once('exit', (code) => reject(new Error(`target exited ${code}: ${out}`)));
    });
  }, 30_000);

  afterAll(async () => {
    for (const i of initiators) i.destroy();
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    }
  });

  async function login(name: string, isid: string, big: boolean): Promise<TestInitiator> {
    const i = await TestInitiator.connect(port);
    initiators.push(i);
    const keys: [string, string][] = big
      ? // Everything as large as the target allows: 8 MiB per PDU, 16 MiB bursts.
        [
          ['HeaderDigest', 'None'],
          ['DataDigest', 'None'],
          ['MaxRecvDataSegmentLength', '16777215'],
          ['MaxBurstLength', '16776192'],
          ['FirstBurstLength', '262144'],
          ['ErrorRecoveryLevel', '0'],
        ]
      : [
          ['HeaderDigest', 'None'],
          ['DataDigest', 'None'],
          ['MaxRecvDataSegmentLength', '262144'],
          ['ErrorRecoveryLevel', '0'],
        ];
    expect(await i.login({ initiatorName: name, targetName: T, isid, keys })).toBe(0);
    return i;
  }

  it("keeps the target's RSS within 64 MiB of its baseline and answers an honest initiator meanwhile", async () => {
    const honest = await login(IQN_INITIATOR2, '400001370201', false);
    // Warm up: JIT, one large read through the same path, so the baseline includes them.
    const warm = await login(IQN_INITIATOR, '400001370202', true);
    for (let k = 0; k < 4; k++) expect((await warm.read10(k * 16384, 16384)).data.length).toBe(8 * MiB);
    warm.destroy();
    for (let k = 0; k < 20; k++) await honest.read10(k * 128, 128);
    await settle(500);
    const baseline = rssMiB(child.pid!);

    const hog = await login(IQN_INITIATOR, '400001370203', true);
    hog.stopReading();
    // 128 READ(10)s of 8 MiB (16384 blocks), the whole CmdSN window, never collected.
    const hogReads = Array.from({ length: 128 }, (_, k) => hog.read10((k % 8) * 16384, 16384).catch(() => undefined));
    void hogReads;

    let peak = baseline;
    const t0 = Date.now();
    let honestReads = 0;
    let slowest = 0;
    while (Date.now() - t0 < 4000) {
      const s = Date.now();
      const r = await Promise.race([honest.read10((honestReads % 64) * 128, 128), settle(3000).then(() => null)]);
      expect(r?.status).toBe(0);
      slowest = Math.max(slowest, Date.now() - s);
      honestReads++;
      peak = Math.max(peak, rssMiB(child.pid!));
      await settle(20);
    }
    console.log(
      `target RSS baseline ${baseline.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB (+${(peak - baseline).toFixed(0)}); honest reads ${honestReads}, slowest ${slowest} ms`,
    );
    expect(peak - baseline).toBeLessThan(64);
    expect(honestReads).toBeGreaterThan(10);
  }, 60_000);

  it('holds at most its write-buffer budget for a writer that never sends its last Data-Out', async () => {
    // 128 WRITEs of 8 MiB, each with a 64 KiB first burst (immediate + unsolicited) and then all
    // of its R2T'd data but the last 512 bytes: before the fix every one got an 8 MiB buffer.
    const baseline = rssMiB(child.pid!);
    const w = await TestInitiator.connect(port);
    initiators.push(w);
    expect(
      await w.login({
        initiatorName: IQN_INITIATOR,
        targetName: T,
        isid: '400001370204',
        keys: [
          ['InitialR2T', 'No'],
          ['ImmediateData', 'Yes'],
          ['FirstBurstLength', '65536'],
          ['MaxBurstLength', '16776192'],
          ['MaxRecvDataSegmentLength', '262144'],
          ['ErrorRecoveryLevel', '0'],
        ],
      }),
    ).toBe(0);
    const data = Buffer.alloc(8 * MiB, 0x5a);
    for (let k = 0; k < 128; k++) {
      const cdb = Buffer.alloc(10);
      cdb[0] = 0x2a;
      cdb.writeUInt32BE((k % 8) * 16384, 2);
      cdb.writeUInt16BE(16384, 7);
      void w.command(cdb, { dataOut: data, immediate: 32768, unsolicited: 32768, sendUpTo: data.length - 512 }).catch(() => undefined);
    }
    let peak = baseline;
    const t0 = Date.now();
    while (Date.now() - t0 < 3000) {
      await settle(100);
      peak = Math.max(peak, rssMiB(child.pid!));
    }
    console.log(`stalled writer: target RSS baseline ${baseline.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB (+${(peak - baseline).toFixed(0)})`);
    // MAX_WRITE_BUFFERED (64 MiB) of whole buffers + 120 first bursts of 64 KiB, and slack for
    // what glibc and V8 keep: the growth measured 81-126 MiB over nine runs of three versions
    // (2026-12-04), so 112 failed now and then. Unbounded, it is 128 x 8 MiB = 1 GiB.
    expect(peak - baseline).toBeLessThan(160);
  }, 60_000);
});
