/**
 * The peer half of the boot benchmark: the test disk booted through dnsmasq + tgt in a lab
 * namespace, timed from qemu start to `E2E-STAGE: root-mounted`.
 *   sudo npx tsx bench/boot-peer.ts [--boots N] [--uefi]
 */
import { buildTestDisk } from '../test/e2e/build-disk';
import { formatBoot, formatTimeline, labUnavailableReason } from '../test/e2e/lab';
import { bootWithPeer } from '../test/e2e/peer-boot';
import { PEER_TOOLS } from '../test/e2e/peer-stack';

const argv = process.argv.slice(2);
const boots = Number(argv[argv.indexOf('--boots') + 1] || 1) || 1;
const firmware = argv.includes('--uefi') ? 'uefi' : 'bios';

async function main(): Promise<number> {
  const why = labUnavailableReason(PEER_TOOLS);
  if (why) {
    console.error(`boot-peer: cannot run: ${why}`);
    return 2;
  }
  const disk = buildTestDisk({ log: (m) => console.log(m) });
  const report = await bootWithPeer({ disk, firmware, boots });
  for (const b of report.boots) console.log(`${formatBoot(b)}\n    ${formatTimeline(b)}`);
  console.log(`boot-log.txt on tgt's backing file:\n  ${report.bootLog.join('\n  ')}`);
  console.log(`logs: ${report.workDir}`);
  return report.boots.every((b) => b.rootMountedMs !== undefined) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
