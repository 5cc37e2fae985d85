/**
 * Issue #15, end to end on ARM64: a UEFI ARM64 machine (qemu-system-aarch64 -M virt, TCG, AAVMF
 * from Debian's qemu-efi-aarch64, the firmware's own virtio-net PXE; Debian ships no ARM64 iPXE)
 * boots an arm64 disk through the appliance by the GRUB road, which it takes by itself (road
 * 'auto'): DHCP (arch 11) -> TFTP shimaa64.efi -> grubaa64.efi (Debian's signed network GRUB) ->
 * the arm64 kernel and initramfs the appliance reads from the disk's EFI system partition (GPT,
 * FAT32, extlinux.conf) -> login from the kernel command line -> ext4 root, one line written,
 * read back from the disk's export. One boot: TCG ARM64 is slow.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addClient, applianceMissingReason, exportedBootLog, importImage, startAppliance, type LabAppliance } from './appliance';
import { ARM64_BUILD_TOOLS, type Arm64Disk, buildArm64Disk } from './arm64-disk';
import { REPO_ROOT } from './build-disk';
import { FIRMWARE, formatBoot, formatTimeline, Lab, labMac, labUnavailableReason, missingTools } from './lab';

const why = labUnavailableReason(['qemu-system-aarch64', FIRMWARE.aavmfCode, FIRMWARE.aavmfVars, 'curl', ...missingTools(ARM64_BUILD_TOOLS)]);
const suite = why ? describe.skip : describe;
const LIMIT_MS = 420_000;
const FULL_BOOT = ['initramfs', 'modules-loaded', 'nic-up', 'dhcp-ok', 'iscsi-login-ok', 'disk-ready', 'root-mounted', 'wrote-line', 'poweroff'];
const runDir = join(REPO_ROOT, 'test-artifacts/e2e', `arm64-grub-${process.pid}-${Date.now()}`);

suite(`e2e: an ARM64 UEFI client by the GRUB road${why ? ` (skipped: ${why})` : ''}`, () => {
  let disk: Arm64Disk;
  let lab: Lab | undefined;
  let app: LabAppliance | undefined;

  beforeAll(async () => {
    const missing = applianceMissingReason();
    if (missing) throw new Error(missing);
    mkdirSync(runDir, { recursive: true });
    disk = buildArm64Disk({ log: (m) => console.log(m) });
    lab = new Lab({ id: `${process.pid}r`, workDir: runDir });
    lab.create();
    app = await startAppliance(lab, { mode: 'full', config: { boot: { signedDir: disk.signedDir } } });
    await importImage(app, 'arm64-golden', disk.path);
  }, 700_000);

  afterAll(async () => {
    await app?.stop();
    await lab?.destroy();
  });

  it(
    'boots to root, its write is on its disk; the timeline shows the GRUB road',
    async () => {
      const mac = labMac(0x501);
      const client = await addClient(app!, mac, 'arm64-golden', 'arm64-board');
      const boot = await lab!.startQemu({ name: 'arm64-grub-1', mac, firmware: 'arm64-uefi', timeoutMs: LIMIT_MS }).result();
      console.log(`${formatBoot(boot)}\n    ${formatTimeline(boot)}`);
      const failed = boot.markers.find((m) => m.kind === 'FAIL');
      const context = `${boot.name}${failed ? ` (${failed.text})` : ''}: see ${boot.serialLog}`;
      expect(
        boot.markers.filter((m) => m.kind === 'STAGE').map((m) => m.text.split(' ')[0]),
        context,
      ).toEqual(FULL_BOOT);
      expect(boot.wroteLine, context).toBe(1);
      expect(boot.markers.find((m) => m.kind === 'CMDLINE-LOGIN')?.text, context).toBe(`initiator=${client.initiatorName} target=${client.target} chap=yes`);
      const events = (await app!.call('GET', `/api/clients/${mac}/events`)).events as Array<{ stage: string; detail?: Record<string, unknown> }>;
      expect(events.find((e) => e.stage === 'dhcp-ack')?.detail).toMatchObject({ file: 'shimaa64.efi' });
      expect(events.find((e) => e.stage === 'grub-config')?.detail).toMatchObject({
        kernel: '/vmlinuz',
        initrd: '/initrd.gz',
        from: 'partition 1/extlinux/extlinux.conf',
      });
      const lines = await exportedBootLog(app!, mac, disk, join(runDir, 'export.img'));
      expect(lines).toHaveLength(1);
      expect(lines![0]).toContain(`mac=${mac}`);
      console.log(`ARM64-GRUB-ROAD root-mounted ${((boot.rootMountedMs ?? Number.NaN) / 1000).toFixed(1)} s (TCG, cortex-a57)`);
    },
    LIMIT_MS + 60_000,
  );
});
