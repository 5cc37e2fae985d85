/**
 * Runs a target by hand (for conformance runs, benches and debugging):
 *   npx tsx test/iscsi/serve.ts [port] [memory|file:PATH|store:PATH] [blocks] [log level]
 * memory: a thin in-memory disk; file:PATH: the raw file itself (like tgt's rdwr backing store);
 * store:PATH: the product path — PATH imported as a golden image into an image store in a temp
 * directory, and a client disk cloned from it (copy-on-write), which is what clients boot from.
 * Prints "PORT <n>" once listening; target iqn.2026-11.local.netboot:test, disk at LUN 0.
 * With store:PATH, a line "RESET" on stdin resets the client disk to a fresh clone of the golden
 * image once no session holds it (benches measure first writes with it), answered "RESET done";
 * "MEM" prints the process's memory by kind (process.memoryUsage()).
 */
// First, as in the appliance: the file I/O thread pool's size, before anything starts the pool.
import '../../appliance/core/io-threads';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pino from 'pino';
import { systemClock } from '../../appliance/core/clock';
import { nativeBindingPath } from '../../appliance/core/db';
import { GC_PACE_BYTES, gcPacer } from '../../appliance/core/gc-pacer';
import { ImageStore } from '../../image-store';
import { startTarget, target } from './harness';
import { FileDisk, MemoryDisk } from './volumes';

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? 0);
  const kind = process.argv[3] ?? 'memory';
  const blocks = Number(process.argv[4] ?? 131072);
  const level = process.argv[5] ?? 'silent';
  const log = pino({ level });
  let open;
  let cleanup = async () => {};
  let onReset: (() => Promise<void>) | null = null;
  if (kind.startsWith('file:')) {
    const d = new FileDisk('file-disk', kind.slice(5), blocks);
    open = () => d.open();
  } else if (kind.startsWith('store:')) {
    const dir = mkdtempSync(join(tmpdir(), 'nb-serve-store-'));
    const store = ImageStore.open({ dir, clock: systemClock, log, reserveMiB: 0, sqliteBinding: nativeBindingPath() });
    await store.importImage('golden', kind.slice(6));
    store.createDisk('client', 'golden');
    open = () => store.openVolume('client');
    onReset = async () => {
      // The session closes its volume a moment after the initiator's logout.
      for (let i = 0; i < 200 && store.isOpen('client'); i++) await new Promise((r) => setTimeout(r, 25));
      await store.resetDisk('client');
    };
    cleanup = async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    };
  } else {
    const d = new MemoryDisk('memory-disk', blocks);
    open = () => d.open();
  }
  const t = target('iqn.2026-11.local.netboot:test', [{ lun: 0, open, readOnly: false }]);
  // Benches and conformance runs connect every client from 127.0.0.1 (iscsi-vs-tgt.ts runs
  // qemu-img/iscsi-perf with several sessions, iscsi-test-cu two initiators plus reconnects):
  // the product's cap of 8 per address is for a LAN of one-disk clients, not this.
  const { server } = await startTarget([t], { log, port, extra: { maxConnectionsPerAddress: 256, gcPacer: gcPacer(GC_PACE_BYTES) } });
  console.log(`PORT ${server.port}`);
  createInterface({ input: process.stdin }).on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'MEM') {
      // Where the memory is (benches print it): V8's heap, ArrayBuffers, the rest is malloc'd.
      const m = process.memoryUsage();
      const mib = (n: number) => (n / 1048576).toFixed(1);
      console.log(
        `MEM rss ${mib(m.rss)} heapTotal ${mib(m.heapTotal)} heapUsed ${mib(m.heapUsed)} external ${mib(m.external)} arrayBuffers ${mib(m.arrayBuffers)}`,
      );
    } else if (cmd === 'RESET') {
      if (!onReset) console.log('RESET failed: not a store disk');
      else
        onReset().then(
          () => console.log('RESET done'),
          (err: Error) => console.log(`RESET failed: ${err.message}`),
        );
    }
  });
  const stop = () =>
    void server
      .stop()
      .then(cleanup)
      .then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
