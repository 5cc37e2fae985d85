import type { TargetDirectory, TargetEntry } from '../iscsi/target-directory';
import type { ClientRecord } from '../core/model';
import type { DiskStore } from './disk-store';
import type { ClientRegistry } from './registry';

/**
 * Maps clients to iSCSI targets: one target per client, its disk at LUN 0 (iPXE's default),
 * reachable only by the initiator name the appliance assigned to that client (the name iPXE
 * puts in the iBFT, so the initramfs re-login uses it too) and the extra names listed on the
 * client, with its CHAP credentials when set. Nobody reaches another client's disk.
 */
export class ClientTargets implements TargetDirectory {
  constructor(private readonly clients: ClientRegistry, private readonly store: DiskStore) {}

  private allowed(c: ClientRecord): string[] {
    return [c.initiatorName, ...c.initiators].map((n) => n.toLowerCase());
  }

  list(initiatorName: string): { name: string }[] {
    const who = initiatorName.toLowerCase();
    return this.clients
      .list()
      .filter((c) => this.allowed(c).includes(who))
      .map((c) => ({ name: c.target }));
  }

  resolve(targetName: string): TargetEntry | undefined {
    const c = this.clients.byTarget(targetName.toLowerCase());
    if (!c) return undefined;
    return {
      name: c.target,
      clientMac: c.mac,
      luns: [{ lun: 0, readOnly: false, open: () => this.store.openVolume(c.disk) }],
      allowedInitiators: this.allowed(c),
      chap: c.chap,
      // The seed's warning: one disk mounted read-write by two machines is corrupted.
      exclusiveWriter: true,
    };
  }
}
