/**
 * iPXE scripts served at /boot/<mac>.ipxe. Pure text builders.
 *
 * iPXE syntax notes (ipxe.org/scripting, ipxe.org/cmd, src/core/exec.c): `${name}` expands
 * settings everywhere, repeatedly (an expanded value that spells `${..}` is expanded again), and
 * there is no escape for `$`, so values that could contain it (CHAP secrets) are written with the
 * `:hex` setting type. After expansion a line is split at whitespace, with no quoting; a token
 * `||`, `&&` or `;` ends a command and starts the next, a token that begins with `#` starts a
 * comment, a line ending in `\` continues on the next line, and a line is a command or a `:label`.
 * So text shown to the user (client names are user input) goes through scriptText(), which keeps
 * a conservative set of characters: nothing that can expand, end a command or a line.
 * A failed command stops the script unless followed by `||`. `choose` with a timeout keeps a
 * failed boot from retrying in a tight loop.
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

/**
 * Text safe to put on an `echo`, `menu`, `item` or comment line: letters, digits, space and
 * `. _ : @ + - / = , ( ) [ ] ! ? ' * %`; anything else (`$ { } ; | & # \`, control characters,
 * newlines, non-ASCII the firmware console cannot show) becomes `_`. Whitespace runs collapse
 * (iPXE splits at whitespace anyway), and the result never starts with `-` (never an option).
 */
