/** The dashboard: services at a glance, every client with its state, live iSCSI sessions. */
import { useRef, useState } from 'preact/hooks';
import { api, type Client, type Image, type IscsiSession, type Status, type UnknownClients } from '../api';
import { ago, bytes, duration, isBadStage, normaliseMac, rate, stageLabel, toMs, when } from '../format';
import { ActionButton, Card, Dot, Empty, HeadRow, h, link, toast, toastError, usePoll, type El } from '../ui';
import { WaitingCard } from './waiting';

export function ServicesStrip(props: { status: Status | undefined }): El | null {
  const s = props.status;
  if (!s) return null;
  return h(
    'div',
    { class: 'strip' },
    s.services.map((svc) =>
      h(
        'div',
        { key: svc.name, class: 'chip', title: [svc.listen.join(', '), svc.detail].filter(Boolean).join(' — ') },
        h(Dot, {
          state: svc.state === 'running' ? 'ok' : svc.state === 'failed' ? 'bad' : svc.state === 'disabled' || svc.state === 'stopped' ? 'off' : 'warn',
          text: svc.name,
        }),
      ),
    ),
    h('div', { class: 'chip muted' }, `v${s.version} · up ${duration(s.uptimeSeconds)} · ${s.serverAddress}`),
    s.storeHealth?.state === 'degraded'
      ? h(
          'div',
          { class: 'chip', role: 'alert', title: s.storeHealth.degraded?.reason },
          h(Dot, {
            state: 'bad',
            text: `storage degraded: a disk write was lost (${s.storeHealth.degraded?.disks.join(', ') || 'no disk open'}); run "appliance check --repair" with the service stopped`,
          }),
        )
      : null,
    // Issue #14: the box's own network (no carrier, no address) and a leased address.
    s.network && s.network.state !== 'up'
      ? h(
          'div',
          { class: 'chip', role: 'alert', title: `since ${when(s.network.since)}` },
          h(Dot, {
            state: 'bad',
            text: `network: ${s.network.interface || 'no interface'} ${s.network.state.replace('-', ' ')}${s.network.address ? ` (${s.network.address})` : ''}; DHCP serves once it has carrier and an address`,
          }),
        )
      : null,
    s.network?.warning
      ? h(
          'div',
          { class: 'chip', role: 'alert', 'data-warning': 'leased-address', title: s.network.warning },
          h(Dot, {
            state: 'warn',
            text: `${s.network.address} is a DHCP lease: reserve it on the router or run "sudo netboot-fixed-address" — clients' disks live behind it`,
          }),
        )
      : null,
  );
}

function ClientRow(props: { c: Client }): El {
  const c = props.c;
  const ev = c.lastEvent;
  return h(
    'a',
    { class: 'row client-row', href: link(`/clients/${c.mac}`), 'data-mac': c.mac },
    h(
      'div',
      { class: 'cell main' },
      c.name ? h('div', { class: 'title' }, c.name) : h('div', { class: 'title muted' }, 'unnamed'),
      h('div', { class: 'sub mono' }, c.mac),
    ),
    h(
      'div',
      { class: 'cell' },
      h('span', { class: 'label' }, 'image'),
      h('span', { class: 'tag' }, c.image),
      c.bootDisk && c.bootDisk !== 'default' ? h('span', { class: 'sub' }, `boots disk ${c.bootDisk}`) : null,
      c.nextBoot
        ? h(
            'span',
            { class: 'sub' },
            `next boot: ${c.nextBoot.kind === 'disk' ? `disk ${c.nextBoot.disk}` : `${c.nextBoot.kind === 'rescue' ? 'rescue ' : ''}${c.nextBoot.image}`}`,
          )
        : null,
    ),
    h('div', { class: 'cell' }, h(Dot, { state: c.online ? 'ok' : 'off', text: c.online ? 'online' : 'offline' })),
    h(
      'div',
      { class: 'cell', title: ev ? when(ev.at) : undefined },
      h('span', { class: 'label' }, 'last boot'),
      ev
        ? h('span', { class: isBadStage(ev.stage) ? 'bad-text' : undefined }, `${stageLabel(ev.stage)} · ${ago(ev.at)}`)
        : h('span', { class: 'muted' }, 'never booted'),
    ),
    h('div', { class: 'cell num' }, h('span', { class: 'label' }, 'disk'), bytes(c.diskUsedBytes)),
  );
}

