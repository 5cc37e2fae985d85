/**
 * The peer stack the appliance is measured against: dnsmasq (full DHCP + TFTP of Debian's iPXE
 * binaries) and tgt serving each client's disk over iSCSI, both inside the lab namespace. This is
 * how one would set up diskless iSCSI boot today with stock tools; boot-vs-peer runs the same
 * disk through both and compares boot-to-root-mounted times.
 *
 * Also the stand-in for a home router in proxy-mode tests: an address-only dnsmasq on another
 * lab host (startAddressOnlyDhcp).
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, type Lab, type LabProcess } from './lab';

/** Peer tools; tests skip when absent. */
export const PEER_TOOLS = ['dnsmasq', 'tgtd', 'tgtadm', '/usr/lib/ipxe/undionly.kpxe'] as const;

/** One client the peer stack serves. */
export interface PeerClient {
  mac: string;
  /** iSCSI target name for this client's disk. */
  target: string;
  /** The only initiator name tgt lets in (sent as DHCP option 203; iPXE copies it into the iBFT). */
  initiatorName: string;
  /** Raw disk image tgt serves as LUN 1 (written by the client). */
  lunFile: string;
}

/** A running peer stack. */
export interface PeerStack {
  dnsmasq: LabProcess;
  tgtd: LabProcess;
  /** tgtd's control port (`tgtadm -C`). */
  controlPort: number;
  /** The RFC 4173 root path given to a client. */
  rootPath(client: PeerClient): string;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** tgt exposes LUN 0 as its controller and the first backing store as LUN 1 (test/e2e/README.md, "Lab facts"). */
export const TGT_LUN = 1;

/** Waits (bounded) until `check` stops throwing. */
async function until(what: string, timeoutMs: number, check: () => void, proc?: LabProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      throw new Error(`${proc.name} exited while waiting for ${what}; see ${proc.logFile}`);
    }
    try {
      check();
      return;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}: ${(last as Error)?.message ?? last}`);
}

/** Waits until something listens on UDP `port` inside the namespace `ns`. */
export async function waitForUdp(ns: string, port: number, proc: LabProcess, timeoutMs = 10_000): Promise<void> {
  await until(
    `udp/${port} in ${ns}`,
    timeoutMs,
    () => {
      const out = run('ip', ['netns', 'exec', ns, 'ss', '-Hlun', `sport = :${port}`]);
      if (!out.trim()) throw new Error('not listening yet');
    },
    proc,
  );
}

/**
 * Starts tgtd and dnsmasq in the lab namespace for `clients`. tgtd gets its own control port
 * (its control socket lives in the shared /var/run/tgtd, across namespaces) and listens only on
 * the lab's server address.
 */
export async function startPeerStack(lab: Lab, clients: PeerClient[], opts: { controlPort?: number } = {}): Promise<PeerStack> {
  const server = lab.serverAddress;
  const controlPort = opts.controlPort ?? 20000 + (process.pid % 20000);
  const tgtadm = (args: string[]) => run('tgtadm', ['-C', String(controlPort), '--lld', 'iscsi', ...args]);

  const tgtd = lab.startProcess('tgtd', 'tgtd', ['-f', '-C', String(controlPort), '--iscsi', `portal=${server}:3260`]);
  await until('tgtd control socket', 10_000, () => tgtadm(['--op', 'show', '--mode', 'target']), tgtd);
  clients.forEach((c, i) => {
    const tid = String(i + 1);
    tgtadm(['--op', 'new', '--mode', 'target', '--tid', tid, '-T', c.target]);
    tgtadm(['--op', 'new', '--mode', 'logicalunit', '--tid', tid, '--lun', String(TGT_LUN), '-b', c.lunFile]);
    // Name ACL only: with no address ACL bound tgt checks just the initiator name (an `-I ALL`
    // binding would let every name in).
    tgtadm(['--op', 'bind', '--mode', 'target', '--tid', tid, '-Q', c.initiatorName]);
  });

  const rootPath = (c: PeerClient) => `iscsi:${server}:::${TGT_LUN}:${c.target}`;
  const args = [
    '--keep-in-foreground',
    '--no-daemon',
    '--conf-file=/dev/null',
    '--port=0',
    '--log-facility=-',
    '--log-dhcp',
    `--pid-file=${join(lab.workDir, 'dnsmasq.pid')}`,
    `--interface=${lab.bridge}`,
    '--bind-interfaces',
    `--dhcp-range=${server.replace(/\.\d+$/, '.100')},${server.replace(/\.\d+$/, '.150')},255.255.255.0,10m`,
    `--dhcp-leasefile=${join(lab.workDir, 'dnsmasq.leases')}`,
    '--enable-tftp',
    '--tftp-root=/usr/lib/ipxe',
    // PXE ROMs get iPXE; iPXE (user class "iPXE") gets the root path instead, or it would
    // chainload itself forever.
    '--dhcp-userclass=set:ipxe,iPXE',
    '--dhcp-match=set:efi64,option:client-arch,7',
    '--dhcp-match=set:efi64,option:client-arch,9',
    '--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi',
    '--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe',
  ];
  clients.forEach((c, i) => {
    args.push(`--dhcp-host=${c.mac},set:c${i}`);
    args.push(`--dhcp-option=tag:c${i},tag:ipxe,option:root-path,${rootPath(c)}`);
    // Option 203: iPXE's initiator-iqn setting, which it also writes into the iBFT. No quotes:
    // no shell strips them here and dnsmasq would send them as part of the name.
    args.push(`--dhcp-option=tag:c${i},tag:ipxe,203,${c.initiatorName}`);
  });
  const dnsmasq = lab.startProcess('dnsmasq', 'dnsmasq', args);
  await waitForUdp(lab.ns, 67, dnsmasq);

  return {
    dnsmasq,
    tgtd,
    controlPort,
    rootPath,
    async stop() {
      await dnsmasq.stop();
      await tgtd.stop(500);
      for (const f of [`/var/run/tgtd/socket.${controlPort}`, `/var/run/tgtd/socket.${controlPort}.lock`]) {
        if (existsSync(f)) rmSync(f, { force: true });
      }
    },
  };
}

/**
 * An address-only DHCP server (what a home router runs) on a lab host namespace: leases from
 * .100-.150, no boot file, no root path. The appliance in proxy mode must supply the boot part.
 */
export async function startAddressOnlyDhcp(lab: Lab, hostNs: string, routerAddress: string): Promise<LabProcess> {
  const net = routerAddress.replace(/\.\d+$/, '');
  const dnsmasq = lab.startProcess(
    'router-dnsmasq',
    'dnsmasq',
    [
      '--keep-in-foreground',
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--log-facility=-',
      '--log-dhcp',
      `--pid-file=${join(lab.workDir, 'router-dnsmasq.pid')}`,
      '--interface=eth0',
      '--bind-interfaces',
      `--dhcp-range=${net}.100,${net}.150,255.255.255.0,10m`,
      `--dhcp-leasefile=${join(lab.workDir, 'router-dnsmasq.leases')}`,
      `--dhcp-option=option:router,${routerAddress}`,
    ],
    { inNs: hostNs },
  );
  await waitForUdp(hostNs, 67, dnsmasq);
  return dnsmasq;
}
