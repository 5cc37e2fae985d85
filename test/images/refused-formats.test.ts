import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectImageFile } from '../../image-store/import';
import { detectFormat, qemuInfoReference, vmdkExtentFiles } from '../../image-store/import-formats';
import { decodeQcow2Header, qcow2FileReferences } from '../../image-store/qcow2';
import type { ImageStore } from '../../image-store/store';
import { openStore, pattern, tempDir } from '../image-store/helpers';
import { convert, dirLeaks, haveQemuImg, qcow2WithBacking, qcow2WithDataFile, vmdkDescriptor, vmdkWithParent, writeSecret } from './fixtures';

// Issue #13, "no host file read through an import": an image that names another file made
// qemu-img read that file into the golden image, and exporting a client disk returned it.
describe.skipIf(!haveQemuImg)('imports that name another file are refused (issue #13)', () => {
  const work = tempDir('refs');
  const secretDir = path.join(work, 'host');
  const secret = path.join(secretDir, 'secret.raw');
  let store: ImageStore;
  beforeAll(() => {
    fs.mkdirSync(secretDir);
    writeSecret(secret);
    store = openStore(path.join(work, 'store'), { chunkKiB: 64, segmentMiB: 8 });
  });
  afterAll(async () => {
    await store.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const refusedWith = async (name: string, file: string, what: RegExp) => {
    await expect(store.importImage(name, file)).rejects.toMatchObject({ code: 'IMAGE_REFERENCES_FILE', message: expect.stringMatching(what) });
    expect(store.getImage(name)).toBeUndefined();
    expect(dirLeaks(path.join(work, 'store')), 'the secret reached the store').toBe(false);
  };

  it('a qcow2 whose backing file is a host file', async () => {
    const f = path.join(work, 'backing.qcow2');
    qcow2WithBacking(f, secret);
    await refusedWith('bk', f, new RegExp(`qcow2 backing file ${secret} refused`));
  });

  it('a qcow2 with an external data file', async () => {
    const f = path.join(work, 'datafile.qcow2');
    const data = path.join(secretDir, 'data.raw');
    qcow2WithDataFile(f, data);
    await refusedWith('df', f, new RegExp(`qcow2 external data file ${data} refused`));
  });

  it('a vmdk descriptor whose extent is a host file', async () => {
    const f = path.join(work, 'desc.vmdk');
    vmdkDescriptor(f, secret);
    await refusedWith('desc', f, /vmdk descriptor refused.*secret\.raw/);
    // Asking for vmdk explicitly changes nothing.
    await expect(store.importImage('desc2', f, { format: 'vmdk' })).rejects.toMatchObject({ code: 'IMAGE_REFERENCES_FILE' });
  });

  it('a monolithic sparse vmdk whose parent is another vmdk holding host data', async () => {
    const parent = path.join(secretDir, 'parent.vmdk');
    convert(secret, 'vmdk', parent);
    const f = path.join(work, 'child.vmdk');
    vmdkWithParent(f, parent);
    await refusedWith('child', f, /vmdk backing file .*parent\.vmdk refused/);
  });

  it('the check answers without importing (what the API calls before its 202)', async () => {
    const f = path.join(work, 'backing2.qcow2');
    qcow2WithBacking(f, secret);
    await expect(inspectImageFile(f, { qemuImg: 'qemu-img' })).rejects.toMatchObject({ code: 'IMAGE_REFERENCES_FILE' });
  });

  it('self-contained raw, qcow2, vmdk, vdi, vhdx and vpc still import, byte for byte', async () => {
    const raw = path.join(work, 'good.raw');
    const data = Buffer.concat([pattern(1024 * 1024, 7), Buffer.alloc(512 * 1024), pattern(512 * 1024, 8)]);
    fs.writeFileSync(raw, data);
    for (const format of ['raw', 'qcow2', 'vmdk', 'vdi', 'vhdx', 'vpc']) {
      const f = path.join(work, `good.${format}`);
      if (format !== 'raw') convert(raw, format, f);
      await store.importImage(`good-${format}`, f);
      const out = path.join(work, `export-${format}.raw`);
      await store.exportToFile(`good-${format}`, out, { format: 'raw' });
      const back = fs.readFileSync(out);
      // vpc rounds the size up to its disk geometry: the rest reads as zeros.
      expect(back.subarray(0, data.length).equals(data), format).toBe(true);
      expect(
        back.subarray(data.length).every((b) => b === 0),
        format,
      ).toBe(true);
    }
  });
});

describe('format checks (pure)', () => {
  it('tells formats by magic bytes and never calls a text descriptor raw', () => {
    expect(detectFormat(Buffer.from('QFI\xfb\0\0\0\x03', 'latin1'))).toBe('qcow2');
    expect(detectFormat(Buffer.from('KDMV\x01\0\0\0', 'latin1'))).toBe('vmdk');
    expect(detectFormat(Buffer.from('# Disk DescriptorFile\nversion=1\n'))).toBe('vmdk-descriptor');
    expect(detectFormat(Buffer.from('version=1\ncreateType="twoGbMaxExtentFlat"\nRW 100 FLAT "/etc/shadow" 0\n'))).toBe('vmdk-descriptor');
    expect(detectFormat(Buffer.alloc(4096))).toBe('raw');
  });

  it("lists a descriptor's extent files", () => {
    expect(vmdkExtentFiles('RW 2048 FLAT "a-flat.vmdk" 0\nRDONLY 10 SPARSE "/x/y.vmdk"\n')).toEqual(['a-flat.vmdk', '/x/y.vmdk']);
  });

  it('finds a backing file and a data file extension in a qcow2 header', () => {
    const h = Buffer.alloc(512);
    h.write('QFI\xfb', 0, 'latin1');
    h.writeUInt32BE(3, 4);
    h.writeBigUInt64BE(200n, 8); // backing_file_offset
    h.writeUInt32BE(11, 16); // backing_file_size
    h.writeUInt32BE(16, 20);
    h.writeBigUInt64BE(1048576n, 24);
    h.writeUInt32BE(1, 36);
    h.writeBigUInt64BE(65536n, 40);
    h.writeUInt32BE(4, 96);
    h.writeUInt32BE(104, 100);
    h.writeUInt32BE(0x44415441, 104); // data file extension, 9 bytes, padded to 16
    h.writeUInt32BE(9, 108);
    h.write('/data.raw', 112);
    h.write('/etc/shadow', 200);
    expect(qcow2FileReferences(decodeQcow2Header(h), h)).toEqual([
      { kind: 'backing file', name: '/etc/shadow' },
      { kind: 'external data file', name: '/data.raw' },
    ]);
  });

  it('refuses what qemu-img info reports as another file', () => {
    const self = '/dev/fd/3';
    expect(qemuInfoReference({ format: 'vdi', filename: self }, 'vdi', self)).toBeNull();
    expect(qemuInfoReference({ format: 'qed', 'backing-filename': '/etc/shadow' }, 'qed', self)).toMatch(/backing file \/etc\/shadow/);
    expect(
      qemuInfoReference(
        { format: 'vmdk', 'format-specific': { data: { 'create-type': 'monolithicSparse', extents: [{ filename: '/etc/shadow' }] } } },
        'vmdk',
        self,
      ),
    ).toMatch(/extent file \/etc\/shadow/);
    expect(
      qemuInfoReference(
        { format: 'vmdk', 'format-specific': { data: { 'create-type': 'twoGbMaxExtentSparse', extents: [{ filename: self }] } } },
        'vmdk',
        self,
      ),
    ).toMatch(/twoGbMaxExtentSparse/);
    expect(qemuInfoReference({ format: 'raw' }, 'vpc', self)).toMatch(/read as raw/);
  });
});
