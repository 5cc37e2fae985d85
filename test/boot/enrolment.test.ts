/**
 * Issue #14, zero-touch enrolment: every network-boot client the appliance hears and does not
 * know is listed ("waiting to boot") with what its DHCP requests said and how far it got, bounded
 * like the boot events; boot.unknownClients "wait" serves a screen that says where to assign it
 * and keeps asking; "auto" is "wait" in full DHCP mode and "ignore" in proxy mode. And item 5: a
 * verb naming an image that is still importing answers 409 IMAGE_NOT_READY, not 404.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BootPolicy } from '../../appliance/boot/boot-policy';
import { bootScriptFor } from '../../appliance/boot/http';
import { renderWaitScript } from '../../appliance/boot/ipxe-script';
import { effectiveUnknownClients } from '../../appliance/boot/policy';
import { ScriptTokens } from '../../appliance/boot/script-tokens';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { newCounters, type Inbound, type ResponderContext } from '../../appliance/dhcp/engine';
import { build, Opt, readRequest } from '../../appliance/dhcp/options';
import { decodePacket, encodePacket, hardwareAddress, type BootRequest, type DhcpOption } from '../../appliance/dhcp/packet';
import { ProxyResponder } from '../../appliance/dhcp/proxy';
import { BootEventStore } from '../../appliance/telemetry/boot-events';
import { liveApp, type LiveApp } from '../http/helpers';

const SERVER = '198.18.0.1';
/** FakeClock's start. */
const T0 = new FakeClock().now();
const binaries = { dir: '/ipxe', bios: 'undionly.kpxe', efiX64: 'ipxe.efi' };
const pxeBios = [build.text(Opt.vendorClass, 'PXEClient:Arch:00000:UNDI:002001'), { code: Opt.clientArch, data: Buffer.from([0, 0]) }];
const pxeUefi = [build.text(Opt.vendorClass, 'PXEClient:Arch:00007:UNDI:003016'), { code: Opt.clientArch, data: Buffer.from([0, 7]) }];
const ipxe = [...pxeBios, build.text(Opt.userClass, 'iPXE'), { code: Opt.ipxeEncap, data: Buffer.from([0x13, 1, 1]) }];
const laptop = [build.text(Opt.vendorClass, 'MSFT 5.0')];
const mac = (i: number) => `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

function discover(m: string, opts: DhcpOption[]): Inbound {
  const chaddr = Buffer.alloc(16);
  Buffer.from(m.replace(/:/g, ''), 'hex').copy(chaddr);
  const p: BootRequest = {
    op: 'request',
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0x1400 + chaddr[5]!,
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
    options: [build.messageType('discover'), ...opts],
  };
  const packet = decodePacket(encodePacket(p)) as BootRequest;
  return { packet, info: readRequest(packet, hardwareAddress(packet)), via: 'broadcast', from: { address: '0.0.0.0', port: 68 } };
}

/** The proxy responder writing into a real BootEventStore (in-memory SQLite), as the appliance wires them. */
function harness(unknownClients: 'ignore' | 'wait' | 'auto', maxUnknownMacs = 500, dhcpMode: 'proxy' | 'full' = 'proxy') {
  const clock = new FakeClock();
  const db = new Database(':memory:');
  const known = new Set<string>();
  const store = new BootEventStore(db, clock, { maxUnknownMacs, isClient: (m) => known.has(m) });
  const tokens = new ScriptTokens({ clock, ttlMs: 120_000 });
  const minted: string[] = [];
  const policy = new BootPolicy({
    boot: { ipxeDir: '/ipxe', unknownClients },
    dhcpMode: () => dhcpMode,
    clients: { byMac: () => undefined },
    httpPort: 8080,
    iscsiPort: 3260,
    log: silentLogger(),
    clock,
    binaries,
    tokens: { mint: (m, b) => (minted.push(m), tokens.mint(m, b)) },
  });
  const ctx: ResponderContext = {
    serverAddress: SERVER,
    serverPort: 67,
    clientPort: 68,
    policy,
    clock,
    log: silentLogger(),
    events: store,
    counters: newCounters(),
    noteAddress: () => undefined,
  };
  return { clock, db, known, store, policy, minted, proxy: new ProxyResponder(ctx) };
}

describe('unknown network-boot clients are listed (issue #14)', () => {
  it('in ignore mode: not answered, but listed with architecture, vendor class and stage; a laptop is not', () => {
    const h = harness('ignore');
    expect(h.proxy.handle(discover(mac(1), pxeBios))).toEqual([]);
    h.clock.advance(2000);
    expect(h.proxy.handle(discover(mac(2), pxeUefi))).toEqual([]);
    expect(h.proxy.handle(discover(mac(3), laptop))).toEqual([]);
    const list = h.store.unknownClients();
    expect(list).toEqual([
      { mac: mac(2), arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003016', address: null, firstSeen: T0 + 2000, lastSeen: T0 + 2000, stage: 'dhcp' },
      { mac: mac(1), arch: 0, vendorClass: 'PXEClient:Arch:00000:UNDI:002001', address: null, firstSeen: T0, lastSeen: T0, stage: 'dhcp' },
    ]);
  });

  it('in wait mode: firmware gets iPXE, iPXE gets the static (untokened) script URL, the stage moves dhcp -> ipxe -> script', async () => {
    const h = harness('wait');
    const [fw] = h.proxy.handle(discover(mac(7), pxeBios));
    expect(fw!.packet.file).toBe('undionly.kpxe');
    expect(h.store.unknownClients()[0]).toMatchObject({ mac: mac(7), stage: 'dhcp' });
    h.clock.advance(5000);
    const [ip] = h.proxy.handle(discover(mac(7), ipxe));
    // Nothing secret in the wait screen: no token is minted for an unknown MAC (a flood of fake
    // ones must not evict real clients' links).
    expect(ip!.packet.file).toBe(`http://${SERVER}:8080/boot/02-00-00-00-00-07.ipxe`);
    expect(h.minted).toEqual([]);
    expect(h.store.unknownClients()[0]).toMatchObject({ mac: mac(7), stage: 'ipxe', firstSeen: T0, lastSeen: T0 + 5000 });
    const r = await bootScriptFor('02-00-00-00-00-07.ipxe', {
      clients: { byMac: () => undefined },
      serverAddress: SERVER,
      httpPort: 8080,
      iscsiPort: 3260,
      unknownClients: 'wait',
      events: h.store,
    });
    expect(r.status).toBe(200);
    expect(h.store.unknownClients()[0]).toMatchObject({ mac: mac(7), stage: 'script', arch: 0 });
    // A later DHCP-only event does not move it back.
    h.proxy.handle(discover(mac(7), pxeBios));
    expect(h.store.unknownClients()[0]!.stage).toBe('script');
  });

  it('is bounded: the most recent maxUnknownMacs are kept, the oldest forgotten (rows too)', () => {
    const h = harness('ignore', 50);
    for (let i = 0; i < 400; i++) {
      h.proxy.handle(discover(mac(i), pxeBios));
      h.clock.advance(10);
    }
    const list = h.store.unknownClients();
    expect(list).toHaveLength(50);
    expect(list[0]!.mac).toBe(mac(399));
    expect(list.at(-1)!.mac).toBe(mac(350));
    expect((h.db.prepare('SELECT count(*) AS n FROM unknown_clients').get() as { n: number }).n).toBe(50);
  });

  it('a MAC that becomes a client leaves the list (and its summary row with its next event)', () => {
    const h = harness('ignore');
    h.proxy.handle(discover(mac(1), pxeBios));
    h.proxy.handle(discover(mac(2), pxeBios));
    h.known.add(mac(1));
    expect(h.store.unknownClients().map((c) => c.mac)).toEqual([mac(2)]);
    h.clock.advance(2000);
    h.proxy.handle(discover(mac(1), pxeBios));
    expect((h.db.prepare('SELECT mac FROM unknown_clients').all() as { mac: string }[]).map((r) => r.mac)).toEqual([mac(2)]);
  });

  it('survives a restart (persisted in appliance.db)', () => {
    const h = harness('ignore');
    h.proxy.handle(discover(mac(9), pxeUefi));
    const again = new BootEventStore(h.db, h.clock, { isClient: () => false });
    expect(again.unknownClients()).toMatchObject([{ mac: mac(9), arch: 7, stage: 'dhcp' }]);
  });
});

