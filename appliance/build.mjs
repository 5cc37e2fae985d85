// Bundles the appliance (and the web UI) into dist/appliance.cjs, and puts better-sqlite3's
// native addon beside it so dist/ alone runs the appliance.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { buildUi } from '../ui/build.mjs';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const require = createRequire(import.meta.url);
const out = join(root, 'dist');
mkdirSync(out, { recursive: true });

// The web UI: one self-contained HTML page, embedded in the bundle as a string.
const { html: uiHtml } = await buildUi({ write: true });

await build({
  entryPoints: [join(root, 'appliance/main/main.ts')],
  outfile: join(out, 'appliance.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minifySyntax: true,
  // Whitespace and comments out (names stay, so stack traces still name the function): V8 keeps
  // the whole script source on its heap, and one character beyond Latin-1 in a comment (a §, an
  // em dash) makes it a two-byte string. Unminified, the 4.0 MB bundle held 7.8 MiB of heap;
  // minified it is ~3 MB of one-byte text (issue #16, bench/appliance-memory.ts). The source map
  // beside it (not shipped in the firmware) turns a position back into a source line.
  minifyWhitespace: true,
  sourcemap: 'external',
  legalComments: 'none',
  banner: { js: '#!/usr/bin/env node' },
  define: { __BUNDLE__: 'true', __VERSION__: JSON.stringify(pkg.version), __UI_HTML__: JSON.stringify(uiHtml) },
  loader: { '.html': 'text', '.css': 'text', '.svg': 'text' },
  logLevel: 'warning',
});

// better-sqlite3 13 is a Node-API addon and ships one build per platform in its package
// (prebuilds/<platform>-<arch>.node, checked by package-lock's integrity); a build from source
// (build/Release, `npx node-gyp rebuild` in its folder) wins when there is one, as in the package.
const bsq = dirname(require.resolve('better-sqlite3/package.json'));
const built = join(bsq, 'build/Release/better_sqlite3.node');
const addon = existsSync(built) ? built : join(bsq, 'prebuilds', `${process.platform}-${process.arch}.node`);
copyFileSync(addon, join(out, 'better_sqlite3.node'));
// The RBD backend's librbd addon, when it was built (image-store/rbd/addon/build.sh): optional,
// only `store.backend: "rbd"` loads it.
const rbdAddon = join(root, 'image-store/rbd/addon/build/Release/rbd_io.node');
if (existsSync(rbdAddon)) copyFileSync(rbdAddon, join(out, 'rbd_io.node'));
// The router-solicitation helper (appliance/ra/ra-responder.c): Node has no raw ICMPv6 socket.
// Built with the host's C compiler (CC, default cc); os-overlay/build/firmware.sh cross-builds it.
const cc = process.env.CC || 'cc';
const raHelper = spawnSync(cc, ['-O2', '-Wall', '-Wextra', '-Werror', '-o', join(out, 'ra-responder'), join(root, 'appliance/ra/ra-responder.c')], {
  stdio: 'inherit',
});
if (raHelper.status !== 0) {
  console.error(`could not build ra-responder with ${cc}: the appliance will not answer router solicitations (ra.enabled)`);
  process.exitCode = 1;
}
console.log(
  `built ${join(out, 'appliance.cjs')} (version ${pkg.version}) with better_sqlite3.node, ra-responder${existsSync(rbdAddon) ? ' and rbd_io.node' : ''} beside it`,
);
