import { Readable } from 'node:stream';
import type { BlockVolume } from '../../image-store/block-volume';

/** A parsed single `Range: bytes=a-b` request (RFC 9110 §14.1.2), or 'unsatisfiable'. */
export function parseByteRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined; // several or odd ranges: send the whole body
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return { start, end };
}

/**
 * Streams bytes [start, end] of a volume, reading whole blocks 1 MiB at a time (backpressure:
 * the next read starts only when the consumer wants more), then closes the volume.
 */
export function volumeByteStream(vol: BlockVolume & { close?(): Promise<void> | void }, start: number, end: number): Readable {
  const bs = vol.blockSize;
  const step = 1024 * 1024;
  let pos = start;
  const done = async () => {
    await vol.close?.();
  };
  return new Readable({
    async read() {
      try {
        if (pos > end) {
          await done();
          this.push(null);
          return;
        }
        const want = Math.min(step, end + 1 - pos);
        const lba = Math.floor(pos / bs);
        const lastLba = Math.floor((pos + want - 1) / bs);
        const buf = await vol.read(lba, lastLba - lba + 1);
        const from = pos - lba * bs;
        this.push(buf.subarray(from, from + want));
        pos += want;
      } catch (err) {
        await done().catch(() => undefined);
        this.destroy(err as Error);
      }
    },
    destroy(err, cb) {
      done().then(
        () => cb(err),
        () => cb(err),
      );
    },
  });
}
