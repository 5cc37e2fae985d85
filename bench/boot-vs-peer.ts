/**
 * The boot benchmark: the same test disk booted by the same qemu client (TCG, e1000 + iPXE ROM)
 * through the appliance (full DHCP + TFTP + iPXE + its iSCSI target and image store) and through
 * the peer stack (dnsmasq + tgt), one after the other in one run, printing boot-to-root-mounted
 * times and their ratio (goal: appliance/peer <= 1.0x).
 *   sudo npx tsx bench/boot-vs-peer.ts [--boots N] [--uefi]
 * Needs `make build` (dist/appliance.cjs) for the appliance half; without it, only the peer half
 * runs and the table says so.
 */
import { applianceMissingReason, bootWithAppliance } from '../test/e2e/appliance';
import { buildTestDisk } from '../test/e2e/build-disk';
import { formatBoot, formatTimeline, labUnavailableReason, type BootResult } from '../test/e2e/lab';
import { bootWithPeer } from '../test/e2e/peer-boot';
import { PEER_TOOLS } from '../test/e2e/peer-stack';

const argv = process.argv.slice(2);
const boots = Number(argv[argv.indexOf('--boots') + 1] || 1) || 1;
const firmware = argv.includes('--uefi') ? 'uefi' : 'bios';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};
const rootTimes = (bs: BootResult[]) => bs.flatMap((b) => (b.rootMountedMs === undefined ? [] : [b.rootMountedMs]));

async function main(): Promise<number> {
  const why = labUnavailableReason(PEER_TOOLS);
  if (why) {
    console.error(`boot-vs-peer: cannot run: ${why}`);
    return 2;
  }
  const disk = buildTestDisk({ log: (m) => console.log(m) });
  const rows: Array<{ who: string; boots: BootResult[]; note?: string }> = [];

  const missing = applianceMissingReason();
  if (missing) {
    rows.push({ who: 'appliance', boots: [], note: `not run: ${missing}` });
  } else {
    try {
      const r = await bootWithAppliance({ disk, firmware, boots });
      rows.push({ who: 'appliance', boots: r.boots, note: r.bootLog ? `${r.bootLog.length} line(s) in boot-log.txt` : 'export unavailable' });
    } catch (err) {
      rows.push({ who: 'appliance', boots: [], note: `failed: ${(err as Error).message.split('\n')[0]}` });
    }
  }
  const peer = await bootWithPeer({ disk, firmware, boots });
  rows.push({ who: 'dnsmasq+tgt', boots: peer.boots, note: `${peer.bootLog.length} line(s) in boot-log.txt` });

  for (const r of rows) for (const b of r.boots) console.log(`${formatBoot(b)}\n    ${formatTimeline(b)}`);
  console.log(`\n${firmware.toUpperCase()} boot to root-mounted, median of ${boots} (TCG, 2 shared cores):`);
  console.log(`${'stack'.padEnd(14)} ${'median s'.padStart(9)} ${'ok'.padStart(5)}  note`);
  for (const r of rows) {
    const t = rootTimes(r.boots);
    console.log(`${r.who.padEnd(14)} ${(t.length ? (median(t) / 1000).toFixed(1) : '-').padStart(9)} ${`${t.length}/${r.boots.length}`.padStart(5)}  ${r.note ?? ''}`);
  }
  const a = rootTimes(rows[0]!.boots);
  const p = rootTimes(rows[1]!.boots);
  if (a.length && p.length) {
    console.log(`ratio appliance/peer: ${(median(a) / median(p)).toFixed(2)}x (goal <= 1.0x)`);
  } else {
    console.log('ratio appliance/peer: n/a (one side did not reach root-mounted)');
  }
  return a.length === boots && p.length === boots ? 0 : 1;
}

main().then((code) => process.exit(code), (err) => {
  console.error(err);
  process.exit(1);
});
