import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureAdminToken } from '../../appliance/core/admin-token';
import { openDatabase } from '../../appliance/core/db';
import { writeFileDurable } from '../../appliance/core/durable-file';
import { readRuntimeSettings, writeRuntimeSettings } from '../../appliance/settings/runtime-settings';
import { liveApp } from './helpers';

const mode = (f: string) => statSync(f).mode & 0o777;
const hasStrace = spawnSync('strace', ['-V']).status === 0;

// Issue #13: settings.json and ui-auth.json were replaced without fsync, and appliance.db
// (CHAP secrets) was created 0644.
describe('state files: durable writes and owner-only modes (issue #13)', () => {
  let dir: string;
  let umask: number;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nb-state-'));
    // The most permissive umask: every mode below must be set explicitly, not inherited.
    umask = process.umask(0);
  });
  afterEach(() => {
    process.umask(umask);
    rmSync(dir, { recursive: true, force: true });
  });

  it('writeFileDurable sets the exact mode, replaces a looser file and leaves no temp file', () => {
    const f = join(dir, 'x.json');
    writeFileSync(f, 'old', { mode: 0o666 });
    chmodSync(f, 0o666);
    writeFileDurable(f, 'new', 0o600);
    expect(readFileSync(f, 'utf8')).toBe('new');
    expect(mode(f)).toBe(0o600);
    writeFileDurable(f, Buffer.from('bytes'), 0o640);
    expect(mode(f)).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['x.json']);
  });

  it('writeFileDurable throws when the directory does not exist', () => {
    expect(() => writeFileDurable(join(dir, 'nope', 'x'), 'a', 0o600)).toThrow();
  });

  it.skipIf(!hasStrace)('writeFileDurable fsyncs the data before the rename and the directory after it (strace)', () => {
    const out = join(dir, 'out.json');
    const trace = join(dir, 'trace');
    const script = `require(${JSON.stringify(join(__dirname, '../../appliance/core/durable-file.ts'))}).writeFileDurable(${JSON.stringify(out)}, 'x', 0o600)`;
    const r = spawnSync(
      'strace',
      ['-f', '-qq', '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2', '-o', trace, process.execPath, '--import', 'tsx', '-e', script],
      { cwd: join(__dirname, '../..'), encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const lines = readFileSync(trace, 'utf8').split('\n');
    const q = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const steps = [
      new RegExp(`openat\\(AT_FDCWD, "${q(dir)}/\\.out\\.json\\.[0-9a-f]+\\.tmp", .*O_EXCL`),
      /\bf(data)?sync\(/,
      new RegExp(`rename(at2?)?\\(.*\\.tmp".*"${q(out)}"`),
      new RegExp(`openat\\(AT_FDCWD, "${q(dir)}", O_RDONLY`),
      /\bfsync\(/,
    ];
    let at = 0;
    for (const step of steps) {
      while (at < lines.length && !step.test(lines[at])) at++;
      expect(at, `no ${step} in order`).toBeLessThan(lines.length);
      at++;
    }
  });

  it('settings.json is written 0600', () => {
    writeRuntimeSettings(dir, { dhcp: { mode: 'proxy' } });
    expect(mode(join(dir, 'settings.json'))).toBe(0o600);
    expect(readRuntimeSettings(dir)).toEqual({ dhcp: { mode: 'proxy' } });
    expect(readdirSync(dir)).toEqual(['settings.json']);
  });

  it('admin.token is created 0600 and an existing looser one is tightened', () => {
    const token = ensureAdminToken(dir);
    const f = join(dir, 'admin.token');
    expect(mode(f)).toBe(0o600);
    chmodSync(f, 0o644);
    expect(ensureAdminToken(dir)).toBe(token);
    expect(mode(f)).toBe(0o600);
  });

  it('a new database and its -wal/-shm are 0600', () => {
    const f = join(dir, 'a.db');
    const db = openDatabase(f);
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
    expect(existsSync(f + '-wal')).toBe(true);
    for (const s of ['', '-wal', '-shm']) expect({ file: s, mode: mode(f + s) }).toEqual({ file: s, mode: 0o600 });
    db.close();
  });

  it('an existing 0644 database is tightened before it is opened', () => {
    const f = join(dir, 'b.db');
    openDatabase(f).close();
    chmodSync(f, 0o644);
    const db = openDatabase(f);
    expect(mode(f)).toBe(0o600);
    db.close();
  });

  it('the appliance creates appliance.db (CHAP secrets), its WAL files and admin.token owner-only', async () => {
    const live = await liveApp();
    try {
      const files = ['appliance.db', 'appliance.db-wal', 'appliance.db-shm', 'admin.token'];
      for (const f of files) expect({ f, mode: mode(join(live.dataDir, f)) }).toEqual({ f, mode: 0o600 });
    } finally {
      await live.close();
    }
  });
});
