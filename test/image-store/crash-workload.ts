import { prng } from './helpers';

/** One step of the crash workload; writes in one batch never overlap, so their order is moot. */
export type CrashOp =
  | { kind: 'write'; idx: number; lba: number; blocks: number }
  | { kind: 'batch-end' }
  | { kind: 'flush' }
  | { kind: 'snapshot' }
  | { kind: 'delete-snapshot' }
  | { kind: 'import' };

/** The deterministic op sequence for (seed, blockCount): the child runs it, the parent replays it. */
export function* crashOps(seed: number, blockCount: number): Generator<CrashOp> {
  const rnd = prng(seed);
  let idx = 0;
  for (;;) {
    const n = 1 + Math.floor(rnd() * 8);
    const taken: [number, number][] = [];
    for (let k = 0; k < n; k++) {
      const blocks = 1 + Math.floor(rnd() * (rnd() < 0.2 ? 256 : 16));
      const lba = Math.floor(rnd() * (blockCount - blocks));
      if (taken.some(([a, b]) => lba < b && a < lba + blocks)) continue;
      taken.push([lba, lba + blocks]);
      yield { kind: 'write', idx: idx++, lba, blocks };
    }
    yield { kind: 'batch-end' };
    const r = rnd();
    if (r < 0.25) yield { kind: 'flush' };
    else if (r < 0.28) yield { kind: 'snapshot' };
    else if (r < 0.3) yield { kind: 'delete-snapshot' };
    else if (r < 0.31) yield { kind: 'import' };
  }
}

/** Block contents written by write `idx` of run `run` at `lba`: a header naming them, then filler. */
export function crashBlock(run: number, idx: number, lba: number): Buffer {
  const b = Buffer.alloc(512, (run * 31 + idx * 7 + lba) & 0xff);
  b.writeUInt32LE(0xc0ffee00, 0);
  b.writeUInt32LE(run, 4);
  b.writeUInt32LE(idx, 8);
  b.writeUInt32LE(lba, 12);
  return b;
}
