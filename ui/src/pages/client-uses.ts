/**
 * What a client boots (issue 8 uses): its named disks and which one boots by default, its boot
 * road (issue #15: iPXE or the signed shim + GRUB), a one-shot choice for the next boot only (an image on a throw-away copy, another disk, a rescue image
 * with the own disk attached), and scheduled snapshots.
 */
import { useState } from 'preact/hooks';
import { api, seg, type Client, type Image } from '../api';
import { bytes } from '../format';
import { ActionButton, Card, confirmAction, h, toast, toastError, type El } from '../ui';

const ROADS = [
  { value: 'auto', label: 'Automatic (ARM64: GRUB; UEFI x64: the appliance default; BIOS: iPXE)' },
  { value: 'ipxe', label: 'iPXE sanboot (Secure Boot off)' },
  { value: 'grub', label: 'Signed shim + GRUB (Secure Boot on, Linux disks)' },
];

const describeNext = (n: NonNullable<Client['nextBoot']>) =>
  n.kind === 'image'
    ? `image “${n.image}” on a throw-away copy`
    : n.kind === 'disk'
      ? `disk “${n.disk}”`
      : `rescue image “${n.image}”, with its own disk attached as LUN 1`;

/** The client's named disks, the default boot disk and the one-shot next boot. */
export function BootChoicesCard(props: { client: Client; images: Image[]; changed: () => void }): El {
  const { client, images } = props;
  const base = `/api/clients/${seg(client.mac)}`;
  const disks = (client.disks ?? []).filter((d) => !d.throwaway);
  const bootDisk = client.bootDisk ?? 'default';
  const ready = images.filter((i) => i.state === 'ready');
  const [newDisk, setNewDisk] = useState('');
  const [newImage, setNewImage] = useState('');
  const [next, setNext] = useState('');
  const options = [
    ...ready.map((i) => ({ value: `image:${i.name}`, label: `Image ${i.name} (throw-away copy)` })),
    ...disks.filter((d) => d.name !== bootDisk).map((d) => ({ value: `disk:${d.name}`, label: `Disk ${d.name}` })),
    ...ready.filter((i) => i.rescue).map((i) => ({ value: `rescue:${i.name}`, label: `Rescue with ${i.name}` })),
  ];
  const nextChoice = next || options[0]?.value || '';
  const diskImage = newImage || client.image;

  const run = async (what: string, fn: () => Promise<unknown>, ok: string) => {
    try {
      await fn();
      toast(ok);
      props.changed();
    } catch (err) {
      toastError(what, err);
    }
  };

  return h(
    Card,
    { title: 'What it boots', class: 'boot-choices' },
    h(
      'div',
      { class: 'stack' },
      disks.map((d) =>
        h(
          'div',
          { key: d.name, class: 'disk-line', 'data-disk': d.name },
          h(
            'div',
            { class: 'grow' },
            h('strong', null, d.name),
            ' ',
            h('span', { class: 'tag' }, d.image),
            d.name === bootDisk ? h('span', { class: 'sub' }, ' · boots by default') : null,
            d.inUse ? h('span', { class: 'sub' }, ' · in use') : null,
          ),
          d.name === bootDisk
            ? null
            : h(
                'div',
                { class: 'tl-actions' },
                h(
                  ActionButton,
                  {
                    class: 'small',
                    onClick: () =>
                      run('Could not change the boot disk', () => api('PUT', `${base}/boot-disk`, { disk: d.name }), `${d.name} boots by default now`),
                  },
                  'Boot by default',
                ),
                h(
                  ActionButton,
                  {
                    class: 'small ghost-danger',
                    onClick: async () => {
                      if (
                        !(await confirmAction({
                          title: `Delete disk “${d.name}”?`,
                          body: h('p', null, 'The disk and everything written to it are deleted.'),
                          confirmLabel: 'Delete disk',
                          danger: true,
                        }))
                      )
                        return;
                      await run('Delete failed', () => api('DELETE', `${base}/disks/${seg(d.name)}`), `Deleted disk ${d.name}`);
                    },
                  },
                  'Delete',
                ),
              ),
        ),
      ),
    ),
    h(
      'form',
      { class: 'inline-form compact add-disk', onSubmit: (e: Event) => e.preventDefault() },
      h(
        'div',
        { class: 'field' },
        h('label', { for: 'disk-name', class: 'sr-only' }, 'New disk name'),
        h('input', {
          id: 'disk-name',
          placeholder: 'new disk name',
          value: newDisk,
          maxLength: 32,
          onInput: (e: Event) => setNewDisk((e.target as HTMLInputElement).value),
        }),
      ),
      h(
        'div',
        { class: 'field' },
        h('label', { for: 'disk-image', class: 'sr-only' }, 'From image'),
        h(
          'select',
          { id: 'disk-image', value: diskImage, onChange: (e: Event) => setNewImage((e.target as HTMLSelectElement).value) },
          ready.map((i) => h('option', { key: i.name, value: i.name }, `from ${i.name}`)),
        ),
      ),
      h(
        ActionButton,
        {
          type: 'submit',
          disabled: !/^[a-z0-9][a-z0-9_-]{0,31}$/i.test(newDisk) || !diskImage,
          onClick: () =>
            run(
              'Could not add the disk',
              async () => {
                await api('POST', `${base}/disks`, { name: newDisk, image: diskImage });
                setNewDisk('');
              },
              `Disk ${newDisk} added`,
            ),
        },
        'Add disk',
      ),
    ),

    h('h3', null, 'boot road'),
    h(
      'form',
      { class: 'inline-form compact road', onSubmit: (e: Event) => e.preventDefault() },
      h(
        'div',
        { class: 'field grow' },
        h('label', { for: 'boot-road', class: 'sr-only' }, 'Boot road'),
        h(
          'select',
          {
            id: 'boot-road',
            value: client.road ?? 'auto',
            onChange: (e: Event) => {
              const road = (e.target as HTMLSelectElement).value;
              void run('Could not change the boot road', () => api('PATCH', base, { road }), `Boot road: ${road}`);
            },
          },
          ROADS.map((r) => h('option', { key: r.value, value: r.value }, r.label)),
        ),
      ),
    ),
    h(
      'p',
      { class: 'sub' },
      'The GRUB road boots PCs with Secure Boot on and ARM64 machines: Microsoft-signed shim, Debian-signed GRUB, and the Linux kernel on this disk, which must log in to iSCSI from its command line (initramfs-tools with open-iscsi, or dracut). iPXE boots any disk with Secure Boot off.',
    ),

    h('h3', null, 'next boot only'),
    client.nextBoot
      ? h(
          'div',
          { class: 'disk-line' },
          h('div', { class: 'grow' }, `The next boot runs ${describeNext(client.nextBoot)}; then ${bootDisk} again.`),
          h(
            ActionButton,
            { class: 'small', onClick: () => run('Could not clear it', () => api('DELETE', `${base}/next-boot`), 'Next boot back to normal') },
            'Clear',
          ),
        )
      : h('p', { class: 'sub' }, `Every boot starts ${bootDisk}.`),
    options.length
      ? h(
          'form',
          { class: 'inline-form compact', onSubmit: (e: Event) => e.preventDefault() },
          h(
            'div',
            { class: 'field grow' },
            h('label', { for: 'next-boot', class: 'sr-only' }, 'Next boot'),
            h(
              'select',
              { id: 'next-boot', value: nextChoice, onChange: (e: Event) => setNext((e.target as HTMLSelectElement).value) },
              options.map((o) => h('option', { key: o.value, value: o.value }, o.label)),
            ),
          ),
          h(
            ActionButton,
            {
              type: 'submit',
              disabled: !nextChoice,
              onClick: () => {
                const [kind, ...rest] = nextChoice.split(':');
                const value = rest.join(':');
                return run('Could not set the next boot', () => api('PUT', `${base}/next-boot`, { [kind]: value }), 'Next boot set');
              },
            },
            'Use once',
          ),
        )
      : null,
  );
}

