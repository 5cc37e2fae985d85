import Database from 'better-sqlite3';
import { beforeEach, describe, expect, it } from 'vitest';
import { BootPolicy } from '../../appliance/boot/boot-policy';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import type { BootEvent, ClientRecord } from '../../appliance/core/model';
import { newCounters, type Inbound, type ResponderContext, type Via } from '../../appliance/dhcp/engine';
import { DECLINE_QUARANTINE_MS, FullResponder, OFFER_HOLD_MS, type FullModeConfig } from '../../appliance/dhcp/full';
import { LeaseStore } from '../../appliance/dhcp/leases';
import { build, getIp, getMessageType, getOption, getString, getU32, Opt, readRequest } from '../../appliance/dhcp/options';
import { decodePacket, encodePacket, FLAG_BROADCAST, hardwareAddress, type BootRequest, type DhcpOption } from '../../appliance/dhcp/packet';
import { ProxyResponder } from '../../appliance/dhcp/proxy';
import { ScriptTokens } from '../../appliance/boot/script-tokens';

const SERVER = '198.18.0.1';
const binaries = { dir: '/ipxe', bios: 'undionly.kpxe', efiX64: 'ipxe.efi' };

function clientRecord(mac: string, extra: Partial<ClientRecord> = {}): ClientRecord {
  return {
    mac,
    name: 'pc-1',
    image: 'debian',
    disk: 'pc-1',
    target: 'iqn.2026-11.local.netboot:pc-1',
    lun: 0,
    initiatorName: 'iqn.2026-11.local.netboot:initiator:pc-1',
    initiators: [],
    chap: null,
    ip: null,
    createdAt: 0,
    ...extra,
  };
}

function request(mac: string, type: Parameters<typeof build.messageType>[0], opts: DhcpOption[] = [], fields: Partial<BootRequest> = {}): BootRequest {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  const p: BootRequest = {
    op: 'request',
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0xabcd0001,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr,
    sname: '',
    file: '',
    hasCookie: true,
    options: [build.messageType(type), ...opts],
    ...fields,
  };
  // Through the codec, as the server does.
  return decodePacket(encodePacket(p)) as BootRequest;
}

const pxeBios = [build.text(Opt.vendorClass, 'PXEClient:Arch:00000:UNDI:002001'), { code: Opt.clientArch, data: Buffer.from([0, 0]) }];
const pxeUefi = [
  build.text(Opt.vendorClass, 'PXEClient:Arch:00007:UNDI:003016'),
  { code: Opt.clientArch, data: Buffer.from([0, 7]) },
  { code: Opt.clientUuid, data: Buffer.alloc(17, 0x11).fill(0, 0, 1) },
];
const ipxe = [...pxeBios, build.text(Opt.userClass, 'iPXE'), { code: Opt.ipxeEncap, data: Buffer.from([0x13, 1, 1, 0x11, 1, 1]) }];

function inbound(packet: BootRequest, via: Via = 'broadcast', from = { address: '0.0.0.0', port: 68 }): Inbound {
  return { packet, info: readRequest(packet, hardwareAddress(packet)), via, from };
}

function setup(clients: ClientRecord[] = [], unknownClients: 'ignore' | 'menu' | 'enroll' = 'menu', withTokens = false) {
  const clock = new FakeClock();
  const tokens = withTokens ? new ScriptTokens({ clock, ttlMs: 120_000 }) : undefined;
  const events: BootEvent[] = [];
  const seen = new Map<string, string>();
  const map = new Map(clients.map((c) => [c.mac, c]));
  const directory = { byMac: (m: string) => map.get(m) };
  const policy = new BootPolicy({
    boot: { ipxeDir: '/ipxe', unknownClients },
    clients: directory,
    httpPort: 8080,
    iscsiPort: 3260,
    log: silentLogger(),
    clock,
    binaries,
    tokens,
  });
  const ctx: ResponderContext = {
    serverAddress: SERVER,
    serverPort: 67,
    clientPort: 68,
    policy,
    clock,
    log: silentLogger(),
    events: { record: (e) => events.push(e) },
    counters: newCounters(),
    noteAddress: (ip, mac) => seen.set(ip, mac),
  };
  return { clock, events, ctx, directory, map, seen, tokens: tokens! };
}

