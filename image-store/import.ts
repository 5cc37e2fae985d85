import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../appliance/core/log';
import { StoreError } from './errors';
import { isZero, preadFull } from './io';
import type { ImageRow } from './metadata';
import { DecodeError, isQcow2 } from './qcow2';
import { Qcow2Source, RawSource, type ImageSource } from './qcow2-reader';
import type { ImageStore } from './store';

const run = promisify(execFile);

/** Extents are committed in batches this large, so a huge import does not hold them all in memory. */
const BATCH_BYTES = 64 << 20;

export interface ImportOptions {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Force a format ('raw', 'qcow2', or anything qemu-img knows); default: detect. */
  format?: string;
  qemuImg: string;
  log: Logger;
  now: number;
}

/**
 * Imports `file` as image `name`. The image row exists in state 'importing' while chunks are
 * written (all-zero chunks take no space); it becomes 'ready' in the commit that adds the last
 * extents. On any failure everything is removed; after a crash ImageStore.open removes it.
 */
export async function importFile(store: ImageStore, name: string, file: string, opts: ImportOptions): Promise<ImageRow> {
  let tmp: string | undefined;
  let src: ImageSource;
  try {
    ({ src, tmp } = await openSource(store, file, opts));
  } catch (err) {
    if (tmp) fs.rmSync(tmp, { force: true });
    throw err;
  }
  const { meta, space } = store;
  let imageId = 0;
  let layer = 0;
  const uncommitted: number[] = [];
  try {
    if (src.size === 0 || src.size % 512 !== 0) throw new StoreError('BAD_IMAGE', `${path.basename(file)}: size ${src.size} is not a positive multiple of 512 bytes`);
    if (meta.q.imageByName.get(name)) throw new StoreError('IMAGE_EXISTS', `${name} already exists`);
    store.commit(() => {
      layer = meta.newLayer(null, opts.now);
      imageId = Number(meta.q.insertImage.run(name, layer, src.size, opts.now, 'importing', path.basename(file)).lastInsertRowid);
    });
    const cb = space.chunkBytes;
    const chunks = Math.ceil(src.size / cb);
    const buf = Buffer.allocUnsafe(cb);
    let batch: [number, number][] = [];
    const commitBatch = async (final: boolean) => {
      await space.syncDirty();
      const b = batch;
      batch = [];
      store.commit(() => {
        for (const [l, p] of b) meta.q.upsertExtent.run(layer, l, p);
        if (final) meta.q.setImageState.run('ready', src.size, imageId);
      });
      uncommitted.length = 0;
    };
    let lastReport = 0;
    for (let l = 0; l < chunks; l++) {
      if (opts.signal?.aborted) throw new StoreError('ABORTED', `import of ${name} aborted`);
      const pos = l * cb;
      const len = Math.min(cb, src.size - pos);
      if (await src.allocated(pos, len)) {
        await src.read(buf, len, pos);
        if (len < cb) buf.fill(0, len);
        if (!isZero(buf, 0, cb)) {
          const p = await space.alloc();
          uncommitted.push(p);
          await space.io.write(space.fdOf(p), buf, 0, cb, space.posOf(p));
          // After the write, not before: a volume's flush syncing meanwhile may not cover it.
          space.markDirty(p);
          batch.push([l, p]);
          if (batch.length * cb >= BATCH_BYTES) await commitBatch(false);
        }
      }
      const done = pos + len;
      if (opts.onProgress && (done - lastReport >= 16 * cb || done === src.size)) {
        lastReport = done;
        opts.onProgress(done, src.size);
      }
    }
    await commitBatch(true);
  } catch (err) {
    if (imageId) {
      store.commit(() => {
        meta.q.deleteImage.run(imageId);
        return meta.collect(layer);
      });
    }
    space.release(uncommitted);
    if (err instanceof DecodeError) throw new StoreError('BAD_IMAGE', `${path.basename(file)}: ${err.message}`);
    if (err instanceof StoreError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') throw new StoreError('BAD_IMAGE', `${file}: ${(err as Error).message}`);
    throw err;
  } finally {
    await src.close();
    if (tmp) fs.rmSync(tmp, { force: true });
  }
  opts.log.debug({ image: name, chunks: space.usedChunks }, 'import committed');
  return meta.q.imageById.get(imageId) as ImageRow;
}

/**
 * Picks a reader: qcow2 natively when it can, raw natively, and anything else (vmdk, vdi, vhdx,
 * qcow2 with a backing file or zstd) through `qemu-img convert` to a temporary qcow2 in the store.
 */
async function openSource(store: ImageStore, file: string, opts: ImportOptions): Promise<{ src: ImageSource; tmp?: string }> {
  let head: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new StoreError('BAD_IMAGE', `${file} is not a regular file`);
      head = Buffer.alloc(Math.min(512, st.size));
      await preadFull(fd, head, 0, head.length, 0);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    if (err instanceof StoreError) throw err;
    throw new StoreError('BAD_IMAGE', `cannot read ${file}: ${(err as Error).message}`);
  }
  let format = opts.format;
  if (!format) {
    if (isQcow2(head)) format = 'qcow2';
    else format = (await qemuFormat(opts.qemuImg, file)) ?? 'raw';
  }
  if (format === 'raw') return { src: RawSource.open(file) };
  if (format === 'qcow2') {
    try {
      return { src: await Qcow2Source.open(file) };
    } catch (err) {
      if (!(err as { unsupported?: boolean }).unsupported) {
        if (err instanceof DecodeError) throw new StoreError('BAD_IMAGE', `${path.basename(file)}: ${err.message}`);
        throw err;
      }
      opts.log.info({ file, reason: (err as Error).message }, 'qcow2 feature not read natively; converting with qemu-img');
    }
  }
  const tmpDir = path.join(store.dir, 'tmp');
  fs.mkdirSync(tmpDir, { recursive: true });
  const tmp = path.join(tmpDir, `import-${process.pid}-${Date.now()}.qcow2`);
  try {
    await run(opts.qemuImg, ['convert', '-f', format, '-O', 'qcow2', '-o', 'compat=1.1,cluster_size=65536', file, tmp], { maxBuffer: 1 << 20 });
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new StoreError('NO_QEMU_IMG', `importing ${format} needs qemu-img, which is not installed`);
    throw new StoreError('BAD_IMAGE', `${path.basename(file)}: qemu-img cannot read it: ${(e.stderr ?? e.message).trim()}`);
  }
  try {
    return { src: await Qcow2Source.open(tmp), tmp };
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** The format qemu-img detects, or undefined when qemu-img is absent or cannot tell. */
async function qemuFormat(qemuImg: string, file: string): Promise<string | undefined> {
  try {
    const { stdout } = await run(qemuImg, ['info', '--output=json', file], { maxBuffer: 4 << 20 });
    const f = (JSON.parse(stdout) as { format?: string }).format;
    return typeof f === 'string' ? f : undefined;
  } catch {
    return undefined;
  }
}
