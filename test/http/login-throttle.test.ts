import type { FastifyInstance } from 'fastify';
import { createHash, pbkdf2, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import { buildHttpApp } from '../../appliance/http/app';
import { PasswordHasher, type PasswordHashing } from '../../appliance/http/password-hash';
import { uiAuth } from '../../appliance/http/ui-auth';

const TOKEN = 'c'.repeat(64);
const PASSWORD = 'correct horse battery';

// Issue #13: the limiter counted a failure only after scrypt finished, so 30 parallel wrong
// passwords were all hashed, on the same two libuv threads the image store's reads use.
describe('login throttling is counted before hashing (issue #13)', () => {
  let dir: string;
  let app: FastifyInstance;
  let hasher: PasswordHasher;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nb-throttle-'));
    hasher = new PasswordHasher(2);
    const auth = uiAuth({ dataDir: dir, clock: new FakeClock(), token: TOKEN, log: silentLogger(), hasher });
    app = await buildHttpApp({ log: silentLogger(), token: TOKEN, routes: [auth.routes], authenticators: [auth.authenticator] });
    const set = await app.inject({ method: 'POST', url: '/api/password', headers: { authorization: `Bearer ${TOKEN}` }, payload: { password: PASSWORD } });
    expect(set.statusCode).toBe(204);
  });
  afterEach(async () => {
    await app.close();
    await hasher.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('30 parallel wrong passwords from one address: at most the limit (5) are hashed, at most 2 at once, the rest get 429', async () => {
    const before = hasher.started;
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, hasher.running)), 1);
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        app.inject({ method: 'POST', url: '/api/login', payload: { password: `wrong guess ${i}` }, remoteAddress: '10.0.0.9' }),
      ),
    );
    clearInterval(watch);
    const hashed = hasher.started - before;
    const codes = results.map((r) => r.statusCode);
    expect(hashed).toBeLessThanOrEqual(5);
    expect(hashed).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(2);
    expect(codes.filter((c) => c === 401).length).toBe(hashed);
    expect(codes.filter((c) => c === 429).length).toBe(30 - hashed);
    for (const r of results.filter((x) => x.statusCode === 429)) expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('pending attempts count against the limit: with hashers to spare and a limit of 3, 30 parallel guesses get 3 hashes', async () => {
    // A slow fake hasher that never refuses, so only the per-address slots can hold the line.
    let started = 0;
    const fake: PasswordHashing = {
      tryHash: (password, salt) => {
        started++;
        return new Promise((res) => setTimeout(() => res(createHash('sha256').update(salt).update(password).digest()), 50));
      },
      close: async () => undefined,
    };
    const auth = uiAuth({ dataDir: dir, clock: new FakeClock(), token: TOKEN, log: silentLogger(), hasher: fake, maxFailures: 3 });
    const small = await buildHttpApp({ log: silentLogger(), token: TOKEN, routes: [auth.routes], authenticators: [auth.authenticator] });
    expect(
      (await small.inject({ method: 'POST', url: '/api/password', headers: { authorization: `Bearer ${TOKEN}` }, payload: { password: PASSWORD } })).statusCode,
    ).toBe(204);
    started = 0;
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => small.inject({ method: 'POST', url: '/api/login', payload: { password: `guess ${i}` }, remoteAddress: '10.0.0.5' })),
    );
    expect(started).toBe(3);
    expect(results.filter((r) => r.statusCode === 401).length).toBe(3);
    expect(results.filter((r) => r.statusCode === 429).length).toBe(27);
    await small.close();
  });

  it('sequential wrong passwords: the 6th is refused without hashing, even when right', async () => {
    for (let i = 0; i < 5; i++)
      expect((await app.inject({ method: 'POST', url: '/api/login', payload: { password: `nope ${i}` }, remoteAddress: '10.0.0.8' })).statusCode).toBe(401);
    const before = hasher.started;
    const right = await app.inject({ method: 'POST', url: '/api/login', payload: { password: PASSWORD }, remoteAddress: '10.0.0.8' });
    expect(right.statusCode).toBe(429);
    expect(hasher.started).toBe(before);
    // Another address still logs in.
    expect((await app.inject({ method: 'POST', url: '/api/login', payload: { password: PASSWORD }, remoteAddress: '10.0.0.7' })).statusCode).toBe(200);
  });

  it('when both hashers are busy, a login from another address gets 429 + Retry-After: 1 and keeps its slots', async () => {
    const a = app.inject({ method: 'POST', url: '/api/login', payload: { password: 'guess a' }, remoteAddress: '10.0.1.1' });
    const b = app.inject({ method: 'POST', url: '/api/login', payload: { password: 'guess b' }, remoteAddress: '10.0.1.2' });
    // inject dispatches asynchronously: wait until both hashes are running.
    for (let i = 0; i < 200 && hasher.running < 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(hasher.running).toBe(2);
    const c = await app.inject({ method: 'POST', url: '/api/login', payload: { password: PASSWORD }, remoteAddress: '10.0.1.3' });
    expect(c.statusCode).toBe(429);
    expect(c.json().error.code).toBe('BUSY');
    expect(c.headers['retry-after']).toBe('1');
    expect([(await a).statusCode, (await b).statusCode]).toEqual([401, 401]);
    // The refused attempt cost 10.0.1.3 nothing: five more tries remain, the right one works.
    expect((await app.inject({ method: 'POST', url: '/api/login', payload: { password: PASSWORD }, remoteAddress: '10.0.1.3' })).statusCode).toBe(200);
  });
});

describe('PasswordHasher', () => {
  it("hashes off libuv's thread pool: a hash finishes while every pool thread is busy", async () => {
    const hasher = new PasswordHasher(1);
    // Fill the pool (4 threads at most in the test process) and a queue behind it.
    let poolDone = 0;
    const jobs = Array.from(
      { length: 8 },
      () =>
        new Promise<void>((res) =>
          pbkdf2('x', 'y', 400_000, 64, 'sha512', () => {
            poolDone++;
            res();
          }),
        ),
    );
    const key = await hasher.tryHash('pw', randomBytes(16), { N: 1 << 14, r: 8, p: 1, keyLen: 32 })!;
    const doneWhenHashed = poolDone;
    expect(key.length).toBe(32);
    expect(doneWhenHashed).toBe(0);
    await Promise.all(jobs);
    await hasher.close();
  }, 60_000);

  it('gives the same key as node:crypto scrypt', async () => {
    const { scryptSync } = await import('node:crypto');
    const hasher = new PasswordHasher(2);
    const salt = randomBytes(16);
    const key = await hasher.tryHash('secret', salt, { N: 1 << 10, r: 8, p: 1, keyLen: 32 })!;
    expect(key.equals(scryptSync('secret', salt, 32, { N: 1 << 10, r: 8, p: 1 }))).toBe(true);
    const a = hasher.tryHash('a', salt, { N: 1 << 10, r: 8, p: 1, keyLen: 32 });
    const b = hasher.tryHash('b', salt, { N: 1 << 10, r: 8, p: 1, keyLen: 32 });
    expect(hasher.tryHash('c', salt, { N: 1 << 10, r: 8, p: 1, keyLen: 32 })).toBeUndefined();
    await Promise.all([a, b]);
    await hasher.close();
  });
});
