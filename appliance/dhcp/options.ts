/**
 * DHCP option codes and typed views of the options the appliance reads or writes. Pure: builds
 * and reads Buffers only. Readers throw DecodeError (offset = byte inside the option's data) when
 * an option's length does not fit its type; callers drop the packet.
 */
import { DecodeError, ipToBytes, type DhcpOption, type DhcpPacket } from './packet';

/** Option codes (RFC 2132 unless noted). */
export const Opt = {
  subnetMask: 1,
  router: 3,
  dns: 6,
  hostName: 12,
  domainName: 15,
  rootPath: 17,
  broadcastAddress: 28,
  vendorSpecific: 43,
  requestedIp: 50,
  leaseTime: 51,
  overload: 52,
  messageType: 53,
  serverId: 54,
  parameterRequestList: 55,
  message: 56,
  maxMessageSize: 57,
  renewalTime: 58,
  rebindingTime: 59,
  vendorClass: 60,
  clientId: 61,
  tftpServerName: 66,
  bootfileName: 67,
  /** RFC 3004 (iPXE sends a bare string "iPXE", not the RFC's length-prefixed list). */
  userClass: 77,
  /** RFC 3046: echoed verbatim in replies to relayed requests. */
  relayAgentInfo: 82,
  /** RFC 4578 section 2.1: client system architecture(s), 16-bit each. */
  clientArch: 93,
  /** RFC 4578 section 2.2: client network interface identifier (UNDI version). */
  clientNdi: 94,
  /** RFC 4578 section 2.3: client machine UUID, type 0 + 16 bytes. */
  clientUuid: 97,
  /** iPXE's encapsulated options (features, settings). */
  ipxeEncap: 175,
  /** iPXE: the iSCSI initiator name (requested in its option 55). */
  iscsiInitiatorName: 203,
} as const;

/** RFC 2132 section 9.6 message types. */
export const MessageType = {
  discover: 1,
  offer: 2,
  request: 3,
  decline: 4,
  ack: 5,
  nak: 6,
  release: 7,
  inform: 8,
} as const;
export type MessageTypeName = keyof typeof MessageType;
const TYPE_NAMES = new Map<number, MessageTypeName>(Object.entries(MessageType).map(([k, v]) => [v, k as MessageTypeName]));

/** PXE sub-options of option 43 (PXE spec 2.1, table 2-1). */
export const PxeSub = {
  discoveryControl: 6,
  bootServers: 8,
  bootMenu: 9,
  menuPrompt: 10,
  bootItem: 71,
} as const;
/** PXE discovery control bit 3: skip boot server discovery, boot the file in this offer. */
export const PXE_DISCOVERY_USE_FILE = 8;

/** iPXE feature sub-options of option 175 (iPXE include/ipxe/dhcp.h, features.h). */
export const IpxeFeature = { iscsi: 0x11, http: 0x13, https: 0x14, tftp: 0x15, efi: 0x24, menu: 0x27 } as const;

/** All instances of `code` concatenated (RFC 3396), or undefined when absent. */
export function getOption(p: DhcpPacket, code: number): Buffer | undefined {
  const parts = p.options.filter((o) => o.code === code);
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0].data : Buffer.concat(parts.map((o) => o.data));
}

/** Every option's data by code, the instances of one code concatenated (RFC 3396): one pass per packet. */
function optionsByCode(p: DhcpPacket): Map<number, Buffer> {
  const byCode = new Map<number, Buffer>();
  for (const o of p.options) {
    const earlier = byCode.get(o.code);
    byCode.set(o.code, earlier ? Buffer.concat([earlier, o.data]) : o.data);
  }
  return byCode;
}

function fixed(code: number, data: Buffer, len: number): void {
  if (data.length !== len) throw new DecodeError(`option ${code} is ${data.length} bytes, expected ${len}`, 0);
}

