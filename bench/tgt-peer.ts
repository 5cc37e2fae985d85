/**
 * The peer the iSCSI benches measure against: tgtd 1.0.85 on a control port of its own (so it
 * never touches another tgtd), driven by tgtadm; and the random-data disk file both sides serve.
 */
import { execFile, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Writes `size` bytes of random data (an OS disk is not zeros) to `file`. */
export function writeRandomDisk(file: string, size: number): void {
  const fd = openSync(file, 'w');
  const chunk = randomBytes(8 << 20);
  for (let off = 0; off < size; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, off);
  closeSync(fd);
}

export interface Tgtd {
  child: ChildProcess;
  /** One tgtadm call (`--lld iscsi` on this tgtd's control port). */
  adm: (...args: string[]) => Promise<unknown>;
  /** Target `tid` named `iqn` serving `file` at LUN 1 (LUN 0 is tgt's controller), open to every initiator. */
  serveFile: (tid: number, iqn: string, file: string) => Promise<void>;
}

/** Starts tgtd listening on `portal` (host:port) and gives it a second to come up. */
export async function startTgtd(portal: string, opts: { stdio?: StdioOptions; env?: NodeJS.ProcessEnv } = {}): Promise<Tgtd> {
  const ctl = 10000 + (process.pid % 20000);
  const child = spawn('tgtd', ['-f', '-C', String(ctl), '--iscsi', `portal=${portal}`], { stdio: opts.stdio ?? 'ignore', env: opts.env });
  await new Promise((r) => setTimeout(r, 1000));
  const adm = (...a: string[]) => run('tgtadm', ['-C', String(ctl), '--lld', 'iscsi', ...a]);
  return {
    child,
    adm,
    async serveFile(tid, iqn, file) {
      await adm('--op', 'new', '--mode', 'target', '--tid', String(tid), '-T', iqn);
      await adm('--op', 'new', '--mode', 'logicalunit', '--tid', String(tid), '--lun', '1', '-b', file);
      await adm('--op', 'bind', '--mode', 'target', '--tid', String(tid), '-I', 'ALL');
    },
  };
}