describe('proxy responder', () => {
  it('offers a BIOS PXE ROM undionly.kpxe with no address, 60 PXEClient, 43.6 = 8, 54, 66/67; no 97 when not sent', () => {
    const { ctx, events } = setup();
    const [out] = new ProxyResponder(ctx).handle(inbound(request('02:00:00:00:00:01', 'discover', pxeBios)));
    const r = out.packet;
    expect(out.to).toEqual({ address: '255.255.255.255', port: 68 });
    expect(getMessageType(r)).toBe('offer');
    expect(r.yiaddr).toBe('0.0.0.0');
    expect(r.siaddr).toBe(SERVER);
    expect(r.file).toBe('undionly.kpxe');
    expect(getString(r, Opt.vendorClass)).toBe('PXEClient');
    expect(getIp(r, Opt.serverId)).toBe(SERVER);
    expect([...getOption(r, Opt.vendorSpecific)!]).toEqual([6, 1, 8, 255]);
    expect(getString(r, Opt.tftpServerName)).toBe(SERVER);
    expect(getString(r, Opt.bootfileName)).toBe('undionly.kpxe');
    expect(getOption(r, Opt.clientUuid)).toBeUndefined();
    expect(getOption(r, Opt.leaseTime)).toBeUndefined();
    expect(r.options[0].code).toBe(Opt.messageType);
    expect(events.map((e) => e.stage)).toEqual(['dhcp-discover', 'dhcp-offer']);
    expect(events[0].detail).toMatchObject({ arch: 0 });
  });

  it('gives UEFI x64 ipxe.efi and echoes option 97', () => {
    const { ctx } = setup();
    const req = request('02:00:00:00:00:02', 'discover', pxeUefi);
    const [out] = new ProxyResponder(ctx).handle(inbound(req));
    expect(out.packet.file).toBe('ipxe.efi');
    expect(getOption(out.packet, Opt.clientUuid)).toEqual(getOption(req, Opt.clientUuid));
  });

  it('gives UEFI HTTP boot 60 HTTPClient and a URL', () => {
    const { ctx } = setup();
    const req = request('02:00:00:00:00:03', 'discover', [
      build.text(Opt.vendorClass, 'HTTPClient:Arch:00016:UNDI:003001'),
      { code: 93, data: Buffer.from([0, 16]) },
    ]);
    const [out] = new ProxyResponder(ctx).handle(inbound(req));
    expect(getString(out.packet, Opt.vendorClass)).toBe('HTTPClient');
    expect(out.packet.file).toBe(`http://${SERVER}:8080/boot/ipxe.efi`);
    expect(getOption(out.packet, Opt.vendorSpecific)).toBeUndefined();
  });

  it('never hands iPXE an iPXE binary: it gets the script URL and initiator name (root-path only without HTTP)', () => {
    const c = clientRecord('52:54:00:12:34:56');
    const { ctx } = setup([c]);
    const [out] = new ProxyResponder(ctx).handle(inbound(request(c.mac, 'discover', ipxe)));
    expect(out.packet.file).toBe(`http://${SERVER}:8080/boot/52-54-00-12-34-56.ipxe`);
    expect(getOption(out.packet, Opt.rootPath)).toBeUndefined();
    const noHttp = [...pxeBios, build.text(Opt.userClass, 'iPXE'), { code: Opt.ipxeEncap, data: Buffer.from([0x11, 1, 1]) }];
    const [plain] = new ProxyResponder(ctx).handle(inbound(request(c.mac, 'discover', noHttp)));
    expect(plain.packet.file).toBe('');
    expect(getString(plain.packet, Opt.rootPath)).toBe(`iscsi:${SERVER}::3260:0:${c.target}`);
    expect(getString(plain.packet, Opt.iscsiInitiatorName)).toBe(c.initiatorName);
    const [again] = new ProxyResponder(ctx).handle(inbound(request(c.mac, 'discover', ipxe)));
    expect(getString(again.packet, Opt.iscsiInitiatorName)).toBe(c.initiatorName);
    expect(getString(out.packet, Opt.vendorClass)).toBe('PXEClient');
  });

  it('ignores non-PXE clients, REQUESTs on port 67, and unknown clients when told to', () => {
    const { ctx } = setup([], 'ignore');
    const r = new ProxyResponder(ctx);
    expect(r.handle(inbound(request('02:00:00:00:00:04', 'discover')))).toEqual([]);
    expect(r.handle(inbound(request('02:00:00:00:00:04', 'discover', pxeBios)))).toEqual([]);
    const { ctx: ctx2, seen } = setup();
    expect(
      new ProxyResponder(ctx2).handle(
        inbound(request('02:00:00:00:00:05', 'request', [...pxeBios, build.ip(Opt.requestedIp, '198.18.0.77'), build.ip(Opt.serverId, '198.18.0.2')])),
      ),
    ).toEqual([]);
    expect(seen.get('198.18.0.77')).toBe('02:00:00:00:00:05');
  });

  it('answers a relayed DISCOVER to giaddr:67 with option 82 echoed as the last option', () => {
    const { ctx } = setup();
    const agent = Buffer.from([1, 3, 0x61, 0x62, 0x63]);
    const req = request('02:00:00:00:00:06', 'discover', [...pxeBios, { code: 82, data: agent }], { giaddr: '198.19.5.1', hops: 1 });
    const [out] = new ProxyResponder(ctx).handle(inbound(req, 'unicast'));
    expect(out.to).toEqual({ address: '198.19.5.1', port: 67 });
    expect(out.packet.giaddr).toBe('198.19.5.1');
    expect(out.packet.options.at(-1)).toEqual({ code: 82, data: agent });
  });

  it('ACKs a port-4011 REQUEST unicast to the client address and port', () => {
    const { ctx } = setup();
    const req = request('02:00:00:00:00:07', 'request', pxeUefi, { ciaddr: '198.18.0.55' });
    const [out] = new ProxyResponder(ctx).handle(inbound(req, 'pxe', { address: '198.18.0.55', port: 68 }));
    expect(getMessageType(out.packet)).toBe('ack');
    expect(out.to).toEqual({ address: '198.18.0.55', port: 68 });
    expect(out.packet.file).toBe('ipxe.efi');
    expect(out.packet.yiaddr).toBe('0.0.0.0');
  });

  it('offers nothing (and warns once) when the binary for an architecture is missing', () => {
    const { ctx } = setup();
    const req = request('02:00:00:00:00:08', 'discover', [
      build.text(Opt.vendorClass, 'PXEClient:Arch:00011:UNDI:003000'),
      { code: 93, data: Buffer.from([0, 11]) },
    ]);
    expect(new ProxyResponder(ctx).handle(inbound(req))).toEqual([]);
  });
});

