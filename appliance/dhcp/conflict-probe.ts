/**
 * Before full mode serves, find out whether another DHCP server answers on the interface.
 *
 * Design (docs/decisions.md, "DHCP and boot policy"): listening alone is unreliable (a quiet network shows no
 * server traffic for minutes), so the probe acts as a client: it broadcasts a DHCPDISCOVER from
 * port 68 with the broadcast flag set (so any server must answer by broadcast, RFC 2131 section
 * 4.1) and the interface's own MAC, twice, and listens on port 68 for conflictProbeSeconds. Any
 * OFFER/ACK from an address that is not ours is another server. The appliance's own DHCP service
 * sends nothing before the probe has finished clean; the DISCOVER costs the other server at
 * most one short-lived offer for our MAC.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import { FatalError } from '../core/service';
import { build, getIp, getMessageType, Opt } from './options';
import { decodePacket, FLAG_BROADCAST, type BootRequest } from './packet';
import { encodePacket } from './packet';

/** The DISCOVER the probe broadcasts (pure, exported for tests). */
export function probeDiscover(mac: string, xid: number): BootRequest {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  return {
    op: 'request',
    htype: 1,
    hlen: 6,
    hops: 0,
    xid,
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
    options: [
      build.messageType('discover'),
      build.raw(Opt.parameterRequestList, Buffer.from([Opt.subnetMask, Opt.router, Opt.serverId])),
      build.text(Opt.vendorClass, 'netboot-appliance-conflict-probe'),
    ],
  };
}

export interface ProbeOptions {
  /** Our address on the interface (the DISCOVER's source; replies from it are ignored). */
  address: string;
  /** The interface's MAC (chaddr). */
  mac: string;
  seconds: number;
  clock: Clock;
  log: Logger;
  serverPort?: number;
  clientPort?: number;
}

/** A server heard during the probe. */
export interface HeardServer {
  /** Option 54, or the packet's source address when absent. */
  serverId: string;
  from: string;
  type: string;
}

function bind(sock: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ port, address, exclusive: false }, () => {
      sock.off('error', reject);
      resolve();
    });
  });
}

/**
 * Runs the probe; resolves with every other server heard (empty = the network is ours).
 * `cancel` (returned synchronously through onCancel) ends it early, for stop() during start().
 */
export async function probeForDhcpServers(opts: ProbeOptions, onCancel?: (cancel: () => void) => void): Promise<HeardServer[]> {
  const serverPort = opts.serverPort ?? 67;
  const clientPort = opts.clientPort ?? 68;
  const heard: HeardServer[] = [];
  const rx = createSocket({ type: 'udp4', reuseAddr: true });
  const tx = createSocket({ type: 'udp4', reuseAddr: true });
  const cancels: (() => void)[] = [];
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const closeAll = () => {
    cancels.forEach((c) => c());
    for (const s of [rx, tx]) {
      try {
        s.close();
      } catch {
        /* already closed */
      }
    }
  };
  onCancel?.(() => finish());
  try {
    rx.on('message', (msg, rinfo) => {
      if (rinfo.address === opts.address) return;
      try {
        const p = decodePacket(msg);
        if (p.op !== 'reply') return;
        const type = getMessageType(p);
        if (type !== 'offer' && type !== 'ack' && type !== 'nak') return;
        const serverId = getIp(p, Opt.serverId) ?? rinfo.address;
        if (serverId === opts.address) return;
        if (!heard.some((h) => h.serverId === serverId)) heard.push({ serverId, from: rinfo.address, type });
      } catch {
        // Not DHCP: not a server.
      }
    });
    try {
      await bind(rx, clientPort, '0.0.0.0');
      // Sent from a socket bound to our address: Linux routes a limited broadcast out of the
      // interface that owns the source address (ip_route_output_key_hash_rcu, "special hack").
      await bind(tx, clientPort, opts.address);
    } catch (err) {
      throw new FatalError(
        `cannot run the DHCP conflict probe: UDP port ${clientPort} (${(err as NodeJS.ErrnoException).code ?? err}); set dhcp.conflictProbeSeconds to 0 to skip it at your own risk`,
        err,
      );
    }
    tx.setBroadcast(true);
    const xid = (Math.random() * 0x1_0000_0000) >>> 0;
    const send = () =>
      tx.send(encodePacket(probeDiscover(opts.mac, xid)), serverPort, '255.255.255.255', (err) => {
        if (err) opts.log.warn({ err }, 'conflict probe: sending DISCOVER failed');
      });
    send();
    // A second DISCOVER a third of the way in, in case the first was lost or the link was still coming up.
    cancels.push(opts.clock.setTimeout(send, (opts.seconds * 1000) / 3));
    cancels.push(opts.clock.setTimeout(() => finish(), opts.seconds * 1000));
    await done;
    return heard;
  } finally {
    closeAll();
  }
}
