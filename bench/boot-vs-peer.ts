/**
 * The boot benchmark: the same test disk booted by the same qemu client (TCG, e1000 + iPXE ROM)
 * through the appliance (full DHCP + TFTP + iPXE + its iSCSI target and image store) and through
 * the peer stack (dnsmasq + tgt), alternating round by round in one run, printing
 * boot-to-root-mounted times and their ratio (goal: appliance/peer <= 1.0x; issue #17: <= 0.6x
 * with the router-solicitation answers on, the default). `--ra-off` adds a third stack each
 * round: the appliance with `ra.enabled: false`, so iPXE waits for IPv6 as it does with the peer.
 *   sudo npx tsx bench/boot-vs-peer.ts [--boots N] [--uefi] [--ra-off]
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
const raOff = argv.includes('--ra-off');

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
  const missing = applianceMissingReason();
  const appliance: BootResult[] = [];
  const peer: BootResult[] = [];
  const applianceRaOff: BootResult[] = [];
  const notes = { appliance: missing ? `not run: ${missing}` : '', peer: '', raOff: '' };

  // Alternate the two stacks round by round, so load from anything else on the machine drifts
  // over both alike; each round is a fresh lab with one boot of a fresh copy of the disk.
  for (let round = 1; round <= boots; round++) {
    if (!missing) {
      try {
        const r = await bootWithAppliance({ disk, firmware, boots: 1, id: `${process.pid}a${round}` });
        appliance.push(...r.boots);
        notes.appliance = r.bootLog ? `export: ${r.bootLog.length} line(s) in boot-log.txt` : 'export unavailable';
      } catch (err) {
        notes.appliance = `failed: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    if (!missing && raOff) {
      try {
        const r = await bootWithAppliance({ disk, firmware, boots: 1, id: `${process.pid}o${round}`, config: { ra: { enabled: false } } });
        applianceRaOff.push(...r.boots);
        notes.raOff = 'ra.enabled false';
      } catch (err) {
        notes.raOff = `failed: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    const p = await bootWithPeer({ disk, firmware, boots: 1, id: `${process.pid}p${round}` });
    peer.push(...p.boots);
    notes.peer = `tgt file: ${p.bootLog.length} line(s) in boot-log.txt`;
  }

  for (const b of [...appliance, ...applianceRaOff, ...peer]) console.log(`${formatBoot(b)}\n    ${formatTimeline(b)}`);
  console.log(`\n${firmware.toUpperCase()} boot to root-mounted, median of ${boots} (TCG, 2 shared cores):`);
  // Segments: firmware DHCP + iPXE until sanboot; syslinux reading vmlinuz + initrd through
  // iPXE's SAN disk and the kernel starting; the initramfs's DHCP, iscsistart login and mount.
  console.log(
    `${'stack'.padEnd(14)} ${'root s'.padStart(7)} ${'->sanboot'.padStart(10)} ${'->initramfs'.padStart(12)} ${'->root'.padStart(7)} ${'ok'.padStart(5)}  note`,
  );
  const rows: Array<[string, BootResult[], string]> = [
    ['appliance', appliance, notes.appliance],
    ...(raOff ? [['appliance -ra', applianceRaOff, notes.raOff] as [string, BootResult[], string]] : []),
    ['dnsmasq+tgt', peer, notes.peer],
  ];
  const at = (b: BootResult, name: string) => b.markers.find((m) => m.text.split(' ')[0] === name)?.atMs;
  const seg = (bs: BootResult[], from: string | null, to: string) => {
    const xs = bs.flatMap((b) => {
      const a = from ? at(b, from) : 0;
      const z = at(b, to);
      return a === undefined || z === undefined ? [] : [z - a];
    });
    return xs.length ? (median(xs) / 1000).toFixed(1) : '-';
  };
  for (const [who, bs, note] of rows) {
    const t = rootTimes(bs);
    console.log(
      `${who.padEnd(14)} ${(t.length ? (median(t) / 1000).toFixed(1) : '-').padStart(7)} ${seg(bs, null, 'sanboot').padStart(10)} ` +
        `${seg(bs, 'sanboot', 'initramfs').padStart(12)} ${seg(bs, 'initramfs', 'root-mounted').padStart(7)} ${`${t.length}/${bs.length}`.padStart(5)}  ${note}`,
    );
  }
  const a = rootTimes(appliance);
  const p = rootTimes(peer);
  if (a.length && p.length) {
    console.log(`ratio appliance/peer: ${(median(a) / median(p)).toFixed(2)}x (goal <= 0.6x with ra on, issue #17)`);
    const o = rootTimes(applianceRaOff);
    if (o.length) console.log(`ratio appliance ra off/peer: ${(median(o) / median(p)).toFixed(2)}x; ra on/off: ${(median(a) / median(o)).toFixed(2)}x`);
  } else {
    console.log('ratio appliance/peer: n/a (one side did not reach root-mounted)');
  }
  return a.length === boots && p.length === boots ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
