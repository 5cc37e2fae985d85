/**
 * ProxyDHCP (PXE 2.1 section 2.2.3): answers only network-boot clients, never
 * assigns an address, and leaves address assignment to the network's own DHCP server.
 *  - port 67: a DISCOVER from a PXE/HTTP-boot/iPXE client gets an OFFER with yiaddr 0 and the
 *    boot file (siaddr + file, options 66/67, 60 PXEClient, 43 with discovery control 8).
 *  - port 4011: the client's REQUEST gets an ACK with the same boot answer, unicast back to it
 *    (many UEFI ROMs and iPXE take this path after binding the real server's address).
 * Other messages on port 67 are only observed: a REQUEST tells which address a client takes,
 * which TFTP uses to attribute transfers.
 */
import { ZERO } from './ipv4';
import { type Inbound, type Responder, type ResponderContext, emit, policyRequest } from './engine';
import { isBootClient, isIpxe } from '../boot/policy';
import { applyBootAnswer, baseReply, bootFileOf, destinationFor, finishReply, type Outbound } from './replies';

/** The proxy-mode responder. */
export class ProxyResponder implements Responder {
  constructor(private readonly ctx: ResponderContext) {}

  handle(inb: Inbound): Outbound[] {
    const { info, packet } = inb;
    const ctx = this.ctx;
    const boot = isBootClient(info);
    if (info.type === 'request' && info.requestedIp && info.requestedIp !== ZERO) ctx.noteAddress(info.requestedIp, info.mac);
    if (packet.ciaddr !== ZERO) ctx.noteAddress(packet.ciaddr, info.mac);
    if (!boot) {
      ctx.counters.ignored += 1;
      return [];
    }

    if (inb.via !== 'pxe') {
      if (info.type === 'request') {
        // The client REQUESTs its address from the real server; a proxy stays silent (but counts it).
        ctx.counters.requests += 1;
        emit(ctx, info.mac, 'dhcp-request', { xid: info.xid, ip: info.requestedIp ?? packet.ciaddr, server: info.serverId });
        return [];
      }
      if (info.type !== 'discover') {
        ctx.counters.ignored += 1;
        return [];
      }
      ctx.counters.discovers += 1;
      // vc (option 60) lets the "waiting to boot" list say what kind of machine asked (telemetry).
      emit(ctx, info.mac, 'dhcp-discover', { xid: info.xid, arch: info.arch, vc: info.vendorClass, ipxe: isIpxe(info) || undefined });
      const answer = ctx.policy.decide(policyRequest(info), ctx.serverAddress);
      if (answer.kind === 'ignore' || answer.kind === 'missing-binary') {
        ctx.log.debug({ mac: info.mac, xid: info.xid, reason: answer.reason }, 'no proxy offer');
        ctx.counters.ignored += 1;
        return [];
      }
      const reply = baseReply(packet, 'offer', ctx.serverAddress);
      applyBootAnswer(reply, answer, info, ctx.serverAddress);
      finishReply(reply, info);
      ctx.counters.offers += 1;
      const file = bootFileOf(answer);
      emit(ctx, info.mac, 'dhcp-offer', { xid: info.xid, arch: info.arch, file, proxy: true });
      const note = { msg: 'proxy offer', fields: { mac: info.mac, xid: info.xid, arch: info.arch, kind: answer.kind, file } };
      return [{ packet: reply, to: destinationFor(packet, 'offer', ctx.serverPort, ctx.clientPort), note }];
    }

    // Port 4011: PXE boot server request (REQUEST; some ROMs send INFORM).
    if (info.type !== 'request' && info.type !== 'inform') {
      ctx.counters.ignored += 1;
      return [];
    }
    ctx.counters.requests += 1;
    emit(ctx, info.mac, 'dhcp-request', { xid: info.xid, ip: packet.ciaddr, arch: info.arch, port: 4011 });
    // A 4011 request comes from a configured client: its ciaddr binds the one-time script link.
    const answer = ctx.policy.decide(policyRequest(info), ctx.serverAddress, { address: packet.ciaddr !== ZERO ? packet.ciaddr : undefined });
    if (answer.kind === 'ignore' || answer.kind === 'missing-binary') {
      ctx.counters.ignored += 1;
      return [];
    }
    const reply = baseReply(packet, 'ack', ctx.serverAddress);
    reply.ciaddr = packet.ciaddr;
    applyBootAnswer(reply, answer, info, ctx.serverAddress);
    finishReply(reply, info);
    ctx.counters.acks += 1;
    const file = bootFileOf(answer);
    emit(ctx, info.mac, 'dhcp-ack', { xid: info.xid, ip: packet.ciaddr, file, proxy: true });
    // PXE spec 2.2.6: the boot server answers to the client's own address and port.
    const to =
      packet.giaddr !== ZERO
        ? { address: packet.giaddr, port: ctx.serverPort }
        : { address: packet.ciaddr !== ZERO ? packet.ciaddr : inb.from.address, port: inb.from.port };
    return [{ packet: reply, to, note: { msg: 'proxy ack (port 4011)', fields: { mac: info.mac, xid: info.xid, kind: answer.kind, file } } }];
  }
}
