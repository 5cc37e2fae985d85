/**
 * What the product runs with, read from the shipped systemd unit
 * (os-overlay/rootfs/etc/systemd/system/netboot-appliance.service): its Environment= pairs and
 * the node flags of its ExecStart. The benches start our target or the appliance with these, so a
 * memory knob changed in the unit is the knob measured.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const UNIT = join(__dirname, '..', 'os-overlay', 'rootfs', 'etc', 'systemd', 'system', 'netboot-appliance.service');

/** The unit's Environment= pairs and the node flags of its ExecStart (what the product runs with). */
export function unitRuntime(): { env: Record<string, string>; flags: string[] } {
  const env: Record<string, string> = {};
  let flags: string[] = [];
  for (const raw of readFileSync(UNIT, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line.startsWith('Environment=')) {
      // Space-separated assignments, each possibly in double quotes (systemd.exec(5)).
      for (const m of line.slice('Environment='.length).matchAll(/"([^"]*)"|(\S+)/g)) {
        const pair = m[1] ?? m[2]!;
        const k = pair.indexOf('=');
        if (k > 0) env[pair.slice(0, k)] = pair.slice(k + 1);
      }
    } else if (line.startsWith('ExecStart=')) {
      const words = line.slice('ExecStart='.length).split(/\s+/);
      const bundle = words.findIndex((w) => w.endsWith('.cjs'));
      if (bundle > 0) flags = words.slice(1, bundle);
    }
  }
  return { env, flags };
}

/** "A=1 B=2" (a bench's knob switch) as an environment. */
export function parseEnv(s: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (s ?? '').split(/\s+/).filter(Boolean)) {
    const k = pair.indexOf('=');
    if (k > 0) out[pair.slice(0, k)] = pair.slice(k + 1);
  }
  return out;
}
