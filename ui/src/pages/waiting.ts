/**
 * "Waiting to boot" (issue #14, zero-touch enrolment): the network-boot clients the appliance
 * heard but does not know, newest first, each with one action: give it a disk of an image
 * (POST /api/clients with its MAC). Under boot.unknownClients "wait" the machine is polling and
 * boots by itself moments later; under "ignore" it is listed but was not answered.
 */
import { useState } from 'preact/hooks';
import { api, type Client, type Image, type UnknownClient, type UnknownClients } from '../api';
import { ago, when } from '../format';
import { ActionButton, Card, HeadRow, h, toast, toastError, type El } from '../ui';

/** Option 93 in words (RFC 4578 and its errata). */
export function archLabel(arch: number | null): string {
  switch (arch) {
    case null:
      return 'architecture not seen yet';
    case 0:
      return 'BIOS';
    case 6:
      return 'UEFI ia32';
    case 7:
    case 9:
      return 'UEFI x64';
    case 10:
      return 'UEFI ARM32';
    case 11:
      return 'UEFI ARM64';
    case 16:
      return 'UEFI x64 HTTP boot';
    case 19:
      return 'UEFI ARM64 HTTP boot';
    default:
      return `arch ${arch}`;
  }
}

const STAGE: Record<UnknownClient['stage'], string> = {
  dhcp: 'asked DHCP',
  tftp: 'fetched iPXE',
  ipxe: 'iPXE running',
  script: 'waiting on screen',
};

/** What unknown machines get now, in words, and how to change it. */
export function modeText(u: Pick<UnknownClients, 'mode' | 'setting' | 'dhcpMode'>): string {
  const why = u.setting === 'auto' ? ` (boot.unknownClients "auto" in ${u.dhcpMode} DHCP mode)` : ` (boot.unknownClients "${u.setting}")`;
  const change =
    'Change it with boot.unknownClients in the config: "wait", "ignore", "menu", "enroll", or "auto" (wait in full DHCP mode, ignore otherwise; DHCP mode is on the Settings page).';
  switch (u.mode) {
    case 'wait':
      return `Unknown machines that network-boot get a screen pointing here and keep asking: give one a disk and it boots by itself${why}. ${change}`;
    case 'ignore':
      return `Unknown machines are not answered${why}: they are listed here because the appliance heard their DHCP requests, but they boot from their own disk. Give one a disk, then restart it (or switch to "wait"). ${change}`;
    case 'menu':
      return `Unknown machines get a menu showing their MAC${why}. ${change}`;
    case 'enroll':
      return `Unknown machines are enrolled automatically on boot.enrollImage${why}. ${change}`;
  }
}

function WaitingRow(props: { u: UnknownClient; images: Image[]; onAssigned: () => void }): El {
  const ready = props.images.filter((i) => i.state === 'ready');
  const [image, setImage] = useState('');
  const chosen = image || ready[0]?.name || '';
  const u = props.u;
  const id = `assign-${u.mac.replace(/:/g, '')}`;
  return h(
    'div',
    { class: 'row waiting-row', 'data-mac': u.mac },
    h(
      'div',
      { class: 'cell main' },
      h('div', { class: 'title mono' }, u.mac),
      h('div', { class: 'sub ellipsis', title: u.vendorClass ?? undefined }, [archLabel(u.arch), u.address].filter(Boolean).join(' · ')),
    ),
    h('div', { class: 'cell' }, h('span', { class: 'label' }, 'state'), STAGE[u.stage] ?? u.stage),
    h('div', { class: 'cell', title: `first seen ${when(u.firstSeen)}` }, h('span', { class: 'label' }, 'last seen'), ago(u.lastSeen)),
    h(
      'div',
      { class: 'cell' },
      h('label', { class: 'label', for: id }, 'image'),
      ready.length
        ? h(
            'select',
            { id, class: 'assign-image', value: chosen, onChange: (e: Event) => setImage((e.target as HTMLSelectElement).value) },
            ready.map((i) => h('option', { key: i.name, value: i.name }, i.name)),
          )
        : h('span', { class: 'muted' }, 'import an image first'),
    ),
    h(
      'div',
      { class: 'cell end' },
      h(
        ActionButton,
        {
          class: 'primary assign',
          disabled: !chosen,
          onClick: async () => {
            try {
              const c = await api<Client>('POST', '/api/clients', { mac: u.mac, image: chosen });
              toast(`${c.mac} gets a disk of ${chosen}`);
              props.onAssigned();
            } catch (err) {
              toastError('Could not give it a disk', err);
            }
          },
        },
        'Give it a disk',
      ),
    ),
  );
}

/** The card at the top of the clients page; `data` undefined while loading. */
export function WaitingCard(props: { data: UnknownClients | undefined; images: Image[]; onAssigned: () => void }): El | null {
  const d = props.data;
  if (!d) return null;
  return h(
    Card,
    { class: 'waiting-card', title: h('span', null, 'Waiting to boot ', h('span', { class: 'count' }, String(d.clients.length))) },
    h('p', { class: 'hint waiting-mode', 'data-mode': d.mode }, modeText(d)),
    d.clients.length === 0
      ? null
      : h(
          'div',
          { class: 'rows' },
          h(HeadRow, { class: 'waiting-row', cols: ['Machine', 'State', 'Last seen', 'Image', ''] }),
          d.clients.map((u) => h(WaitingRow, { key: u.mac, u, images: props.images, onAssigned: props.onAssigned })),
        ),
  );
}
