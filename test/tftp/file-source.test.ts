import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DirectoryFileSource, chainFileSources, defaultTftpRoots, isRefusal, memoryFile, safeSegments, type TftpFile } from '../../appliance/tftp/file-source';

let dir: string;
let a: string;
let b: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tftp-files-'));
  a = path.join(dir, 'a');
  b = path.join(dir, 'b');
  mkdirSync(path.join(a, 'sub'), { recursive: true });
  mkdirSync(b);
  writeFileSync(path.join(a, 'both.txt'), 'from a');
  writeFileSync(path.join(b, 'both.txt'), 'from b');
  writeFileSync(path.join(b, 'only-b.txt'), 'b only');
  writeFileSync(path.join(a, 'sub', 'deep.txt'), 'deep');
  writeFileSync(path.join(dir, 'secret.txt'), 'outside');
  symlinkSync('sub/deep.txt', path.join(a, 'link-in'));
  symlinkSync(path.join(dir, 'secret.txt'), path.join(a, 'link-out'));
  symlinkSync('..', path.join(a, 'sub', 'up'));
  symlinkSync(dir, path.join(a, 'dir-out'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function text(f: TftpFile): Promise<string> {
  const buf = Buffer.alloc(f.size);
  await f.read(buf, 0, f.size, 0);
  await f.close();
  return buf.toString();
}

describe('DirectoryFileSource', () => {
  const src = () => new DirectoryFileSource([a, b, path.join(dir, 'missing-root')]);

  it('serves from the first root that has the file, then the next', async () => {
    const both = await src().resolve('both.txt');
    expect(isRefusal(both)).toBe(false);
    expect(await text(both as TftpFile)).toBe('from a');
    expect(await text((await src().resolve('only-b.txt')) as TftpFile)).toBe('b only');
    expect(await text((await src().resolve('sub//./deep.txt')) as TftpFile)).toBe('deep');
  });

  it('follows a symlink that stays inside the root', async () => {
    expect(await text((await src().resolve('link-in')) as TftpFile)).toBe('deep');
  });

  it.each([
    ['../secret.txt', 'accessViolation', /'\.\.'/],
    ['sub/../../secret.txt', 'accessViolation', /'\.\.'/],
    ['/etc/passwd', 'accessViolation', /absolute/],
    ['..\\secret.txt', 'accessViolation', /backslash/],
    ['sub\\deep.txt', 'accessViolation', /backslash/],
    ['both.txt\u0000x', 'accessViolation', /control/],
    ['link-out', 'accessViolation', /leaves the served directory/],
    ['dir-out/secret.txt', 'accessViolation', /leaves the served directory/],
    ['sub/up/../secret.txt', 'accessViolation', /'\.\.'/],
    ['sub', 'accessViolation', /not a regular file/],
    ['nope.bin', 'notFound', /not found/],
    ['', 'notFound', /empty/],
  ])('refuses %j (%s)', async (name, refused, message) => {
    const r = await src().resolve(name);
    expect(r).toMatchObject({ refused });
    expect((r as { message: string }).message).toMatch(message);
  });

  it('judges the resolved path, not the spelling: out through a symlinked directory is refused, back in is served', async () => {
    // dir-out -> the parent of root a. dir-out/b/only-b.txt resolves into root b, outside root a.
    expect(await src().resolve('dir-out/b/only-b.txt')).toMatchObject({ refused: 'accessViolation' });
    // dir-out/a/both.txt resolves to a/both.txt itself: inside the root.
    expect(await text((await src().resolve('dir-out/a/both.txt')) as TftpFile)).toBe('from a');
  });
});

describe('a root that trusts its symlinks (the packaged iPXE directory)', () => {
  it("follows the package's symlinks out (Debian: ipxe.efi -> /boot/ipxe.efi) but still refuses '..' and absolute names", async () => {
    const src = new DirectoryFileSource([{ dir: a, trustSymlinks: true }]);
    expect(await text((await src.resolve('link-out')) as TftpFile)).toBe('outside');
    expect(await src.resolve('../secret.txt')).toMatchObject({ refused: 'accessViolation' });
    expect(await src.resolve(path.join(dir, 'secret.txt'))).toMatchObject({ refused: 'accessViolation' });
  });
});

describe('helpers', () => {
  it('chainFileSources: generated files first, then directories; a refusal other than not-found stops the chain', async () => {
    const generated = {
      resolve: async (name: string) => (name === 'menu.ipxe' ? memoryFile(Buffer.from('#!ipxe')) : { refused: 'notFound' as const, message: 'file not found' }),
    };
    const chain = chainFileSources(generated, new DirectoryFileSource([a]));
    expect(await text((await chain.resolve('menu.ipxe')) as TftpFile)).toBe('#!ipxe');
    expect(await text((await chain.resolve('both.txt')) as TftpFile)).toBe('from a');
    expect(await chain.resolve('link-out')).toMatchObject({ refused: 'accessViolation' });
    expect(await chain.resolve('nothing')).toMatchObject({ refused: 'notFound' });
  });

  it('safeSegments drops "." and empty segments', () => {
    expect(safeSegments('./a//b/./c')).toEqual(['a', 'b', 'c']);
  });

  it('memoryFile reads at positions and reports size', async () => {
    const f = memoryFile(Buffer.from('hello world'));
    const buf = Buffer.alloc(5);
    expect(f.size).toBe(11);
    expect(await f.read(buf, 0, 5, 6)).toBe(5);
    expect(buf.toString()).toBe('world');
    expect(await f.read(buf, 0, 5, 11)).toBe(0);
  });

  it('defaultTftpRoots: the extra root (default <dataDir>/tftp) first, then the iPXE directory', () => {
    expect(defaultTftpRoots({ dataDir: '/var/lib/nb', boot: { ipxeDir: '/usr/lib/ipxe' }, tftp: { root: '' } })).toEqual([
      { dir: '/var/lib/nb/tftp' },
      { dir: '/usr/lib/ipxe', trustSymlinks: true },
    ]);
    expect(defaultTftpRoots({ dataDir: '/x', boot: { ipxeDir: '/i' }, tftp: { root: '/srv/tftp' } })[0]).toEqual({ dir: '/srv/tftp' });
  });
});
