/**
 * Interop with the real Debian clients (curl, tftp-hpa, atftp) against the running server on
 * 127.0.0.1. Each test fetches as a user would and compares sha256 with the file on disk.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { DirectoryFileSource } from '../../appliance/tftp/file-source';
import { TftpServer } from '../../appliance/tftp/server';
import { testData } from './harness';

function has(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const hasCurl = has('curl');
const hasHpa = has('tftp');
const hasAtftp = has('atftp');
const IPXE_DIR = '/usr/lib/ipxe';

interface Run {
  code: number;
  out: string;
}
function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, cwd: dir }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? -1) : 0;
      resolve({ code: typeof code === 'number' ? code : -1, out: `${stdout}${stderr}` });
    });
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const shaFile = (f: string) => (existsSync(f) ? sha(readFileSync(f)) : 'missing');

let dir: string;
let root: string;
let server: TftpServer;
let url: (file: string) => string;
const medium = testData(1024 * 1024 + 123, 11);
// More than 65535 blocks of 512 bytes: the block number must roll over.
const big = testData(65535 * 512 + 4096 + 7, 12);
let n = 0;
const out = () => path.join(dir, `out-${n++}`);

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'tftp-interop-'));
  root = path.join(dir, 'root');
  mkdirSync(path.join(root, 'pxelinux.cfg'), { recursive: true });
  writeFileSync(path.join(root, 'medium.bin'), medium);
  writeFileSync(path.join(root, 'big.bin'), big);
  writeFileSync(path.join(root, 'pxelinux.cfg', 'default'), 'DEFAULT linux\nLABEL linux\n  KERNEL vmlinuz\n');
  writeFileSync(path.join(dir, 'secret'), 'not for clients\n');
  symlinkSync(path.join(dir, 'secret'), path.join(root, 'escape'));
  symlinkSync('/etc/passwd', path.join(root, 'passwd'));
  server = new TftpServer({
    host: '127.0.0.1',
    port: 0,
    files: new DirectoryFileSource([{ dir: root }, { dir: IPXE_DIR, trustSymlinks: true }]),
    clock: systemClock,
    log: silentLogger(),
    timeoutSeconds: 2,
    retries: 5,
    maxTransfers: 64,
  });
  await server.start();
  url = (file) => `tftp://127.0.0.1:${server.port}/${file}`;
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasCurl)('curl', () => {
  for (const blksize of [512, 1468, 8192]) {
    it(`fetches byte-identical at --tftp-blksize ${blksize}`, async () => {
      const o = out();
      const r = await run('curl', ['-sS', '--tftp-blksize', String(blksize), '-o', o, url('medium.bin')]);
      expect(r).toMatchObject({ code: 0 });
      expect(shaFile(o)).toBe(sha(medium));
    });
  }

  it('fetches a file past block 65535 (rollover) byte-identical at blksize 512', async () => {
    const o = out();
    const r = await run('curl', ['-sS', '--tftp-blksize', '512', '-o', o, url('big.bin')], 120_000);
    expect(r).toMatchObject({ code: 0 });
    expect(shaFile(o)).toBe(sha(big));
  }, 150_000);

  it.skipIf(!existsSync(path.join(IPXE_DIR, 'undionly.kpxe')))('serves the packaged iPXE binaries from the second root', async () => {
    for (const f of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']) {
      if (!existsSync(path.join(IPXE_DIR, f))) continue;
      const o = out();
      expect(await run('curl', ['-sS', '--tftp-blksize', '1468', '-o', o, url(f)])).toMatchObject({ code: 0 });
      expect(shaFile(o)).toBe(sha(readFileSync(path.join(IPXE_DIR, f))));
    }
  });

  it('gets "not found" (curl exit 68) and "access violation" (exit 69) as TFTP errors', async () => {
    expect((await run('curl', ['-sS', '-o', out(), url('nope.bin')])).code).toBe(68);
    expect((await run('curl', ['-sS', '--path-as-is', '-o', out(), url('../secret')])).code).toBe(69);
    expect((await run('curl', ['-sS', '-o', out(), url('escape')])).code).toBe(69);
  });

  it('serves many transfers at once, all byte-identical', async () => {
    const before = server.status().counters.transfers;
    const jobs = Array.from({ length: 24 }, (_, i) => {
      const o = out();
      const blksize = [512, 1468, 8192][i % 3]!;
      return run('curl', ['-sS', '--tftp-blksize', String(blksize), '-o', o, url('medium.bin')], 120_000).then((r) => ({ r, o }));
    });
    const results = await Promise.all(jobs);
    for (const { r, o } of results) {
      expect(r.code).toBe(0);
      expect(shaFile(o)).toBe(sha(medium));
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(server.status().counters.transfers - before).toBe(24);
    expect(server.status().gauges).toEqual({ activeTransfers: 0 });
  }, 150_000);
});

describe.skipIf(!hasHpa)('tftp-hpa', () => {
  const tftp = (...cmd: string[]) => run('tftp', ['-m', 'binary', '127.0.0.1', String(server.port), '-c', ...cmd], 120_000);

  it('fetches byte-identical (RFC 1350, no options)', async () => {
    const o = out();
    const r = await tftp('get', 'medium.bin', o);
    expect(r.out).not.toMatch(/Error|timed out/i);
    expect(shaFile(o)).toBe(sha(medium));
  });

  it('fetches a file past block 65535 (rollover) byte-identical', async () => {
    const o = out();
    const r = await tftp('get', 'big.bin', o);
    expect(r.out).not.toMatch(/Error|timed out/i);
    expect(shaFile(o)).toBe(sha(big));
  }, 150_000);

  it('netascii mode: the file arrives as it is on disk after the client converts back', async () => {
    const o = out();
    const r = await run('tftp', ['127.0.0.1', String(server.port), '-c', 'get', 'pxelinux.cfg/default', o]);
    expect(r.out).not.toMatch(/Error/i);
    expect(readFileSync(o, 'utf8')).toBe(readFileSync(path.join(root, 'pxelinux.cfg', 'default'), 'utf8'));
  });

  it.each([
    ['../secret', /Error code 2: '\.\.' in file name/],
    ['/etc/passwd', /Error code 2: absolute paths are not served/],
    ['escape', /Error code 2: path leaves the served directory/],
    ['passwd', /Error code 2: path leaves the served directory/],
    ['nope.bin', /Error code 1: file not found/],
  ])('refuses %s with a clear ERROR', async (name, message) => {
    const o = out();
    const r = await tftp('get', name, o);
    expect(r.out).toMatch(message);
    expect(existsSync(o) ? readFileSync(o, 'utf8') : '').not.toMatch(/root:|not for clients/);
  });

  it('WRQ is refused with ERROR 2', async () => {
    const r = await tftp('put', path.join(root, 'pxelinux.cfg', 'default'), 'upload.txt');
    expect(r.out).toMatch(/Error code 2: this server is read-only/);
    expect(existsSync(path.join(root, 'upload.txt'))).toBe(false);
  });
});

describe.skipIf(!hasAtftp)('atftp', () => {
  const get = (file: string, o: string, opts: string[]) =>
    run('atftp', [...opts.flatMap((x) => ['--option', x]), '-g', '-r', file, '-l', o, '127.0.0.1', String(server.port)], 120_000);

  for (const blksize of [512, 1468, 8192]) {
    for (const windowsize of [1, 16]) {
      it(`fetches byte-identical at blksize ${blksize}, windowsize ${windowsize}`, async () => {
        const o = out();
        const r = await get('medium.bin', o, [`blksize ${blksize}`, `windowsize ${windowsize}`, 'tsize 0']);
        expect(r.code).toBe(0);
        expect(shaFile(o)).toBe(sha(medium));
      });
    }
  }

  it('fetches a file past block 65535 with windowsize 16 byte-identical', async () => {
    const o = out();
    const r = await get('big.bin', o, ['blksize 512', 'windowsize 16']);
    expect(r.code).toBe(0);
    expect(shaFile(o)).toBe(sha(big));
  }, 150_000);

  it('refuses an absolute path and a write request', async () => {
    const r = await get('/etc/passwd', out(), []);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/absolute paths are not served/);
    const w = await run('atftp', ['-p', '-r', 'up.bin', '-l', path.join(root, 'medium.bin'), '127.0.0.1', String(server.port)]);
    expect(w.code).not.toBe(0);
    expect(w.out).toMatch(/read-only/);
  });

  it('windowsize transfers run concurrently with lock-step ones', async () => {
    const jobs = Array.from({ length: 12 }, (_, i) => {
      const o = out();
      return get('medium.bin', o, i % 2 ? ['blksize 1468', 'windowsize 16'] : ['blksize 512']).then((r) => ({ r, o }));
    });
    for (const { r, o } of await Promise.all(jobs)) {
      expect(r.code).toBe(0);
      expect(shaFile(o)).toBe(sha(medium));
    }
  }, 150_000);
});