export function scriptText(s: string): string {
  const t = s
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/[^A-Za-z0-9 ._:@+\-/=,()[\]!?'*%]/g, '_')
    .replace(/^-/, '_');
  return t || '_';
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
    `# netboot appliance: ${scriptText(client.name)} (${client.mac}), image ${scriptText(client.image)}`,
    `echo netboot: ${scriptText(client.name)} (${client.mac}) boots disk ${scriptText(client.disk)}`,
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
    `menu netboot: ${scriptText(client.name)} could not boot`,
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

/** Why a script was served without credentials; shown on the client's screen. */
export type RetryReason = 'static' | 'refused' | 'enrol';

const RETRY_TEXT: Record<RetryReason, string> = {
  static: 'this script address carries no disk credentials: they come only through the one-time link in a DHCP answer',
  refused: 'the one-time boot link was refused (used already, expired, or asked for from another machine)',
  enrol: 'this machine is enrolled only through the one-time link in a DHCP answer',
};

/**
 * What the static `/boot/<mac>.ipxe` serves a client whose boot needs a one-time link (it has
 * CHAP, a pending one-shot boot, or would be enrolled), and what a refused link gets: no
 * credentials, a message saying what happened, then, after a pause, `dhcp` again and a chain to
 * the fresh `${filename}` (a new one-time link from our DHCP answer; proxyDHCP's filename too,
 * since the network's own server sends none). The attempt counter is a setting that survives
 * `chain --replace` (`${netboot-tries}` grows by one `x` per attempt; iPXE scripts have no
 * arithmetic): after `attempts` tries the menu stops retrying by itself and defaults to exit.
 */
export function renderRetryScript(opts: { mac: string; name?: string; reason: RetryReason; waitSeconds?: number; attempts?: number }): string {
  const wait = Math.max(1, Math.round(opts.waitSeconds ?? 10)) * 1000;
  const attempts = Math.max(1, Math.min(10, Math.round(opts.attempts ?? 3)));
  const who = opts.name ? `${scriptText(opts.name)} (${opts.mac})` : opts.mac;
  return [
    '#!ipxe',
    `echo netboot: ${who}: ${scriptText(RETRY_TEXT[opts.reason])}`,
    `iseq \${netboot-tries} ${'x'.repeat(attempts)} && goto giveup ||`,
    `echo netboot: asking DHCP for a fresh one-time link in ${wait / 1000} s`,
    ':wait',
    `menu netboot: ${who} waits for a one-time boot link`,
    'item retry Ask DHCP again now',
    'item shell iPXE shell',
    'item exit Exit to the next boot device',
    `choose --default retry --timeout ${wait} selected || goto retry`,
    'goto ${selected}',
    ':retry',
    'set netboot-tries ${netboot-tries}x',
    'dhcp || goto wait',
    'chain --replace --autofree ${filename} || goto wait',
    ':giveup',
    `echo netboot: no usable boot link after ${attempts} attempts; see this client's boot timeline in the web UI`,
    'clear netboot-tries',
    `menu netboot: ${who} could not get a boot link`,
    'item retry Ask DHCP again',
    'item shell iPXE shell',
    'item exit Exit to the next boot device',
    `choose --default exit --timeout ${wait * 3} selected || goto exit`,
    'goto ${selected}',
    ':shell',
    'shell',
    'goto wait',
    ':exit',
    'exit 1',
    '',
  ].join('\n');
}

/**
 * The script an unknown client gets when boot.unknownClients is "menu" (or when enrolment failed):
 * shows its MAC so the user can register it, then retry (re-fetch this script), shell, or exit
 * (the default after timeoutSeconds, so an unattended unknown PC falls through to its next device).
 */
export function renderMenuScript(mac: string, opts: { scriptUrl: string; message?: string; timeoutSeconds?: number }): string {
  const wait = Math.max(1, Math.round(opts.timeoutSeconds ?? 30)) * 1000;
  const lines = ['#!ipxe', `echo netboot: this machine (${mac}) is not registered with the appliance`];
  if (opts.message) lines.push(`echo netboot: ${scriptText(opts.message)}`);
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

/** Where the waiting screen sends the admin (boot.unknownClients "wait"). */
export interface WaitScriptOptions {
  /** The appliance's mDNS name with `.local` (config mdns.name), e.g. "netboot.local"; '' when mDNS is off. */
  mdnsHost: string;
  /** The web UI's address as the client reaches it, e.g. "http://198.18.0.1:8080". */
  uiUrl: string;
  /** Seconds between polls for the first `fastPolls` polls (default 5), then `slowSeconds` (default 30). */
  pollSeconds?: number;
  fastPolls?: number;
  slowSeconds?: number;
}

/**
 * What an unknown client gets under boot.unknownClients "wait": a screen naming where to give it
 * a disk (the mDNS name and the address, plus its MAC), then it keeps asking without anyone at
 * the keyboard: after a pause it runs `dhcp` again and chains the fresh `${filename}`. While
 * the MAC is unknown that is this script again; once an admin assigns an image, the DHCP answer
 * carries the client's one-time link (CHAP and all), so the machine boots by itself.
 * Backoff, bounded: `fastPolls` polls `pollSeconds` apart, then every `slowSeconds` (a poll is a
 * DHCP exchange and one small HTTP fetch). The poll count lives in the setting `netboot-polls`
 * (one `x` per poll; iPXE scripts have no arithmetic), which survives `chain --replace`.
 * The pause is `choose --timeout` (every iPXE build has menus; `sleep` is optional), and a failed
 * `dhcp` or `chain` returns to that pause, so there is no tight loop.
 */
export function renderWaitScript(mac: string, opts: WaitScriptOptions): string {
  const fast = Math.max(1, Math.round(opts.pollSeconds ?? 5)) * 1000;
  const slow = Math.max(1, Math.round(opts.slowSeconds ?? 30)) * 1000;
  const fastPolls = Math.max(1, Math.min(30, Math.round(opts.fastPolls ?? 12)));
  const where = [opts.mdnsHost ? `http://${opts.mdnsHost}` : '', opts.uiUrl].filter(Boolean).map(scriptText);
  return [
    '#!ipxe',
    `echo netboot: this machine (${mac}) waits for a disk`,
    `echo netboot: open ${where.join(' or ')} and give ${mac} an image: it then boots by itself`,
    `iseq \${netboot-polls} ${'x'.repeat(fastPolls)} && goto slow ||`,
    'set netboot-polls ${netboot-polls}x',
    `set netboot-delay ${fast}`,
    'goto wait',
    ':slow',
    `set netboot-delay ${slow}`,
    ':wait',
    `menu netboot: ${mac} waits for a disk`,
    `item --gap Open ${where.join(' or ')}`,
    `item --gap and give ${mac} an image: this PC then boots by itself.`,
    'item --gap',
    'item retry Ask again now (it asks by itself every few seconds)',
    'item shell iPXE shell',
    'item exit Exit to the next boot device',
    'choose --default retry --timeout ${netboot-delay} selected || goto retry',
    'goto ${selected}',
    ':retry',
    'echo netboot: asking the appliance again',
    'dhcp || goto wait',
    'chain --replace --autofree ${filename} || goto wait',
    ':shell',
    'shell',
    'goto wait',
    ':exit',
    'clear netboot-polls',
    'exit 1',
    '',
  ].join('\n');
}
