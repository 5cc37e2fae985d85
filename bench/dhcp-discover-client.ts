/**
 * The load side of bench/dhcp-vs-dnsmasq.ts, run inside the client namespace:
 *   npx tsx bench/dhcp-discover-client.ts COUNT MACS [pxe|captured]
 * Sends COUNT DHCPDISCOVERs one after another (broadcast flag set, so every server answers by
 * broadcast), chaddr cycling over MACS addresses, and prints the DISCOVER->OFFER round-trip
 * times in microseconds as one JSON line: {"rtts":[...],"lost":n}. The DISCOVER is a minimal one
 * (53 only; pxe: with 60 and 93 of a BIOS PXE ROM) or, with `captured`, iPXE's real one
 * (test/fixtures/dhcp/ipxe-e1000-discover: 13 options, 175 with 14 sub-options).
 * Before that it warms up its own code (WARMUP round trips of the same packets between two
 * sockets on 127.0.0.1 in its namespace): otherwise the client's JIT warm-up lands in the first
 * few hundred round trips of whichever server is measured first in each process.
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, getMessageType, Opt } from '../appliance/dhcp/options';
import { decodePacket, encodePacket, FLAG_BROADCAST, type BootRequest } from '../appliance/dhcp/packet';

const count = Number(process.argv[2] ?? 200);
const macs = Number(process.argv[3] ?? 20);
const pxe = process.argv[4] === 'pxe';
const captured = process.argv[4] === 'captured' ? decodePacket(readFileSync(join(__dirname, '../test/fixtures/dhcp/ipxe-e1000-discover.bin'))) : undefined;
const WARMUP = 2000;

function discover(i: number): Buffer {
  const chaddr = Buffer.alloc(16);
  Buffer.from([0x02, 0xbe, 0x4c, 0, (i % macs) >> 8, (i % macs) & 255]).copy(chaddr);
  if (captured) {
    // The client identifier (61) carries the MAC too: servers that key leases on it see 20 clients.
    const options = captured.options.map((o) =>
      o.code === Opt.clientId ? { code: o.code, data: Buffer.concat([Buffer.from([1]), chaddr.subarray(0, 6)]) } : o,
    );
    return encodePacket({ ...captured, xid: 0x5e000000 + i, flags: FLAG_BROADCAST, chaddr, options });
  }
  const options = [build.messageType('discover')];
  if (pxe) options.push(build.text(Opt.vendorClass, 'PXEClient:Arch:00000:UNDI:002001'), { code: Opt.clientArch, data: Buffer.from([0, 0]) });
  const p: BootRequest = {
    op: 'request',
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x5e000000 + i,
    secs: 0,
    flags: FLAG_BROADCAST,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    hasCookie: true,
    options,
  };
  return encodePacket(p);
}

/** An OFFER-shaped reply to `request` (the warm-up's echo peer sends these back). */
function offerFor(request: Buffer): Buffer {
  const p = decodePacket(request);
  return encodePacket({ ...p, op: 'reply', options: [build.messageType('offer')] });
}

/** Round trips with a local echo peer: the same code paths as measuring, no server involved. */
async function warmUp(rounds: number): Promise<void> {
  const echo = createSocket('udp4');
  echo.on('message', (msg, rinfo) => echo.send(offerFor(msg), rinfo.port, rinfo.address));
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', () => r()));
  const probe = createSocket('udp4');
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
  for (let i = 0; i < rounds; i++) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1000);
      probe.once('message', (msg) => {
        const p = decodePacket(msg);
        if (p.op === 'reply' && getMessageType(p) === 'offer') rtts.push(Number(process.hrtime.bigint()) / 1000);
        clearTimeout(timer);
        resolve();
      });
      probe.send(discover(i), echo.address().port, '127.0.0.1');
    });
  }
  rtts.length = 0;
  echo.close();
  probe.close();
}

const sock = createSocket({ type: 'udp4', reuseAddr: true });
const rtts: number[] = [];
let lost = 0;
let waiting: { xid: number; t0: bigint; done: () => void } | undefined;

sock.on('message', (msg) => {
  try {
    const p = decodePacket(msg);
    if (!waiting || p.op !== 'reply' || p.xid !== waiting.xid || getMessageType(p) !== 'offer') return;
    rtts.push(Number(process.hrtime.bigint() - waiting.t0) / 1000);
    const w = waiting;
    waiting = undefined;
    w.done();
  } catch {
    /* not ours */
  }
});

sock.bind(68, '0.0.0.0', async () => {
  sock.setBroadcast(true);
  await warmUp(WARMUP);
  for (let i = 0; i < count; i++) {
    const xid = 0x5e000000 + i;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        lost += 1;
        waiting = undefined;
        resolve();
      }, 1000);
      waiting = {
        xid,
        t0: process.hrtime.bigint(),
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      sock.send(discover(i), 67, '255.255.255.255');
    });
  }
  console.log(JSON.stringify({ rtts, lost }));
  sock.close();
});
