import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from './ports';
import { StoreError } from './errors';
import { isZero, preadFull } from './io';
import type { ImageRow } from './metadata';
import {
  DETECT_BYTES,
  detectFormat,
  QEMU_FORMATS,
  qemuInfoReference,
  vmdkEmbedsDescriptor,
  vmdkExtentFiles,
  type QemuFormat,
  type QemuInfo,
} from './import-formats';
import { DecodeError, decodeQcow2Header, qcow2FileReferences, unsupportedFeature } from './qcow2';
import { Qcow2Source, RawSource, type ImageSource } from './qcow2-reader';
import type { StoreInternals } from './internals';

/** Extents are committed in batches this large, so a huge import does not hold them all in memory. */
const BATCH_BYTES = 64 << 20;

export interface ImportOptions {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Force a format ('raw', 'qcow2', 'vmdk', ...: see import-formats.ts); default: detect by magic bytes. */
  format?: string;
  /** The name recorded as the image's source and used in messages (default: the file's base name). */
  sourceName?: string;
  /**
   * Nobody else can write `file` (e.g. our own upload), so qemu-img may read it in place; otherwise
   * a file that needs qemu-img is first copied to a private temporary file.
   */
  exclusive?: boolean;
  qemuImg: string;
  log: Logger;
  now: number;
}

/**
 * Imports `file` as image `name`. The image row exists in state 'importing' while chunks are
 * written (all-zero chunks take no space); it becomes 'ready' in the commit that adds the last
 * extents. On any failure everything is removed; after a crash ImageStore.open removes it.
 */