describe('full responder', () => {
  const cfg = {
    range: ['198.18.0.100', '198.18.0.102'],
    netmask: '255.255.255.0',
    router: '198.18.0.1',
    dns: ['198.18.0.1'],
    domain: 'lab.test',
    leaseSeconds: 600,
  };
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
  });

  function full(s: ReturnType<typeof setup>, c: FullModeConfig = cfg) {
    return new FullResponder(s.ctx, c, new LeaseStore(db), s.directory);
  }

  function dora(r: FullResponder, mac: string, opts: DhcpOption[] = []) {
    const [offer] = r.handle(inbound(request(mac, 'discover', opts)));
    const ip = offer.packet.yiaddr;
    const [ack] = r.handle(inbound(request(mac, 'request', [...opts, build.ip(Opt.requestedIp, ip), build.ip(Opt.serverId, SERVER)])));
    return { offer, ack, ip };
  }

  it('DISCOVER/OFFER/REQUEST/ACK with lease, T1/T2 and network options, broadcast to the client', () => {
    const s = setup();
    const { offer, ack, ip } = dora(full(s), '02:00:00:00:01:01');
    expect(ip).toBe('198.18.0.100');
    expect(getMessageType(offer.packet)).toBe('offer');
    expect(getMessageType(ack.packet)).toBe('ack');
    expect(ack.packet.yiaddr).toBe(ip);
    expect(ack.to).toEqual({ address: '255.255.255.255', port: 68 });
    expect(getU32(ack.packet, Opt.leaseTime)).toBe(600);
    expect(getU32(ack.packet, Opt.renewalTime)).toBe(300);
    expect(getU32(ack.packet, Opt.rebindingTime)).toBe(525);
    expect(getIp(ack.packet, Opt.subnetMask)).toBe('255.255.255.0');
    expect(getIp(ack.packet, Opt.router)).toBe('198.18.0.1');
    expect(getIp(ack.packet, Opt.broadcastAddress)).toBe('198.18.0.255');
    expect(getString(ack.packet, Opt.domainName)).toBe('lab.test');
    expect(ack.packet.file).toBe(''); // not a boot client
    expect(s.ctx.counters).toMatchObject({ discovers: 1, offers: 1, requests: 1, acks: 1 });
  });

  it('keeps leases across a restart (new LeaseStore on the same database)', () => {
    const a = dora(full(setup()), '02:00:00:00:01:02');
    dora(full(setup()), '02:00:00:00:01:03');
    const again = full(setup()).handle(inbound(request('02:00:00:00:01:02', 'discover')));
    expect(again[0].packet.yiaddr).toBe(a.ip);
    // And a bound address is not given to someone else after the restart.
    const other = full(setup()).handle(inbound(request('02:00:00:00:01:04', 'discover')));
    expect(other[0].packet.yiaddr).toBe('198.18.0.102');
  });

  it('gives a PXE client the boot file together with its address', () => {
    const { ack } = dora(full(setup()), '02:00:00:00:01:05', pxeBios);
    expect(ack.packet.file).toBe('undionly.kpxe');
    expect(ack.packet.siaddr).toBe(SERVER);
    expect(getString(ack.packet, Opt.vendorClass)).toBe('PXEClient');
  });

  it('honours reservations from the registry and from config, outside the range too', () => {
    const c = clientRecord('02:00:00:00:01:06', { ip: '198.18.0.50' });
    const s = setup([c]);
    expect(dora(full(s), c.mac).ip).toBe('198.18.0.50');
    const s2 = setup();
    expect(dora(full(s2, { ...cfg, reservations: [{ mac: '02:00:00:00:01:07', ip: '198.18.0.60' }] }), '02:00:00:00:01:07').ip).toBe('198.18.0.60');
    // Nobody else gets a statically reserved address, even when asking for it.
    const r = full(setup(), { ...cfg, reservations: [{ mac: '02:00:00:00:01:07', ip: '198.18.0.101' }] });
    const [o] = r.handle(inbound(request('02:00:00:00:01:08', 'discover', [build.ip(Opt.requestedIp, '198.18.0.101')])));
    expect(o.packet.yiaddr).not.toBe('198.18.0.101');
  });

  it("INIT-REBOOT: ACKs the client its own address, NAKs another subnet and someone else's address (broadcast)", () => {
    const s = setup();
    const r = full(s);
    const a = dora(r, '02:00:00:00:01:09');
    const [ok] = r.handle(inbound(request('02:00:00:00:01:09', 'request', [build.ip(Opt.requestedIp, a.ip)])));
    expect(getMessageType(ok.packet)).toBe('ack');
    const [wrongNet] = r.handle(inbound(request('02:00:00:00:01:09', 'request', [build.ip(Opt.requestedIp, '10.1.2.3')])));
    expect(getMessageType(wrongNet.packet)).toBe('nak');
    expect(wrongNet.to.address).toBe('255.255.255.255');
    const [theft] = r.handle(inbound(request('02:00:00:00:01:0a', 'request', [build.ip(Opt.requestedIp, a.ip)])));
    expect(getMessageType(theft.packet)).toBe('nak');
    expect(getString(theft.packet, Opt.message)).toMatch(/not yours/);
    expect(s.ctx.counters.naks).toBe(2);
  });

  it('RENEWING (unicast) and REBINDING (broadcast) extend the lease, replied to ciaddr; a foreign address is NAKed', () => {
    const s = setup();
    const r = full(s);
    const a = dora(r, '02:00:00:00:01:0b');
    s.clock.advance(300_000);
    const [renew] = r.handle(inbound(request('02:00:00:00:01:0b', 'request', [], { ciaddr: a.ip }), 'unicast', { address: a.ip, port: 68 }));
    expect(getMessageType(renew.packet)).toBe('ack');
    expect(renew.to).toEqual({ address: a.ip, port: 68 });
    expect(renew.packet.ciaddr).toBe(a.ip);
    s.clock.advance(300_000); // past the original expiry: the renewal moved it
    const [rebind] = r.handle(inbound(request('02:00:00:00:01:0b', 'request', [], { ciaddr: a.ip })));
    expect(getMessageType(rebind.packet)).toBe('ack');
    const other = dora(r, '02:00:00:00:01:0c');
    const [nak] = r.handle(inbound(request('02:00:00:00:01:0b', 'request', [], { ciaddr: other.ip }), 'unicast'));
    expect(getMessageType(nak.packet)).toBe('nak');
  });

  it('a REQUEST naming another server releases our offer', () => {
    const s = setup();
    const r = full(s, { ...cfg, range: ['198.18.0.100', '198.18.0.100'] });
    const [o] = r.handle(inbound(request('02:00:00:00:01:0d', 'discover')));
    expect(o.packet.yiaddr).toBe('198.18.0.100');
    expect(r.handle(inbound(request('02:00:00:00:01:0e', 'discover')))).toEqual([]); // held for 0d
    expect(
      r.handle(inbound(request('02:00:00:00:01:0d', 'request', [build.ip(Opt.requestedIp, '198.18.0.100'), build.ip(Opt.serverId, '198.18.0.2')]))),
    ).toEqual([]);
    expect(r.handle(inbound(request('02:00:00:00:01:0e', 'discover')))[0].packet.yiaddr).toBe('198.18.0.100');
  });

  it('an unrequested offer is held only OFFER_HOLD_MS', () => {
    const s = setup();
    const r = full(s, { ...cfg, range: ['198.18.0.100', '198.18.0.100'] });
    r.handle(inbound(request('02:00:00:00:01:0f', 'discover')));
    expect(r.handle(inbound(request('02:00:00:00:01:10', 'discover')))).toEqual([]);
    s.clock.advance(OFFER_HOLD_MS + 1);
    expect(r.handle(inbound(request('02:00:00:00:01:10', 'discover')))[0].packet.yiaddr).toBe('198.18.0.100');
  });

  it('DECLINE quarantines the address; it returns to the pool afterwards', () => {
    const s = setup();
    const r = full(s, { ...cfg, range: ['198.18.0.100', '198.18.0.100'] });
    const a = dora(r, '02:00:00:00:01:11');
    r.handle(inbound(request('02:00:00:00:01:11', 'decline', [build.ip(Opt.requestedIp, a.ip), build.ip(Opt.serverId, SERVER)])));
    expect(s.ctx.counters.declines).toBe(1);
    expect(r.handle(inbound(request('02:00:00:00:01:11', 'discover')))).toEqual([]);
    expect(r.handle(inbound(request('02:00:00:00:01:12', 'discover')))).toEqual([]);
    s.clock.advance(DECLINE_QUARANTINE_MS + 1);
    const [o2] = r.handle(inbound(request('02:00:00:00:01:12', 'discover')));
    expect(o2.packet.yiaddr).toBe(a.ip);
  });

  it('RELEASE frees the address but the same client gets it back first', () => {
    const s = setup();
    const r = full(s);
    const a = dora(r, '02:00:00:00:01:13');
    r.handle(inbound(request('02:00:00:00:01:13', 'release', [build.ip(Opt.serverId, SERVER)], { ciaddr: a.ip }), 'unicast'));
    expect(s.ctx.counters.releases).toBe(1);
    expect(dora(r, '02:00:00:00:01:13').ip).toBe(a.ip);
  });

  it('INFORM gets configuration without an address or lease time, to ciaddr', () => {
    const s = setup();
    const [ack] = full(s).handle(inbound(request('02:00:00:00:01:14', 'inform', [], { ciaddr: '198.18.0.20' }), 'unicast'));
    expect(getMessageType(ack.packet)).toBe('ack');
    expect(ack.packet.yiaddr).toBe('0.0.0.0');
    expect(getOption(ack.packet, Opt.leaseTime)).toBeUndefined();
    expect(ack.to).toEqual({ address: '198.18.0.20', port: 68 });
  });

  it('skips addresses another MAC was seen using, the server and router; exhausts cleanly', () => {
    const s = setup();
    const r = full(s, { ...cfg, range: ['198.18.0.1', '198.18.0.3'] });
    // 198.18.0.2 in use by a host we saw renewing with it
    r.handle(inbound(request('02:00:00:00:01:15', 'request', [], { ciaddr: '198.18.0.2' }), 'unicast'));
    const [o] = r.handle(inbound(request('02:00:00:00:01:16', 'discover')));
    expect(o.packet.yiaddr).toBe('198.18.0.3');
    expect(r.handle(inbound(request('02:00:00:00:01:17', 'discover')))).toEqual([]);
  });

  it('NAKs through a relay with the broadcast bit set', () => {
    const s = setup();
    const [nak] = full(s).handle(
      inbound(request('02:00:00:00:01:18', 'request', [build.ip(Opt.requestedIp, '10.0.0.5')], { giaddr: '198.18.0.254' }), 'unicast'),
    );
    expect(getMessageType(nak.packet)).toBe('nak');
    expect(nak.to).toEqual({ address: '198.18.0.254', port: 67 });
    expect(nak.packet.flags & FLAG_BROADCAST).toBe(FLAG_BROADCAST);
  });
});

