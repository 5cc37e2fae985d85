import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { fileIo, type SegmentIo } from '../../image-store/io';
import { ImageStore } from '../../image-store/store';
import { pattern, tempDir } from './helpers';

/**
 * A write over several chunks the disk owns, lying one after another in one segment file, goes
 * out as one pwrite (a sequential 1 MiB write: 1 call, not 16); chunks elsewhere split the run.
 */
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

class CountingIo implements SegmentIo {
  writes: number[] = [];
  read = fileIo.read;
  sync = fileIo.sync;
  write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
    this.writes.push(len);
    return fileIo.write(fd, buf, off, len, pos);
  }
}

describe('write coalescing', () => {
  it('writes owned chunks contiguous on disk with one pwrite, and reads back what was written', async () => {
    const work = tempDir('coalesce');
    dirs.push(work);
    const size = 4 * 1024 * 1024;
    fs.writeFileSync(path.join(work, 'g.raw'), pattern(size, 5));
    const io = new CountingIo();
    const store = ImageStore.open({ dir: path.join(work, 'store'), clock: new FakeClock(), log: silentLogger(), segmentMiB: 8, chunkKiB: 64, reserveMiB: 0, io });
    try {
      await store.importImage('g', path.join(work, 'g.raw'));
      store.createDisk('d', 'g');
      const v = store.openVolume('d');
      const mib = pattern(1024 * 1024, 9);
      await v.write(2048, mib); // first write: 16 chunks copied on write, allocated in order
      io.writes = [];
      const again = pattern(1024 * 1024, 11);
      await v.write(2048, again); // now owned and contiguous: one call
      expect(io.writes).toEqual([1024 * 1024]);
      expect((await v.read(2048, 2048)).equals(again)).toBe(true);
      // A write that also covers a chunk the disk does not own yet: the run is split around it.
      io.writes = [];
      const wider = pattern(1024 * 1024 + 65536, 13);
      await v.write(2048, wider);
      expect(io.writes).toEqual([1024 * 1024, 65536]);
      expect((await v.read(2048, wider.length / 512)).equals(wider)).toBe(true);
      await v.close();
    } finally {
      await store.close();
    }
  });
});
