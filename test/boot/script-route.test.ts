/**
 * Issue #13, the script route: CHAP secrets used to be served to anyone at GET /boot/<mac>.ipxe.
 * Now only a one-time link minted by a DHCP answer, fetched by the machine it was minted for
 * (neighbour table, injected here), gets them, once; the one-shot next boot is spent only then.
 * Real registry and image store on a temp dir, the real route on fastify (inject: the peer is 127.0.0.1).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BootScriptContext } from '../../appliance/boot/http';
import { ScriptTokens } from '../../appliance/boot/script-tokens';
import { ClientRegistry } from '../../appliance/clients/registry';
import { FakeClock } from '../../appliance/core/clock';
import { openDatabase } from '../../appliance/core/db';
import { silentLogger } from '../../appliance/core/log';
import type { BootEvent } from '../../appliance/core/model';
import { bootRoutes } from '../../appliance/http/routes/boot';
import { ImageStore } from '../../image-store/store';

const MAC = '52:54:00:12:34:56';
const PATH = '/boot/52-54-00-12-34-56.ipxe';

describe('GET /boot/<mac>.ipxe and its one-time links (issue #13)', () => {
  let store: ImageStore;
  let clients: ClientRegistry;
  let app: FastifyInstance;
  let clock: FakeClock;
  let tokens: ScriptTokens;
  let events: BootEvent[];
  /** What the fake neighbour table says 127.0.0.1 (the inject peer) is. */
  let neighbour: string | undefined;

  beforeEach(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nb-boot-route-'));
    clock = new FakeClock();
    store = ImageStore.open({ dir: join(dir, 'store'), clock, log: silentLogger(), segmentMiB: 4, chunkKiB: 64, reserveMiB: 0 });
    writeFileSync(join(dir, 'img.raw'), Buffer.alloc(1024 * 1024, 7));
    await store.importImage('img', join(dir, 'img.raw'));
    await store.importImage('rescue', join(dir, 'img.raw'));
    clients = new ClientRegistry(openDatabase(join(dir, 'a.db')), store, { iqnPrefix: 'iqn.2026-11.test', clock });
    tokens = new ScriptTokens({ clock, ttlMs: 120_000 });
    events = [];
    neighbour = MAC;
    const ctx = (): BootScriptContext => ({
      clients,
      serverAddress: '198.18.0.1',
      httpPort: 8080,
      iscsiPort: 3260,
      unknownClients: 'ignore',
      events: { record: (e) => events.push(e) },
    });
    app = Fastify();
    await app.register(bootRoutes(ctx, () => ({ dir: '/nonexistent' }), clients, { tokens, neighbours: async () => neighbour, now: () => clock.now() }));
  });
  afterEach(async () => {
    await app.close();
    await store.close();
  });

  const get = async (url: string, method: 'GET' | 'HEAD' = 'GET') => {
    const r = await app.inject({ method, url });
    return { status: r.statusCode, body: r.body };
  };
  const chapLines = /^set (password|reverse-password|username|reverse-username)/m;

  it('the static address serves no CHAP secret, for anyone', async () => {
    const c = clients.create(MAC, 'img', { chap: { user: 'pc1', secret: 'a-long-secret-1', targetUser: 'tgt', targetSecret: 'another-secret-2' } });
    const r = await get(PATH);
    expect(r.status).toBe(200);
    expect(r.body).not.toMatch(/password/);
    expect(r.body).not.toContain(c.chap!.secret);
    expect(r.body).not.toContain('sanboot');
    // It tells the user, then re-does DHCP and chains the fresh link, after a pause, a bounded number of times.
    expect(r.body).toMatch(/one-time link/);
    expect(r.body).toMatch(/choose --default retry --timeout 10000/);
    expect(r.body).toContain('dhcp || goto wait');
    expect(r.body).toContain('chain --replace --autofree ${filename} || goto wait');
    expect(r.body).toContain('iseq ${netboot-tries} xxx && goto giveup ||');
    expect(events.at(-1)).toMatchObject({ stage: 'script-fetched', detail: { kind: 'retry', reason: 'static' } });
  });

  it('a minted link serves the credentials once to the machine it was minted for; a replay is refused', async () => {
    const c = clients.create(MAC, 'img', { chap: { user: 'pc1', secret: 'a-long-secret-1', targetUser: 'tgt', targetSecret: 'another-secret-2' } });
    const t = tokens.mint(MAC);
    const first = await get(`${PATH}?t=${t}`);
    expect(first.status).toBe(200);
    expect(first.body).toContain('set password a-long-secret-1');
    expect(first.body).toContain('set reverse-password another-secret-2');
    expect(first.body).toContain(`sanboot iscsi:198.18.0.1::3260:0:${c.target} || goto failed`);
    const replay = await get(`${PATH}?t=${t}`);
    expect(replay.status).toBe(200);
    expect(replay.body).not.toMatch(chapLines);
    expect(replay.body).toMatch(/refused/);
    expect(events.at(-1)).toMatchObject({ detail: { kind: 'retry', reason: 'refused' } });
  });

  it('refuses a link asked for by another machine (neighbour table), without spending it', async () => {
    clients.create(MAC, 'img', { chap: { user: 'pc1', secret: 'a-long-secret-1' } });
    const t = tokens.mint(MAC);
    neighbour = '02:00:00:00:00:66';
    expect((await get(`${PATH}?t=${t}`)).body).not.toMatch(chapLines);
    // Another MAC's URL with this MAC's token: refused too.
    neighbour = MAC;
    clients.create('52:54:00:00:00:02', 'img');
    expect((await get(`/boot/52-54-00-00-00-02.ipxe?t=${t}`)).body).not.toMatch(chapLines);
    // HEAD never spends a link.
    expect((await get(`${PATH}?t=${t}`, 'HEAD')).status).toBe(200);
    expect((await get(`${PATH}?t=${t}`)).body).toContain('set password a-long-secret-1');
  });

  it('refuses an expired link', async () => {
    clients.create(MAC, 'img', { chap: { user: 'pc1', secret: 'a-long-secret-1' } });
    const t = tokens.mint(MAC);
    clock.advance(120_000);
    expect((await get(`${PATH}?t=${t}`)).body).not.toMatch(chapLines);
  });

  it('spends the one-shot next boot only for a redeemed link, not for the static address or a refused link', async () => {
    clients.create(MAC, 'img', { chap: null });
    clients.setNextBoot(MAC, { kind: 'rescue', image: 'rescue' });
    // A client without CHAP still gets its name-only script at the static address, but a
    // pending one-shot boot waits for the one-time link.
    let r = await get(PATH);
    expect(r.body).not.toContain('sanboot');
    neighbour = '02:00:00:00:00:66';
    r = await get(`${PATH}?t=${tokens.mint(MAC)}`);
    expect(r.body).not.toContain('sanboot');
    expect(clients.get(MAC).nextBoot).toEqual({ kind: 'rescue', image: 'rescue' });
    neighbour = MAC;
    r = await get(`${PATH}?t=${tokens.mint(MAC)}`);
    expect(r.body).toContain(`sanboot iscsi:198.18.0.1::3260:0:${clients.targetName(MAC, 'rescue')}`);
    expect(clients.get(MAC).nextBoot).toBeNull();
    r = await get(PATH);
    expect(r.body).toContain(`sanboot iscsi:198.18.0.1::3260:0:${clients.targetName(MAC)}`);
    expect(r.body).toContain('clear password');
  });
});