function AddClient(props: { images: Image[]; onAdded: () => void; onCancel: () => void }): El {
  const ready = props.images.filter((i) => i.state === 'ready');
  const [mac, setMac] = useState('');
  const [name, setName] = useState('');
  const [image, setImage] = useState(ready[0]?.name ?? '');
  const macOk = normaliseMac(mac) !== undefined;
  const chosen = image || ready[0]?.name || '';
  return h(
    'form',
    { class: 'inline-form', onSubmit: (e: Event) => e.preventDefault() },
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'new-mac' }, 'MAC address'),
      h('input', {
        id: 'new-mac',
        class: mac && !macOk ? 'invalid' : '',
        placeholder: '52:54:00:12:34:56',
        value: mac,
        autocomplete: 'off',
        spellcheck: false,
        onInput: (e: Event) => setMac((e.target as HTMLInputElement).value),
      }),
    ),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'new-name' }, 'Name'),
      h('input', { id: 'new-name', placeholder: 'lab-pc-1', value: name, onInput: (e: Event) => setName((e.target as HTMLInputElement).value) }),
    ),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'new-image' }, 'Golden image'),
      ready.length
        ? h(
            'select',
            { id: 'new-image', value: chosen, onChange: (e: Event) => setImage((e.target as HTMLSelectElement).value) },
            ready.map((i) => h('option', { key: i.name, value: i.name }, i.name)),
          )
        : h('p', { class: 'hint' }, 'Import an image first (Images).'),
    ),
    h(
      'div',
      { class: 'field actions' },
      h(
        ActionButton,
        {
          class: 'primary',
          type: 'submit',
          disabled: !macOk || !chosen,
          onClick: async () => {
            try {
              const c = await api<Client>('POST', '/api/clients', { mac: normaliseMac(mac), image: chosen, ...(name.trim() ? { name: name.trim() } : {}) });
              toast(`Client ${c.name || c.mac} added`);
              props.onAdded();
            } catch (err) {
              toastError('Could not add the client', err);
            }
          },
        },
        'Add client',
      ),
      h('button', { type: 'button', class: 'btn', onClick: props.onCancel }, 'Cancel'),
    ),
  );
}

interface Rated extends IscsiSession {
  readRate: number;
  writeRate: number;
}

/** Turns cumulative byte counters into rates using the previous poll's sample (rates show from the second poll). */
function useRates(sessions: IscsiSession[] | undefined): Rated[] {
  const prev = useRef(new Map<string, { at: number; read: number; written: number }>());
  const last = useRef<IscsiSession[] | undefined>(undefined);
  const rated = useRef<Rated[]>([]);
  if (sessions !== last.current) {
    last.current = sessions;
    const now = performance.now();
    const next = new Map<string, { at: number; read: number; written: number }>();
    rated.current = (sessions ?? []).map((s) => {
      const key = String(s.id);
      const p = prev.current.get(key);
      const dt = p ? (now - p.at) / 1000 : 0;
      next.set(key, { at: now, read: s.readBytes, written: s.writtenBytes });
      return {
        ...s,
        readRate: p && dt > 0 ? Math.max(0, (s.readBytes - p.read) / dt) : 0,
        writeRate: p && dt > 0 ? Math.max(0, (s.writtenBytes - p.written) / dt) : 0,
      };
    });
    prev.current = next;
  }
  return rated.current;
}