describe('boot.unknownClients "wait" and "auto"', () => {
  it('auto is wait in full DHCP mode, ignore in proxy mode or with DHCP off; explicit settings win', () => {
    expect(effectiveUnknownClients('auto', 'full')).toBe('wait');
    expect(effectiveUnknownClients('auto', 'proxy')).toBe('ignore');
    expect(effectiveUnknownClients('auto', 'off')).toBe('ignore');
    expect(effectiveUnknownClients('wait', 'proxy')).toBe('wait');
    expect(effectiveUnknownClients('ignore', 'full')).toBe('ignore');
    // Through the policy: an office PC next to proxyDHCP gets no offer by default.
    expect(harness('auto', 500, 'proxy').proxy.handle(discover(mac(1), pxeBios))).toEqual([]);
    expect(harness('auto', 500, 'full').policy.unknownClients()).toBe('wait');
  });

  it('the wait script says where to go (mDNS name, address, MAC), re-DHCPs and chains ${filename} after a pause that backs off, and carries no secret', async () => {
    const s = renderWaitScript('52:54:00:aa:bb:cc', { mdnsHost: 'netboot.local', uiUrl: 'http://198.18.0.1:8080' });
    expect(s.startsWith('#!ipxe\n')).toBe(true);
    expect(s).toContain('echo netboot: open http://netboot.local or http://198.18.0.1:8080 and give 52:54:00:aa:bb:cc an image');
    expect(s).toContain('item --gap Open http://netboot.local or http://198.18.0.1:8080');
    // Backoff: 12 polls 5 s apart, then every 30 s; the pause is choose --timeout (no tight loop).
    expect(s).toContain(`iseq \${netboot-polls} ${'x'.repeat(12)} && goto slow ||`);
    expect(s).toContain('set netboot-delay 5000');
    expect(s).toContain('set netboot-delay 30000');
    expect(s).toContain('choose --default retry --timeout ${netboot-delay} selected || goto retry');
    // Every way out of a failed poll goes back through the pause.
    const retry = s.slice(s.indexOf(':retry'));
    expect(retry).toContain('dhcp || goto wait\nchain --replace --autofree ${filename} || goto wait\n');
    expect(s).not.toMatch(/sanboot|password|username|\?t=/);

    const r = await bootScriptFor('52-54-00-aa-bb-cc.ipxe', {
      clients: { byMac: () => undefined },
      serverAddress: SERVER,
      httpPort: 8080,
      iscsiPort: 3260,
      unknownClients: 'auto',
      dhcpMode: 'full',
      mdnsHost: 'box.local',
    });
    expect(r.status).toBe(200);
    expect(r.body).toContain('open http://box.local or http://198.18.0.1:8080');
    const ignored = await bootScriptFor('52-54-00-aa-bb-cc.ipxe', {
      clients: { byMac: () => undefined },
      serverAddress: SERVER,
      httpPort: 8080,
      iscsiPort: 3260,
      unknownClients: 'auto',
      dhcpMode: 'proxy',
    });
    expect(ignored.status).toBe(404);
  });

  it('without mDNS the screen names only the address', () => {
    const s = renderWaitScript('52:54:00:aa:bb:cc', { mdnsHost: '', uiUrl: 'http://10.0.0.2:80' });
    expect(s).toContain('open http://10.0.0.2:80 and give');
    expect(s).not.toContain('.local');
  });
});