export async function importFile(store: StoreInternals, name: string, file: string, opts: ImportOptions): Promise<ImageRow> {
  const label = opts.sourceName ?? path.basename(file);
  let tmp: string | undefined;
  let src: ImageSource;
  try {
    ({ src, tmp } = await openImportSource(file, label, path.join(store.dir, 'tmp'), opts));
  } catch (err) {
    if (tmp) fs.rmSync(tmp, { force: true });
    throw err;
  }
  const { meta, space } = store;
  let imageId = 0;
  let layer = 0;
  const uncommitted: number[] = [];
  try {
    if (src.size === 0 || src.size % 512 !== 0) throw new StoreError('BAD_IMAGE', `${label}: size ${src.size} is not a positive multiple of 512 bytes`);
    if (meta.q.imageByName.get(name)) throw new StoreError('IMAGE_EXISTS', `${name} already exists`);
    store.commit(() => {
      layer = meta.newLayer(null, opts.now);
      imageId = Number(meta.q.insertImage.run(name, layer, src.size, opts.now, 'importing', label).lastInsertRowid);
    });
    const cb = space.chunkBytes;
    const chunks = Math.ceil(src.size / cb);
    const buf = Buffer.allocUnsafe(cb);
    let batch: [number, number][] = [];
    const commitBatch = async (final: boolean) => {
      await space.syncDirty();
      // A failed fdatasync elsewhere aborts imports (the store is degraded): never commit after it.
      if (opts.signal?.aborted) throw new StoreError('ABORTED', `import of ${name} aborted`);
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
    if (err instanceof DecodeError) throw new StoreError('BAD_IMAGE', `${label}: ${err.message}`);
    if (err instanceof StoreError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'EACCES') throw new StoreError('BAD_IMAGE', `${label}: ${(err as Error).message}`);
    throw err;
  } finally {
    await src.close();
    if (tmp) fs.rmSync(tmp, { force: true });
  }
  opts.log.debug({ image: name, chunks: space.usedChunks }, 'import committed');
  return meta.q.imageById.get(imageId) as ImageRow;
}

/** What inspect found: read natively (raw, plain qcow2), or through qemu-img as `format`. */
type Inspected = { native: true; format: 'raw' | 'qcow2' } | { native: false; format: QemuFormat };

const refused = (message: string) => new StoreError('IMAGE_REFERENCES_FILE', message);

/**
 * Checks what the open file `fd` is, by its own bytes, and refuses any image that would make a
 * reader open a second file: a qcow2 backing file or external data file, a vmdk descriptor (its
 * extents are other files), a vmdk embedding one. `label` names the file in messages.
 */
async function inspectFd(fd: number, label: string, forced: string | undefined): Promise<Inspected> {
  const st = fs.fstatSync(fd);
  if (!st.isFile()) throw new StoreError('BAD_IMAGE', `${label} is not a regular file`);
  const head = Buffer.alloc(Math.min(DETECT_BYTES, st.size));
  await preadFull(fd, head, 0, head.length, 0);
  const detected = detectFormat(head);
  const format = forced ?? detected;
  // A descriptor stays refused whatever format is asked for, except raw (then its bytes are the disk).
  if (detected === 'vmdk-descriptor' && format !== 'raw') {
    const extents = vmdkExtentFiles(head.toString('latin1'));
    throw refused(`vmdk descriptor refused: its data is in other files (${extents.join(', ') || 'none named'})`);
  }
  if (format === 'raw') return { native: true, format };
  if (!(QEMU_FORMATS as readonly string[]).includes(format))
    throw new StoreError('BAD_IMAGE', `${label}: ${format} images are not imported (raw, ${QEMU_FORMATS.join(', ')} are)`);
  if (format === 'qcow2') {
    let h;
    try {
      h = decodeQcow2Header(head);
    } catch (err) {
      if (err instanceof DecodeError) throw new StoreError('BAD_IMAGE', `${label}: ${err.message}`);
      throw err;
    }
    // Extensions and the backing file name live in the first cluster.
    const first = Buffer.alloc(Math.min(2 ** h.clusterBits, st.size));
    await preadFull(fd, first, 0, first.length, 0);
    const refs = qcow2FileReferences(h, first);
    if (refs.length) throw refused(refs.map((r) => `qcow2 ${r.kind} ${r.name} refused`).join('; '));
    if (!unsupportedFeature(h)) return { native: true, format: 'qcow2' };
  }
  if (format === 'vmdk' && vmdkEmbedsDescriptor(head)) throw refused('vmdk with an embedded descriptor refused: its data may be in other files');
  return { native: false, format: format as QemuFormat };
}

/** The file qemu-img reads: our descriptor, handed to it as its fd 3 (see runQemuImg). */
const QEMU_FD_PATH = '/dev/fd/3';

/**
 * How qemu-img is told to open the image: a json: name, so the format is named (never probed), the
 * protocol is the plain file driver (the name is not parsed for `proto:` prefixes), and the
 * backing file is explicitly none, so even a file changed after our checks cannot pull one in.
 */
function qemuSpec(format: QemuFormat): string {
  return `json:${JSON.stringify({ driver: format, backing: null, file: { driver: 'file', filename: QEMU_FD_PATH } })}`;
}

/** Runs qemu-img with `fd` as its descriptor 3; resolves with stdout, rejects with a StoreError. */
function runQemuImg(qemuImg: string, args: string[], fd: number, label: string, signal?: AbortSignal, timeoutMs?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(qemuImg, args, { stdio: ['ignore', 'pipe', 'pipe', fd], signal, timeout: timeoutMs });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out.length < 4 << 20 ? (out += d) : undefined));
    child.stderr!.on('data', (d: Buffer) => (err.length < 64 << 10 ? (err += d) : undefined));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') reject(new StoreError('NO_QEMU_IMG', `reading ${label} needs qemu-img, which is not installed`));
      else if (e.name === 'AbortError') reject(new StoreError('ABORTED', `import of ${label} aborted`));
      else reject(e);
    });
    child.on('close', (code, sig) => {
      if (code === 0) return resolve(out);
      if (signal?.aborted) return reject(new StoreError('ABORTED', `import of ${label} aborted`));
      reject(new StoreError('BAD_IMAGE', `${label}: qemu-img cannot read it: ${err.trim() || `exit ${code ?? sig}`}`));
    });
  });
}

/** Asks qemu-img (which does not open backing files for info) what `fd` refers to; refuses any other file. */
async function qemuCheck(fd: number, format: QemuFormat, label: string, qemuImg: string, signal?: AbortSignal): Promise<void> {
  const spec = `json:${JSON.stringify({ driver: format, file: { driver: 'file', filename: QEMU_FD_PATH } })}`;
  const out = await runQemuImg(qemuImg, ['info', '--output=json', spec], fd, label, signal, 60_000);
  let info: QemuInfo;
  try {
    info = JSON.parse(out) as QemuInfo;
  } catch {
    throw new StoreError('BAD_IMAGE', `${label}: qemu-img info printed no JSON`);
  }
  const why = qemuInfoReference(info, format, QEMU_FD_PATH);
  if (why) throw refused(why);
}