function ipOf(code: number, d: Buffer | undefined): string | undefined {
  if (!d) return undefined;
  fixed(code, d, 4);
  return `${d[0]}.${d[1]}.${d[2]}.${d[3]}`;
}

function stringOf(d: Buffer | undefined): string | undefined {
  if (!d) return undefined;
  let end = d.length;
  while (end > 0 && d[end - 1] === 0) end -= 1;
  return d.toString('latin1', 0, end);
}

function messageTypeOf(d: Buffer | undefined): MessageTypeName | undefined {
  if (!d) return undefined;
  fixed(Opt.messageType, d, 1);
  const name = TYPE_NAMES.get(d[0]);
  if (!name) throw new DecodeError(`unknown DHCP message type ${d[0]}`, 0);
  return name;
}

function archsOf(d: Buffer | undefined): number[] | undefined {
  if (!d) return undefined;
  if (d.length === 0 || d.length % 2 !== 0) throw new DecodeError(`option 93 is ${d.length} bytes, not a list of 16-bit types`, 0);
  const out: number[] = [];
  for (let i = 0; i < d.length; i += 2) out.push(d.readUInt16BE(i));
  return out;
}

/** Option as one IPv4 address. */
export function getIp(p: DhcpPacket, code: number): string | undefined {
  return ipOf(code, getOption(p, code));
}

/** Option as a 32-bit unsigned integer. */
export function getU32(p: DhcpPacket, code: number): number | undefined {
  const d = getOption(p, code);
  if (!d) return undefined;
  fixed(code, d, 4);
  return d.readUInt32BE(0);
}

/** Option as text (latin1, trailing NULs dropped: some ROMs NUL-terminate option 60). */
export function getString(p: DhcpPacket, code: number): string | undefined {
  return stringOf(getOption(p, code));
}

/** The DHCP message type, or undefined for a plain BOOTP packet. Throws on a bad length or value. */
export function getMessageType(p: DhcpPacket): MessageTypeName | undefined {
  return messageTypeOf(getOption(p, Opt.messageType));
}

/** Option 93: the client's architecture types (RFC 4578 allows a list; ROMs send one). */
export function getClientArchs(p: DhcpPacket): number[] | undefined {
  return archsOf(getOption(p, Opt.clientArch));
}

/**
 * A type/length/value list (sub-options of 43, 82, 175). Throws DecodeError when a length overruns.
 * Sub-option data are views into `data`, not copies (decodePacket's option data is already the
 * packet's private copy).
 */
export function decodeSubOptions(data: Buffer): DhcpOption[] {
  const out: DhcpOption[] = [];
  let i = 0;
  while (i < data.length) {
    const code = data[i];
    if (code === 255) break;
    if (code === 0) {
      i += 1;
      continue;
    }
    if (i + 1 >= data.length) throw new DecodeError(`sub-option ${code} has no length byte`, i);
    const len = data[i + 1];
    if (i + 2 + len > data.length) throw new DecodeError(`sub-option ${code} length ${len} overruns its option`, i + 1);
    out.push({ code, data: data.subarray(i + 2, i + 2 + len) });
    i += 2 + len;
  }
  return out;
}

/** Encodes sub-options, with END (255) when `terminate` (PXE option 43 ends with it, spec 2.1). */
export function encodeSubOptions(subs: DhcpOption[], terminate: boolean): Buffer {
  const parts: Buffer[] = [];
  for (const s of subs) {
    if (s.data.length > 255) throw new RangeError(`sub-option ${s.code} longer than 255 bytes`);
    parts.push(Buffer.from([s.code, s.data.length]), s.data);
  }
  if (terminate) parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}

// ---- option builders (for replies) ----

/** Option 53's data per message type, allocated once (replies share it: never written into). */
const MESSAGE_TYPE_DATA = new Map<MessageTypeName, Buffer>(Object.entries(MessageType).map(([k, v]) => [k as MessageTypeName, Buffer.from([v])]));
/** Option 43 with discovery control "use the boot file", allocated once (shared, never written into). */
const PXE_USE_FILE_DATA = encodeSubOptions([{ code: PxeSub.discoveryControl, data: Buffer.from([PXE_DISCOVERY_USE_FILE]) }], true);

