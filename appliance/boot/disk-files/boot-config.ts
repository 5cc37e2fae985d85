/**
 * The default boot entry of a client's own bootloader configuration: kernel, initramfs and
 * command line, from syslinux/extlinux (`syslinux.cfg`, `extlinux.conf`) or GRUB (`grub.cfg`).
 * Pure text parsing; the GRUB road boots the same kernel with the same command line, plus the
 * iSCSI login parameters (grub-config.ts).
 */

export interface BootEntry {
  /** Paths as the config spells them (absolute, relative to the file system the config is on). */
  kernel: string;
  initrd: string | undefined;
  /** The kernel command line without initrd= (syslinux) or BOOT_IMAGE. */
  cmdline: string;
  /** Which config it came from (for the boot timeline). */
  source: string;
}

const MAX_CONFIG_BYTES = 256 * 1024;

/** syslinux/extlinux: the DEFAULT label's KERNEL/LINUX, INITRD and APPEND (first label without DEFAULT). */
export function parseSyslinux(text: string, source: string): BootEntry | undefined {
  const lines = text
    .slice(0, MAX_CONFIG_BYTES)
    .split(/\r?\n/)
    .map((l) => l.trim());
  let def: string | undefined;
  const labels: { name: string; kernel?: string; initrd?: string; append: string }[] = [];
  for (const line of lines) {
    const m = /^(\S+)\s*(.*)$/.exec(line);
    if (!m || line.startsWith('#')) continue;
    const key = m[1].toLowerCase();
    const value = m[2].trim();
    if (key === 'default') def = value.split(/\s+/)[0];
    else if (key === 'label') labels.push({ name: value, append: '' });
    else if (labels.length > 0) {
      const l = labels[labels.length - 1];
      if (key === 'kernel' || key === 'linux') l.kernel = value.split(/\s+/)[0];
      else if (key === 'initrd') l.initrd = value.split(/[\s,]+/)[0];
      else if (key === 'append') l.append = value;
    }
  }
  const chosen = labels.find((l) => l.name === def) ?? labels.find((l) => l.kernel);
  if (!chosen?.kernel) return undefined;
  const words = chosen.append.split(/\s+/).filter((w) => w !== '');
  const initrdArg = words.find((w) => w.startsWith('initrd='));
  const cmdline = words.filter((w) => !w.startsWith('initrd=')).join(' ');
  return { kernel: chosen.kernel, initrd: chosen.initrd ?? initrdArg?.slice('initrd='.length).split(',')[0], cmdline, source };
}

/**
 * GRUB: the default menu entry's `linux` and `initrd` lines (`set default=N` by index, else the
 * first entry). Variables and `search` lines are not evaluated; Debian's generated grub.cfg names
 * paths relative to the partition holding /boot (`/boot/vmlinuz-...` or `/vmlinuz-...`).
 */
export function parseGrub(text: string, source: string): BootEntry | undefined {
  const lines = text
    .slice(0, MAX_CONFIG_BYTES)
    .split(/\r?\n/)
    .map((l) => l.trim());
  const entries: { kernel?: string; initrd?: string; args: string }[] = [];
  let depth = 0;
  let current: { kernel?: string; initrd?: string; args: string } | undefined;
  let def = 0;
  for (const line of lines) {
    const setDefault = /^set\s+default=["']?(\d+)["']?$/.exec(line);
    if (setDefault && depth === 0) def = Number(setDefault[1]);
    if (/^menuentry\b/.test(line) && depth === 0) {
      current = { args: '' };
      entries.push(current);
    }
    if (line.endsWith('{')) depth++;
    if (line === '}' || line.startsWith('}')) {
      depth = Math.max(0, depth - 1);
      if (depth === 0) current = undefined;
      continue;
    }
    if (!current) continue;
    const linux = /^linux(?:efi|16)?\s+(\S+)\s*(.*)$/.exec(line);
    if (linux && !current.kernel) {
      current.kernel = linux[1];
      current.args = linux[2];
    }
    const initrd = /^initrd(?:efi|16)?\s+(\S+)/.exec(line);
    if (initrd && !current.initrd) current.initrd = initrd[1];
  }
  const chosen = entries[def]?.kernel ? entries[def] : entries.find((e) => e.kernel);
  if (!chosen?.kernel) return undefined;
  // GRUB device prefixes like ($root) or (hd0,gpt2) are dropped: the lookup reads the partition itself.
  const strip = (p: string) => p.replace(/^\([^)]*\)/, '');
  const cmdline = chosen.args
    .split(/\s+/)
    .filter((w) => w !== '' && !w.startsWith('BOOT_IMAGE='))
    .join(' ');
  return { kernel: strip(chosen.kernel), initrd: chosen.initrd ? strip(chosen.initrd) : undefined, cmdline, source };
}

/** Where bootloader configs live on a boot or EFI partition, or under /boot on a root partition. */
export const CONFIG_PATHS: readonly { path: string; kind: 'syslinux' | 'grub' }[] = [
  { path: '/grub/grub.cfg', kind: 'grub' },
  { path: '/boot/grub/grub.cfg', kind: 'grub' },
  { path: '/extlinux/extlinux.conf', kind: 'syslinux' },
  { path: '/boot/extlinux/extlinux.conf', kind: 'syslinux' },
  { path: '/syslinux.cfg', kind: 'syslinux' },
  { path: '/syslinux/syslinux.cfg', kind: 'syslinux' },
  { path: '/boot/syslinux/syslinux.cfg', kind: 'syslinux' },
  { path: '/EFI/BOOT/syslinux.cfg', kind: 'syslinux' },
  { path: '/EFI/BOOT/grub.cfg', kind: 'grub' },
];

export function parseBootConfig(kind: 'syslinux' | 'grub', text: string, source: string): BootEntry | undefined {
  return kind === 'grub' ? parseGrub(text, source) : parseSyslinux(text, source);
}
