/**
 * Proves the e2e recipe against the peer stack: the test disk (built from Debian packages) boots
 * through dnsmasq + tgt in a lab namespace, twice, and each boot appends its line to the root
 * disk. This exercises everything the appliance e2e test relies on except the appliance itself,
 * so a failure here is in the lab or the disk, not in our servers.
 *
 * Skipped unless E2E_PEER=1 (two TCG boots cost about two minutes of CI time).
 */
import { describe, expect, it } from 'vitest';
import { buildTestDisk, BUILD_TOOLS } from './build-disk';
import { formatBoot, formatTimeline, labUnavailableReason, missingTools } from './lab';
import { bootWithPeer } from './peer-boot';
import { PEER_TOOLS } from './peer-stack';

const why = process.env.E2E_PEER !== '1' ? 'set E2E_PEER=1 to run the peer boot' : labUnavailableReason([...PEER_TOOLS, ...missingTools(BUILD_TOOLS)]);
const suite = why ? describe.skip : describe;

suite(`e2e boot through dnsmasq + tgt${why ? ` (skipped: ${why})` : ''}`, () => {
  it('boots the test disk twice over iSCSI, each boot appending one line to its root', async () => {
    const disk = buildTestDisk({ log: (m) => console.log(m) });
    const report = await bootWithPeer({ disk, boots: 2, timeoutMs: 240_000 });
    for (const b of report.boots) console.log(`${formatBoot(b)}\n    ${formatTimeline(b)}`);

    const [first, second] = report.boots;
    for (const b of report.boots) {
      const stages = b.markers.filter((m) => m.kind === 'STAGE').map((m) => m.text.split(' ')[0]);
      expect(stages, b.serialLog).toEqual(
        expect.arrayContaining(['initramfs', 'modules-loaded', 'nic-up', 'dhcp-ok', 'iscsi-login-ok', 'disk-ready', 'root-mounted', 'wrote-line']),
      );
      expect(b.rootMountedMs, b.serialLog).toBeGreaterThan(0);
      // iscsistart logged in with the name iPXE took from DHCP option 203 (tgt admits no other).
      expect(b.markers.find((m) => m.kind === 'IBFT')?.text).toContain('initiator=iqn.2026-11.local.netboot:initiator:peer-client1');
    }
    expect(first!.wroteLine).toBe(1);
    expect(second!.wroteLine).toBe(2);
    expect(report.bootLog).toHaveLength(2);
    expect(report.bootLog[0]).toMatch(/^boot 1 mac=52:54:00:e2:01:00 /);
    expect(report.bootLog[1]).toMatch(/^boot 2 mac=52:54:00:e2:01:00 /);
  }, 600_000);
});
