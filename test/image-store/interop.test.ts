import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageStore } from '../../image-store/store';
import { haveQemuImg, openStore, pattern, prng, tempDir } from './helpers';

const qemu = haveQemuImg();
const work = tempDir('interop');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** qemu-img with its exit status (compare: 0 same, 1 different; check: 0 clean, 2 corrupt, 3 leaks). */
function qemuImg(...args: string[]): { status: number; out: string } {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** A 24 MiB raw disk: scattered random data, long zero stretches, a non-chunk-aligned tail. */
function makeRaw(file: string, seed: number): Buffer {
  const rnd = prng(seed);
  const buf = Buffer.alloc(24 * 1024 * 1024 + 7 * 512);
  for (let i = 0; i < 60; i++) pattern(512 * (1 + Math.floor(rnd() * 300)), seed + i).copy(buf, Math.floor(rnd() * (buf.length / 512 - 300)) * 512);
  pattern(7 * 512, 99).copy(buf, buf.length - 7 * 512);
  fs.writeFileSync(file, buf);
  return buf;
}

describe.skipIf(!qemu)('import/export interop with qemu-img (skipped: qemu-img not installed)', () => {
  let store: ImageStore;
  let raw: string;
  let rawData: Buffer;
  beforeAll(() => {
    store = openStore(path.join(work, 'store'), { chunkKiB: 64, segmentMiB: 8 });
    raw = path.join(work, 'src.raw');
    rawData = makeRaw(raw, 42);
  });
  afterAll(async () => {
    await store.close();
  });

  it('imports qcow2 from qemu-img convert (plain and compressed) and a vmdk, identical to the source', async () => {
    const q = path.join(work, 'src.qcow2');
    const qc = path.join(work, 'src-c.qcow2');
    const vmdk = path.join(work, 'src.vmdk');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, q]);
    execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, qc]);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', raw, vmdk]);
    const progress: [number, number][] = [];
    const info = await store.importImage('from-qcow2', q, { onProgress: (d, t) => progress.push([d, t]) });
    expect(info.sizeBytes).toBe(rawData.length);
    expect(progress.length).toBeGreaterThan(1);
    expect(progress[progress.length - 1]).toEqual([rawData.length, rawData.length]);
    for (let i = 1; i < progress.length; i++) expect(progress[i][0]).toBeGreaterThan(progress[i - 1][0]);
    // All-zero chunks take no space: the image holds about as much as the data written.
    expect(info.usedBytes).toBeLessThan(rawData.length / 2);
    await store.importImage('from-qcow2c', qc);
    await store.importImage('from-vmdk', vmdk);
    await store.importImage('from-raw', raw);
    for (const name of ['from-qcow2', 'from-qcow2c', 'from-vmdk', 'from-raw']) {
      const out = path.join(work, `${name}.raw`);
      await store.exportToFile(name, out, { format: 'raw' });
      expect(qemuImg('compare', '-f', 'raw', '-F', 'raw', raw, out).status, name).toBe(0);
    }
  });

  it('imports an image qemu-img created empty and then wrote with qemu-io', async () => {
    const q = path.join(work, 'io.qcow2');
    execFileSync('qemu-img', ['create', '-f', 'qcow2', q, '8M']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 1M 256k', '-c', 'write -z 1M 64k', '-c', 'write -P 0x11 7M 4k', q]);
    await store.importImage('qemu-io', q);
    const v = store.openVolume('qemu-io');
    expect((await v.read(2048, 128)).equals(Buffer.alloc(65536))).toBe(true);
    expect((await v.read(2048 + 128, 128)).equals(Buffer.alloc(65536, 0xab))).toBe(true);
    expect((await v.read(7 * 2048, 8)).equals(Buffer.alloc(4096, 0x11))).toBe(true);
    await v.close();
  });

  it('exports a written client disk and its snapshot as raw and qcow2 that qemu-img compares equal and checks clean', async () => {
    store.createDisk('client', 'from-raw');
    const model = Buffer.from(rawData);
    const v = store.openVolume('client');
    const rnd = prng(7);
    for (let i = 0; i < 300; i++) {
      const lba = Math.floor(rnd() * (v.blockCount - 64));
      const n = 1 + Math.floor(rnd() * 64);
      const data = pattern(n * 512, 1000 + i);
      await v.write(lba, data);
      data.copy(model, lba * 512);
    }
    await v.unmap(4096, 1000);
    model.fill(0, 4096 * 512, 5096 * 512);
    const snap = await store.createSnapshot('client', 'before');
    const atSnap = Buffer.from(model);
    await v.write(0, pattern(65536, 5));
    pattern(65536, 5).copy(model, 0);
    await v.close();
    const modelFile = path.join(work, 'model.raw');
    const snapFile = path.join(work, 'snap-model.raw');
    fs.writeFileSync(modelFile, model);
    fs.writeFileSync(snapFile, atSnap);
    for (const [label, opts, want] of [
      ['disk', {}, modelFile],
      ['snapshot', { snapshot: snap.id }, snapFile],
    ] as const) {
      const q = path.join(work, `export-${label}.qcow2`);
      const r = path.join(work, `export-${label}.raw`);
      const qs = store.exportVolume('client', { ...opts, format: 'qcow2' });
      const rs = store.exportVolume('client', { ...opts, format: 'raw' });
      await pipeline(qs, fs.createWriteStream(q));
      await pipeline(rs, fs.createWriteStream(r));
      expect(fs.statSync(q).size, 'qcow2 export size announced up front').toBe(qs.size);
      expect(fs.statSync(r).size).toBe(rs.size);
      const check = qemuImg('check', q);
      expect(check.status, check.out).toBe(0);
      expect(qemuImg('compare', '-f', 'raw', '-F', 'qcow2', want, q).status, `${label} qcow2`).toBe(0);
      expect(qemuImg('compare', '-f', 'raw', '-F', 'raw', want, r).status, `${label} raw`).toBe(0);
      // The qcow2 holds only mapped clusters, not the whole virtual size.
      expect(fs.statSync(q).size).toBeLessThan(model.length);
    }
    // A mismatch is detected (the comparison is not vacuous).
    expect(qemuImg('compare', '-f', 'raw', '-F', 'raw', snapFile, path.join(work, 'export-disk.raw')).status).toBe(1);
    // The export stream (what HTTP download pipes) carries the same bytes.
    const chunks: Buffer[] = [];
    for await (const c of store.exportVolume('client', { format: 'raw' })) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(model)).toBe(true);
    expect(store.isOpen('client')).toBe(false);
  });

  it('refuses truncated and garbage files and leaves nothing behind', async () => {
    const before = store.usage().usedBytes;
    const images = store.listImages().length;
    const q = path.join(work, 'src.qcow2');
    const full = fs.readFileSync(q);
    const cases: [string, Buffer][] = [
      ['truncated.qcow2', full.subarray(0, Math.floor(full.length * 0.6))],
      ['header-only.qcow2', full.subarray(0, 100)],
      ['garbage-magic.qcow2', Buffer.concat([Buffer.from('QFI\xfb', 'latin1'), Buffer.alloc(4, 0xff), Buffer.alloc(4096, 0x5a)])],
      ['odd-size.raw', Buffer.alloc(1000, 1)],
      ['empty.raw', Buffer.alloc(0)],
    ];
    for (const [name, data] of cases) {
      const f = path.join(work, name);
      fs.writeFileSync(f, data);
      await expect(store.importImage(name.replace(/\W/g, '-'), f), name).rejects.toMatchObject({ code: 'BAD_IMAGE' });
    }
    await expect(store.importImage('missing', path.join(work, 'nope.raw'))).rejects.toMatchObject({ code: 'BAD_IMAGE' });
    expect(store.listImages().length).toBe(images);
    expect(store.usage().usedBytes).toBe(before);
    expect(fs.existsSync(path.join(work, 'store', 'tmp')) ? fs.readdirSync(path.join(work, 'store', 'tmp')) : []).toEqual([]);
    expect(store.check().problems).toEqual([]);
  });

  it('an aborted import leaves nothing', async () => {
    const before = store.usage().usedBytes;
    const ac = new AbortController();
    await expect(store.importImage('aborted', raw, { signal: ac.signal, onProgress: (d) => d > 4 << 20 && ac.abort() })).rejects.toMatchObject({
      code: 'ABORTED',
    });
    expect(store.getImage('aborted')).toBeUndefined();
    expect(store.usage().usedBytes).toBe(before);
    expect(store.check().problems).toEqual([]);
  });
});