/**
 * Option helpers for building replies. Constant option data (53, 43) is one Buffer shared by
 * every reply: encodePacket only reads option data, and nothing may write into it.
 */
export const build = {
  ip: (code: number, ip: string): DhcpOption => ({ code, data: ipToBytes(ip) }),
  ips: (code: number, ips: readonly string[]): DhcpOption => ({ code, data: Buffer.concat(ips.map(ipToBytes)) }),
  u32: (code: number, n: number): DhcpOption => {
    const data = Buffer.alloc(4);
    data.writeUInt32BE(n >>> 0);
    return { code, data };
  },
  u8: (code: number, n: number): DhcpOption => ({ code, data: Buffer.from([n]) }),
  text: (code: number, s: string): DhcpOption => ({ code, data: Buffer.from(s, 'latin1') }),
  raw: (code: number, data: Buffer): DhcpOption => ({ code, data }),
  messageType: (t: MessageTypeName): DhcpOption => ({ code: Opt.messageType, data: MESSAGE_TYPE_DATA.get(t)! }),
  /** Option 43 telling a PXE ROM to boot the offered file without boot server discovery. */
  pxeUseFile: (): DhcpOption => ({ code: Opt.vendorSpecific, data: PXE_USE_FILE_DATA }),
};

/** What a request says about its sender, read once per packet. */
export interface ClientRequestInfo {
  mac: string;
  xid: number;
  type: MessageTypeName | undefined;
  /** First architecture in option 93; undefined when absent (then BIOS is assumed by policy). */
  arch: number | undefined;
  vendorClass: string | undefined;
  userClass: string | undefined;
  /** Option 175 sub-options keyed by code (present only for iPXE). */
  ipxe: Map<number, Buffer> | undefined;
  /** Option 97, raw (echoed in proxy replies only when the client sent it). */
  uuid: Buffer | undefined;
  requestedIp: string | undefined;
  serverId: string | undefined;
  clientId: Buffer | undefined;
  hostName: string | undefined;
  /** Option 82, raw, to echo back (RFC 3046 section 2.2). */
  relayAgentInfo: Buffer | undefined;
  /** Option 55 codes. */
  parameterRequestList: number[];
  maxMessageSize: number | undefined;
}

// Plain loops below, not spread/map over iterators: this runs per request, mostly before V8 has
// optimised it (a LAN sends a DHCP server a few packets a minute), and the interpreter pays for
// every iterator step and closure call.

function subOptionMap(data: Buffer): Map<number, Buffer> {
  const map = new Map<number, Buffer>();
  for (const o of decodeSubOptions(data)) map.set(o.code, o.data);
  return map;
}

function byteList(d: Buffer | undefined): number[] {
  const out: number[] = [];
  if (d) for (let i = 0; i < d.length; i++) out.push(d[i]);
  return out;
}

/** Reads the options a server cares about from a request; throws DecodeError on malformed ones. */
export function readRequest(p: DhcpPacket, mac: string): ClientRequestInfo {
  const opts = optionsByCode(p);
  const ipxeRaw = opts.get(Opt.ipxeEncap);
  const uuid = opts.get(Opt.clientUuid);
  if (uuid && uuid.length !== 17) throw new DecodeError(`option 97 is ${uuid.length} bytes, expected 17`, 0);
  const mms = opts.get(Opt.maxMessageSize);
  if (mms && mms.length !== 2) throw new DecodeError(`option 57 is ${mms.length} bytes, expected 2`, 0);
  return {
    mac,
    xid: p.xid,
    type: messageTypeOf(opts.get(Opt.messageType)),
    arch: archsOf(opts.get(Opt.clientArch))?.[0],
    vendorClass: stringOf(opts.get(Opt.vendorClass)),
    userClass: stringOf(opts.get(Opt.userClass)),
    ipxe: ipxeRaw ? subOptionMap(ipxeRaw) : undefined,
    uuid,
    requestedIp: ipOf(Opt.requestedIp, opts.get(Opt.requestedIp)),
    serverId: ipOf(Opt.serverId, opts.get(Opt.serverId)),
    clientId: opts.get(Opt.clientId),
    hostName: stringOf(opts.get(Opt.hostName)),
    relayAgentInfo: opts.get(Opt.relayAgentInfo),
    parameterRequestList: byteList(opts.get(Opt.parameterRequestList)),
    maxMessageSize: mms?.readUInt16BE(0),
  };
}

