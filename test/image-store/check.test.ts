import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, pattern, tempDir } from './helpers';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const root = path.resolve(__dirname, '../..');

/** Runs the check CLI the way an operator would. */
function cli(...args: string[]): { status: number; out: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'image-store/check-cli.ts', ...args], { cwd: root, encoding: 'utf8' });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** A store with an image, a disk with data and two snapshots; closed. */
async function makeStore(): Promise<string> {
  const dir = tempDir('check');
  dirs.push(dir);
  fs.writeFileSync(path.join(dir, 'g.raw'), pattern(1 << 20, 1));
  const store = openStore(path.join(dir, 'store'));
  await store.importImage('g', path.join(dir, 'g.raw'));
  store.createDisk('d', 'g');
  const v = store.openVolume('d');
  await v.write(0, pattern(65536, 2));
  await store.createSnapshot('d', 'one');
  await v.write(64, pattern(65536, 3));
  await store.createSnapshot('d', 'two');
  await v.close();
  await store.close();
  return path.join(dir, 'store');
}

describe('check', () => {
  it('the CLI exits 0 on a clean store', async () => {
    const dir = await makeStore();
    const r = cli(dir);
    expect(r.out).toMatch(/^clean: 1 image/);
    expect(r.status).toBe(0);
  });

  it('refuses to open a store another process holds (exit 2), and opens it once released', async () => {
    const dir = await makeStore();
    const store = openStore(dir);
    const busy = cli(dir);
    expect(busy.status).toBe(2);
    expect(busy.out).toMatch(/in use by another process/);
    await store.close();
    expect(cli(dir).status).toBe(0);
  });

  it('reports corruption (double mapping, pointer past durable space) and exits non-zero', async () => {
    const dir = await makeStore();
    const db = new Database(path.join(dir, 'store.db'));
    const [a, b] = db.prepare('SELECT layer, lchunk, pchunk FROM extents WHERE pchunk >= 0 LIMIT 2').all() as {
      layer: number;
      lchunk: number;
      pchunk: number;
    }[];
    db.prepare('UPDATE extents SET pchunk = ? WHERE layer = ? AND lchunk = ?').run(a.pchunk, b.layer, b.lchunk);
    db.prepare('INSERT INTO extents (layer, lchunk, pchunk) VALUES (?, 9999, 1000000)').run(a.layer);
    db.close();
    const r = cli(dir, '--json');
    expect(r.status).toBe(1);
    const rep = JSON.parse(r.out);
    const kinds = rep.problems.map((p: { kind: string }) => p.kind);
    expect(kinds).toContain('double-mapped');
    expect(kinds).toContain('extent-out-of-range');
    // Corruption is not "repaired" away.
    expect(cli(dir, '--repair').status).toBe(1);
  });

  it('repairs leaks: unreferenced layers, stray segment files, orphan snapshots', async () => {
    const dir = await makeStore();
    const db = new Database(path.join(dir, 'store.db'));
    // A layer with data that nothing refers to, and a snapshot row whose disk vanished.
    const id = Number(db.prepare('INSERT INTO layers (parent, created_at) VALUES (NULL, 0)').run().lastInsertRowid);
    const used = new Set((db.prepare('SELECT pchunk FROM extents').all() as { pchunk: number }[]).map((r) => r.pchunk));
    const total = (db.prepare('SELECT count(*) AS n FROM segments').get() as { n: number }).n * 256;
    const free = Array.from({ length: total }, (_, i) => i).filter((p) => !used.has(p));
    expect(free.length).toBeGreaterThan(0);
    db.prepare('INSERT INTO extents (layer, lchunk, pchunk) VALUES (?, 0, ?)').run(id, free[0]);
    db.prepare("INSERT INTO snapshots (disk_id, name, layer, size_bytes, image_id, created_at) VALUES (77, 'x', ?, 512, NULL, 0)").run(id);
    db.close();
    fs.writeFileSync(path.join(dir, 'seg-000099.dat'), Buffer.alloc(4096));
    const bad = cli(dir);
    expect(bad.status).toBe(1);
    expect(bad.out).toMatch(/orphan-snapshot/);
    const fixed = cli(dir, '--repair');
    expect(fixed.out).toMatch(/repaired/);
    expect(fixed.status).toBe(0);
    expect(cli(dir).status).toBe(0);
    expect(fs.existsSync(path.join(dir, 'seg-000099.dat'))).toBe(false);
    const store = openStore(dir);
    expect(store.check().ok).toBe(true);
    expect(store.listSnapshots('d').map((s) => s.name)).toEqual(['one', 'two']);
    await store.close();
  });
});
