/**
 * Asks a running appliance for a one-time boot-script link the way an iPXE client that already
 * has an address does: a PXE boot-server REQUEST to the proxy port (4011) with ciaddr set (PXE
 * 2.1 section 2.2.6), user class "iPXE" and the HTTP feature in option 175. The ACK comes back
 * unicast to ciaddr and the requesting port; its boot file is the link (issue #13), bound to
 * ciaddr. For tests that run the appliance on 127.0.0.1 (dhcp.mode "proxy", proxyPort 0).
 */
import { createSocket } from 'node:dgram';
import { build, getString, Opt } from '../../../appliance/dhcp/options';
import { decodePacket, encodePacket, type BootRequest } from '../../../appliance/dhcp/packet';

/** The boot file (script URL with its one-time token) the appliance answers for `mac`; rejects after 3 s. */
export function requestBootLink(proxyPort: number, mac: string, ciaddr = '127.0.0.1'): Promise<string> {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/[:-]/g, ''), 'hex').copy(chaddr);
  const xid = Math.floor(Math.random() * 0xffffffff);
  const req: BootRequest = {
    op: 'request',
    htype: 1,
    hlen: 6,
    hops: 0,
    xid,
    secs: 0,
    flags: 0,
    ciaddr,
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    hasCookie: true,
    options: [
      build.messageType('request'),
      build.text(Opt.vendorClass, 'PXEClient:Arch:00000:UNDI:002001'),
      { code: Opt.clientArch, data: Buffer.from([0, 0]) },
      build.text(Opt.userClass, 'iPXE'),
      { code: Opt.ipxeEncap, data: Buffer.from([0x13, 1, 1]) },
    ],
  };
  const sock = createSocket('udp4');
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`no ACK from 127.0.0.1:${proxyPort} for ${mac}`));
    }, 3000);
    sock.on('message', (msg) => {
      const reply = decodePacket(msg);
      if (reply.xid !== xid) return;
      clearTimeout(timer);
      sock.close();
      const file = getString(reply, Opt.bootfileName);
      if (file) resolve(file);
      else reject(new Error(`ACK for ${mac} has no boot file`));
    });
    sock.bind(0, '127.0.0.1', () => sock.send(encodePacket(req), proxyPort, '127.0.0.1'));
  });
}
