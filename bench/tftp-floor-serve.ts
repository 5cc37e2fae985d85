/**
 * The floor for any TFTP server on Node.js: the least work per block a lock-step sender can do
 * with Node's UDP sockets. It is NOT a TFTP server (no netascii, no retransmission, no timeouts,
 * no tsize/windowsize, one file held in memory, no checks): it answers an RRQ with an OACK for
 * blksize, then sends the next block as soon as the ACK for the last one arrives, on a socket
 * connected to the client, written with fs.writeSync on its descriptor (skipping dgram's send
 * bookkeeping). bench/tftp-vs-dnsmasq.ts runs it beside dnsmasq and our server to show how much
 * of the gap at small block sizes is Node's per-datagram cost rather than our server's work.
 *   npx tsx bench/tftp-floor-serve.ts FILE PORT HOST
 */
import dgram from 'node:dgram';
import { readFileSync, writeSync } from 'node:fs';

const [file = '', port = '6970', host = '127.0.0.1'] = process.argv.slice(2);
const data = readFileSync(file);

/** The descriptor of a bound dgram socket (Node keeps its handle behind a symbol). */
function fdOf(sock: dgram.Socket): number {
  const key = Object.getOwnPropertySymbols(sock).find((s) => s.description === 'state symbol');
  const state = key ? (sock as unknown as Record<symbol, { handle?: { fd?: number } }>)[key] : undefined;
  const fd = state?.handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no descriptor on the socket');
  return fd;
}

function serve(rrq: Buffer, rinfo: dgram.RemoteInfo): void {
  const fields = rrq.subarray(2).toString('latin1').split('\0');
  const at = fields.findIndex((f, i) => i >= 2 && f.toLowerCase() === 'blksize');
  const blksize = at >= 0 ? Number(fields[at + 1]) : 512;
  const sock = dgram.createSocket('udp4');
  sock.bind(0, host, () => {
    sock.connect(rinfo.port, rinfo.address, () => {
      const fd = fdOf(sock);
      const packet = Buffer.allocUnsafe(4 + blksize);
      packet.writeUInt16BE(3, 0);
      let block = 0; // the block the client must ACK next (0 = the OACK)
      let lastLength = blksize;
      const sendBlock = (): void => {
        const off = (block - 1) * blksize;
        const n = Math.max(0, Math.min(blksize, data.length - off));
        packet.writeUInt16BE(block & 0xffff, 2);
        data.copy(packet, 4, off, off + n);
        writeSync(fd, packet, 0, 4 + n);
        lastLength = n;
      };
      sock.on('message', (ack) => {
        if (ack.length < 4 || ack.readUInt16BE(0) !== 4 || ack.readUInt16BE(2) !== (block & 0xffff)) return;
        if (block > 0 && lastLength < blksize) {
          sock.close();
          return;
        }
        block++;
        sendBlock();
      });
      if (at >= 0) writeSync(fd, Buffer.from(`\0\x06blksize\0${blksize}\0`, 'latin1'));
      else {
        block = 1;
        sendBlock();
      }
    });
  });
}

const listener = dgram.createSocket('udp4');
listener.on('message', (msg, rinfo) => {
  if (msg.length > 4 && msg.readUInt16BE(0) === 1) serve(msg, rinfo);
});
listener.bind(Number(port), host, () => process.stdout.write(`listening ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
