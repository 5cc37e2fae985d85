/**
 * Child process for crash.test.ts: opens the store, runs crashOps(seed) on disk "d" and prints
 * "F <k>" after each flush completes, where every write with idx < k resolved before that flush
 * was called, and "I <n>" before issuing write n-1 (so the parent knows which writes may have
 * landed). The parent SIGKILLs it at a random moment. With `--rbd <json>` (RbdStore options:
 * conf, id, keyring, pool, prefix) it runs on the RBD backend instead of the local store.
 */
import { systemClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { RbdStore, type RbdStoreOptions } from '../../image-store/rbd/store';
import { ImageStore } from '../../image-store/store';
import { crashBlock, crashOps } from './crash-workload';

async function main(): Promise<void> {
  const [dir, runArg, seedArg, importFile, flag, rbdJson] = process.argv.slice(2);
  const run = Number(runArg);
  const store =
    flag === '--rbd'
      ? await RbdStore.open({ dir, clock: systemClock, log: silentLogger(), rbd: JSON.parse(rbdJson!) as RbdStoreOptions['rbd'] })
      : ImageStore.open({ dir, clock: systemClock, log: silentLogger(), segmentMiB: 1, chunkKiB: 4, reserveMiB: 0 });
  const vol = store.openVolume('d');
  process.stdout.write('READY\n');
  let issued = 0;
  let batch: Promise<void>[] = [];
  const snaps: number[] = [];
  for (const op of crashOps(Number(seedArg), vol.blockCount)) {
    if (op.kind === 'write') {
      const data = Buffer.concat(Array.from({ length: op.blocks }, (_, i) => crashBlock(run, op.idx, op.lba + i)));
      // Pipes are synchronous on Linux: the parent sees this line even if we die right after.
      process.stdout.write(`I ${op.idx + 1}\n`);
      batch.push(vol.write(op.lba, data));
      issued = op.idx + 1;
    } else if (op.kind === 'batch-end') {
      await Promise.all(batch);
      batch = [];
    } else if (op.kind === 'flush') {
      const k = issued;
      await vol.flush();
      process.stdout.write(`F ${k}\n`);
    } else if (op.kind === 'snapshot') {
      const k = issued;
      snaps.push((await store.createSnapshot('d', `r${run}-${k}`)).id);
      process.stdout.write(`F ${k}\n`);
    } else if (op.kind === 'import') {
      // A crash mid-import must leave either the whole image or nothing.
      await store.importImage(`imp-${run}-${issued}`, importFile);
    } else if (op.kind === 'delete-snapshot' && snaps.length > 2) {
      await store.deleteSnapshot('d', snaps.shift()!);
    }
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
