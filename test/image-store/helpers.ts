import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { ImageStore } from '../../image-store/store';

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `nb-store-${tag}-`));
}

/** Opens a small-geometry store (1 MiB segments, 4 KiB chunks unless given) for tests. */
export function openStore(dir: string, opts: { chunkKiB?: number; segmentMiB?: number; capacityBytes?: number; reserveMiB?: number } = {}): ImageStore {
  return ImageStore.open({
    dir,
    clock: new FakeClock(),
    log: silentLogger(),
    segmentMiB: opts.segmentMiB ?? 1,
    chunkKiB: opts.chunkKiB ?? 4,
    reserveMiB: opts.reserveMiB ?? 0,
    capacityBytes: opts.capacityBytes,
  });
}

import { prng } from '../helpers/prng';
export { prng };

/** A buffer of `len` bytes filled with a pattern derived from tag (cheap, distinct per tag). */
export function pattern(len: number, tag: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i += 4) b.writeUInt32LE((Math.imul(tag, 2654435761) + i) >>> 0, i);
  return b;
}

/** True when the qemu-img binary is runnable. */
export function haveQemuImg(): boolean {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes `step` blocks at a time from block 0, each with pattern(step * 512, tagBase + lba),
 * until a write fails; returns how far it got (blocks) and the error (undefined if none failed).
 */
export async function fillUntilFailure(
  vol: { blockCount: number; write(lba: number, data: Buffer): Promise<void> },
  step: number,
  tagBase: number,
): Promise<{ written: number; err: unknown }> {
  let written = 0;
  for (let lba = 0; lba < vol.blockCount; lba += step) {
    try {
      await vol.write(lba, pattern(step * 512, tagBase + lba));
      written = lba + step;
    } catch (err) {
      return { written, err };
    }
  }
  return { written, err: undefined };
}