describe('one-time script links in DHCP answers (issue #13)', () => {
  const c = clientRecord('52:54:00:12:34:56', { chap: { user: 'u', secret: 'generated-secret-1' } });
  const tokenOf = (file: string) => /\?t=([A-Za-z0-9_-]+)$/.exec(file)?.[1];
  const staticUrl = `http://${SERVER}:8080/boot/52-54-00-12-34-56.ipxe`;

  it('every proxy offer to iPXE carries its own fresh token, bound to the MAC only (proxy does not know the address)', () => {
    const s = setup([c], 'ignore', true);
    const r = new ProxyResponder(s.ctx);
    const [a] = r.handle(inbound(request(c.mac, 'discover', ipxe)));
    const [b] = r.handle(inbound(request(c.mac, 'discover', ipxe)));
    const ta = tokenOf(a.packet.file);
    const tb = tokenOf(b.packet.file);
    expect(a.packet.file.startsWith(`${staticUrl}?t=`)).toBe(true);
    expect(getString(a.packet, Opt.bootfileName)).toBe(a.packet.file);
    expect(ta).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(tb).toBeDefined();
    expect(tb).not.toBe(ta);
    // Bound to the MAC through the neighbour table; any address will do in proxy mode.
    expect(s.tokens.redeem(ta!, { mac: c.mac, peer: '198.18.0.150', neighbourMac: '02:00:00:00:99:99' })).toEqual({ ok: false, reason: 'wrong-neighbour' });
    expect(s.tokens.redeem(ta!, { mac: c.mac, peer: '198.18.0.150', neighbourMac: c.mac })).toEqual({ ok: true });
    // The telemetry and log never carry the token.
    const offer = s.events.find((e) => e.stage === 'dhcp-offer');
    expect(String(offer?.detail?.file)).toBe(`${staticUrl}?t=one-time`);
    expect(JSON.stringify(s.events)).not.toContain(ta!);
  });

  it('a port-4011 ACK binds its token to the client address (ciaddr)', () => {
    const s = setup([c], 'ignore', true);
    const req = request(c.mac, 'request', ipxe, { ciaddr: '198.18.0.55' });
    const [out] = new ProxyResponder(s.ctx).handle(inbound(req, 'pxe', { address: '198.18.0.55', port: 68 }));
    const t = tokenOf(out.packet.file)!;
    expect(s.tokens.redeem(t, { mac: c.mac, peer: '198.18.0.56', neighbourMac: c.mac })).toEqual({ ok: false, reason: 'wrong-address' });
    expect(s.tokens.redeem(t, { mac: c.mac, peer: '198.18.0.55', neighbourMac: c.mac })).toEqual({ ok: true });
  });

  it('full mode: OFFER and ACK each carry a fresh token bound to yiaddr; redeeming one retires the other', () => {
    const s = setup([c], 'ignore', true);
    const r = new FullResponder(
      s.ctx,
      { range: ['198.18.0.100', '198.18.0.102'], netmask: '255.255.255.0', router: '', dns: [], domain: '', leaseSeconds: 600 },
      new LeaseStore(new Database(':memory:')),
      s.directory,
    );
    const [offer] = r.handle(inbound(request(c.mac, 'discover', ipxe)));
    const ip = offer.packet.yiaddr;
    const [ack] = r.handle(inbound(request(c.mac, 'request', [...ipxe, build.ip(Opt.requestedIp, ip), build.ip(Opt.serverId, SERVER)])));
    const to = tokenOf(offer.packet.file)!;
    const ta = tokenOf(ack.packet.file)!;
    expect(to).toBeDefined();
    expect(ta).toBeDefined();
    expect(ta).not.toBe(to);
    expect(s.tokens.redeem(ta, { mac: c.mac, peer: '198.18.0.101', neighbourMac: c.mac })).toEqual({ ok: false, reason: 'wrong-address' });
    expect(s.tokens.redeem(ta, { mac: c.mac, peer: ip, neighbourMac: c.mac })).toEqual({ ok: true });
    expect(s.tokens.redeem(ta, { mac: c.mac, peer: ip, neighbourMac: c.mac })).toEqual({ ok: false, reason: 'spent' });
    expect(s.tokens.redeem(to, { mac: c.mac, peer: ip, neighbourMac: c.mac })).toEqual({ ok: false, reason: 'unknown' });
  });

  it("no token for firmware (it gets an iPXE binary) nor for an unknown client's menu", () => {
    const s = setup([c], 'menu', true);
    const r = new ProxyResponder(s.ctx);
    expect(r.handle(inbound(request(c.mac, 'discover', pxeBios)))[0].packet.file).toBe('undionly.kpxe');
    const [menu] = r.handle(inbound(request('02:00:00:00:00:42', 'discover', ipxe)));
    expect(menu.packet.file).toBe(`http://${SERVER}:8080/boot/02-00-00-00-00-42.ipxe`);
    expect(s.tokens.size()).toBe(0);
  });
});
