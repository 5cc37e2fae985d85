import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE, ensureBuilt, startAppliance, type RunningAppliance } from '../helpers/appliance-process';

describe('the bundled appliance (issue 2)', () => {
  let app: RunningAppliance;
  beforeAll(async () => {
    app = await startAppliance();
  });
  afterAll(async () => {
    await app?.stop('SIGKILL');
  });

  it('lists its verbs with --help', () => {
    const r = spawnSync('node', [BUNDLE, '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const verb of ['serve', 'status', 'image', 'client', 'snapshot']) expect(r.stdout).toMatch(new RegExp(`^  ${verb}`, 'm'));
  });

  it('answers /api/status with the token, 401 without or with a wrong one', async () => {
    const ok = await app.api('GET', '/api/status');
    expect(ok.status).toBe(200);
    expect(ok.json.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(typeof ok.json.uptimeSeconds).toBe('number');
    const http = ok.json.services.find((s: { name: string }) => s.name === 'http');
    expect(http.state).toBe('running');
    expect(http.listen[0]).toMatch(/^tcp 127\.0\.0\.1:\d+$/);
    expect(ok.json.storage.dataDir).toBe(app.dataDir);
    expect(ok.json.storage.filesystem.totalBytes).toBeGreaterThan(0);
    // Its own memory (issue #16), as the kernel counts it: within 16 MiB of /proc's VmRSS.
    const vmRss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${app.proc.pid}/status`, 'utf8'))![1]) * 1024;
    expect(Math.abs(ok.json.memory.rssBytes - vmRss)).toBeLessThan(16 * 2 ** 20);
    expect(ok.json.memory.heapUsedBytes).toBeGreaterThan(0);
    expect(ok.json.memory.heapUsedBytes).toBeLessThanOrEqual(ok.json.memory.heapTotalBytes);

    const none = await app.api('GET', '/api/status', undefined, null);
    expect(none.status).toBe(401);
    expect(JSON.stringify(none.json)).not.toMatch(/token|bearer/i);
    const wrong = await app.api('GET', '/api/status', undefined, 'f'.repeat(64));
    expect(wrong.status).toBe(401);
  });

  it('keeps the admin token and the database (CHAP secrets) private (mode 0600)', () => {
    for (const f of ['admin.token', 'appliance.db', 'appliance.db-wal', 'appliance.db-shm'])
      expect({ f, mode: statSync(join(app.dataDir, f)).mode & 0o777 }).toEqual({ f, mode: 0o600 });
  });

  it('serves Prometheus metrics with per-service counters', async () => {
    const res = await fetch(app.url + '/metrics');
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toMatch(/^netboot_process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^netboot_service_up\{service="http"\} 1$/m);
    expect(text).toMatch(/^netboot_http_requests_total \d+$/m);
  });

  it('hashes UI passwords in its worker thread from the single-file bundle (issue #13)', async () => {
    expect((await app.api('POST', '/api/password', { password: 'correct horse battery' })).status).toBe(204);
    const login = async (password: string) =>
      (await fetch(app.url + '/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ password }) })).status;
    expect(await login('correct horse battery')).toBe(200);
    expect(await login('wrong password here')).toBe(401);
  });

  it('refuses a foreign Host, a text/plain body and a percent-encoded path without the token (issue #13)', async () => {
    // fetch would normalise the path and never send a foreign Host: write the bytes.
    const { rawRequest } = await import('../http/helpers');
    const port = Number(new URL(app.url).port);
    expect((await rawRequest(port, 'GET', '/api/status', { host: 'evil.example', authorization: `Bearer ${app.token}` })).status).toBe(421);
    const plain = await fetch(app.url + '/api/settings', {
      method: 'PATCH',
      headers: { 'content-type': 'text/plain', authorization: `Bearer ${app.token}` },
      body: '{}',
    });
    expect(plain.status).toBe(415);
    expect((await rawRequest(port, 'GET', '/%61pi/clients')).status).toBe(401);
  });

  it('`appliance status` reads address and token from the same config', () => {
    const r = spawnSync('node', [BUNDLE, 'status', '--config', app.configFile], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/http\s+running\s+tcp 127\.0\.0\.1:/);
  });

  it('stops on SIGTERM with status 0 within 5 seconds', async () => {
    const { code, ms } = await app.stop('SIGTERM');
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5000);
  });
});

describe('configuration errors', () => {
  it('prints every problem with its key path and exits 2 before listening', () => {
    ensureBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'nb-cfg-'));
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ dataDir: join(dir, 'var'), http: { port: 70000 }, dhcp: { mode: 'sometimes' }, iscsi: { enabled: 'yes' } }));
    const r = spawnSync('node', [BUNDLE, 'serve', '--config', file], { encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/http\.port: .*65535/);
    expect(r.stderr).toMatch(/dhcp\.mode: .*"off"\|"proxy"\|"full"/);
    expect(r.stderr).toMatch(/iscsi\.enabled: .*boolean/);
  });

  it('names the port that cannot be bound and exits non-zero', async () => {
    const net = await import('node:net');
    const blocker = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    const port = (blocker.address() as { port: number }).port;
    const dir = mkdtempSync(join(tmpdir(), 'nb-port-'));
    const file = join(dir, 'c.json');
    writeFileSync(
      file,
      JSON.stringify({
        dataDir: join(dir, 'var'),
        http: { host: '127.0.0.1', port },
        iscsi: { host: '127.0.0.1', port: 0 },
        tftp: { host: '127.0.0.1', port: 0 },
        mdns: { enabled: false },
        log: { format: 'json' },
      }),
    );
    const r = spawnSync('node', [BUNDLE, 'serve', '--config', file], { encoding: 'utf8', timeout: 15_000 });
    blocker.close();
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`HTTP port ${port} on 127.0.0.1 is already in use`);
  });
});
