/**
 * End to end on Ceph RBD (issue #19): the appliance with `store.backend: "rbd"` and a one-node
 * Ceph cluster (mon, mgr, memstore OSD) started inside the lab namespace, on its 127.0.0.1. The
 * test disk is imported as a golden image (an RBD image + protected snapshot), the client's disk
 * is a clone of it, and one BIOS client boots it over iSCSI (DHCP -> iPXE sanboot -> syslinux ->
 * kernel + initramfs -> iscsistart -> ext4 root, one line appended to /boot-log.txt). Then the
 * export of the client's disk holds that line, and the pool shows the disk as a clone whose
 * parent is the golden snapshot.
 *
 * Skips when the lab (qemu, root) or Ceph is not available here; a broken appliance fails.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addClient, applianceMissingReason, exportedBootLog, importImage, startAppliance, type LabAppliance } from './appliance';
import { buildTestDisk, BUILD_TOOLS, REPO_ROOT, type TestDisk } from './build-disk';
import { FIRMWARE, formatBoot, formatTimeline, Lab, labMac, labUnavailableReason, missingTools } from './lab';
import { haveCeph, startCluster, type TestCluster } from '../rbd/cluster';
import { ensureAddon, haveLibrbdDev } from '../rbd/helpers';

const why =
  labUnavailableReason([FIRMWARE.efiRom, 'curl', 'dnsmasq', ...missingTools(BUILD_TOOLS)]) ??
  (haveCeph() && haveLibrbdDev() ? undefined : 'Ceph or librbd-dev is not installed');
const suite = why ? describe.skip : describe;
const FULL_BOOT = ['initramfs', 'modules-loaded', 'nic-up', 'dhcp-ok', 'iscsi-login-ok', 'disk-ready', 'root-mounted', 'wrote-line', 'poweroff'];
const runDir = join(REPO_ROOT, 'test-artifacts/e2e', `rbd-boot-${process.pid}-${Date.now()}`);

suite(`e2e boot from an RBD-backed client disk${why ? ` (skipped: ${why})` : ''}`, () => {
  let disk: TestDisk;
  let lab: Lab | undefined;
  let cluster: TestCluster | undefined;
  let app: LabAppliance | undefined;

  beforeAll(async () => {
    const missing = applianceMissingReason();
    if (missing) throw new Error(missing);
    ensureAddon();
    mkdirSync(runDir, { recursive: true });
    disk = buildTestDisk({ log: (m) => console.log(m) });
    lab = new Lab({ id: `${process.pid}r`, workDir: runDir });
    lab.create();
    cluster = await startCluster(join(runDir, 'ceph'), { netns: lab.ns, memoryMiB: 512, maxSeconds: 900 });
    console.log(`RBD-CLUSTER-START ${cluster.startSeconds.toFixed(1)} s (in the lab namespace)`);
    app = await startAppliance(lab, {
      mode: 'full',
      config: { store: { backend: 'rbd', rbd: { pool: cluster.pool, conf: cluster.conf, user: cluster.id, keyring: cluster.keyring, prefix: 'e2e-' } } },
    });
  }, 300_000);

  afterAll(async () => {
    await app?.stop();
    await cluster?.stop();
    await lab?.destroy();
  }, 60_000);

  it('boots a BIOS client from a clone of the golden RBD image; the line it wrote is in the export', async () => {
    await importImage(app!, 'e2e-golden', disk.path);
    const mac = labMac(0x401);
    const client = await addClient(app!, mac, 'e2e-golden', 'rbd-client');

    const boot = await lab!.startQemu({ name: 'rbd-bios-1', mac, firmware: 'bios', timeoutMs: 240_000 }).result();
    console.log(`${formatBoot(boot)}\n    ${formatTimeline(boot)}`);
    const context = `${boot.name}${boot.deadEnd ? ` (${boot.deadEnd})` : ''}: see ${boot.serialLog}`;
    expect(
      boot.markers.filter((m) => m.kind === 'STAGE').map((m) => m.text.split(' ')[0]),
      context,
    ).toEqual(FULL_BOOT);
    expect(boot.wroteLine, context).toBe(1);
    expect(boot.markers.find((m) => m.kind === 'IBFT')?.text ?? '', context).toContain(client.target);

    // The clone behind a new disk is queued (its first I/O waits for it), so the pool is read after the boot.
    const listing = JSON.parse(await cluster!.run('rbd', ['-p', cluster!.pool, 'ls', '-l', '--format', 'json'])) as {
      image: string;
      snapshot?: string;
      protected?: string;
      parent?: { image: string; snapshot: string };
    }[];
    const golden = listing.find((e) => e.snapshot === 'golden');
    expect(golden?.protected, JSON.stringify(listing)).toBe('true');
    const clone = listing.find((e) => e.parent?.image === golden!.image && e.parent.snapshot === 'golden');
    expect(clone, `the client disk is a clone of ${golden!.image}@golden: ${JSON.stringify(listing)}`).toBeDefined();

    // The powered-off client's session lingers until the target drops it; the export is read-only, so it may run meanwhile.
    const lines = await exportedBootLog(app!, mac, disk, join(runDir, 'rbd-export.img'));
    expect(lines, 'export route answered').toBeDefined();
    expect(lines!.length).toBe(1);
  }, 360_000);
});
