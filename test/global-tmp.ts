/**
 * One temporary folder per test run: every test's mkdtemp(tmpdir()) lands in it (TMPDIR, which
 * the test workers and the processes they start inherit), and it goes at the end of the run with
 * whatever a test left behind. Tests that forgot their folders filled the disk of a machine that
 * runs the suite often (ceph-mon refuses to start below 5 % free: docs/lab.md).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const before = process.env.TMPDIR;
  const dir = mkdtempSync(join(tmpdir(), 'nb-test-run-'));
  // As /tmp itself: tests run services as nobody over files they put here (mkdtemp makes 0700).
  chmodSync(dir, 0o1777);
  process.env.TMPDIR = dir;
  return () => {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    rmSync(dir, { recursive: true, force: true });
  };
}
