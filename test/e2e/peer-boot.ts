/**
 * One complete peer boot: a fresh lab, dnsmasq + tgt serving a copy of the test disk, one qemu
 * client booting it to `root-mounted` and powering off. Used by bench/boot-peer.ts,
 * bench/boot-vs-peer.ts and test/e2e/peer-boot.test.ts.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { bootLogLines, copyDisk, REPO_ROOT, type TestDisk } from './build-disk';
import { Lab, labMac, type BootResult } from './lab';
import { startPeerStack } from './peer-stack';

/** Options for bootWithPeer. */
export interface PeerBootOptions {
  disk: TestDisk;
  firmware?: 'bios' | 'uefi';
  /** How many boots in a row of the same disk (each appends a line). */
  boots?: number;
  /** Per-boot time limit. */
  timeoutMs?: number;
  /** Unique id for the lab's names; defaults to `<pid>p`. */
  id?: string;
}

/** What bootWithPeer measured. */
export interface PeerBootReport {
  boots: BootResult[];
  /** /boot-log.txt read back from tgt's backing file after the last boot. */
  bootLog: string[];
  workDir: string;
}

/** Boots the test disk through dnsmasq + tgt `boots` times; always tears the lab down. */
export async function bootWithPeer(opts: PeerBootOptions): Promise<PeerBootReport> {
  const id = opts.id ?? `${process.pid}p`;
  const workDir = join(REPO_ROOT, 'test-artifacts/e2e', `peer-${id}-${Date.now()}`);
  mkdirSync(workDir, { recursive: true });
  const lab = new Lab({ id, workDir });
  const firmware = opts.firmware ?? 'bios';
  try {
    lab.create();
    const client = {
      mac: labMac(0x100),
      target: 'iqn.2026-11.local.netboot:peer-client1',
      initiatorName: 'iqn.2026-11.local.netboot:initiator:peer-client1',
      lunFile: copyDisk(opts.disk, join(workDir, 'client1.img')),
    };
    const stack = await startPeerStack(lab, [client]);
    const boots: BootResult[] = [];
    try {
      for (let i = 0; i < (opts.boots ?? 1); i++) {
        const q = lab.startQemu({ name: `peer-${firmware}-${i + 1}`, mac: client.mac, firmware, timeoutMs: opts.timeoutMs });
        boots.push(await q.result());
      }
    } finally {
      await stack.stop();
    }
    return { boots, bootLog: bootLogLines(client.lunFile, opts.disk), workDir };
  } finally {
    await lab.destroy();
  }
}
