import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The house rules (issue #18), enforced by Biome (biome.json): the tree lints clean, and each
 * layering rule refuses the import that breaks it. Violations are written into a scratch folder
 * that has the repository's biome.json and the same layout, never into the tree.
 */
const ROOT = join(__dirname, '../..');
const BIOME = join(ROOT, 'node_modules/.bin/biome');
const scratch = mkdtempSync(join(tmpdir(), 'nb-house-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
{
  const config = JSON.parse(readFileSync(join(ROOT, 'biome.json'), 'utf8'));
  delete config.$schema;
  config.vcs = { enabled: false };
  writeFileSync(join(scratch, 'biome.json'), JSON.stringify(config));
}

/** Lints the tree (no path) or one file written at `path` inside the scratch copy. */
function lint(path?: string, text?: string): { status: number; out: string } {
  let cwd = ROOT;
  const args = ['lint', '--error-on-warnings', '--colors=off'];
  if (path) {
    cwd = scratch;
    mkdirSync(dirname(join(scratch, path)), { recursive: true });
    writeFileSync(join(scratch, path), text ?? '');
    args.push(path);
  }
  const r = spawnSync(BIOME, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

describe('house rules', () => {
  it('the tree lints clean (biome lint, warnings are errors)', () => {
    const r = lint();
    expect(r.out).not.toMatch(/lint\/[a-z]+\/[A-Za-z]+/);
    expect(r.status, r.out).toBe(0);
  });

  it('the UI may import the API types (type-only), which import nothing themselves', () => {
    const ok = lint('ui/src/y.ts', "import type { ClientView } from '../../appliance/http/api-types';\nexport type C = ClientView;\n");
    expect(ok.status, ok.out).toBe(0);
    const types = readFileSync(join(ROOT, 'appliance/http/api-types.ts'), 'utf8');
    expect(types).not.toMatch(/^\s*import\s/m);
    expect(readFileSync(join(ROOT, 'ui/src/api.ts'), 'utf8')).toMatch(/^import type \{[^}]+\} from '\.\.\/\.\.\/appliance\/http\/api-types';$/m);
  });

  it('the tree is formatted (biome format), and an unformatted file is refused', () => {
    const tree = spawnSync(BIOME, ['format', '--colors=off'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(tree.status, `${tree.stdout}${tree.stderr}`).toBe(0);
    mkdirSync(join(scratch, 'appliance/core'), { recursive: true });
    writeFileSync(join(scratch, 'appliance/core/fmt.ts'), 'export const  x = {a:1,\n b : "two"}\n');
    const bad = spawnSync(BIOME, ['format', '--colors=off', 'appliance/core/fmt.ts'], { cwd: scratch, encoding: 'utf8', timeout: 60_000 });
    expect(bad.status).not.toBe(0);
    expect(`${bad.stdout}${bad.stderr}`).toMatch(/format/i);
    writeFileSync(join(scratch, 'appliance/core/fmt.ts'), "export const x = { a: 1, b: 'two' };\n");
    expect(spawnSync(BIOME, ['format', '--colors=off', 'appliance/core/fmt.ts'], { cwd: scratch, encoding: 'utf8', timeout: 60_000 }).status).toBe(0);
  });

  it.each([
    ['image-store/x.ts', "import { systemClock } from '../appliance/core/clock';", 'image-store/ stands alone'],
    ['image-store/rbd/x.ts', "import { ApiError } from '../../appliance/core/errors';", 'image-store/ stands alone'],
    ['appliance/core/x.ts', "import { DhcpServer } from '../dhcp/server';", 'ground floor'],
    ['appliance/core/x.ts', "import { ImageStore } from '../../image-store/store';", 'ground floor'],
    ['appliance/dhcp/x.ts', "import { createAppliance } from '../main/appliance';", 'composition root'],
    ['appliance/iscsi/x.ts', "import { installErrorHandler } from '../http/errors';", 'sits on top'],
    ['appliance/storage/x.ts', "import { table } from '../cli/format';", 'entry layer'],
    ['appliance/dhcp/packet.ts', "import { createSocket } from 'node:dgram';", 'a codec is pure'],
    ['appliance/iscsi/pdu.ts', "import type { Logger } from '../core/log';", 'a codec is pure'],
    ['ui/src/x.ts', "import { Config } from '../../appliance/core/config';", 'JSON API only'],
    ['ui/src/x.ts', "import type { ClientRecord } from '../../appliance/core/model';", 'JSON API only'],
  ])('refuses %s importing across a layer: %s', (path, line, why) => {
    const r = lint(path, `${line}\nexport const used = [${line.match(/import (?:type )?\{ (\w+)/)![1]}];\n`);
    expect(r.status, r.out).not.toBe(0);
    expect(r.out).toContain(why);
    // The same file without the import passes: the refusal is the import's.
    expect(lint(path, 'export const used = 1;\n').status).toBe(0);
  });

  it('no source file over 600 lines without a reason at its top', () => {
    const long: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.(ts|c)$/.test(e.name)) {
          const text = readFileSync(p, 'utf8');
          const lines = text.split('\n').length;
          if (lines > 600 && !/^(\/\/|\/\*|\s\*).*Long file:/m.test(text.split('\n').slice(0, 5).join('\n')))
            long.push(`${relative(ROOT, p)} (${lines} lines)`);
        }
      }
    };
    for (const d of ['appliance', 'image-store', 'ui/src']) walk(join(ROOT, d));
    expect(long).toEqual([]);
  });

  it('every document the code and docs point to exists', () => {
    const files = spawnSync('git', ['ls-files', '*.ts', '*.md', '*.sh', '*.c', '*.mjs', '*.service', 'Makefile'], { cwd: ROOT, encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean);
    const broken: string[] = [];
    for (const f of files) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      // A path ending in .md, not part of a URL, a shell variable's expansion or an absolute path on the box.
      for (const m of text.matchAll(/(?<![\w/.$}:-])((?:\.\.?\/)*[\w./-]*[\w-]+\.md)\b/g)) {
        const ref = m[1]!;
        if (ref.startsWith('/')) continue; // a path on the installed box
        if (!existsSync(join(ROOT, ref)) && !existsSync(join(ROOT, dirname(f), ref))) broken.push(`${f}: ${ref}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
