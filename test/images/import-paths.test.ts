import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveApp, type LiveApp } from '../http/helpers';
import { dirLeaks, haveQemuImg, qcow2WithBacking, vmdkDescriptor, writeSecret } from './fixtures';

// Issue #13, "no host file read through an import": POST /api/images {name, path} took any
// absolute path, so the admin API (or anything holding its token) could pull /etc/shadow into a
// golden image and read it back by exporting a client disk. Reproduced against the real app.
describe('server-side import paths (issue #13)', () => {
  let live: LiveApp;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'nb-import-paths-'));
  const extra = path.join(work, 'extra'); // a configured images.importDirs entry
  const host = path.join(work, 'host'); // stands for the rest of the host's files
  const secret = path.join(host, 'secret.raw');
  let importDir = '';

  const api = async (method: string, url: string, body?: unknown, contentType = 'application/json') => {
    const res = await fetch(`http://127.0.0.1:${live.port}${url}`, {
      method,
      headers: { authorization: `Bearer ${live.appliance.token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
      body: body === undefined ? undefined : Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
  const waitReady = async (name: string) => {
    for (let i = 0; i < 200; i++) {
      const r = await api('GET', `/api/images/${name}`);
      if (r.json?.state !== 'importing') return r.json;
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`${name} still importing`);
  };
  const noImage = async (name: string) => {
    expect((await api('GET', `/api/images/${name}`)).status).toBe(404);
    expect(dirLeaks(live.dataDir), 'the secret reached the data directory').toBe(false);
  };

  beforeAll(async () => {
    fs.mkdirSync(extra);
    fs.mkdirSync(host);
    writeSecret(secret);
    live = await liveApp({ images: { importDirs: [extra] } });
    importDir = path.join(live.dataDir, 'import');
  });
  afterAll(async () => {
    await live?.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('creates <dataDir>/import at start, mode 0750', () => {
    const st = fs.statSync(importDir);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o777).toBe(0o750);
  });

  it.each([
    ['a host file outside every import directory', () => secret],
    ['/etc/passwd', () => '/etc/passwd'],
    ['a path that does not exist outside (no existence oracle)', () => path.join(host, 'nope.raw')],
    ['`..` out of a configured import directory', () => `${extra}/../host/secret.raw`],
  ])('refuses %s with 403 IMPORT_PATH_REFUSED naming the allowed directories', async (label, file) => {
    // A name per case, so one leak before the fix does not turn the next cases into 409s.
    const name = `stolen-${label.length}`;
    const r = await api('POST', '/api/images', { name, path: file() });
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('IMPORT_PATH_REFUSED');
    expect(r.json.error.message).toContain(importDir);
    expect(r.json.error.message).toContain(extra);
    await noImage(name);
  });

  it('refuses a symlink inside the import directory that points out', async () => {
    fs.symlinkSync(secret, path.join(importDir, 'link.raw'));
    const r = await api('POST', '/api/images', { name: 'stolen-link', path: path.join(importDir, 'link.raw') });
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('IMPORT_PATH_REFUSED');
    await noImage('stolen-link');
  });

  it('refuses a file under a symlinked directory inside the import directory', async () => {
    fs.symlinkSync(host, path.join(importDir, 'hostdir'));
    const r = await api('POST', '/api/images', { name: 'stolen-dir', path: path.join(importDir, 'hostdir', 'secret.raw') });
    expect(r.status).toBe(403);
    await noImage('stolen-dir');
  });

  it('answers 404 for a missing file inside an import directory', async () => {
    const r = await api('POST', '/api/images', { name: 'missing', path: path.join(importDir, 'missing.raw') });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('FILE_NOT_FOUND');
  });

  it('imports from <dataDir>/import and from a configured directory', async () => {
    const data = Buffer.alloc(1024 * 1024, 0x5a);
    fs.writeFileSync(path.join(importDir, 'good.raw'), data);
    fs.writeFileSync(path.join(extra, 'good2.raw'), data);
    expect((await api('POST', '/api/images', { name: 'good', path: path.join(importDir, 'good.raw') })).status).toBe(202);
    expect((await api('POST', '/api/images', { name: 'good2', path: path.join(extra, 'good2.raw') })).status).toBe(202);
    expect((await waitReady('good')).state).toBe('ready');
    expect((await waitReady('good2')).state).toBe('ready');
    expect((await api('GET', '/api/images/good')).json.source).toBe('good.raw');
  });

  it.skipIf(!haveQemuImg)('refuses a qcow2 in the import directory whose backing file is a host file (400 IMAGE_REFERENCES_FILE)', async () => {
    const f = path.join(importDir, 'backing.qcow2');
    qcow2WithBacking(f, secret);
    const r = await api('POST', '/api/images', { name: 'stolen-qcow2', path: f });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('IMAGE_REFERENCES_FILE');
    expect(r.json.error.message).toBe(`qcow2 backing file ${secret} refused`);
    await noImage('stolen-qcow2');
  });

  it.skipIf(!haveQemuImg)('refuses an uploaded qcow2 with a backing file and an uploaded vmdk descriptor', async () => {
    const q = path.join(work, 'up-backing.qcow2');
    qcow2WithBacking(q, secret);
    const r1 = await api('PUT', '/api/images/stolen-up1/upload', fs.readFileSync(q), 'application/octet-stream');
    expect(r1.status).toBe(400);
    expect(r1.json.error.code).toBe('IMAGE_REFERENCES_FILE');
    expect(r1.json.error.message).toContain(secret);
    await noImage('stolen-up1');
    const d = path.join(work, 'up.vmdk');
    vmdkDescriptor(d, secret);
    const r2 = await api('PUT', '/api/images/stolen-up2/upload', fs.readFileSync(d), 'application/octet-stream');
    expect(r2.status).toBe(400);
    expect(r2.json.error.code).toBe('IMAGE_REFERENCES_FILE');
    await noImage('stolen-up2');
    // The refused uploads are not left behind either.
    expect(fs.readdirSync(path.join(live.dataDir, 'uploads'))).toEqual([]);
  });

  it('still takes an upload of a plain image', async () => {
    const r = await api('PUT', '/api/images/uploaded/upload', Buffer.alloc(512 * 1024, 0x33), 'application/octet-stream');
    expect(r.status).toBe(202);
    expect((await waitReady('uploaded')).state).toBe('ready');
  });
});
