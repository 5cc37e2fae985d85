/**
 * Building replies (RFC 2131 section 4.3.1 table 3) and the boot options for a BootAnswer. Pure.
 */
import type { BootAnswer } from '../boot/policy';
import { ZERO } from './ipv4';
import { build, Opt, type ClientRequestInfo, type MessageTypeName } from './options';
import { ipToBytes, type BootReply, type BootRequest, type DhcpOption } from './packet';

/** Where a reply goes. */
export interface Destination {
  address: string;
  port: number;
}

/** A reply and its destination. */
export interface Outbound {
  packet: BootReply;
  to: Destination;
  /** The info log line for this reply, written by the server once the reply is sent (not before it). */
  note?: { msg: string; fields: Record<string, unknown> };
}

// Option data that is the same in every reply, built once and shared (encodePacket only reads it).
const PXE_CLIENT = build.text(Opt.vendorClass, 'PXEClient').data;
const HTTP_CLIENT = build.text(Opt.vendorClass, 'HTTPClient').data;
/** Option 54's data for the last server address asked for (a service answers from one address). */
let lastServerId: { ip: string; data: Buffer } = { ip: '', data: Buffer.alloc(0) };

function serverIdOption(ip: string): DhcpOption {
  if (lastServerId.ip !== ip) lastServerId = { ip, data: ipToBytes(ip) };
  return { code: Opt.serverId, data: lastServerId.data };
}

/** The reply skeleton: xid, flags, giaddr, chaddr copied; hops/secs zeroed; 53 and 54 first. */
export function baseReply(req: BootRequest, type: MessageTypeName, serverId: string): BootReply {
  return {
    op: 'reply',
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags,
    ciaddr: ZERO,
    yiaddr: ZERO,
    siaddr: ZERO,
    giaddr: req.giaddr,
    chaddr: Buffer.from(req.chaddr),
    sname: '',
    file: '',
    // Option 53 first: some PXE ROMs look for it only at the start of the options.
    options: [build.messageType(type), serverIdOption(serverId)],
    hasCookie: true,
  };
}

/** Boot fields (siaddr, file) and options for an answer; `echo` holds request options to reflect. */
export function applyBootAnswer(reply: BootReply, answer: BootAnswer, info: ClientRequestInfo, serverAddress: string): void {
  const add = (o: DhcpOption) => reply.options.push(o);
  const setFile = (file: string) => {
    // The 128-byte file field; longer URLs travel in option 67 only (iPXE and UEFI read it).
    if (Buffer.byteLength(file, 'latin1') < 128) reply.file = file;
    add(build.text(Opt.bootfileName, file));
  };
  const pxeFirmware = (info.vendorClass ?? '').startsWith('PXEClient');
  switch (answer.kind) {
    case 'chainload':
      reply.siaddr = serverAddress;
      // PXE 2.1 section 2.2.5: a ProxyDHCP/boot reply identifies itself with 60 "PXEClient".
      add({ code: Opt.vendorClass, data: PXE_CLIENT });
      add(build.text(Opt.tftpServerName, serverAddress));
      setFile(answer.file);
      add(build.pxeUseFile());
      break;
    case 'http-boot':
      reply.siaddr = serverAddress;
      // UEFI 2.5+ section 24.7.2: HTTP boot offers carry 60 "HTTPClient" and a URI boot file.
      add({ code: Opt.vendorClass, data: HTTP_CLIENT });
      setFile(answer.url);
      break;
    case 'ipxe':
      reply.siaddr = serverAddress;
      // iPXE takes an offer with 60 "PXEClient" and no PXE boot menu (43.9) as a ProxyDHCP offer.
      if (pxeFirmware) add({ code: Opt.vendorClass, data: PXE_CLIENT });
      if (answer.url) setFile(answer.url);
      if (answer.rootPath) add(build.text(Opt.rootPath, answer.rootPath));
      if (answer.initiatorName) add(build.text(Opt.iscsiInitiatorName, answer.initiatorName));
      break;
    case 'ignore':
    case 'missing-binary':
      return;
  }
  // RFC 4578 section 2.3 / PXE: echo the client's UUID, only when it sent one (some ROMs omit it).
  if (info.uuid) add(build.raw(Opt.clientUuid, info.uuid));
}

/**
 * The file the answer boots (for telemetry and the log), or undefined. A one-time script link's
 * token is masked: events and logs outlive the link and are no place for a credential.
 */
export function bootFileOf(answer: BootAnswer): string | undefined {
  switch (answer.kind) {
    case 'chainload':
      return answer.file;
    case 'http-boot':
      return answer.url;
    case 'ipxe':
      return answer.url?.replace(/\?t=[^&]*$/, '?t=one-time') ?? answer.rootPath;
    default:
      return undefined;
  }
}

/** RFC 3046 section 2.2: the relay agent option goes back verbatim, as the last option. */
export function finishReply(reply: BootReply, info: ClientRequestInfo): BootReply {
  if (info.relayAgentInfo && reply.giaddr !== ZERO) reply.options.push(build.raw(Opt.relayAgentInfo, info.relayAgentInfo));
  return reply;
}

/**
 * RFC 2131 section 4.1: relayed -> the relay's port 67; NAK -> broadcast; ciaddr set -> unicast
 * to it; otherwise broadcast. A server may unicast to yiaddr only by writing the ARP cache
 * itself, which Node cannot, so unconfigured clients always get a broadcast (they all listen).
 */
export function destinationFor(req: BootRequest, type: MessageTypeName, serverPort: number, clientPort: number): Destination {
  if (req.giaddr !== ZERO) return { address: req.giaddr, port: serverPort };
  if (type === 'nak') return { address: '255.255.255.255', port: clientPort };
  if (req.ciaddr !== ZERO) return { address: req.ciaddr, port: clientPort };
  return { address: '255.255.255.255', port: clientPort };
}
