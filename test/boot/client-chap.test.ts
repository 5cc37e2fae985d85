/**
 * Issue #13: CHAP was off by default, so the only check on a disk was the guessable initiator
 * name `<prefix>:initiator-<mac>`. New clients (added, enrolled, copied) now get generated
 * one-way CHAP unless boot.chapByDefault is false or the caller says `chap: null`; the API shows
 * a client without CHAP with a warning.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientRegistry, generateChapSecret } from '../../appliance/clients/registry';
import { FakeClock } from '../../appliance/core/clock';
import { openDatabase } from '../../appliance/core/db';
import { silentLogger } from '../../appliance/core/log';
import { ImageStore } from '../../image-store/store';
import { liveApp, type LiveApp } from '../http/helpers';

let store: ImageStore | undefined;
let live: LiveApp | undefined;
afterEach(async () => {
  await store?.close();
  store = undefined;
  await live?.close();
  live = undefined;
});

async function registry(chapByDefault?: boolean): Promise<ClientRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'nb-chap-'));
  const clock = new FakeClock();
  store = ImageStore.open({ dir: join(dir, 'store'), clock, log: silentLogger(), segmentMiB: 4, chunkKiB: 64, reserveMiB: 0 });
  writeFileSync(join(dir, 'img.raw'), Buffer.alloc(1024 * 1024, 7));
  await store.importImage('img', join(dir, 'img.raw'));
  return new ClientRegistry(openDatabase(join(dir, 'a.db')), store, { iqnPrefix: 'iqn.2026-11.test', clock, chapByDefault });
}

describe('generated CHAP credentials (issue #13)', () => {
  it('secrets are 16 characters of letters, digits, - and . (96 random bits), all different', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const s = generateChapSecret();
      expect(s).toMatch(/^[A-Za-z0-9.-]{16}$/);
      seen.add(s);
    }
    expect(seen.size).toBe(200);
  });

  it('a new client gets one-way CHAP by default, user = its initiator name; explicit chap wins, null means none', async () => {
    const clients = await registry();
    const a = clients.create('52:54:00:00:00:01', 'img');
    expect(a.chap).toEqual({ user: a.initiatorName, secret: expect.stringMatching(/^[A-Za-z0-9.-]{16}$/) });
    const b = clients.create('52:54:00:00:00:02', 'img');
    expect(b.chap!.secret).not.toBe(a.chap!.secret);
    expect(clients.create('52:54:00:00:00:03', 'img', { chap: null }).chap).toBeNull();
    expect(clients.create('52:54:00:00:00:04', 'img', { chap: { user: 'me', secret: 'my-own-secret-1' } }).chap).toEqual({
      user: 'me',
      secret: 'my-own-secret-1',
    });
    // Updating something else keeps the credentials.
    expect(clients.update(a.mac, { name: 'renamed' }).chap).toEqual(a.chap);
  });

  it('boot.chapByDefault false turns the default off (labs)', async () => {
    const clients = await registry(false);
    expect(clients.create('52:54:00:00:00:01', 'img').chap).toBeNull();
  });

  it("a copied or moved disk's new client gets its own secret, never the old machine's", async () => {
    const clients = await registry();
    const a = clients.create('52:54:00:00:00:01', 'img');
    const copy = await clients.moveDisk(a.mac, '52:54:00:00:00:09', { copy: true });
    expect(copy.chap!.user).toBe(copy.initiatorName);
    expect(copy.chap!.secret).not.toBe(a.chap!.secret);
  });
});

describe('the API shows a client without CHAP (issue #13)', () => {
  it('warnings lists CHAP off; a generated client has none and its secret is never returned', async () => {
    live = await liveApp();
    const { appliance } = live;
    const raw = join(live.dataDir, 'img.raw');
    writeFileSync(raw, Buffer.alloc(1024 * 1024, 7));
    await appliance.store.importImage('img', raw);
    const withChap = appliance.clients.create('52:54:00:00:00:01', 'img');
    appliance.clients.create('52:54:00:00:00:02', 'img', { chap: null });
    const get = async (mac: string) => {
      const r = await fetch(`http://127.0.0.1:${live!.port}/api/clients/${mac}`, { headers: { authorization: `Bearer ${appliance.token}` } });
      expect(r.status).toBe(200);
      return { text: await r.clone().text(), json: (await r.json()) as { chap: unknown; warnings: string[] } };
    };
    const a = await get('52:54:00:00:00:01');
    expect(a.json.chap).toEqual({ user: withChap.initiatorName, mutual: false });
    expect(a.json.warnings).toEqual([]);
    expect(a.text).not.toContain(withChap.chap!.secret);
    const b = await get('52:54:00:00:00:02');
    expect(b.json.chap).toBeNull();
    expect(b.json.warnings.join(' ')).toMatch(/CHAP is off/);
  });
});
