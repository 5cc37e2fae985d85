/**
 * Issue #17 on a real systemd distribution: the cached Debian 12 golden image
 * (test/e2e/debian-image.ts) boots to multi-user.target through the appliance with its
 * router-solicitation answers on and off, alternating round by round (one appliance data
 * directory, restarted with `ra.enabled` flipped), one qemu at a time. Prints each boot's
 * timeline and the medians.
 *   sudo npx tsx bench/debian-ra.ts [--rounds N]
 */
import { join } from 'node:path';
import { addClient, applianceMissingReason, importImage, startAppliance, type LabAppliance } from '../test/e2e/appliance';
import { REPO_ROOT } from '../test/e2e/build-disk';
import { buildDebianImage, DEBIAN_BUILD_TOOLS } from '../test/e2e/debian-image';
import { formatTimeline, Lab, labMac, labUnavailableReason } from '../test/e2e/lab';

const argv = process.argv.slice(2);
const rounds = Number(argv[argv.indexOf('--rounds') + 1] || 1) || 1;
const LIMIT_MS = 420_000;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};

async function main(): Promise<number> {
  const why = labUnavailableReason(['curl', ...DEBIAN_BUILD_TOOLS]) ?? applianceMissingReason();
  if (why) {
    console.error(`debian-ra: cannot run: ${why}`);
    return 2;
  }
  const image = buildDebianImage({ log: (m) => console.log(m) });
  const lab = new Lab({ id: `${process.pid}r`, workDir: join(REPO_ROOT, 'test-artifacts/e2e', `debian-ra-${process.pid}-${Date.now()}`) });
  const times: Record<'on' | 'off', number[]> = { on: [], off: [] };
  const lines: string[] = [];
  let app: LabAppliance | undefined;
  try {
    lab.create();
    const mac = labMac(0x417);
    for (let round = 1; round <= rounds; round++) {
      for (const ra of ['on', 'off'] as const) {
        app = await startAppliance(lab, { mode: 'full', config: { ra: { enabled: ra === 'on' } } });
        if (round === 1 && ra === 'on') {
          await importImage(app, 'debian12', image.path, 300_000);
          await addClient(app, mac, 'debian12', 'debian-ra');
        }
        const q = lab.startQemu({ name: `debian-ra-${ra}-${round}`, mac, firmware: 'bios', memoryMiB: 1024, timeoutMs: LIMIT_MS });
        const mu = await q.waitForStage('multi-user', LIMIT_MS);
        const result = await q.result();
        times[ra].push(mu.atMs);
        lines.push(`ra ${ra.padEnd(3)} round ${round}: multi-user.target ${(mu.atMs / 1000).toFixed(1)} s after qemu start\n    ${formatTimeline(result)}`);
        console.log(lines[lines.length - 1]);
        await app.stop();
        app = undefined;
      }
    }
  } finally {
    await app?.stop();
    await lab.destroy();
  }
  console.log(`\nDebian 12 (systemd) BIOS boot to multi-user.target, median of ${rounds} (TCG, 2 shared cores):`);
  console.log(`  ra on : ${(median(times.on) / 1000).toFixed(1)} s`);
  console.log(`  ra off: ${(median(times.off) / 1000).toFixed(1)} s`);
  console.log(`  on/off: ${(median(times.on) / median(times.off)).toFixed(2)}x`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