export function SessionsCard(props: { sessions: IscsiSession[] | undefined; clients: Client[] | undefined; error?: string }): El {
  const rows = useRates(props.sessions);
  const byMac = new Map((props.clients ?? []).map((c) => [c.mac, c]));
  return h(
    Card,
    { title: h('span', null, 'Live iSCSI sessions ', h('span', { class: 'count' }, String(rows.length))) },
    props.error ? h('p', { class: 'error' }, props.error) : null,
    props.sessions === undefined
      ? props.error
        ? null
        : h('p', { class: 'muted' }, 'Loading…')
      : rows.length === 0
        ? h(Empty, null, 'No initiator is logged in.')
        : h(
            'div',
            { class: 'rows' },
            h(HeadRow, { class: 'session-row', cols: ['Initiator', 'From', 'Connected', 'Read', 'Write'] }),
            rows.map((s) => {
              const c = s.clientMac ? byMac.get(s.clientMac) : undefined;
              return h(
                'div',
                { key: String(s.id), class: 'row session-row' },
                h(
                  'div',
                  { class: 'cell main' },
                  h('div', { class: 'title' }, c ? h('a', { href: link(`/clients/${c.mac}`) }, c.name || c.mac) : s.address),
                  h('div', { class: 'sub mono ellipsis', title: `${s.initiatorName} → ${s.target}` }, s.initiatorName),
                ),
                h('div', { class: 'cell' }, h('span', { class: 'label' }, 'from'), h('span', { class: 'mono' }, s.address)),
                h(
                  'div',
                  { class: 'cell', title: when(s.since) },
                  h('span', { class: 'label' }, 'since'),
                  toMs(s.since) ? ago(s.since).replace(' ago', '') : '—',
                ),
                h(
                  'div',
                  { class: 'cell num' },
                  h('span', { class: 'label' }, 'read'),
                  h('span', { class: 'rate' }, '↓ ', rate(s.readRate)),
                  h('span', { class: 'sub' }, bytes(s.readBytes)),
                ),
                h(
                  'div',
                  { class: 'cell num' },
                  h('span', { class: 'label' }, 'write'),
                  h('span', { class: 'rate' }, '↑ ', rate(s.writeRate)),
                  h('span', { class: 'sub' }, bytes(s.writtenBytes)),
                ),
              );
            }),
          ),
  );
}

export function DashboardPage(props: { status: Status | undefined }): El {
  const clients = usePoll(() => api<{ clients: Client[] }>('GET', '/api/clients').then((r) => r.clients));
  const sessions = usePoll(() => api<{ sessions: IscsiSession[] }>('GET', '/api/sessions').then((r) => r.sessions));
  const images = usePoll(() => api<{ images: Image[] }>('GET', '/api/images').then((r) => r.images), [], 10_000);
  const waiting = usePoll(() => api<UnknownClients>('GET', '/api/unknown-clients'));
  const [adding, setAdding] = useState(false);
  const list = clients.data ?? [];
  const online = list.filter((c) => c.online).length;

  return h(
    'div',
    { class: 'page' },
    h(ServicesStrip, { status: props.status }),
    h(WaitingCard, {
      data: waiting.data,
      images: images.data ?? [],
      onAssigned: () => {
        waiting.reload();
        clients.reload();
      },
    }),
    h(
      Card,
      {
        title: h('span', null, 'Clients ', h('span', { class: 'count' }, list.length ? `${online} of ${list.length} online` : '')),
        actions: adding
          ? null
          : h(
              'button',
              {
                class: 'btn primary',
                onClick: () => {
                  setAdding(true);
                  images.reload();
                },
              },
              '+ Add client',
            ),
      },
      adding
        ? h(AddClient, {
            images: images.data ?? [],
            onCancel: () => setAdding(false),
            onAdded: () => {
              setAdding(false);
              clients.reload();
            },
          })
        : null,
      clients.error ? h('p', { class: 'error' }, clients.error) : null,
      clients.data === undefined
        ? clients.error
          ? null
          : h('p', { class: 'muted' }, 'Loading…')
        : list.length === 0
          ? h(Empty, null, 'No clients yet. Add one with its MAC address and a golden image.')
          : h(
              'div',
              { class: 'rows' },
              h(HeadRow, { class: 'client-row', cols: ['Client', 'Image', 'State', 'Last boot', 'Disk written'] }),
              list.map((c) => h(ClientRow, { key: c.mac, c })),
            ),
    ),
    h(SessionsCard, { sessions: sessions.data, clients: clients.data, error: sessions.error }),
  );
}
