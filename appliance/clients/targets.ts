import type { TargetDirectory, TargetEntry, TargetLun } from '../iscsi/target-directory';
import type { ClientRecord } from '../core/model';
import type { DiskStore } from './disk-store';
import type { ClientRegistry } from './registry';

/**
 * Maps clients to iSCSI targets: one target per named disk of a client, the disk at LUN 0
 * (iPXE's default), reachable only by the initiator name the appliance assigned to that client
 * (the name iPXE puts in the iBFT, so the initramfs re-login uses it too) and the extra names
 * listed on the client, with its CHAP credentials when set. Nobody reaches another client's
 * disk. The rescue target adds the client's own boot disk as LUN 1, so the rescue system can
 * repair it.
 */
export class ClientTargets implements TargetDirectory {
  constructor(
    private readonly clients: ClientRegistry,
    private readonly store: DiskStore,
  ) {}

  private allowed(c: ClientRecord): string[] {
    return [c.initiatorName, ...c.initiators].map((n) => n.toLowerCase());
  }

  list(initiatorName: string): { name: string }[] {
    const who = initiatorName.toLowerCase();
    return this.clients
      .list()
      .filter((c) => this.allowed(c).includes(who))
      .flatMap((c) => this.clients.disks(c.mac).map((d) => ({ name: d.target })));
  }

  resolve(targetName: string): TargetEntry | undefined {
    const hit = this.clients.parseTarget(targetName.toLowerCase());
    if (!hit) return undefined;
    const { client: c, disk } = hit;
    const lun = (n: number, storeDisk: string): TargetLun => ({ lun: n, readOnly: false, open: () => this.store.openVolume(storeDisk) });
    const luns = [lun(0, this.clients.storeDiskName(c.mac, disk))];
    if (disk === 'rescue') luns.push(lun(1, this.clients.storeDiskName(c.mac, c.bootDisk ?? 'default')));
    return {
      name: this.clients.targetName(c.mac, disk),
      clientMac: c.mac,
      luns,
      allowedInitiators: this.allowed(c),
      chap: c.chap,
      // The seed's warning: one disk mounted read-write by two machines is corrupted.
      exclusiveWriter: true,
    };
  }
}
