/**
 * iPXE scripts served at /boot/<mac>.ipxe. Pure text builders.
 *
 * iPXE syntax notes (ipxe.org/scripting, ipxe.org/cmd): `${name}` expands settings everywhere, and
 * there is no escape for `$`, so values that could contain it (CHAP secrets) are written with the
 * `:hex` setting type. A failed command stops the script unless followed by `||`. `choose`
 * with a timeout keeps a failed boot from retrying in a tight loop.
 */
import type { ClientRecord } from '../core/model';
import { iscsiRootPath } from './policy';

export interface ScriptOptions {
  /** Address of the appliance's iSCSI portal as the client reaches it. */
  serverAddress: string;
  iscsiPort: number;
  /** Seconds the failure menu waits before retrying (default 20). */
  retrySeconds?: number;
}

/** Characters that need no escaping in an iPXE `set` argument. */
const SAFE = /^[A-Za-z0-9._:@+\-/=,]+$/;

/** `set name value`, or `set name:hex aa:bb:..` when the value holds characters iPXE would interpret. */
function setLine(name: string, value: string): string {
  if (SAFE.test(value)) return `set ${name} ${value}`;
  const hex = [...Buffer.from(value, 'utf8')].map((b) => b.toString(16).padStart(2, '0')).join(':');
  return `set ${name}:hex ${hex}`;
}

/** Text for `echo`: strips `$` and control characters (a client name is user input). */
function echoText(s: string): string {
  return s.replace(/[\x00-\x1f\x7f$]/g, '?');
}

/**
 * The script that boots a registered client from its iSCSI disk: initiator name (also written to
 * the iBFT, so the OS's `iscsistart -b` logs in as the same initiator), CHAP credentials (mutual
 * when the target's own are set), then sanboot; on failure a menu (retry / shell / exit) that
 * retries by itself after retrySeconds.
 */
export function renderIpxeScript(client: ClientRecord, opts: ScriptOptions): string {
  const root = iscsiRootPath(client, opts.serverAddress, opts.iscsiPort);
  const wait = Math.max(1, Math.round(opts.retrySeconds ?? 20)) * 1000;
  const lines = [
    '#!ipxe',
    `# netboot appliance: ${echoText(client.name)} (${client.mac}), image ${echoText(client.image)}`,
    `echo netboot: ${echoText(client.name)} (${client.mac}) boots disk ${echoText(client.disk)}`,
    setLine('initiator-iqn', client.initiatorName),
  ];
  if (client.chap) {
    lines.push(setLine('username', client.chap.user), setLine('password', client.chap.secret));
    if (client.chap.targetUser && client.chap.targetSecret) {
      lines.push(setLine('reverse-username', client.chap.targetUser), setLine('reverse-password', client.chap.targetSecret));
    }
  } else {
    // Clear credentials a previous script (or DHCP) may have left in iPXE's settings.
    lines.push('clear username', 'clear password', 'clear reverse-username', 'clear reverse-password');
  }
  lines.push(
    ':boot',
    `echo netboot: sanboot ${root}`,
    `sanboot ${root} || goto failed`,
    // sanboot returns only if the boot sector/loader gave control back: treat it as a failure.
    'echo netboot: the disk returned control to iPXE',
    ':failed',
    `echo netboot: booting ${client.mac} from ${root} failed (\${errno})`,
    `menu netboot: ${echoText(client.name)} could not boot`,
    'item boot Retry the iSCSI boot',
    'item shell iPXE shell',
    'item exit Exit to the next boot device',
    `choose --default boot --timeout ${wait} selected || goto boot`,
    'goto ${selected}',
    ':shell',
    'echo netboot: type "exit" to return to the menu',
    'shell',
    'goto failed',
    ':exit',
    'exit 1',
    '',
  );
  return lines.join('\n');
}

/**
 * The script an unknown client gets when boot.unknownClients is "menu" (or when enrolment failed):
 * shows its MAC so the user can register it, then retry (re-fetch this script), shell, or exit
 * (the default after timeoutSeconds, so an unattended unknown PC falls through to its next device).
 */
export function renderMenuScript(mac: string, opts: { scriptUrl: string; message?: string; timeoutSeconds?: number }): string {
  const wait = Math.max(1, Math.round(opts.timeoutSeconds ?? 30)) * 1000;
  const lines = ['#!ipxe', `echo netboot: this machine (${mac}) is not registered with the appliance`];
  if (opts.message) lines.push(`echo netboot: ${echoText(opts.message)}`);
  lines.push(
    ':menu',
    `menu netboot: unknown client ${mac}`,
    `item --gap MAC address ${mac}: register it in the web UI, then retry`,
    'item retry Retry',
    'item shell iPXE shell',
    'item exit Exit to the next boot device',
    `choose --default exit --timeout ${wait} selected || goto exit`,
    'goto ${selected}',
    ':retry',
    `chain --replace --autofree ${opts.scriptUrl} || goto menu`,
    ':shell',
    'shell',
    'goto menu',
    ':exit',
    'exit 1',
    '',
  );
  return lines.join('\n');
}
