/**
 * The GRUB road's configs (issue #15), pure text: the dispatcher every GRUB fetches as
 * `grub/grub.cfg` (Debian's signed network GRUB asks for `$prefix/grub.cfg` only, prefix `grub`
 * on the TFTP server it came from, seen on the wire), which loads the per-client config by the
 * MAC GRUB booted from; and that per-client config: the client's own kernel and initramfs
 * (served from its disk, grub-files.ts) with its own command line plus the iSCSI login the
 * initramfs needs, since no iBFT exists on this road.
 */
import type { ClientRecord } from '../core/model';

/** TFTP paths of the GRUB road, relative to the TFTP root. */
export const GRUB_PATHS = {
  dispatcher: 'grub/grub.cfg',
  clientConfig: (mac: string) => `grub/clients/${mac}.cfg`,
  kernel: (mac: string) => `grub/clients/${mac}/linux`,
  initrd: (mac: string) => `grub/clients/${mac}/initrd`,
} as const;

/** What `grub/grub.cfg` says: chain to the MAC's own config, or explain and retry. */
export function renderGrubDispatcher(opts: { uiHint: string }): string {
  return [
    '# netboot appliance: GRUB road dispatcher (issue #15); every client loads its own config by MAC.',
    'set timeout=0',
    'if [ -n "$net_default_mac" ]; then',
    '  configfile "$prefix/clients/$net_default_mac.cfg"',
    'fi',
    `echo "netboot: no GRUB boot entry for this machine ($net_default_mac). ${grubText(opts.uiHint)}"`,
    'sleep 20',
    'reboot',
    '',
  ].join('\n');
}

export interface GrubClientConfigInput {
  client: Pick<ClientRecord, 'mac' | 'name' | 'target' | 'lun' | 'initiatorName' | 'chap'>;
  /** The iSCSI portal the initramfs logs in to. */
  serverAddress: string;
  iscsiPort: number;
  /** The client's own command line (its bootloader config), initrd= and BOOT_IMAGE= removed. */
  cmdline: string;
  hasInitrd: boolean;
}

/** Characters the kernel command line and GRUB's lexer carry unquoted inside one word. */
const PLAIN = /^[A-Za-z0-9._:@/+=,~%^-]*$/;

export class GrubConfigError extends Error {}

function plain(what: string, value: string): string {
  if (!PLAIN.test(value))
    throw new GrubConfigError(
      `${what} contains characters a kernel command line cannot carry (spaces, quotes, $, ;, \\): set plain CHAP credentials for GRUB-road clients`,
    );
  return value;
}

/** GRUB double-quoted text: escape what GRUB expands or ends the string with. */
function grubText(s: string): string {
  return s.replace(/[\\"$]/g, (c) => `\\${c}`);
}

/**
 * The iSCSI login on the kernel command line, for both initramfs families:
 * initramfs-tools + open-iscsi (`iscsi_*`, read by its local-top/iscsi script) and dracut
 * (`netroot=iscsi:server::port::lun:target`, `rd.iscsi.initiator`, `rd.iscsi.username`/`password`
 * and `rd.iscsi.in.*` for CHAP).
 */
export function iscsiKernelArgs(i: Omit<GrubClientConfigInput, 'cmdline' | 'hasInitrd'>): string[] {
  const c = i.client;
  const chap = c.chap;
  const args = [
    `iscsi_initiator=${plain('initiator name', c.initiatorName)}`,
    `iscsi_target_name=${plain('target name', c.target)}`,
    `iscsi_target_ip=${plain('address', i.serverAddress)}`,
    `iscsi_target_port=${i.iscsiPort}`,
    'iscsi_target_group=1',
  ];
  const dracut = [`rd.iscsi.initiator=${c.initiatorName}`];
  if (chap) {
    args.push(`iscsi_username=${plain('CHAP user', chap.user)}`, `iscsi_password=${plain('CHAP secret', chap.secret)}`);
    // dracut's netroot= cannot carry a user name with ':' (an initiator name has two): its own options can.
    dracut.push(`rd.iscsi.username=${chap.user}`, `rd.iscsi.password=${chap.secret}`);
    if (chap.targetUser && chap.targetSecret) {
      args.push(`iscsi_in_username=${plain('mutual CHAP user', chap.targetUser)}`, `iscsi_in_password=${plain('mutual CHAP secret', chap.targetSecret)}`);
      dracut.push(`rd.iscsi.in.username=${chap.targetUser}`, `rd.iscsi.in.password=${chap.targetSecret}`);
    }
  }
  args.push(`netroot=iscsi:${i.serverAddress}::${i.iscsiPort}::${c.lun}:${c.target}`, ...dracut);
  return args;
}

/** The per-client config: its own kernel, initramfs and command line plus the iSCSI login. */
export function renderGrubClientConfig(i: GrubClientConfigInput): string {
  const c = i.client;
  const own = i.cmdline.split(/\s+/).filter((w) => w !== '' && !/^(iscsi_|netroot=|rd\.iscsi\.)/.test(w));
  if (!own.some((w) => w.startsWith('ip='))) own.push('ip=dhcp');
  const words = [...own.map((w) => plain("the image's kernel command line", w)), ...iscsiKernelArgs(i)];
  const lines = [
    `# netboot appliance: GRUB road for ${c.mac} (${grubText(c.name)}); generated per boot, not stored`,
    'set timeout=0',
    `echo "netboot: ${grubText(c.name)} (${c.mac}): loading its kernel from ${grubText(c.target)}"`,
    `linux "$prefix/clients/${c.mac}/linux" ${words.join(' ')}`,
  ];
  if (i.hasInitrd) lines.push(`initrd "$prefix/clients/${c.mac}/initrd"`);
  lines.push('boot', '');
  return lines.join('\n');
}
