/**
 * Captures real initiator traffic as golden fixtures: runs our target behind a recording TCP
 * proxy on 127.0.0.1 and lets libiscsi's iscsi-inq and qemu-img talk through it. Writes the
 * initiator→target byte stream of each tool to test/fixtures/iscsi/<name>.initiator.bin;
 * iPXE's comes from qemu running ipxe.lkrn with a sanboot script.
 *   npx tsx test/iscsi/capture-fixtures.ts
 */
import { execFile, spawn } from 'node:child_process';
import { unlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { IQN_INITIATOR, startTarget, target } from './harness';
import { MemoryDisk } from './volumes';

const run = promisify(execFile);
const OUT = join(__dirname, '..', 'fixtures', 'iscsi');
const TARGET = 'iqn.2026-11.local.netboot:fixture';

async function main(): Promise<void> {
  const disk = new MemoryDisk('fixture-disk', 2048);
  const { server, port } = await startTarget([target(TARGET, [{ lun: 0, open: () => disk.open(), readOnly: false }])]);
  const streams: Buffer[] = [];
  const proxy = createServer((client) => {
    const chunks: Buffer[] = [];
    streams.push(Buffer.alloc(0));
    const idx = streams.length - 1;
    const upstream = connect(port, '127.0.0.1');
    client.on('data', (c) => {
      chunks.push(Buffer.from(c));
      streams[idx] = Buffer.concat(chunks);
      upstream.write(c);
    });
    upstream.on('data', (c) => client.write(c));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const pport = (proxy.address() as AddressInfo).port;
  const url = `iscsi://127.0.0.1:${pport}/${TARGET}/0`;

  streams.length = 0;
  await run('iscsi-inq', ['-i', IQN_INITIATOR, url]);
  await new Promise((r) => setTimeout(r, 200));
  writeFileSync(join(OUT, 'libiscsi-inq.initiator.bin'), streams[0]);

  streams.length = 0;
  await run('qemu-io', [
    '--image-opts',
    '-c',
    'write -P 0x5a 0 4k',
    '-c',
    'flush',
    '-c',
    'read -P 0x5a 0 4k',
    `driver=iscsi,transport=tcp,portal=127.0.0.1:${pport},target=${TARGET},lun=0,initiator-name=${IQN_INITIATOR}`,
  ]);
  await new Promise((r) => setTimeout(r, 200));
  writeFileSync(join(OUT, 'qemu-io.initiator.bin'), streams[streams.length - 1]);

  // iPXE sanboot (qemu TCG, user-mode network: 10.0.2.2 is the host's 127.0.0.1).
  streams.length = 0;
  const sector = Buffer.alloc(512);
  Buffer.from([0xfa, 0xf4, 0xeb, 0xfd]).copy(sector); // cli; hlt; jmp $-1
  sector[510] = 0x55;
  sector[511] = 0xaa;
  sector.copy(disk.data, 0);
  const script = join(OUT, '..', '..', '..', 'node_modules', '.cache-ipxe-capture.ipxe');
  writeFileSync(script, `#!ipxe\ndhcp\nset initiator-iqn ${IQN_INITIATOR}\nsanboot iscsi:10.0.2.2::${pport}:0:${TARGET}\n`);
  const q = spawn(
    'qemu-system-x86_64',
    [
      '-nographic',
      '-monitor',
      'none',
      '-m',
      '128',
      '-kernel',
      '/usr/lib/ipxe/ipxe.lkrn',
      '-initrd',
      script,
      '-netdev',
      'user,id=n0',
      '-device',
      'e1000,netdev=n0',
      '-no-reboot',
    ],
    { stdio: 'ignore' },
  );
  // Wait until iPXE has booted: its stream stops growing once the boot sector halts the CPU.
  for (let i = 0, last = -1, still = 0; i < 240 && still < 6; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const n = streams[0]?.length ?? 0;
    still = n > 0 && n === last ? still + 1 : 0;
    last = n;
  }
  q.kill('SIGKILL');
  unlinkSync(script);
  writeFileSync(join(OUT, 'ipxe.initiator.bin'), streams[0]);

  proxy.close();
  await server.stop();
  console.log(
    'captured',
    streams.map((s) => s.length),
  );
}

void main();
