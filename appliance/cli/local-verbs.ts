import { join, resolve } from 'node:path';
import { ImageStore } from '../../image-store/store';
import { systemClock } from '../core/clock';
import { nativeBindingPath } from '../core/db';
import { silentLogger } from '../core/log';
import { readRuntimeInfo } from '../core/runtime-info';
import { prepareDiskVerb } from './prepare-disk-verb';
import { CliError } from './api-client';
import type { Verb } from './verbs';

function serviceRunning(dataDir: string): number | undefined {
  const info = readRuntimeInfo(dataDir);
  if (!info) return undefined;
  try {
    process.kill(info.pid, 0);
    return info.pid;
  } catch {
    return undefined;
  }
}

/**
 * `appliance check [--repair]`: verifies the image store's invariants offline (the service must
 * be stopped: two processes must never open one store). Exit 0 clean, 1 with a report.
 */
const check: Verb = {
  name: 'check',
  usage: 'check [--repair]',
  summary: 'verify the image store offline (service stopped); --repair frees leaked space and clears "degraded" (a failed fdatasync) once seen',
  async run(args, config, { json }) {
    const dataDir = resolve(config.dataDir);
    const pid = serviceRunning(dataDir);
    if (pid) throw new CliError(`the appliance is running (pid ${pid}) on ${dataDir}: stop it first`, 2);
    const store = ImageStore.open({ dir: join(dataDir, 'store'), clock: systemClock, log: silentLogger(), reserveMiB: 0, sqliteBinding: nativeBindingPath() });
    const report = store.check({ repair: args.includes('--repair') });
    await store.close();
    if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else {
      const s = report.stats;
      process.stdout.write(
        `${report.ok ? 'clean' : 'PROBLEMS'}: ${s.images} image(s), ${s.disks} disk(s), ${s.snapshots} snapshot(s), ${s.chunksInUse} chunk(s) in use\n`,
      );
      // degraded: a failed fdatasync lost writes; --repair acknowledges it (not a leak, not corruption).
      for (const p of report.problems)
        process.stdout.write(`  ${p.kind === 'degraded' ? 'DEGRADED' : p.repairable ? 'leak' : 'ERROR'} ${p.kind}: ${p.detail}\n`);
      for (const r of report.repaired) process.stdout.write(`  repaired: ${r}\n`);
    }
    const remaining = report.problems.filter((p) => !(args.includes('--repair') && p.repairable));
    if (remaining.length) throw new CliError(`${remaining.length} problem(s) remain`, 1);
  },
};

/** Verbs that work on this machine directly, not through the running service. */
export const localVerbs: Verb[] = [check, prepareDiskVerb];
