/**
 * Issue #15, end to end: a UEFI x64 PC with Secure Boot ON (OVMF's SMM build with Microsoft's
 * keys enrolled, the firmware's own virtio-net PXE) boots its own disk through the appliance by
 * the GRUB road: DHCP (arch 7) -> TFTP shimx64.efi (Microsoft-signed) -> grubx64.efi (Debian's
 * signed network GRUB) -> grub/grub.cfg -> grub/clients/<mac>.cfg -> the kernel and initramfs
 * the appliance reads from the client's disk (its FAT boot partition, per its syslinux.cfg) ->
 * the initramfs logs in from the kernel command line (no iBFT on this road) -> ext4 root.
 * Secure Boot is confirmed from inside (the SecureBoot EFI variable). Snapshot and restore work
 * as on the iPXE road; the same disk's iPXE-road UEFI boot is timed beside it.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addClient, applianceMissingReason, exportedBootLog, importImage, retryWhileInUse, startAppliance, type LabAppliance } from './appliance';
import { BUILD_TOOLS, buildTestDisk, REPO_ROOT, type TestDisk } from './build-disk';
import { type BootResult, FIRMWARE, formatBoot, formatTimeline, Lab, labMac, labUnavailableReason, missingTools, run } from './lab';

const SIGNED = ['/usr/lib/shim/shimx64.efi.signed', '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed'];
const why = labUnavailableReason([FIRMWARE.ovmfSecureCode, FIRMWARE.ovmfSecureVars, FIRMWARE.efiRom, ...SIGNED, 'curl', 'tftp', ...missingTools(BUILD_TOOLS)]);
const suite = why ? describe.skip : describe;
const LIMIT_MS = 240_000;
const IMAGE = 'e2e-golden';
const FULL_BOOT = ['initramfs', 'modules-loaded', 'nic-up', 'dhcp-ok', 'iscsi-login-ok', 'disk-ready', 'root-mounted', 'wrote-line', 'poweroff'];

const stagesOf = (b: BootResult) => b.markers.filter((m) => m.kind === 'STAGE').map((m) => m.text.split(' ')[0]!);
const marker = (b: BootResult, kind: string) => b.markers.find((m) => m.kind === kind)?.text ?? '';
const at = (b: BootResult, name: string) => b.markers.find((m) => m.text === name || m.text.startsWith(`${name} `))?.atMs;

let disk: TestDisk;
const runDir = join(REPO_ROOT, 'test-artifacts/e2e', `grub-road-${process.pid}-${Date.now()}`);

suite(`e2e: the GRUB road under Secure Boot${why ? ` (skipped: ${why})` : ''}`, () => {
  let lab: Lab | undefined;
  let app: LabAppliance | undefined;

  beforeAll(async () => {
    const missing = applianceMissingReason();
    if (missing) throw new Error(missing);
    mkdirSync(runDir, { recursive: true });
    disk = buildTestDisk({ log: (m) => console.log(m) });
    lab = new Lab({ id: `${process.pid}g`, workDir: runDir });
    lab.create();
    app = await startAppliance(lab, { mode: 'full' });
    await importImage(app, IMAGE, disk.path);
  }, 400_000);

  afterAll(async () => {
    await app?.stop();
    await lab?.destroy();
  });

  it(
    "boots with Secure Boot on through shim + GRUB + the disk's own kernel; restore works; timed beside the iPXE road",
    async () => {
      const mac = labMac(0x401);
      const client = await addClient(app!, mac, IMAGE, 'secure-boot-pc');
      await app!.call('PATCH', `/api/clients/${mac}`, { road: 'grub' });
      expect((await app!.call('GET', `/api/clients/${mac}`)).road).toBe('grub');
      const snap = await app!.call('POST', `/api/clients/${mac}/snapshots`, { name: 'before-boot' }, [200, 201]);

      const boot1 = await lab!.startQemu({ name: 'grub-sb-1', mac, firmware: 'uefi-secureboot', timeoutMs: LIMIT_MS }).result();
      console.log(`${formatBoot(boot1)}\n    ${formatTimeline(boot1)}`);
      const context = `${boot1.name}: ${marker(boot1, 'FAIL')} see ${boot1.serialLog}`;
      expect(stagesOf(boot1), context).toEqual(FULL_BOOT);
      expect(boot1.wroteLine, context).toBe(1);
      // Secure Boot was on: the firmware's variable says 1, so shim, GRUB and the kernel were verified.
      expect(marker(boot1, 'SECUREBOOT'), context).toMatch(/^efivar=1 /);
      // No iBFT on this road: the initramfs logged in from the command line GRUB gave the kernel, with CHAP.
      expect(marker(boot1, 'CMDLINE-LOGIN'), context).toBe(`initiator=${client.initiatorName} target=${client.target} chap=yes`);
      expect(at(boot1, 'grub-start'), context).toBeDefined();

      const events = (await app!.call('GET', `/api/clients/${mac}/events`)).events as Array<{ stage: string; detail?: Record<string, unknown> }>;
      const stages = events.map((e) => e.stage);
      expect(stages).toEqual(expect.arrayContaining(['dhcp-ack', 'grub-config', 'kernel-fetched', 'iscsi-login']));
      expect(events.find((e) => e.stage === 'grub-config')?.detail).toMatchObject({ kernel: '/vmlinuz', initrd: '/initrd.gz' });

      // The per-client config carries CHAP: another machine (here the lab's own address) is refused.
      const stolen = join(runDir, 'stolen.cfg');
      // (tftp-hpa's command line reads "a:b" as host:file, so the MAC is spelt with dashes; both spellings are served.)
      const out = run('ip', [
        'netns',
        'exec',
        lab!.ns,
        'sh',
        '-c',
        `cd ${runDir} && tftp 198.18.0.1 -c get grub/clients/${mac.replace(/:/g, '-')}.cfg stolen.cfg 2>&1; true`,
      ]);
      expect(out).toMatch(/Access violation|served only to/i);
      expect(() => run('grep', ['-q', 'iscsi_password', stolen])).toThrow();

      // Restore the snapshot taken before the boot: the line goes, the next boot writes line 1 again.
      const restored = await retryWhileInUse(() => app!.api('POST', `/api/clients/${mac}/snapshots/${snap.id}/restore`), 40_000, { app: app!, mac });
      expect(restored.reply.status, JSON.stringify(restored.reply.json)).toBe(200);
      const boot2 = await lab!.startQemu({ name: 'grub-sb-2', mac, firmware: 'uefi-secureboot', timeoutMs: LIMIT_MS }).result();
      console.log(`${formatBoot(boot2)}\n    ${formatTimeline(boot2)}`);
      expect(stagesOf(boot2), boot2.serialLog).toEqual(FULL_BOOT);
      expect(boot2.wroteLine, boot2.serialLog).toBe(1);
      const bootLog = await exportedBootLog(app!, mac, disk, join(runDir, 'export.img'));
      expect(bootLog, 'the export route answers').toBeDefined();
      expect(bootLog).toHaveLength(1);

      // The same disk by the iPXE road (UEFI, Secure Boot off: Debian's iPXE is not signed), side by side.
      const ipxeMac = labMac(0x402);
      await addClient(app!, ipxeMac, IMAGE, 'ipxe-pc');
      const ipxe = await lab!.startQemu({ name: 'ipxe-uefi-1', mac: ipxeMac, firmware: 'uefi', timeoutMs: LIMIT_MS }).result();
      console.log(`${formatBoot(ipxe)}\n    ${formatTimeline(ipxe)}`);
      expect(stagesOf(ipxe), ipxe.serialLog).toEqual(FULL_BOOT);
      const s = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
      console.log(
        `GRUB-ROAD root-mounted: grub road (Secure Boot on) ${s(boot1.rootMountedMs)} / ${s(boot2.rootMountedMs)}; ` +
          `iPXE road (UEFI, Secure Boot off) ${s(ipxe.rootMountedMs)}; same disk, same appliance, one run`,
      );
    },
    4 * LIMIT_MS,
  );
});
