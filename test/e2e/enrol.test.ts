/**
 * End to end, zero-touch enrolment (issue #14): in full DHCP mode boot.unknownClients defaults to
 * "wait", so an unknown qemu client gets iPXE and then a screen saying where to give it a disk,
 * and keeps asking. The test sees that screen on the serial console, finds the client in
 * GET /api/unknown-clients (architecture, vendor class, how far it got), assigns it an image with
 * POST /api/clients, and then, with nobody touching the VM, its next poll gets a fresh one-time
 * link (CHAP) from DHCP and it boots to its root file system. One boot each, BIOS and UEFI. The appliance is
 * started while its bridge has no carrier (no port yet), as a Pi on a switch still negotiating.
 *
 * Skips only when the lab cannot run here (no qemu, not root). A missing appliance bundle FAILS.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applianceMissingReason, importImage, startAppliance, type LabAppliance } from './appliance';
import { buildTestDisk, BUILD_TOOLS, REPO_ROOT, type TestDisk } from './build-disk';
import { formatBoot, formatTimeline, Lab, labMac, labUnavailableReason, missingTools } from './lab';

const why = labUnavailableReason(['curl', ...missingTools(BUILD_TOOLS)]);
const suite = why ? describe.skip : describe;
const BOOT_LIMIT_MS = 300_000;
const IMAGE = 'e2e-golden';
const FULL_BOOT = ['initramfs', 'modules-loaded', 'nic-up', 'dhcp-ok', 'iscsi-login-ok', 'disk-ready', 'root-mounted', 'wrote-line', 'poweroff'];
const WAIT_SCREEN = 'waits for a disk';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let disk: TestDisk;
let startedWithoutCarrier = false;
const runDir = join(REPO_ROOT, 'test-artifacts/e2e', `enrol-${process.pid}-${Date.now()}`);

suite(`e2e zero-touch enrolment${why ? ` (skipped: ${why})` : ''}`, () => {
  let lab: Lab | undefined;
  let app: LabAppliance | undefined;

  beforeAll(async () => {
    const missing = applianceMissingReason();
    if (missing) throw new Error(missing);
    mkdirSync(runDir, { recursive: true });
    disk = buildTestDisk({ log: (m) => console.log(m) });
    lab = new Lab({ id: `${process.pid}w`, workDir: runDir });
    lab.create();
    // No boot.unknownClients in the config: 'auto' must mean 'wait' in full mode.
    // A bridge whose only port is a tap nobody opened has no carrier (a switch with nothing
    // plugged in yet; a bridge with no port at all keeps carrier here). The appliance starts and
    // says so; the client's tap brings carrier later and the boot below proves it then serves.
    lab.addTap();
    app = await startAppliance(lab, { mode: 'full' });
    let net: { state?: string } = {};
    for (let i = 0; i < 20 && net.state !== 'no-carrier'; i++) {
      net = (await app.call('GET', '/api/status')).network ?? {};
      if (net.state !== 'no-carrier') await sleep(250);
    }
    startedWithoutCarrier = net.state === 'no-carrier';
    console.log(`appliance running before the bridge has carrier: network.state=${net.state}`);
    await importImage(app, IMAGE, disk.path);
  }, 400_000);

  afterAll(async () => {
    await app?.stop();
    await lab?.destroy();
  });

  it.each([
    { firmware: 'bios' as const, mac: labMac(0x401), arch: 0 },
    { firmware: 'uefi' as const, mac: labMac(0x402), arch: 7 },
  ])(
    '$firmware: an unknown PC shows the wait screen, is listed, and boots by itself once the API gives it an image',
    async ({ firmware, mac, arch }) => {
      expect(startedWithoutCarrier, 'the appliance was up while its bridge had no carrier (issue #14)').toBe(true);
      const started = Date.now();
      const q = lab!.startQemu({ name: `enrol-${firmware}`, mac, firmware, timeoutMs: BOOT_LIMIT_MS });
      try {
        // 1. The wait screen, on the serial console (bounded).
        const deadline = Date.now() + 150_000;
        while (!q.tail(400).includes(WAIT_SCREEN)) {
          if (q.done) throw new Error(`qemu exited before the wait screen:\n${q.tail()}`);
          if (Date.now() > deadline) throw new Error(`no wait screen within 150 s:\n${q.tail()}`);
          await sleep(500);
        }
        const screenAt = Date.now() - started;
        const screen = q.tail(400);
        expect(screen).toContain(`open http://${lab!.serverAddress}:8080`);
        expect(screen).toContain(mac);

        // 2. Listed as waiting, with what its DHCP requests said and how far it got. Boot events
        // reach the API up to FLUSH_DELAY_MS after they happen (event-batch.ts), and the screen
        // can come first: poll for the script stage a little while (bounded).
        let waiting = await app!.call('GET', '/api/unknown-clients');
        for (let tries = 0; tries < 20; tries++) {
          const seen = (waiting.clients as Array<Record<string, unknown>>).find((c) => c.mac === mac);
          if (seen?.stage === 'script') break;
          await sleep(100);
          waiting = await app!.call('GET', '/api/unknown-clients');
        }
        expect(waiting).toMatchObject({ mode: 'wait', setting: 'auto', dhcpMode: 'full' });
        const entry = (waiting.clients as Array<Record<string, unknown>>).find((c) => c.mac === mac);
        expect(entry, JSON.stringify(waiting)).toMatchObject({ mac, arch, stage: 'script' });
        expect(String(entry!.vendorClass)).toMatch(/^PXEClient/);
        expect(String(entry!.address)).toMatch(/^198\.18\./);

        // 3. An admin gives it a disk; nobody touches the VM after this.
        await app!.call('POST', '/api/clients', { mac, image: IMAGE }, [201]);
        const assignedAt = Date.now() - started;
        const after = await app!.call('GET', '/api/unknown-clients');
        expect((after.clients as Array<{ mac: string }>).map((c) => c.mac)).not.toContain(mac);

        // 4. It boots to root on its own, through a fresh one-time link with CHAP.
        const b = await q.result();
        console.log(
          `${formatBoot(b)}\n    ${formatTimeline(b)}\n    wait screen at ${(screenAt / 1000).toFixed(1)} s, image assigned at ${(assignedAt / 1000).toFixed(1)} s`,
        );
        const stages = b.markers.filter((m) => m.kind === 'STAGE').map((m) => m.text.split(' ')[0]!);
        const context = `${b.name}${b.deadEnd ? ` (${b.deadEnd})` : ''}: see ${b.serialLog}`;
        expect(stages, context).toEqual(FULL_BOOT);
        expect(b.timedOut, context).toBe(false);
        expect(b.wroteLine, context).toBe(1);
        const view = await app!.call('GET', `/api/clients/${mac}`);
        expect(view.chap, JSON.stringify(view)).toEqual({ user: view.initiatorName, mutual: false });
        const redeemed = app!
          .log()
          .split('\n')
          .filter((l) => l.includes('"one-time boot link redeemed"') && l.includes(`"mac":"${mac}"`));
        expect(redeemed.length, 'one-time boot link redeemed').toBeGreaterThan(0);
      } finally {
        await q.kill();
      }
    },
    BOOT_LIMIT_MS + 60_000,
  );
});
