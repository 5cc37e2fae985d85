import type { FastifyInstance } from 'fastify';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The UI page, injected by appliance/build.mjs (`define: { __UI_HTML__: JSON.stringify(html) }`). */
declare const __UI_HTML__: string | undefined;

/**
 * The built UI page: the one embedded in the bundle, else ui/generated/index.html from the
 * source tree (tests and `tsx` runs after `node ui/build.mjs`), else undefined.
 */
export function embeddedUiHtml(root = join(__dirname, '../../..')): string | undefined {
  if (typeof __UI_HTML__ === 'string' && __UI_HTML__) return __UI_HTML__;
  const file = join(root, 'ui/generated/index.html');
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * The Content-Security-Policy for a self-contained page: its inline <script> and <style>
 * elements are allowed by their SHA-256 (CSP3 §8.3 hash-source), nothing else runs, and the
 * page may only talk to its own origin. Styles set from script through the CSSOM are not
 * governed by style-src, so the page needs no 'unsafe-inline'.
 */
export function uiContentSecurityPolicy(html: string): string {
  const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => hash(m[1]));
  const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => hash(m[1]));
  return [
    "default-src 'none'",
    `script-src ${scripts.join(' ') || "'none'"}`,
    `style-src ${styles.join(' ') || "'none'"}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

const FALLBACK = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>netboot</title></head>
<body><p>The web UI was not built into this copy. Build it with <code>node ui/build.mjs</code> (or <code>make build</code>);
the JSON API under <code>/api</code> works without it.</p></body></html>`;

export interface UiRouteOptions {
  /** The page; defaults to embeddedUiHtml(). */
  html?: string;
}

/**
 * GET / (and /index.html): the single-page UI with a strict CSP, no framing, no caching (a new
 * appliance version must never run an old page against a new API).
 */
export function uiRoutes(opts: UiRouteOptions = {}) {
  const html = opts.html ?? embeddedUiHtml() ?? FALLBACK;
  const csp = uiContentSecurityPolicy(html);
  const etag = `"${createHash('sha256').update(html).digest('hex').slice(0, 32)}"`;
  return async (app: FastifyInstance) => {
    const page = async (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
      reply
        .header('Content-Type', 'text/html; charset=utf-8')
        .header('Content-Security-Policy', csp)
        .header('X-Frame-Options', 'DENY')
        .header('X-Content-Type-Options', 'nosniff')
        .header('Referrer-Policy', 'no-referrer')
        .header('Cross-Origin-Opener-Policy', 'same-origin')
        .header('Cache-Control', 'no-cache')
        .header('ETag', etag);
      if (request.headers['if-none-match'] === etag) return reply.status(304).send();
      return reply.send(html);
    };
    // The shell is public (it holds no data; the login page is in it) but still Host-checked.
    app.get('/', { config: { public: true } }, page);
    app.get('/index.html', { config: { public: true } }, page);
  };
}