const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK; // NONBLOCK: a FIFO cannot stall open()

function openForImport(file: string, label: string): number {
  try {
    return fs.openSync(file, OPEN_FLAGS);
  } catch (err) {
    throw new StoreError('BAD_IMAGE', `cannot read ${label}: ${(err as Error).message}`);
  }
}

/**
 * Checks `file` as an import would, without importing: resolves with how it would be read, or
 * throws StoreError IMAGE_REFERENCES_FILE (it names another file) or BAD_IMAGE. Lets the API refuse
 * at once instead of in a background job.
 */
export async function inspectImageFile(
  file: string,
  opts: { qemuImg: string; format?: string; sourceName?: string; signal?: AbortSignal },
): Promise<{ format: string; native: boolean }> {
  const label = opts.sourceName ?? path.basename(file);
  const fd = openForImport(file, label);
  try {
    const kind = await inspectFd(fd, label, opts.format);
    if (!kind.native) await qemuCheck(fd, kind.format, label, opts.qemuImg, opts.signal);
    return kind;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Picks a reader. The file is opened once and every check and read goes through that descriptor,
 * so renaming or swapping the path meanwhile changes nothing. Raw and plain qcow2 are read
 * natively (never another file); other formats go through `qemu-img convert` to a temporary qcow2
 * in `tmpDir` (the RBD backend reads through it too), after the checks above and qemu-img info's view agree it is one self-contained file.
 */
export async function openImportSource(
  file: string,
  label: string,
  tmpDir: string,
  opts: Pick<ImportOptions, 'format' | 'exclusive' | 'qemuImg' | 'log' | 'signal'>,
): Promise<{ src: ImageSource; tmp?: string }> {
  let fd: number | undefined = openForImport(file, label);
  let copy: string | undefined;
  const tmpName = (ext: string) => path.join(tmpDir, `import-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.${ext}`);
  try {
    let kind = await inspectFd(fd, label, opts.format);
    if (!kind.native && !opts.exclusive) {
      // Someone else may write this file: between our checks and qemu-img's reads it could become
      // a descriptor or grow a data file. qemu-img reads a private copy instead, checked afresh.
      fs.mkdirSync(tmpDir, { recursive: true });
      copy = tmpName('src');
      await pipeline(
        fs.createReadStream('', { fd, autoClose: false, start: 0, highWaterMark: 1 << 20 }),
        fs.createWriteStream(copy, { flags: 'wx', mode: 0o600 }),
        { signal: opts.signal },
      );
      fs.closeSync(fd);
      fd = undefined;
      fd = openForImport(copy, label);
      kind = await inspectFd(fd, label, opts.format);
    }
    if (kind.native) {
      const owned = fd;
      fd = undefined; // the source owns it now (and closes it if it fails to open)
      try {
        return { src: kind.format === 'raw' ? RawSource.fromFd(owned) : await Qcow2Source.fromFd(owned) };
      } catch (err) {
        if (err instanceof DecodeError) throw new StoreError('BAD_IMAGE', `${label}: ${err.message}`);
        throw err;
      }
    }
    await qemuCheck(fd, kind.format, label, opts.qemuImg, opts.signal);
    opts.log.info({ file: label, format: kind.format }, 'reading the image with qemu-img');
    fs.mkdirSync(tmpDir, { recursive: true });
    const tmp = tmpName('qcow2');
    try {
      await runQemuImg(opts.qemuImg, ['convert', '-O', 'qcow2', '-o', 'compat=1.1,cluster_size=65536', qemuSpec(kind.format), tmp], fd, label, opts.signal);
      return { src: await Qcow2Source.open(tmp), tmp };
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw new StoreError('ABORTED', `import of ${label} aborted`);
    throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    if (copy) fs.rmSync(copy, { force: true });
  }
}
