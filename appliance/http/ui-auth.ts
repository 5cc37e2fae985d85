import type Database from 'better-sqlite3';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tokenMatches } from '../core/admin-token';
import type { Clock } from '../core/clock';
import { writeFileDurable } from '../core/durable-file';
import { ApiError } from '../core/errors';
import type { Logger } from '../core/log';
import type { RoutePlugin } from './app';
import type { RequestAuthenticator } from './auth';
import { PasswordHasher, type PasswordHashing, type ScryptParams } from './password-hash';

/**
 * The web UI's login: a session cookie instead of the bearer token, so the token never sits in
 * browser storage where any injected script could read it.
 *
 * - Login with the admin token (`<dataDir>/admin.token`) or with a password. The password can
 *   only be set by someone already authenticated (bearer token, or a UI session), so the admin
 *   token is the root of trust: a stranger on the LAN can never claim a fresh appliance.
 * - The cookie is HttpOnly, SameSite=Strict, Path=/ (plus Secure when the request came over
 *   TLS). It carries 32 random bytes; the server keeps only their SHA-256, so a memory dump or a
 *   timing probe of the session map reveals nothing usable.
 * - CSRF: every session has its own random token, returned by login and GET /api/session. A
 *   state-changing request (anything but GET/HEAD/OPTIONS) made with the cookie must repeat it in
 *   `X-CSRF-Token`, else 403 CSRF. Bearer requests carry no cookie and need no CSRF token.
 * - Sessions expire after `idleMs` without a request and `maxAgeMs` after login. They live in
 *   memory: a restart logs everyone out, which is the safe direction.
 * - Login is rate-limited per client address: `maxFailures` attempts within `windowMs` that
 *   did not succeed lock the address out (429 + Retry-After) until the window passes, even for
 *   right answers. An attempt takes its slot before the password is hashed, so parallel
 *   guesses count while they are still being checked.
 * - At most two password hashes run at once across the app, in worker threads (not libuv's
 *   pool, which the image store's I/O needs); a login past that gets 429 + Retry-After: 1.
 * - The password is stored as an scrypt hash (N=2^15, r=8, p=1) in `<dataDir>/ui-auth.json`,
 *   mode 0600, written durably (fsync, rename, fsync the directory).
 */

export interface UiAuthDeps {
  /** Unused for now (sessions are in memory, the hash in a file); kept so storage can move to SQLite. */
  db?: Database.Database;
  dataDir: string;
  clock: Clock;
  /** The admin token: it logs in, and it authorises setting the first password. */
  token: string;
  log: Logger;
  /** Session idle timeout (default 12 h). */
  idleMs?: number;
  /** Absolute session lifetime (default 7 days). */
  maxAgeMs?: number;
  /** Failed logins per address per window before 429 (default 5 per 60 s). */
  maxFailures?: number;
  windowMs?: number;
  /** Open sessions kept (default 1000): past it, expired ones go, then the least recently used. */
  maxSessions?: number;
  /** Where passwords are hashed (default: two worker threads); tests pass one to count hashes. */
  hasher?: PasswordHashing;
}

/** What uiAuth gives the core: its routes (login and session probe marked public) and the cookie authenticator. */
export interface UiAuth {
  routes: RoutePlugin;
  authenticator: RequestAuthenticator;
}

/** How a UI session was opened. */
export type LoginMethod = 'token' | 'password';

interface Session {
  method: LoginMethod;
  csrfToken: string;
  createdAt: number;
  lastSeen: number;
}

/** The stored password hash (`<dataDir>/ui-auth.json`). */
interface PasswordFile {
  version: 1;
  password: { algo: 'scrypt'; N: number; r: number; p: number; salt: string; hash: string; setAt: string };
}

/** The session cookie's name. */
export const SESSION_COOKIE = 'nb_session';
/** The header a cookie-authenticated state-changing request must carry. */
export const CSRF_HEADER = 'x-csrf-token';

const SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1, keyLen: 32 };
const MIN_PASSWORD = 10;
const MAX_PASSWORD = 1024;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Bound on tracked addresses so a flood of spoofed sources cannot grow memory without end. */
const MAX_TRACKED_ADDRESSES = 10_000;

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** All password hashers are busy: the caller answers 429 and counts nothing against the address. */
function hasherBusy(reply: FastifyReply): ApiError {
  reply.header('Retry-After', '1');
  return new ApiError('BUSY', 429, 'the appliance is checking other passwords; try again in a second');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Parses one cookie out of a Cookie header (RFC 6265 §5.4: `name=value` pairs joined by "; "). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Counts login attempts per address in a fixed window; no timers (expiry is checked lazily).
 * An attempt takes a slot before it is checked and keeps it unless it succeeds (which clears
 * the address) or was never checked (release).
 */
class LoginLimiter {
  private readonly failures = new Map<string, { count: number; windowStart: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  /** Milliseconds until this address may try again (0 = now). */
  retryAfter(address: string): number {
    const e = this.failures.get(address);
    if (!e) return 0;
    const left = e.windowStart + this.windowMs - this.clock.now();
    if (left <= 0) {
      this.failures.delete(address);
      return 0;
    }
    return e.count >= this.max ? left : 0;
  }

  /** Takes an attempt slot; returns 0, or the milliseconds to wait when the address has none left. */
  take(address: string): number {
    const wait = this.retryAfter(address);
    if (wait > 0) return wait;
    const now = this.clock.now();
    const e = this.failures.get(address);
    if (e && now - e.windowStart < this.windowMs) {
      e.count++;
      return 0;
    }
    if (this.failures.size >= MAX_TRACKED_ADDRESSES) this.prune(now);
    this.failures.set(address, { count: 1, windowStart: now });
    return 0;
  }

  /** Gives back a slot taken for an attempt that was never checked. */
  release(address: string): void {
    const e = this.failures.get(address);
    if (e && e.count > 0) e.count--;
  }

  succeed(address: string): void {
    this.failures.delete(address);
  }

  private prune(now: number): void {
    for (const [k, e] of this.failures) if (now - e.windowStart >= this.windowMs) this.failures.delete(k);
    // Still full: forget the oldest entry rather than refuse to track a new attacker.
    if (this.failures.size >= MAX_TRACKED_ADDRESSES) {
      const first = this.failures.keys().next().value;
      if (first !== undefined) this.failures.delete(first);
    }
  }
}

/** Reads and writes the password hash file; hashing goes through the shared hasher. */
class PasswordStore {
  private readonly file: string;

  constructor(
    dataDir: string,
    private readonly hasher: PasswordHashing,
  ) {
    this.file = join(dataDir, 'ui-auth.json');
  }

  private read(): PasswordFile | undefined {
    if (!existsSync(this.file)) return undefined;
    const parsed = JSON.parse(readFileSync(this.file, 'utf8')) as PasswordFile;
    return parsed?.version === 1 && parsed.password?.algo === 'scrypt' ? parsed : undefined;
  }

  isSet(): boolean {
    return this.read() !== undefined;
  }

  /** Checks a password; 'busy' when every hasher is taken (nothing was checked). */
  async verify(password: string): Promise<boolean | 'busy'> {
    const f = this.read();
    if (!f) return false;
    const { N, r, p, salt, hash } = f.password;
    const pending = this.hasher.tryHash(password, Buffer.from(salt, 'base64'), { N, r, p, keyLen: SCRYPT.keyLen });
    if (!pending) return 'busy';
    const key = await pending;
    const want = Buffer.from(hash, 'base64');
    return key.length === want.length && timingSafeEqual(key, want);
  }

  /** Stores a new password; 'busy' when every hasher is taken (nothing was changed). */
  async set(password: string, now: number): Promise<'busy' | undefined> {
    const salt = randomBytes(16);
    const pending = this.hasher.tryHash(password, salt, SCRYPT);
    if (!pending) return 'busy';
    const key = await pending;
    const body: PasswordFile = {
      version: 1,
      password: {
        algo: 'scrypt',
        N: SCRYPT.N,
        r: SCRYPT.r,
        p: SCRYPT.p,
        salt: salt.toString('base64'),
        hash: key.toString('base64'),
        setAt: new Date(now).toISOString(),
      },
    };
    // Durable and atomic: a crash never leaves a half-written hash that locks users out, nor
    // brings back the old password after the admin changed it.
    writeFileDurable(this.file, JSON.stringify(body, null, 2) + '\n', 0o600);
    return undefined;
  }
}

const loginSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      token: { type: 'string', maxLength: 256 },
      password: { type: 'string', maxLength: MAX_PASSWORD },
    },
  },
} as const;

const passwordSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['password'],
    properties: {
      password: { type: 'string', minLength: MIN_PASSWORD, maxLength: MAX_PASSWORD },
      currentPassword: { type: 'string', maxLength: MAX_PASSWORD },
    },
  },
} as const;

/** Builds the UI's session auth: login/logout/session/password routes and the cookie authenticator. */
export function uiAuth(deps: UiAuthDeps): UiAuth {
  const { clock, token } = deps;
  const log = deps.log.child({ component: 'ui-auth' });
  const idleMs = deps.idleMs ?? 12 * 3600_000;
  const maxAgeMs = deps.maxAgeMs ?? 7 * 24 * 3600_000;
  const limiter = new LoginLimiter(clock, deps.maxFailures ?? 5, deps.windowMs ?? 60_000);
  const hasher: PasswordHashing = deps.hasher ?? new PasswordHasher(2);
  const passwords = new PasswordStore(deps.dataDir, hasher);
  const maxSessions = deps.maxSessions ?? 1000;
  /** Keyed by SHA-256 of the cookie value. */
  const sessions = new Map<string, Session>();
  /** The session each authenticated request used, for the routes below. */
  const requestSession = new WeakMap<FastifyRequest, { key: string; session: Session }>();

  const lookup = (request: FastifyRequest): { key: string; session: Session } | undefined => {
    const raw = readCookie(request.headers.cookie, SESSION_COOKIE);
    if (!raw || raw.length > 128) return undefined;
    const key = sha256(raw);
    const session = sessions.get(key);
    if (!session) return undefined;
    const now = clock.now();
    if (now - session.lastSeen > idleMs || now - session.createdAt > maxAgeMs) {
      sessions.delete(key);
      return undefined;
    }
    return { key, session };
  };

  const evictSessions = (now: number) => {
    for (const [k, s] of sessions) if (now - s.lastSeen > idleMs || now - s.createdAt > maxAgeMs) sessions.delete(k);
    while (sessions.size >= maxSessions) {
      let oldest: string | undefined;
      let seen = Infinity;
      for (const [k, s] of sessions) if (s.lastSeen < seen) [oldest, seen] = [k, s.lastSeen];
      if (oldest === undefined) break;
      sessions.delete(oldest);
    }
  };

  const cookie = (request: FastifyRequest, value: string, expire = false): string => {
    const parts = [`${SESSION_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict'];
    if (request.protocol === 'https') parts.push('Secure');
    // No Max-Age on login: a browser-session cookie; the server enforces idle and absolute expiry.
    if (expire) parts.push('Max-Age=0');
    return parts.join('; ');
  };

  const sessionView = (s: Session) => ({
    authenticated: true as const,
    method: s.method,
    csrfToken: s.csrfToken,
    idleTimeoutSeconds: Math.round(idleMs / 1000),
    expiresAt: new Date(Math.min(s.lastSeen + idleMs, s.createdAt + maxAgeMs)).toISOString(),
    passwordSet: passwords.isSet(),
  });

  const authenticator: RequestAuthenticator = (request) => {
    const found = lookup(request);
    if (!found) return false;
    if (!SAFE_METHODS.has(request.method)) {
      const presented = request.headers[CSRF_HEADER];
      if (typeof presented !== 'string' || !safeEqual(presented, found.session.csrfToken)) {
        throw new ApiError('CSRF', 403, `a state-changing request with the session cookie needs the ${CSRF_HEADER} header from /api/session`);
      }
    }
    found.session.lastSeen = clock.now();
    requestSession.set(request, found);
    return true;
  };

  const bearerOk = (request: FastifyRequest): boolean => {
    const header = request.headers.authorization;
    return !!header?.startsWith('Bearer ') && tokenMatches(header.slice(7).trim(), token);
  };

  /** Takes a login slot for the address, or throws 429 when it has none left this window. */
  const takeSlot = (address: string, reply: FastifyReply) => {
    const wait = limiter.take(address);
    if (wait > 0) {
      reply.header('Retry-After', String(Math.ceil(wait / 1000)));
      log.warn({ address }, 'login refused: too many failed attempts');
      throw new ApiError('TOO_MANY_ATTEMPTS', 429, 'too many failed logins from this address; try again later');
    }
  };

  const routes: RoutePlugin = (app: FastifyInstance) => {
    app.addHook('onClose', async () => {
      if (!deps.hasher) await hasher.close();
    });

    app.post('/api/login', { schema: loginSchema, config: { public: true } }, async (request, reply: FastifyReply) => {
      const body = request.body as { token?: string; password?: string };
      const address = request.ip;
      const hasToken = typeof body.token === 'string' && body.token !== '';
      const hasPassword = typeof body.password === 'string' && body.password !== '';
      if (!hasToken && !hasPassword) throw new ApiError('VALIDATION', 400, 'send { token } or { password }');
      // The slot is taken before anything is checked: thirty parallel guesses get five checks.
      takeSlot(address, reply);
      let method: LoginMethod | undefined;
      if (hasToken) {
        if (tokenMatches(body.token!.trim(), token)) method = 'token';
      } else {
        const ok = await passwords.verify(body.password!);
        if (ok === 'busy') {
          limiter.release(address);
          throw hasherBusy(reply);
        }
        if (ok) method = 'password';
      }
      if (!method) {
        log.warn({ address, with: body.token ? 'token' : 'password' }, 'login failed');
        throw new ApiError('LOGIN_FAILED', 401, 'wrong token or password');
      }
      limiter.succeed(address);
      const raw = randomBytes(32).toString('base64url');
      const now = clock.now();
      const session: Session = { method, csrfToken: randomBytes(32).toString('base64url'), createdAt: now, lastSeen: now };
      if (sessions.size >= maxSessions) evictSessions(now);
      sessions.set(sha256(raw), session);
      log.info({ address, method }, 'ui login');
      reply.header('Set-Cookie', cookie(request, raw));
      reply.header('Cache-Control', 'no-store');
      return sessionView(session);
    });

    app.post('/api/logout', async (request, reply) => {
      const found = requestSession.get(request);
      if (found) sessions.delete(found.key);
      reply.header('Set-Cookie', cookie(request, '', true));
      return reply.status(204).send();
    });

    app.get('/api/session', { config: { public: true } }, async (request, reply) => {
      reply.header('Cache-Control', 'no-store');
      const found = lookup(request);
      if (!found) return { authenticated: false, passwordSet: passwords.isSet() };
      return sessionView(found.session);
    });

    app.post('/api/password', { schema: passwordSchema }, async (request, reply) => {
      const body = request.body as { password: string; currentPassword?: string };
      const found = requestSession.get(request);
      // Only the admin token (bearer, or a session opened with it) may set a password without
      // knowing the current one: it is the root of trust and the way back from a lost password.
      const viaToken = bearerOk(request) || found?.session.method === 'token';
      if (passwords.isSet() && !viaToken) {
        // Proving the current password is a guess like a login: same slots, same hashers.
        takeSlot(request.ip, reply);
        const ok = body.currentPassword ? await passwords.verify(body.currentPassword) : false;
        if (ok === 'busy') {
          limiter.release(request.ip);
          throw hasherBusy(reply);
        }
        if (!ok) throw new ApiError('LOGIN_FAILED', 403, 'the current password is wrong');
        limiter.succeed(request.ip);
      }
      if ((await passwords.set(body.password, clock.now())) === 'busy') throw hasherBusy(reply);
      // Every other password session ends: whoever knew the old password is out.
      for (const [key, s] of sessions) if (s.method === 'password' && key !== found?.key) sessions.delete(key);
      log.info({ by: viaToken ? 'token' : 'password' }, 'ui password set');
      return reply.status(204).send();
    });
  };

  return { routes, authenticator };
}
