import type { FastifyInstance } from 'fastify';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { buildHttpApp } from '../../appliance/http/app';
import { statusRoutes } from '../../appliance/http/routes/status';
import { uiAuth } from '../../appliance/http/ui-auth';

const TOKEN = 'a'.repeat(64);

/** The app as the core builds it, with the UI auth plugged in and a state-changing route to aim at. */
async function makeApp(clock: FastifyClock, dataDir: string): Promise<FastifyInstance> {
  const auth = uiAuth({ dataDir, clock, token: TOKEN, log: silentLogger() });
  let hits = 0;
  return buildHttpApp({
    log: silentLogger(),
    token: TOKEN,
    authenticators: [auth.authenticator],
    routes: [
      auth.routes,
      statusRoutes({
        version: 't',
        startedAt: 0,
        now: () => clock.now(),
        serverAddress: '127.0.0.1',
        services: () => [],
        storage: async () => ({ dataDir, filesystem: { totalBytes: 1, freeBytes: 1, availableBytes: 1 } }),
      }),
      (app) => {
        app.post('/api/poke', async () => ({ hits: ++hits }));
      },
    ],
  });
}
type FastifyClock = FakeClock;

function cookieOf(res: { headers: Record<string, unknown> }): string {
  const raw = res.headers['set-cookie'];
  const first = Array.isArray(raw) ? raw[0] : String(raw);
  return first.split(';')[0];
}

