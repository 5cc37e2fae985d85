/**
 * The memory knobs (issue #16) are the same for the box (the unit's Environment= lines and the
 * node flags of its ExecStart) and for `make run` (the Makefile's RUN_ENV and RUN_FLAGS), and the
 * runtime really applies them: 1 MiB semi-spaces, a `gc` function for the iSCSI target's GC
 * pacer, jemalloc as the allocator, V8's --optimize-for-size.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { unitRuntime } from '../../bench/unit-runtime';

const ROOT = join(import.meta.dirname, '..', '..');
const makefile = readFileSync(join(ROOT, 'Makefile'), 'utf8');

/** The unit's environment (its Environment= lines) and node flags, parsed as the benches parse them. */
const unitEnv = () => unitRuntime().env;
const unitFlags = () => unitRuntime().flags;

/** The Makefile's RUN_ENV, which prefixes `make run`'s node (NAME="a b" as make hands it to the shell). */
function makeRunEnv(): Record<string, string> {
  const line = makefile.split('\n').find((l) => l.startsWith('RUN_ENV :='));
  expect(line).toBeDefined();
  const out: Record<string, string> = {};
  for (const m of line!.slice('RUN_ENV :='.length).matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S+)/g)) out[m[1]!] = m[3] ?? m[2]!;
  return out;
}

describe('memory knobs (issue #16)', () => {
  it("make run uses the unit's environment, and make run's recipe applies it", () => {
    const env = unitEnv();
    expect(env.NODE_OPTIONS).toContain('--max-semi-space-size=1');
    expect(env.NODE_OPTIONS).toContain('--expose-gc');
    expect(env.MALLOC_ARENA_MAX).toBe('2');
    expect(env.LD_PRELOAD).toBe('libjemalloc.so.2');
    expect(env.MALLOC_CONF).toContain('background_thread:true');
    expect(makeRunEnv()).toEqual(env);
    expect(unitFlags()).toEqual(['--optimize-for-size']);
    expect(
      makefile
        .split('\n')
        .find((l) => l.startsWith('RUN_FLAGS :='))
        ?.slice('RUN_FLAGS :='.length)
        .trim()
        .split(/\s+/),
    ).toEqual(unitFlags());
    expect(makefile).toMatch(/\nrun: build\n(?:\t@.*\n)?\t\$\(RUN_ENV\) \$\(RUN_NO_JEMALLOC\) node \$\(RUN_FLAGS\) dist\/appliance\.cjs serve\n/);
    // Only a machine without the library runs without it: here (.ci/apt-packages.txt) it is kept.
    expect(spawnSync('make', ['-s', '-n', 'run'], { cwd: ROOT, encoding: 'utf8' }).stdout).toMatch(
      /LD_PRELOAD=libjemalloc\.so\.2 .*MALLOC_ARENA_MAX=2 +node --optimize-for-size /,
    );
  });

  it('the runtime applies them: 1 MiB semi-spaces (new space stays ≤ 2 MiB under garbage), gc(), jemalloc', () => {
    const script = `
      let keep = [];
      for (let i = 0; i < 1e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 20000) keep = []; }
      const ns = require('v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
      const jemalloc = require('fs').readFileSync('/proc/self/maps', 'utf8').includes('libjemalloc.so.2');
      console.log(JSON.stringify({ gc: typeof gc, newSpace: ns.space_size, jemalloc }));`;
    const r = spawnSync(process.execPath, [...unitFlags(), '-e', script], { encoding: 'utf8', env: { ...process.env, ...unitEnv() } });
    expect(r.status, r.stderr).toBe(0);
    // ld.so says so on stderr when it cannot preload (libjemalloc2 missing: .ci/apt-packages.txt).
    expect(r.stderr).not.toMatch(/cannot be preloaded/);
    const got = JSON.parse(r.stdout) as { gc: string; newSpace: number; jemalloc: boolean };
    expect(got.gc).toBe('function');
    expect(got.jemalloc).toBe(true);
    expect(got.newSpace).toBeLessThanOrEqual(2 * 1024 * 1024);
    // Without the knobs Node 24 grows it far beyond (64 MiB semi-spaces): the check can fail.
    const plain = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '', LD_PRELOAD: '' } });
    const without = JSON.parse(plain.stdout) as { newSpace: number; jemalloc: boolean };
    expect(without.newSpace).toBeGreaterThan(2 * 1024 * 1024);
    expect(without.jemalloc).toBe(false);
  });
});
