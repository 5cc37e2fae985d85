import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { SystemCollector, collectHealth, collectStorage, type SystemSource } from '../../appliance/storage/collector';

function fakeSource(): SystemSource & { calls: number } {
  const src = {
    calls: 0,
    async blockDevices() {
      src.calls++;
      return [];
    },
    async fsSize() {
      return [{ fs: '/dev/vda', type: 'ext4', size: 100, used: 50, available: 50, use: 50, mount: '/', rw: true }] as never;
    },
    async currentLoad() {
      return { currentLoad: 3 };
    },
    async mem() {
      return { total: 10, available: 5 };
    },
    async cpuTemperature() {
      return { main: null };
    },
    async networkInterfaces() {
      return [] as never;
    },
  };
  return src;
}

describe('SystemCollector cache', () => {
  it('reuses a result within the TTL, shares in-flight collections, refreshes after it', async () => {
    const clock = new FakeClock();
    const src = fakeSource();
    const c = new SystemCollector({ clock, source: src, ttlMs: 5_000 });
    const [a, b] = await Promise.all([c.storage('/'), c.storage('/')]);
    expect(a).toBe(b);
    expect(src.calls).toBe(1);
    clock.advance(4_999);
    expect(await c.storage('/')).toBe(a);
    clock.advance(2);
    const fresh = await c.storage('/');
    expect(fresh).not.toBe(a);
    expect(src.calls).toBe(2);
    c.invalidate();
    await c.storage('/');
    expect(src.calls).toBe(3);
    expect(fresh.dataDir).toMatchObject({ mount: '/', freeBytes: 50 });
  });

  it('does not cache a failure', async () => {
    const src = fakeSource();
    let fail = true;
    src.blockDevices = async () => {
      src.calls++;
      if (fail) throw new Error('lsblk died');
      return [];
    };
    const c = new SystemCollector({ clock: new FakeClock(), source: src });
    await expect(c.storage('/')).rejects.toThrow('lsblk died');
    fail = false;
    await expect(c.storage('/')).resolves.toMatchObject({ dataDir: { mount: '/' } });
  });
});

describe('collectStorage / collectHealth on this machine (real systeminformation)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nb-storage-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the filesystem holding a real directory and reports it missing once deleted', async () => {
    const r = await collectStorage(dir);
    expect(r.dataDir.state).not.toBe('missing');
    expect(r.dataDir.mount).toMatch(/^\//);
    expect(dir.startsWith(r.dataDir.mount === '/' ? '/' : `${r.dataDir.mount}`)).toBe(true);
    expect(r.dataDir.sizeBytes).toBeGreaterThan(0);
    const gone = await collectStorage(join(dir, 'not-there'));
    expect(gone.dataDir.state).toBe('missing');
  });

  it('reports memory, CPUs and at least one interface', async () => {
    const h = await collectHealth();
    expect(h.memory.totalBytes).toBeGreaterThan(0);
    expect(h.cpu.count).toBeGreaterThan(0);
    expect(Array.isArray(h.interfaces)).toBe(true);
  });
});
