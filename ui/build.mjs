// Bundles the web UI (ui/src) into ONE self-contained HTML page: the script and the stylesheet
// are inlined, nothing is fetched from anywhere (the appliance often has no Internet). The
// server allows the inline script and style by their SHA-256 in its CSP (appliance/http/routes/ui.ts).
//
//   node ui/build.mjs          writes ui/generated/index.html
//   import { buildUi } ...     returns { html } (appliance/build.mjs embeds it with `define`)
import { build } from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** A tiny network-boot icon (a screen over a network link) as a data: URL favicon. */
const ICON =
  "data:image/svg+xml," +
  encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="4" y="4" width="24" height="16" rx="3" fill="#2f6f5e"/><path d="M16 20v6M8 27h16" stroke="#2f6f5e" stroke-width="3" stroke-linecap="round"/></svg>',
  );

/**
 * Bundles and minifies ui/src/main.ts and ui/src/style.css. Returns the page; with `write` also stores
 * it as ui/generated/index.html (what the source-tree server and the tests read).
 * @param {{ write?: boolean, minify?: boolean }} [opts]
 * @returns {Promise<{ html: string, file?: string }>}
 */
export async function buildUi(opts = {}) {
  const minify = opts.minify ?? true;
  const result = await build({
    entryPoints: [join(here, 'src/main.ts'), join(here, 'src/style.css')],
    bundle: true,
    write: false,
    outdir: join(here, 'generated/.out'),
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify,
    legalComments: 'none',
    charset: 'utf8',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'))?.text ?? '';
  const css = result.outputFiles.find((f) => f.path.endsWith('.css'))?.text ?? '';
  if (!js) throw new Error('ui build produced no script');
  // Inline content must not close its own element early.
  if (/<\/script/i.test(js)) throw new Error('ui bundle contains "</script": cannot inline it safely');
  if (/<\/style/i.test(css)) throw new Error('ui stylesheet contains "</style": cannot inline it safely');
  const html =
    '<!doctype html><html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    '<meta name="color-scheme" content="light dark">' +
    '<title>netboot</title>' +
    `<link rel="icon" href="${ICON}">` +
    `<style>${css}</style></head>` +
    `<body><div id="app"></div><script>${js}</script></body></html>\n`;
  let file;
  if (opts.write) {
    file = join(here, 'generated/index.html');
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, html);
  }
  return { html, file };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { html, file } = await buildUi({ write: true });
  console.log(`built ${file} (${(html.length / 1024).toFixed(1)} KiB)`);
}