describe('UI auth', () => {
  let dir: string;
  let clock: FakeClock;
  let app: FastifyInstance;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nb-ui-auth-'));
    clock = new FakeClock();
    app = await makeApp(clock, dir);
  });
  afterEach(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const login = (body: object, ip = '127.0.0.1') => app.inject({ method: 'POST', url: '/api/login', payload: body, remoteAddress: ip });

  it('logs in with the admin token and sets a strict HttpOnly cookie', async () => {
    const res = await login({ token: TOKEN });
    expect(res.statusCode).toBe(200);
    const set = String(res.headers['set-cookie']);
    expect(set).toMatch(/^nb_session=[A-Za-z0-9_-]{43}; /);
    expect(set).toContain('HttpOnly');
    expect(set).toContain('SameSite=Strict');
    expect(set).toContain('Path=/');
    expect(set).not.toContain('Secure'); // plain http here
    expect(set).not.toContain(TOKEN);
    const body = res.json();
    expect(body).toMatchObject({ authenticated: true, method: 'token', passwordSet: false });
    expect(body.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(res.headers['cache-control']).toBe('no-store');

    const status = await app.inject({ method: 'GET', url: '/api/status', headers: { cookie: cookieOf(res) } });
    expect(status.statusCode).toBe(200);
    const session = await app.inject({ method: 'GET', url: '/api/session', headers: { cookie: cookieOf(res) } });
    expect(session.json()).toMatchObject({ authenticated: true, csrfToken: body.csrfToken });
  });

  it('refuses a wrong token with 401 and no cookie', async () => {
    const res = await login({ token: 'b'.repeat(64) });
    expect(res.statusCode).toBe(401);
    expect(res.json().error.code).toBe('LOGIN_FAILED');
    expect(res.headers['set-cookie']).toBeUndefined();
    expect((await login({})).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/api/status' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie: 'nb_session=forged' } })).statusCode).toBe(401);
  });

  it('rate-limits failed logins per address: the 6th attempt within a minute gets 429, even when right', async () => {
    for (let i = 0; i < 5; i++) expect((await login({ token: `wrong${i}` })).statusCode).toBe(401);
    const locked = await login({ token: TOKEN });
    expect(locked.statusCode).toBe(429);
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(locked.headers['retry-after'])).toBeLessThanOrEqual(60);
    // Another address is not affected.
    expect((await login({ token: TOKEN }, '127.0.0.2')).statusCode).toBe(200);
    clock.advance(60_001);
    expect((await login({ token: TOKEN })).statusCode).toBe(200);
  });

  it('a success resets the failure count', async () => {
    for (let i = 0; i < 4; i++) await login({ token: 'nope' });
    expect((await login({ token: TOKEN })).statusCode).toBe(200);
    for (let i = 0; i < 4; i++) expect((await login({ token: 'nope' })).statusCode).toBe(401);
    expect((await login({ token: TOKEN })).statusCode).toBe(200);
  });

  it('requires the CSRF header on state-changing requests made with the cookie', async () => {
    const res = await login({ token: TOKEN });
    const cookie = cookieOf(res);
    const csrf = res.json().csrfToken as string;
    const missing = await app.inject({ method: 'POST', url: '/api/poke', headers: { cookie } });
    expect(missing.statusCode).toBe(403);
    expect(missing.json().error.code).toBe('CSRF');
    const wrong = await app.inject({
      method: 'POST',
      url: '/api/poke',
      headers: { cookie, 'x-csrf-token': csrf.slice(0, -1) + (csrf.endsWith('A') ? 'B' : 'A') },
    });
    expect(wrong.statusCode).toBe(403);
    const ok = await app.inject({ method: 'POST', url: '/api/poke', headers: { cookie, 'x-csrf-token': csrf } });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ hits: 1 });
    // GET needs no CSRF token.
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie } })).statusCode).toBe(200);
  });

  it('bearer requests need no CSRF token', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/poke', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.statusCode).toBe(200);
  });

  it('logout ends the session and expires the cookie', async () => {
    const res = await login({ token: TOKEN });
    const cookie = cookieOf(res);
    const csrf = res.json().csrfToken as string;
    const out = await app.inject({ method: 'POST', url: '/api/logout', headers: { cookie, 'x-csrf-token': csrf } });
    expect(out.statusCode).toBe(204);
    expect(String(out.headers['set-cookie'])).toContain('Max-Age=0');
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie } })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/api/session', headers: { cookie } })).json()).toEqual({ authenticated: false, passwordSet: false });
  });

  it('sessions expire after 12 h idle, and activity keeps them alive', async () => {
    const cookie = cookieOf(await login({ token: TOKEN }));
    clock.advance(11 * 3600_000);
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie } })).statusCode).toBe(200);
    clock.advance(11 * 3600_000);
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie } })).statusCode).toBe(200);
    clock.advance(12 * 3600_000 + 1);
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie } })).statusCode).toBe(401);
  });

  it('password flow: only an authenticated caller sets it; then it logs in; changing needs the old one', async () => {
    // Nobody can set the first password without authenticating.
    const anon = await app.inject({ method: 'POST', url: '/api/password', payload: { password: 'correct horse battery' } });
    expect(anon.statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/api/session' })).json()).toEqual({ authenticated: false, passwordSet: false });

    // A token session sets it (with CSRF).
    const t = await login({ token: TOKEN });
    const tc = { cookie: cookieOf(t), 'x-csrf-token': t.json().csrfToken as string };
    expect((await app.inject({ method: 'POST', url: '/api/password', headers: tc, payload: { password: 'short' } })).statusCode).toBe(400);
    expect(
      (await app.inject({ method: 'POST', url: '/api/password', headers: { cookie: tc.cookie }, payload: { password: 'correct horse battery' } })).statusCode,
    ).toBe(403);
    expect((await app.inject({ method: 'POST', url: '/api/password', headers: tc, payload: { password: 'correct horse battery' } })).statusCode).toBe(204);

    const file = join(dir, 'ui-auth.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const stored = readFileSync(file, 'utf8');
    expect(stored).not.toContain('correct horse');
    expect(JSON.parse(stored).password).toMatchObject({ algo: 'scrypt', N: 32768, r: 8, p: 1 });

    expect((await login({ password: 'wrong password!' })).statusCode).toBe(401);
    const p = await login({ password: 'correct horse battery' });
    expect(p.statusCode).toBe(200);
    expect(p.json()).toMatchObject({ method: 'password', passwordSet: true });
    const pc = { cookie: cookieOf(p), 'x-csrf-token': p.json().csrfToken as string };

    // A password session must prove the current password to change it.
    expect((await app.inject({ method: 'POST', url: '/api/password', headers: pc, payload: { password: 'a brand new secret' } })).statusCode).toBe(403);
    expect(
      (
        await app.inject({
          method: 'POST',
          url: '/api/password',
          headers: pc,
          payload: { password: 'a brand new secret', currentPassword: 'correct horse battery' },
        })
      ).statusCode,
    ).toBe(204);
    expect((await login({ password: 'correct horse battery' })).statusCode).toBe(401);
    expect((await login({ password: 'a brand new secret' })).statusCode).toBe(200);

    // The admin token resets it without the old one (the way back from a lost password), and
    // that ends every password session.
    const other = await login({ password: 'a brand new secret' });
    expect(
      (await app.inject({ method: 'POST', url: '/api/password', headers: { authorization: `Bearer ${TOKEN}` }, payload: { password: 'reset by the admin' } }))
        .statusCode,
    ).toBe(204);
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie: cookieOf(other) } })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/api/status', headers: { cookie: tc.cookie } })).statusCode).toBe(200);
    expect((await login({ password: 'reset by the admin' })).statusCode).toBe(200);
  });

  it('keeps at most maxSessions sessions, dropping the least recently used', async () => {
    const auth = uiAuth({ dataDir: dir, clock, token: TOKEN, log: silentLogger(), maxSessions: 2 });
    const ping = (app: FastifyInstance) => void app.get('/api/ping', async () => 'pong');
    const small = await buildHttpApp({ log: silentLogger(), token: TOKEN, routes: [auth.routes, ping], authenticators: [auth.authenticator] });
    const open = async () => cookieOf(await small.inject({ method: 'POST', url: '/api/login', payload: { token: TOKEN } }));
    const alive = async (cookie: string) => (await small.inject({ method: 'GET', url: '/api/session', headers: { cookie } })).json().authenticated as boolean;
    const a = await open();
    clock.advance(1000);
    const b = await open();
    clock.advance(1000);
    // a is used again, so b is now the least recently used.
    expect((await small.inject({ method: 'GET', url: '/api/ping', headers: { cookie: a } })).statusCode).toBe(200);
    clock.advance(1000);
    const c = await open();
    expect([await alive(a), await alive(b), await alive(c)]).toEqual([true, false, true]);
    await small.close();
  });

  it('marks the cookie Secure when the request came over TLS', async () => {
    const auth = uiAuth({ dataDir: dir, clock, token: TOKEN, log: silentLogger() });
    const https = await buildHttpApp({ log: silentLogger(), token: TOKEN, routes: [auth.routes], authenticators: [auth.authenticator] });
    // fastify derives request.protocol from the socket; inject cannot fake TLS, so decorate it.
    https.addHook('onRequest', async (req) => {
      Object.defineProperty(req, 'protocol', { value: 'https' });
    });
    const res = await https.inject({ method: 'POST', url: '/api/login', payload: { token: TOKEN } });
    expect(String(res.headers['set-cookie'])).toContain('; Secure');
    await https.close();
  });
});
