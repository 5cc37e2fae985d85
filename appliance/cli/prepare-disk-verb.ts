import { execFileSync } from 'node:child_process';
import { CliError } from './api-client';
import { bytes, table } from './format';
import type { Verb } from './verbs';
import { ApiError } from '../core/errors';
import { SystemCollector } from '../storage/collector';
import { prepareDisk } from '../storage/prepare-disk';

/** The service user's uid/gid, so the new filesystem's root belongs to it; undefined if absent. */
function serviceUser(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', 'netboot'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gid = Number(execFileSync('id', ['-g', 'netboot'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `netboot prepare-disk` lists the disks that could become the data disk;
 * `netboot prepare-disk /dev/sdX sdX` erases /dev/sdX and makes it the data disk (ext4 labelled
 * NETBOOT). Runs locally, as root, not through the API: the service has no right to write disks.
 */
export const prepareDiskVerb: Verb = {
  name: 'prepare-disk',
  usage: 'prepare-disk [DEVICE CONFIRM-NAME]',
  summary: 'list disks, or erase one and make it the data disk (ext4 labelled NETBOOT); run as root',
  async run(args, config, { json }) {
    if (args.length === 0) {
      const report = await new SystemCollector().storage(config.dataDir);
      const rows = report.disks.map((d) => ({
        device: d.device,
        model: d.model,
        size: bytes(d.sizeBytes),
        usb: d.usb ? 'yes' : '',
        use: d.system ? 'system disk' : d.holdsDataDir ? 'data disk' : d.inUse ? 'mounted' : 'free',
        partitions: d.partitions.map((p) => `${p.device.replace('/dev/', '')} ${p.fsType}${p.label ? ` "${p.label}"` : ''}`).join(', '),
      }));
      process.stdout.write(`${json ? JSON.stringify(report.disks, null, 2) : table(rows, ['device', 'model', 'size', 'usb', 'use', 'partitions'])}\n`);
      if (!json) process.stdout.write('\nTo erase a free disk and make it the data disk: sudo netboot prepare-disk /dev/sdX sdX\n');
      return;
    }
    if (args.length !== 2) throw new CliError(`usage: appliance ${this.usage}`, 2);
    if (process.getuid?.() !== 0) throw new CliError('prepare-disk erases a disk and needs root: sudo netboot prepare-disk ...', 1);
    try {
      const res = await prepareDisk({ device: args[0]!, confirm: args[1]!, owner: serviceUser() });
      process.stdout.write(
        `${
          json
            ? JSON.stringify(res, null, 2)
            : `${res.device}: partition ${res.partition}, ext4 "${res.label}", ${bytes(res.sizeBytes)}, UUID ${res.uuid}\n` +
              'systemd mounts it at /srv/netboot and starts the appliance (or: sudo systemctl start netboot-appliance)'
        }\n`,
      );
    } catch (err) {
      if (err instanceof ApiError) throw new CliError(err.message, err.statusCode === 409 ? 3 : 2);
      throw err;
    }
  },
};
