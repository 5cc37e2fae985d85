/**
 * `npx tsx image-store/check-cli.ts DIR [--repair] [--json]`: checks an image store offline.
 * Exit 0: clean (or every problem repaired with --repair); 1: problems remain; 2: usage/open error.
 * Run it while the appliance is stopped: it opens the store's database itself.
 */
import { realClock, silentLog } from './ports';
import { ImageStore } from './store';

async function main(argv: string[]): Promise<number> {
  const args = argv.filter((a) => !a.startsWith('--'));
  const repair = argv.includes('--repair');
  const json = argv.includes('--json');
  if (args.length !== 1) {
    process.stderr.write('usage: check-cli.ts DIR [--repair] [--json]\n');
    return 2;
  }
  let store: ImageStore;
  try {
    store = ImageStore.open({ dir: args[0], clock: realClock, log: silentLog, reserveMiB: 0 });
  } catch (err) {
    process.stderr.write(`cannot open store ${args[0]}: ${(err as Error).message}\n`);
    return 2;
  }
  const report = store.check({ repair });
  await store.close();
  if (json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else {
    const s = report.stats;
    process.stdout.write(
      `${report.ok ? 'clean' : 'PROBLEMS'}: ${s.images} image(s), ${s.disks} disk(s), ${s.snapshots} snapshot(s), ${s.layers} layer(s), ${s.chunksInUse} chunk(s) in ${s.segments} segment(s)\n`,
    );
    for (const p of report.problems) process.stdout.write(`  ${p.kind === 'degraded' ? 'DEGRADED' : p.repairable ? 'leak' : 'ERROR'} ${p.kind}: ${p.detail}\n`);
    for (const r of report.repaired) process.stdout.write(`  repaired: ${r}\n`);
  }
  const remaining = report.problems.filter((p) => !(repair && p.repairable));
  return remaining.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${(err as Error).stack ?? err}\n`);
    process.exit(2);
  },
);