describe('the API: GET /api/unknown-clients, assigning, and IMAGE_NOT_READY (issue #14 items 1 and 5)', () => {
  let live: LiveApp;
  let dir: string;
  const api = async (method: string, path: string, body?: unknown, auth = true) => {
    const headers: Record<string, string> = auth ? { authorization: `Bearer ${live.appliance.token}` } : {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(`http://127.0.0.1:${live.port}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : undefined };
  };
  const waitReady = async (name: string) => {
    for (let i = 0; i < 200; i++) {
      const img = (await api('GET', `/api/images/${name}`)).json;
      if (img.state === 'ready') return img;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`image ${name} never became ready`);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nb-enrol-'));
    writeFileSync(join(dir, 'golden.raw'), Buffer.alloc(4 * 1024 * 1024, 7));
    live = await liveApp({ boot: { unknownClients: 'wait' }, images: { importDirs: [dir] } });
  });
  afterAll(async () => {
    await live?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists a client that fetched the wait script, needs auth, and drops it once POST /api/clients gives it a disk', async () => {
    expect((await api('GET', '/api/unknown-clients', undefined, false)).status).toBe(401);
    const m = '52:54:00:14:00:01';
    const script = await fetch(`http://127.0.0.1:${live.port}/boot/52-54-00-14-00-01.ipxe`);
    expect(script.status).toBe(200);
    expect(await script.text()).toContain('waits for a disk');
    // Boot events are written in batches (telemetry/event-batch.ts): the list shows the fetch
    // within FLUSH_DELAY_MS; wait for it, bounded.
    let before = await api('GET', '/api/unknown-clients');
    for (let i = 0; i < 40 && before.json.clients?.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      before = await api('GET', '/api/unknown-clients');
    }
    expect(before.status).toBe(200);
    expect(before.json).toMatchObject({ mode: 'wait', setting: 'wait', dhcpMode: 'off' });
    expect(before.json.clients).toMatchObject([{ mac: m, stage: 'script' }]);

    expect((await api('POST', '/api/images', { name: 'golden', path: join(dir, 'golden.raw') })).status).toBe(202);
    await waitReady('golden');
    expect((await api('POST', '/api/clients', { mac: m, image: 'golden' })).status).toBe(201);
    expect((await api('GET', '/api/unknown-clients')).json.clients).toEqual([]);
  });

  it('409 IMAGE_NOT_READY with the import progress while the image imports (was 404 IMAGE_NOT_FOUND), for create, reset, next-boot and disks', async () => {
    // Hold the import at 25 % until released: the job is real (ImportJobs), only the store's copy waits.
    const store = live.appliance.store;
    const realImport = store.importImage.bind(store);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    store.importImage = (async (name: string, file: string, opts?: { onProgress?: (d: number, t: number) => void }) => {
      opts?.onProgress?.(1024 * 1024, 4 * 1024 * 1024);
      await gate;
      return realImport(name, file, opts as never);
    }) as typeof store.importImage;
    try {
      expect((await api('POST', '/api/images', { name: 'slow', path: join(dir, 'golden.raw') })).status).toBe(202);
      const m = '52:54:00:14:00:02';
      const create = await api('POST', '/api/clients', { mac: m, image: 'slow' });
      expect(create.status).toBe(409);
      expect(create.json.error).toMatchObject({ code: 'IMAGE_NOT_READY', details: { progress: 0.25, doneBytes: 1024 * 1024, totalBytes: 4 * 1024 * 1024 } });
      expect(create.json.error.message).toContain('still importing (25%)');

      const existing = '52:54:00:14:00:01';
      const verbs = [
        await api('POST', `/api/clients/${existing}/reset`, { image: 'slow' }),
        await api('PUT', `/api/clients/${existing}/next-boot`, { image: 'slow' }),
        await api('POST', `/api/clients/${existing}/disks`, { name: 'second', image: 'slow' }),
      ];
      for (const v of verbs) expect(v.json.error?.code, JSON.stringify(v.json)).toBe('IMAGE_NOT_READY');
      expect(verbs.map((v) => v.status)).toEqual([409, 409, 409]);
      expect((await api('POST', '/api/clients', { mac: m, image: 'no-such' })).json.error.code).toBe('IMAGE_NOT_FOUND');
    } finally {
      release();
      store.importImage = realImport;
    }
    await waitReady('slow');
    expect((await api('POST', '/api/clients', { mac: '52:54:00:14:00:02', image: 'slow' })).status).toBe(201);
  });
});
