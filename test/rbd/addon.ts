/** The librbd addon for tests and benches; no vitest here, so benches (plain tsx) can import it. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { addonPath } from '../../image-store/rbd/native';

/** Builds the librbd addon when it is not built yet (about 1 s; needs librbd-dev). */
export function ensureAddon(): void {
  if (addonPath()) return;
  execFileSync('bash', [path.resolve(__dirname, '../../image-store/rbd/addon/build.sh')], { stdio: 'inherit' });
}

/** True when librbd's headers are there to build the addon. */
export function haveLibrbdDev(): boolean {
  return fs.existsSync('/usr/include/rbd/librbd.h');
}
