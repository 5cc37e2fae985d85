/**
 * Runs a target by hand (for conformance runs, benches and debugging):
 *   npx tsx test/iscsi/serve.ts [port] [memory|file:PATH] [blocks] [log level]
 * Prints "PORT <n>" once listening; target iqn.2026-11.local.netboot:test, disk at LUN 0.
 */
import pino from 'pino';
import { startTarget, target } from './harness';
import { FileDisk, MemoryDisk } from './volumes';

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? 0);
  const kind = process.argv[3] ?? 'memory';
  const blocks = Number(process.argv[4] ?? 131072);
  const level = process.argv[5] ?? 'silent';
  let open;
  if (kind.startsWith('file:')) {
    const d = new FileDisk('file-disk', kind.slice(5), blocks);
    open = () => d.open();
  } else {
    const d = new MemoryDisk('memory-disk', blocks);
    open = () => d.open();
  }
  const t = target('iqn.2026-11.local.netboot:test', [{ lun: 0, open, readOnly: false }]);
  const { server } = await startTarget([t], { log: pino({ level }), port });
  console.log(`PORT ${server.port}`);
  const stop = () => void server.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
