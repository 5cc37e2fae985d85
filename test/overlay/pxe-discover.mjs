// A minimal PXE client for the privileges test: broadcasts one DHCPDISCOVER the way a BIOS PXE
// ROM does (option 60 PXEClient, 93 arch 0, 94, 97 UUID, broadcast flag) from port 68 and prints
// the first reply for its xid as JSON: {op, msgType, vendorClass, file, siaddr}. Exits 1 after 6 s.
import dgram from 'node:dgram';

const mac = Buffer.from([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const xid = 0x4e420001;
const opt = (code, data) => Buffer.concat([Buffer.from([code, data.length]), data]);
const head = Buffer.alloc(240);
head[0] = 1;
head[1] = 1;
head[2] = 6;
head.writeUInt32BE(xid, 4);
head.writeUInt16BE(0x8000, 10); // broadcast flag (RFC 2131 §4.1): we have no address yet
mac.copy(head, 28);
head.writeUInt32BE(0x63825363, 236); // magic cookie
const pkt = Buffer.concat([
  head,
  opt(53, Buffer.from([1])),
  opt(60, Buffer.from('PXEClient:Arch:00000:UNDI:002001')),
  opt(93, Buffer.from([0, 0])),
  opt(94, Buffer.from([1, 2, 1])),
  opt(97, Buffer.concat([Buffer.from([0]), Buffer.alloc(16, 0x42)])),
  Buffer.from([255]),
]);
const padded = Buffer.concat([pkt, Buffer.alloc(Math.max(0, 300 - pkt.length))]);

const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
const timer = setTimeout(() => {
  process.stdout.write('{"error":"no reply"}\n');
  process.exit(1);
}, 6000);
sock.on('message', (msg) => {
  if (msg.length < 240 || msg[0] !== 2 || msg.readUInt32BE(4) !== xid) return;
  const options = {};
  for (let i = 240; i < msg.length && msg[i] !== 255; ) {
    if (msg[i] === 0) {
      i++;
      continue;
    }
    options[msg[i]] = msg.subarray(i + 2, i + 2 + msg[i + 1]);
    i += 2 + msg[i + 1];
  }
  clearTimeout(timer);
  process.stdout.write(
    `${JSON.stringify({
      op: msg[0],
      msgType: options[53]?.[0],
      vendorClass: options[60]?.toString('latin1'),
      siaddr: [...msg.subarray(20, 24)].join('.'),
      file: (options[67] ?? msg.subarray(108, 236)).toString('latin1').replace(/\0.*$/s, ''),
    })}\n`,
  );
  sock.close();
});
sock.bind(68, () => {
  sock.setBroadcast(true);
  sock.send(padded, 67, '255.255.255.255', (err) => {
    if (err) {
      process.stdout.write(`${JSON.stringify({ error: err.message })}\n`);
      process.exit(1);
    }
  });
});
