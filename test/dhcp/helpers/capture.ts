/**
 * Fixture capture tool (run by hand inside a namespace, see test/fixtures/dhcp/README.md):
 *   npx tsx test/dhcp/helpers/capture.ts PORT OUTDIR PREFIX COUNT SECONDS
 * Binds 0.0.0.0:PORT and writes each received UDP payload to OUTDIR/PREFIX-N.bin.
 */
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';

const [port, dir, prefix, count, seconds] = process.argv.slice(2);
const sock = createSocket({ type: 'udp4', reuseAddr: true });
let n = 0;
sock.on('message', (msg, rinfo) => {
  n += 1;
  writeFileSync(`${dir}/${prefix}-${n}.bin`, msg);
  console.log(`captured ${msg.length} bytes from ${rinfo.address}:${rinfo.port}`);
  if (n >= Number(count)) {
    sock.close();
    process.exit(0);
  }
});
sock.bind(Number(port), '0.0.0.0', () => console.log('listening'));
setTimeout(() => {
  console.log('timeout');
  process.exit(n > 0 ? 0 : 1);
}, Number(seconds) * 1000).unref();
