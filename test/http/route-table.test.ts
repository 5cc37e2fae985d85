import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes, STREAM_BODY_ROUTES, type RouteEntry } from '../../appliance/http/app';
import { liveApp, rawRequest, type LiveApp } from './helpers';

// Walks fastify's own route table on the app createAppliance builds, so a route added later is
// covered without touching this file. Issue #13: auth used to compare the raw URL text while
// the router decoded it, so `/%61pi/...` and `http://host/api/...` skipped the token.

/** The routes that need no credentials; a new one is a decision, so it must be added here. */
const PUBLIC = ['GET /', 'GET /index.html', 'GET /api/session', 'POST /api/login', 'GET /boot/:file', 'GET /metrics'];

const SAMPLE: Record<string, string> = { mac: '52:54:00:00:00:01', id: '1', name: 'golden', disk: 'd1', file: 'x.ipxe' };
/** A concrete path for a route pattern: each `:param` replaced by a plausible value. */
const concrete = (url: string) => url.replace(/:(\w+)/g, (_m, p: string) => SAMPLE[p] ?? 'x');
const pct = (c: string) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0');

/** Spellings the router resolves to the same route, each with whether it must be exactly 401. */
function spellings(path: string, port: number): { target: string; resolves: boolean }[] {
  const out: { target: string; resolves: boolean }[] = [{ target: path, resolves: true }];
  for (let i = 0; i < path.length; i++) {
    if (path[i] === '/') continue;
    out.push({ target: path.slice(0, i) + pct(path[i]) + path.slice(i + 1), resolves: true });
    if (/[a-z]/i.test(pct(path[i]))) out.push({ target: path.slice(0, i) + pct(path[i]).toLowerCase() + path.slice(i + 1), resolves: true });
  }
  out.push({ target: [...path].map((c) => (c === '/' ? c : pct(c))).join(''), resolves: true });
  out.push({ target: `http://127.0.0.1:${port}${path}`, resolves: true });
  out.push({ target: `http://localhost${path}`, resolves: true });
  out.push({ target: path + '?', resolves: true });
  out.push({ target: path + '?force=true', resolves: true });
  for (const t of [
    `/x/..${path}`,
    `/.${path}`,
    path.replace(/^\/([^/]+)\//, '/$1/./'),
    `/${path}`,
    path.replace(/^\/([^/]+)\//, '/$1//'),
    path + ';',
    path + ';x=1',
    path + '#',
    path + '#x',
    path + '/',
    path + '%00',
    path.toUpperCase(),
    path.replace(/\//g, '%2F'),
    path.replace(/\//g, '\\'),
  ]) {
    out.push({ target: t, resolves: false });
  }
  return out;
}

/** Runs `fn` over `items`, `width` at a time (bounded: a few thousand short requests). */
async function pool<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

describe('every route on the real app, without credentials, under every spelling (issue #13)', () => {
  let live: LiveApp;
  let app: FastifyInstance;
  let routes: readonly RouteEntry[];
  /** Requests that got past the doors to a route's own hooks and handler. */
  let handled: string[] = [];

  beforeAll(async () => {
    live = await liveApp({}, (a) => {
      a.http.addHook('preHandler', async (request) => {
        if (!request.is404) handled.push(`${request.method} ${request.url}`);
      });
    });
    app = live.appliance.http;
    routes = registeredRoutes(app);
  });
  afterAll(async () => {
    await live?.close();
  });

  const key = (r: RouteEntry) => `${r.method} ${r.url}`;
  const guarded = () => routes.filter((r) => !r.public);

  it('finds the whole table, and exactly the expected routes are public', () => {
    expect(routes.length).toBeGreaterThan(40);
    expect(routes.some((r) => r.method === 'HEAD')).toBe(true);
    expect(
      routes
        .filter((r) => r.public && r.method !== 'HEAD')
        .map(key)
        .sort(),
    ).toEqual([...PUBLIC].sort());
    // fastify's automatic HEAD twin of a GET route inherits its flags.
    for (const r of routes.filter((x) => x.method === 'HEAD'))
      expect(r.public).toBe(routes.find((g) => g.method === 'GET' && g.url === r.url)?.public ?? false);
    expect(routes.every((r) => !r.anyHost || r.url.startsWith('/boot/'))).toBe(true);
  });

  it('answers 401 (or 400/404 where the router does not resolve the spelling), never runs a handler', async () => {
    handled = [];
    const failures: string[] = [];
    const jobs: { method: string; target: string; resolves: boolean; route: string }[] = [];
    for (const r of guarded()) {
      const path = concrete(r.url);
      for (const s of spellings(path, live.port)) jobs.push({ method: r.method, ...s, route: key(r) });
      for (const m of ['HEAD', 'OPTIONS']) jobs.push({ method: m, target: path, resolves: false, route: key(r) });
    }
    expect(jobs.length).toBeGreaterThan(1000);
    let unauthorized = 0;
    await pool(jobs, 8, async (j) => {
      const withBody = !['GET', 'HEAD', 'OPTIONS'].includes(j.method);
      const res = await rawRequest(live.port, j.method, j.target, withBody ? { 'content-type': 'application/json' } : {}, withBody ? '{}' : '');
      if (res.status === 401) unauthorized++;
      const ok = j.resolves ? res.status === 401 : [400, 401, 404].includes(res.status);
      if (!ok) failures.push(`${j.method} ${j.target} (${j.route}) -> ${res.status} ${res.body.slice(0, 80)}`);
    });
    expect(failures).toEqual([]);
    expect(handled).toEqual([]);
    expect(unauthorized).toBeGreaterThan(jobs.length / 2);
  }, 120_000);

  it('the same spellings with the token reach the route (the walk above tests the auth, not the router)', async () => {
    handled = [];
    const auth = { authorization: `Bearer ${live.appliance.token}` };
    for (const target of ['/%61pi/status', `http://127.0.0.1:${live.port}/api/status`, '/api/%73tatus?']) {
      expect((await rawRequest(live.port, 'GET', target, auth)).status).toBe(200);
    }
    expect(handled.filter((h) => h.includes('tatus')).length).toBe(3);
  });

  it('a session cookie without X-CSRF-Token changes nothing on any state-changing route', async () => {
    const login = await app.inject({ method: 'POST', url: '/api/login', payload: { token: live.appliance.token } });
    expect(login.statusCode).toBe(200);
    const cookie = String(login.headers['set-cookie']).split(';')[0];
    handled = [];
    const writes = guarded().filter((r) => !['GET', 'HEAD', 'OPTIONS'].includes(r.method));
    expect(writes.length).toBeGreaterThan(15);
    for (const r of writes) {
      for (const csrf of [undefined, 'forged']) {
        const res = await app.inject({
          method: r.method as 'POST',
          url: concrete(r.url),
          headers: { cookie, 'content-type': 'application/json', ...(csrf ? { 'x-csrf-token': csrf } : {}) },
          payload: '{}',
        });
        expect({ route: key(r), status: res.statusCode, code: res.json().error?.code }).toEqual({ route: key(r), status: 403, code: 'CSRF' });
      }
    }
    expect(handled).toEqual([]);
  });

  it('bodies are JSON only (415 otherwise, before any handler), octet-stream only on the upload', async () => {
    handled = [];
    const auth = { authorization: `Bearer ${live.appliance.token}` };
    const writes = routes.filter((r) => ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method));
    for (const r of writes) {
      const types = ['text/plain', 'text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', ''];
      if (!STREAM_BODY_ROUTES.has(key(r))) types.push('application/octet-stream');
      for (const type of types) {
        const res = await rawRequest(live.port, r.method, concrete(r.url), { ...auth, ...(type ? { 'content-type': type } : {}) }, '{"name":"x"}');
        expect({ route: key(r), type, status: res.status }).toEqual({ route: key(r), type, status: 415 });
      }
    }
    expect(handled).toEqual([]);
  });

  it('an unmatched path answers the same 404 whatever it is, naming nothing', async () => {
    const a = await rawRequest(live.port, 'GET', '/api/no-such-thing');
    const b = await rawRequest(live.port, 'DELETE', '/secret/%2e%2e/x');
    expect([a.status, b.status]).toEqual([404, 404]);
    expect(a.body).toBe(b.body);
    expect(a.body).not.toContain('no-such-thing');
  });
});
