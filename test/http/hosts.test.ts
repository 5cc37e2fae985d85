import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostMatcher, hostName, interfaceAddresses } from '../../appliance/http/hosts';
import { liveApp, rawRequest, type LiveApp } from './helpers';

describe('hostName', () => {
  it.each([
    ['netboot.local', 'netboot.local'],
    ['NetBoot.Local:8080', 'netboot.local'],
    ['netboot.local.', 'netboot.local'],
    ['192.168.1.5:80', '192.168.1.5'],
    ['[::1]:8080', '::1'],
    ['[fe80::1%25eth0]', 'fe80::1'],
    ['', undefined],
    ['evil.example/x', undefined],
    ['a b', undefined],
    [undefined, undefined],
  ])('%s -> %s', (input, want) => {
    expect(hostName(input)).toBe(want);
  });
});

describe('hostMatcher', () => {
  const addresses = ['192.168.1.5', 'fe80::1'];
  const allowed = hostMatcher({ names: ['netboot.local', 'nas.example.lan'], addresses: () => addresses });
  it.each(['localhost', '127.0.0.1', '::1', 'netboot.local', 'nas.example.lan', '192.168.1.5', 'fe80::1'])('answers to %s', (h) => {
    expect(allowed(hostName(h) ?? hostName(`[${h}]`))).toBe(true);
  });
  it.each(['evil.example', 'netboot.local.evil.example', '127.0.0.1.nip.io', '192.168.1.6', 'localhost.evil', '0.0.0.0'])('refuses %s', (h) => {
    expect(allowed(hostName(h))).toBe(false);
  });
  it('reads the interface addresses on every call (DHCP may give the box a new one)', () => {
    addresses.push('10.0.0.7');
    expect(allowed('10.0.0.7')).toBe(true);
  });
});

// DNS rebinding: a page on evil.example re-points its name at the appliance and then talks to
// it as its own origin; the browser sends `Host: evil.example`.
describe('the real app refuses foreign Host names (issue #13)', () => {
  let live: LiveApp;
  let auth: Record<string, string>;
  beforeAll(async () => {
    live = await liveApp({ mdns: { enabled: false, name: 'pxe-box' }, http: { host: '127.0.0.1', port: 0, allowedHosts: ['boot.example.lan'] } });
    auth = { authorization: `Bearer ${live.appliance.token}` };
  });
  afterAll(async () => {
    await live?.close();
  });

  it.each(['/api/status', '/', '/index.html', '/api/session', '/metrics', '/api/nothing'])(
    '%s with Host evil.example gets 421 even with the token',
    async (path) => {
      const r = await rawRequest(live.port, 'GET', path, { ...auth, host: `evil.example:${live.port}` });
      expect(r.status).toBe(421);
      expect(JSON.parse(r.body).error.code).toBe('MISDIRECTED_REQUEST');
    },
  );

  it('login from a rebound name is refused before the password is looked at', async () => {
    const r = await rawRequest(
      live.port,
      'POST',
      '/api/login',
      { host: 'evil.example', 'content-type': 'application/json' },
      JSON.stringify({ token: live.appliance.token }),
    );
    expect(r.status).toBe(421);
    expect(r.headers['set-cookie']).toBeUndefined();
  });

  it('an absolute-form target naming a foreign host is refused', async () => {
    const r = await rawRequest(live.port, 'GET', 'http://evil.example/api/status', auth);
    expect(r.status).toBe(421);
  });

  it('a request without Host is refused', async () => {
    const r = await rawRequest(live.port, 'GET', '/api/status', { ...auth, host: '' });
    expect([400, 421]).toContain(r.status);
  });

  it('/boot stays reachable under any name (firmware asks by IP)', async () => {
    const r = await rawRequest(live.port, 'GET', '/boot/52-54-00-00-00-99.ipxe', { host: '10.9.9.9' });
    expect(r.status).not.toBe(421);
    expect(r.status).toBeLessThan(500);
  });

  it('answers to its own names, with or without port', async () => {
    const own = interfaceAddresses().filter((a) => a !== '127.0.0.1' && a !== '::1');
    const hosts = [
      'localhost',
      `localhost:${live.port}`,
      '127.0.0.1',
      `[::1]:${live.port}`,
      'pxe-box.local',
      `PXE-BOX.local:${live.port}`,
      'boot.example.lan',
      ...own.map((a) => (a.includes(':') ? `[${a}]` : a)),
    ];
    for (const host of hosts) {
      const r = await rawRequest(live.port, 'GET', '/api/status', { ...auth, host });
      expect({ host, status: r.status }).toEqual({ host, status: 200 });
    }
  });

  it('a state-changing request must come from the origin it is sent to', async () => {
    const body = '{}';
    const json = { 'content-type': 'application/json' };
    const cross = await rawRequest(live.port, 'POST', '/api/backups/run', { ...auth, ...json, origin: 'http://evil.example' }, body);
    expect(cross.status).toBe(403);
    expect(JSON.parse(cross.body).error.code).toBe('CROSS_ORIGIN');
    const opaque = await rawRequest(live.port, 'POST', '/api/backups/run', { ...auth, ...json, origin: 'null' }, body);
    expect(opaque.status).toBe(403);
    // Same host, another port: same-site for cookies, but another origin.
    const port = await rawRequest(live.port, 'POST', '/api/backups/run', { ...auth, ...json, origin: 'http://127.0.0.1:1' }, body);
    expect(port.status).toBe(403);
    const same = await rawRequest(live.port, 'POST', '/api/backups/run', { ...auth, ...json, origin: `http://127.0.0.1:${live.port}` }, body);
    expect(same.status).toBeLessThan(300);
  });
});