const OPTION_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Opt).map(([k, v]) => [v, k]));

function dumpValue(code: number, d: Buffer): string {
  const printable = /^[\x20-\x7e]*$/.test(d.toString('latin1'));
  switch (code) {
    case Opt.messageType:
      return TYPE_NAMES.get(d[0]) ?? `?${d[0]}`;
    case Opt.subnetMask:
    case Opt.router:
    case Opt.dns:
    case Opt.requestedIp:
    case Opt.serverId:
    case Opt.broadcastAddress:
      return d.length % 4 === 0 ? (d.toString('hex').match(/.{8}/g) ?? []).map((h) => ipToBytesRev(h)).join(',') : `0x${d.toString('hex')}`;
    case Opt.leaseTime:
    case Opt.renewalTime:
    case Opt.rebindingTime:
      return d.length === 4 ? String(d.readUInt32BE(0)) : `0x${d.toString('hex')}`;
    case Opt.maxMessageSize:
      return d.length === 2 ? String(d.readUInt16BE(0)) : `0x${d.toString('hex')}`;
    case Opt.parameterRequestList:
      return [...d].join(',');
    case Opt.clientArch:
      return d.length % 2 === 0 ? (d.toString('hex').match(/.{4}/g) ?? []).map((h) => parseInt(h, 16)).join(',') : `0x${d.toString('hex')}`;
    case Opt.vendorSpecific:
    case Opt.ipxeEncap:
    case Opt.relayAgentInfo:
      try {
        return `{${decodeSubOptions(d)
          .map((s) => `${s.code}=0x${s.data.toString('hex')}`)
          .join(' ')}}`;
      } catch {
        return `0x${d.toString('hex')}`;
      }
    default:
      return printable && d.length > 0 ? JSON.stringify(d.toString('latin1')) : `0x${d.toString('hex')}`;
  }
}

function ipToBytesRev(hex: string): string {
  return (hex.match(/../g) ?? []).map((h) => parseInt(h, 16)).join('.');
}

/** A readable, stable, multi-line dump of a packet (golden-file tests, debug logs of drops). */
export function dumpPacket(p: DhcpPacket): string {
  const lines = [
    `op=${p.op} htype=${p.htype} hlen=${p.hlen} hops=${p.hops} xid=0x${p.xid.toString(16).padStart(8, '0')} secs=${p.secs} flags=0x${p.flags.toString(16).padStart(4, '0')}`,
    `ciaddr=${p.ciaddr} yiaddr=${p.yiaddr} siaddr=${p.siaddr} giaddr=${p.giaddr}`,
    `chaddr=${p.chaddr.toString('hex')}`,
    `sname=${JSON.stringify(p.sname)} file=${JSON.stringify(p.file)} cookie=${p.hasCookie}`,
  ];
  for (const o of p.options) {
    lines.push(
      `  ${String(o.code).padStart(3)} ${(OPTION_NAMES[o.code] ?? '?').padEnd(20)} len=${String(o.data.length).padEnd(3)} ${dumpValue(o.code, o.data)}`,
    );
  }
  return lines.join('\n') + '\n';
}
