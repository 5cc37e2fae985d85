import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../appliance/core/log';
import { buildHttpApp } from '../../appliance/http/app';
import { embeddedUiHtml, uiRoutes } from '../../appliance/http/routes/ui';
// @ts-expect-error the build script is plain JavaScript (ESM) without type declarations
import { buildUi } from '../../ui/build.mjs';

const sha = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;

describe('UI page', () => {
  it('bundles into one self-contained page and serves it with a hash-based CSP', async () => {
    const { html, file } = (await buildUi({ write: true })) as { html: string; file: string };
    expect(file).toMatch(/ui\/generated\/index\.html$/);
    // Self-contained: no external script, stylesheet or font.
    expect(html).not.toMatch(/<script[^>]+src=/);
    expect(html).not.toMatch(/<link[^>]+stylesheet/);
    // Only XML namespace names (preact's SVG/MathML support) may mention http URLs.
    expect(html.match(/https?:\/\/[^"'\s)]*/gi)?.filter((u) => !u.startsWith('http://www.w3.org/')) ?? []).toEqual([]);
    expect(html.length).toBeLessThan(200 * 1024);
    // The source tree's server reads what the build wrote.
    expect(embeddedUiHtml()).toBe(html);

    const app = await buildHttpApp({ log: silentLogger(), token: 'x'.repeat(64), routes: [uiRoutes({ html })] });
    const res = await app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe(html);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const csp = String(res.headers['content-security-policy']);
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1];
    const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1];
    expect(csp).toContain(`script-src ${sha(script)}`);
    expect(csp).toContain(`style-src ${sha(style)}`);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    // Revalidation with the ETag answers 304 without the body.
    const again = await app.inject({ method: 'GET', url: '/', headers: { 'if-none-match': String(res.headers.etag) } });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    await app.close();
  });
});