const PERIODS = [
  { minutes: 60, label: 'every hour' },
  { minutes: 6 * 60, label: 'every 6 hours' },
  { minutes: 24 * 60, label: 'every day' },
  { minutes: 7 * 24 * 60, label: 'every week' },
];

const periodLabel = (m: number) => PERIODS.find((p) => p.minutes === m)?.label ?? (m % 60 === 0 ? `every ${m / 60} h` : `every ${m} min`);

/** Scheduled snapshots of the boot disk, pruned to the newest `keep`. */
export function ScheduleLine(props: { client: Client; changed: () => void }): El {
  const { client } = props;
  const base = `/api/clients/${seg(client.mac)}/schedule`;
  const [every, setEvery] = useState(24 * 60);
  const [keep, setKeep] = useState(7);
  const s = client.schedule;
  if (s) {
    return h(
      'div',
      { class: 'disk-line schedule' },
      h('div', { class: 'grow sub' }, `Automatic snapshots ${periodLabel(s.everyMinutes)}, keeping the newest ${s.keep}.`),
      h(
        ActionButton,
        {
          class: 'small',
          onClick: async () => {
            try {
              await api('DELETE', base);
              toast('Automatic snapshots off');
              props.changed();
            } catch (err) {
              toastError('Could not stop them', err);
            }
          },
        },
        'Stop',
      ),
    );
  }
  return h(
    'form',
    { class: 'inline-form compact schedule', onSubmit: (e: Event) => e.preventDefault() },
    h('span', { class: 'sub' }, 'Automatic snapshots'),
    h(
      'select',
      { 'aria-label': 'How often', value: String(every), onChange: (e: Event) => setEvery(Number((e.target as HTMLSelectElement).value)) },
      PERIODS.map((p) => h('option', { key: p.minutes, value: String(p.minutes) }, p.label)),
    ),
    h('label', { class: 'sub', for: 'keep' }, 'keep'),
    h('input', {
      id: 'keep',
      type: 'number',
      min: 1,
      max: 1000,
      value: String(keep),
      class: 'narrow-num',
      onInput: (e: Event) => setKeep(Number((e.target as HTMLInputElement).value)),
    }),
    h(
      ActionButton,
      {
        class: 'small',
        type: 'submit',
        disabled: !(keep >= 1 && keep <= 1000),
        onClick: async () => {
          try {
            await api('PUT', base, { everyMinutes: every, keep });
            toast(`Snapshots ${periodLabel(every)}`);
            props.changed();
          } catch (err) {
            toastError('Could not schedule snapshots', err);
          }
        },
      },
      'Start',
    ),
  );
}

/** Whole-disk size next to what it holds, e.g. "412 MiB written of 20 GiB". */
export const diskLine = (c: Client) =>
  c.diskSizeBytes ? `${bytes(c.diskUsedBytes)} written of ${bytes(c.diskSizeBytes)}` : `${bytes(c.diskUsedBytes)} written`;
