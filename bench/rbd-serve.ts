/**
 * Our target over the RBD store backend, for bench/rbd-vs-tgt.ts: opens an RbdStore on the
 * given cluster, imports FILE as golden image "golden" (an RBD image + protected snapshot),
 * creates N client disks (clones), and serves disk k as target iqn.2026-11.local.netboot:rbd-k,
 * LUN 0. Prints "PORT <n>" and "GOLDEN <rbd image>" once listening.
 *   node rbd-serve.cjs CONF ID KEYRING POOL FILE N STOREDIR
 */
import '../appliance/core/io-threads';
import pino from 'pino';
import { systemClock } from '../appliance/core/clock';
import { nativeBindingPath } from '../appliance/core/db';
import { RbdStore } from '../image-store/rbd/store';
import { startTarget, target } from '../test/iscsi/harness';

async function main(): Promise<void> {
  const [conf, id, keyring, pool, file, n, dir] = process.argv.slice(2) as [string, string, string, string, string, string, string];
  const log = pino({ level: 'silent' });
  const store = await RbdStore.open({
    dir,
    clock: systemClock,
    log,
    rbd: { conf, id, keyring: keyring || undefined, pool, prefix: 'ours-' },
    sqliteBinding: nativeBindingPath(),
  });
  await store.importImage('golden', file);
  const targets = [];
  for (let k = 0; k < Number(n); k++) {
    store.createDisk(`client-${k}`, 'golden');
    targets.push(target(`iqn.2026-11.local.netboot:rbd-${k}`, [{ lun: 0, open: () => store.openVolume(`client-${k}`), readOnly: false }]));
  }
  await store.settle();
  const { server } = await startTarget(targets, { log, port: 0, extra: { maxConnectionsPerAddress: 256 } });
  console.log(`GOLDEN ${store.listImages().length ? 'ours-i1' : ''}`);
  console.log(`PORT ${server.port}`);
  const stop = () =>
    void server
      .stop()
      .then(() => store.close())
      .then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
