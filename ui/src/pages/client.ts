/** One client: its disk, boot timeline, snapshots, and which golden image it is based on. */
import { useState } from 'preact/hooks';
import { api, seg, type BootEvent, type Client, type Image, type Snapshot } from '../api';
import { ago, bytes, isBadStage, stageLabel, toMs, when } from '../format';
import { ActionButton, Card, Dot, Empty, confirmAction, h, link, promptAction, toast, toastError, usePoll, type El } from '../ui';
import { BootChoicesCard, ScheduleLine, diskLine } from './client-uses';

/** A boot starts with a DHCP discover, or after ten quiet minutes. */
const BOOT_GAP_MS = 10 * 60_000;

function groupBoots(events: BootEvent[]): BootEvent[][] {
  const boots: BootEvent[][] = [];
  let lastAt = -Infinity;
  for (const e of events) {
    const at = toMs(e.at) ?? lastAt;
    if (!boots.length || e.stage === 'dhcp-discover' || at - lastAt > BOOT_GAP_MS) boots.push([]);
    boots[boots.length - 1].push(e);
    lastAt = at;
  }
  return boots.reverse();
}

/** An event's details in a line, without what the page already shows (this client's target and initiator). */
function detailText(d: BootEvent['detail'], client: Client): string {
  if (!d) return '';
  if (typeof d === 'string') return d;
  return Object.entries(d)
    .filter(([, v]) => v !== client.target && v !== client.initiatorName && v !== client.mac && v !== '' && v !== null)
    .map(([k, v]) => (typeof v === 'number' && /bytes$/i.test(k) ? `${k.replace(/Bytes$/, '')} ${bytes(v)}` : `${k} ${v}`))
    .join(' · ');
}

/** Seconds since the boot's first event: "+2.4 s" (how long each step took is what one debugs). */
function offset(from: BootEvent['at'], at: BootEvent['at']): string {
  const a = toMs(from);
  const b = toMs(at);
  if (a === undefined || b === undefined) return '';
  const s = (b - a) / 1000;
  return s < 60 ? `+${s.toFixed(1)} s` : `+${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function BootTimeline(props: { client: Client; events: BootEvent[] | undefined; error?: string }): El {
  const [showAll, setShowAll] = useState(false);
  const boots = groupBoots(props.events ?? []);
  const shown = showAll ? boots : boots.slice(0, 1);
  return h(
    Card,
    { title: 'Boot timeline', class: 'boot-card' },
    props.error ? h('p', { class: 'error' }, props.error) : null,
    boots.length === 0 ? h(Empty, null, 'This client has not tried to boot yet.') : null,
    shown.map((boot, i) =>
      h(
        'div',
        { key: i, class: 'boot' },
        h('div', { class: 'boot-head' }, i === 0 ? 'Latest boot' : 'Earlier boot', h('span', { class: 'muted' }, ` · ${when(boot[0].at)}`)),
        h(
          'ol',
          { class: 'timeline' },
          boot.map((e, j) =>
            h(
              'li',
              { key: String(e.id), class: isBadStage(e.stage) ? 'bad' : '' },
              h('span', { class: 'tl-dot', 'aria-hidden': 'true' }),
              h(
                'div',
                { class: 'tl-body' },
                h(
                  'div',
                  null,
                  h('strong', null, stageLabel(e.stage)),
                  e.count && e.count > 1 ? h('span', { class: 'count' }, `×${e.count}`) : null,
                  h('span', { class: 'muted tl-time', title: when(e.at) }, j === 0 ? ago(e.at) : offset(boot[0].at, e.at)),
                ),
                detailText(e.detail, props.client) ? h('div', { class: 'sub mono wrap' }, detailText(e.detail, props.client)) : null,
              ),
            ),
          ),
        ),
      ),
    ),
    boots.length > 1
      ? h(
          'button',
          { class: 'linkish', onClick: () => setShowAll(!showAll) },
          showAll ? 'Show only the latest boot' : `Show ${boots.length - 1} earlier boot${boots.length > 2 ? 's' : ''}`,
        )
      : null,
  );
}

function defaultSnapshotName(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `snap-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

function Snapshots(props: { client: Client; snapshots: Snapshot[] | undefined; error?: string; changed: () => void }): El {
  const { client } = props;
  const [name, setName] = useState('');
  const base = `/api/clients/${seg(client.mac)}`;
  const list = [...(props.snapshots ?? [])].sort((a, b) => (toMs(b.createdAt) ?? 0) - (toMs(a.createdAt) ?? 0));
  const inUse = client.online;

  const create = async () => {
    const n = name.trim() || defaultSnapshotName();
    try {
      await api('POST', `${base}/snapshots`, { name: n });
      setName('');
      toast(`Snapshot “${n}” taken`);
      props.changed();
    } catch (err) {
      toastError('Snapshot failed', err);
    }
  };
  const restore = async (s: Snapshot) => {
    const ok = await confirmAction({
      title: `Restore “${s.name}”?`,
      body: h(
        'p',
        null,
        `The disk of ${client.name || client.mac} goes back to how it was on ${when(s.createdAt)}. Everything written since is lost, unless you take a snapshot first.`,
      ),
      confirmLabel: 'Restore',
      danger: true,
    });
    if (!ok) return;
    try {
      await api('POST', `${base}/snapshots/${seg(s.id)}/restore`);
      toast(`Restored “${s.name}”`);
      props.changed();
    } catch (err) {
      toastError('Restore failed', err);
    }
  };
  const remove = async (s: Snapshot) => {
    const ok = await confirmAction({
      title: `Delete snapshot “${s.name}”?`,
      body: h('p', null, 'The disk itself is not changed; you only lose the way back to this point.'),
      confirmLabel: 'Delete',
      danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', `${base}/snapshots/${seg(s.id)}`);
      toast(`Deleted “${s.name}”`);
      props.changed();
    } catch (err) {
      toastError('Delete failed', err);
    }
  };
  const promote = async (s: Snapshot) => {
    const name = await promptAction({
      title: `Make “${s.name}” a golden image`,
      label: 'Image name',
      initial: `${(client.name || 'client').replace(/[^a-zA-Z0-9._-]+/g, '-')}-${s.name}`.replace(/[^a-zA-Z0-9._-]+/g, '-').slice(0, 64),
      hint: 'Other clients can then be based on this state of the disk.',
      confirmLabel: 'Make image',
    });
    if (!name) return;
    try {
      await api('POST', `${base}/snapshots/${seg(s.id)}/promote`, { name });
      toast(`Image “${name}” created`);
      props.changed();
    } catch (err) {
      toastError('Could not make the image', err);
    }
  };
  const reset = async () => {
    const ok = await confirmAction({
      title: 'Reset to the golden image?',
      body: h(
        'p',
        null,
        `The disk of ${client.name || client.mac} becomes a fresh copy of “${client.image}”. Every change made on it is lost; snapshots are kept.`,
      ),
      confirmLabel: 'Reset disk',
      danger: true,
    });
    if (!ok) return;
    try {
      await api('POST', `${base}/reset`, {});
      toast('Disk reset to the golden image');
      props.changed();
    } catch (err) {
      toastError('Reset failed', err);
    }
  };

  return h(
    Card,
    { title: 'Snapshots', class: 'snap-card' },
    h(
      'form',
      { class: 'inline-form compact', onSubmit: (e: Event) => e.preventDefault() },
      h(
        'div',
        { class: 'field grow' },
        h('label', { for: 'snap-name', class: 'sr-only' }, 'Snapshot name'),
        h('input', {
          id: 'snap-name',
          placeholder: 'name (optional)',
          value: name,
          maxLength: 64,
          onInput: (e: Event) => setName((e.target as HTMLInputElement).value),
        }),
      ),
      h(ActionButton, { class: 'primary', type: 'submit', onClick: create }, 'Take snapshot'),
    ),
    inUse
      ? h('p', { class: 'hint' }, 'The client is online: snapshots are taken live (the disk is flushed first), but restore and reset wait until it is off.')
      : null,
    props.error ? h('p', { class: 'error' }, props.error) : null,
    h(
      'ol',
      { class: 'timeline snaps' },
      h(
        'li',
        { class: 'now' },
        h('span', { class: 'tl-dot', 'aria-hidden': 'true' }),
        h('div', { class: 'tl-body' }, h('strong', null, 'Now'), h('span', { class: 'muted tl-time' }, diskLine(client))),
      ),
      list.map((s) =>
        h(
          'li',
          { key: String(s.id), class: 'snap', 'data-snapshot': s.name },
          h('span', { class: 'tl-dot', 'aria-hidden': 'true' }),
          h(
            'div',
            { class: 'tl-body' },
            h('div', null, h('strong', null, s.name), h('span', { class: 'muted tl-time', title: when(s.createdAt) }, ago(s.createdAt))),
            h(
              'div',
              { class: 'sub' },
              when(s.createdAt),
              s.usedBytes !== undefined ? ` · ${bytes(s.usedBytes)}` : '',
              ' · ',
              h(
                'a',
                { href: `${base}/export?format=qcow2&snapshot=${seg(s.id)}`, download: true, title: 'Download this snapshot as a qcow2 image' },
                'download',
              ),
            ),
          ),
          h(
            'div',
            { class: 'tl-actions' },
            h(ActionButton, { class: 'small', disabled: inUse, title: inUse ? 'Turn the client off first' : undefined, onClick: () => restore(s) }, 'Restore'),
            h(ActionButton, { class: 'small', onClick: () => promote(s), title: 'Make a golden image from this snapshot' }, 'Make image'),
            h(ActionButton, { class: 'small ghost-danger', onClick: () => remove(s) }, 'Delete'),
          ),
        ),
      ),
      h(
        'li',
        { class: 'origin' },
        h('span', { class: 'tl-dot', 'aria-hidden': 'true' }),
        h(
          'div',
          { class: 'tl-body' },
          h('div', null, h('strong', null, 'Golden image '), h('span', { class: 'tag' }, client.image)),
          h('div', { class: 'sub' }, `created ${when(client.createdAt)}`),
        ),
        h(
          'div',
          { class: 'tl-actions' },
          h(
            ActionButton,
            { class: 'small ghost-danger', disabled: inUse, title: inUse ? 'Turn the client off first' : undefined, onClick: reset },
            'Reset to golden',
          ),
        ),
      ),
    ),
    list.length === 0 ? h(Empty, null, 'No snapshots yet. Take one before trying something risky.') : null,
    client.schedule !== undefined ? h(ScheduleLine, { client, changed: props.changed }) : null,
  );
}

function ImageAssign(props: { client: Client; images: Image[]; changed: () => void }): El {
  const [choice, setChoice] = useState('');
  const { client } = props;
  const others = props.images.filter((i) => i.state === 'ready' && i.name !== client.image);
  const target = choice || others[0]?.name || '';
  return h(
    Card,
    { title: 'Golden image' },
    h('p', null, 'Based on ', h('span', { class: 'tag' }, client.image), '.'),
    others.length === 0
      ? h('p', { class: 'hint' }, 'No other image to switch to. Import one under Images.')
      : h(
          'form',
          { class: 'inline-form compact', onSubmit: (e: Event) => e.preventDefault() },
          h(
            'div',
            { class: 'field grow' },
            h('label', { for: 'assign-image', class: 'sr-only' }, 'New golden image'),
            h(
              'select',
              { id: 'assign-image', value: target, onChange: (e: Event) => setChoice((e.target as HTMLSelectElement).value) },
              others.map((i) => h('option', { key: i.name, value: i.name }, `${i.name} (${bytes(i.sizeBytes)})`)),
            ),
          ),
          h(
            ActionButton,
            {
              disabled: !target || client.online,
              title: client.online ? 'Turn the client off first' : undefined,
              onClick: async () => {
                const ok = await confirmAction({
                  title: `Switch to “${target}”?`,
                  body: h('p', null, `${client.name || client.mac} gets a fresh disk cloned from “${target}”. Its current disk content is discarded.`),
                  confirmLabel: 'Switch image',
                  danger: true,
                });
                if (!ok) return;
                try {
                  await api('POST', `/api/clients/${seg(client.mac)}/reset`, { image: target });
                  toast(`Now based on “${target}”`);
                  props.changed();
                } catch (err) {
                  toastError('Could not switch the image', err);
                }
              },
            },
            'Assign',
          ),
        ),
  );
}

/** The page title, with an inline rename (PATCH name). */
function ClientTitle(props: { client: Client; changed: () => void }): El {
  const c = props.client;
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(c.name);
  if (!editing) {
    return h(
      'h1',
      { class: 'title-line' },
      c.name || h('span', { class: 'muted' }, 'unnamed'),
      h(
        'button',
        {
          class: 'linkish small-link',
          onClick: () => {
            setName(c.name);
            setEditing(true);
          },
        },
        'rename',
      ),
    );
  }
  const save = async () => {
    try {
      await api('PATCH', `/api/clients/${seg(c.mac)}`, { name: name.trim() });
      setEditing(false);
      props.changed();
    } catch (err) {
      toastError('Rename failed', err);
    }
  };
  return h(
    'form',
    { class: 'inline-form compact', onSubmit: (e: Event) => e.preventDefault() },
    h('label', { for: 'client-name', class: 'sr-only' }, 'Name'),
    h('input', {
      id: 'client-name',
      value: name,
      maxLength: 64,
      autofocus: true,
      onInput: (e: Event) => setName((e.target as HTMLInputElement).value),
      onKeyDown: (e: KeyboardEvent) => e.key === 'Escape' && setEditing(false),
    }),
    h(ActionButton, { class: 'primary', type: 'submit', onClick: save }, 'Save'),
    h('button', { type: 'button', class: 'btn', onClick: () => setEditing(false) }, 'Cancel'),
  );
}

export function ClientPage(props: { mac: string }): El {
  const base = `/api/clients/${seg(props.mac)}`;
  const client = usePoll(() => api<Client>('GET', base), [props.mac]);
  const events = usePoll(() => api<{ events: BootEvent[] }>('GET', `${base}/events`).then((r) => r.events), [props.mac]);
  const snaps = usePoll(() => api<{ snapshots: Snapshot[] }>('GET', `${base}/snapshots`).then((r) => r.snapshots), [props.mac]);
  const images = usePoll(() => api<{ images: Image[] }>('GET', '/api/images').then((r) => r.images), [], 10_000);
  const c = client.data;
  const changed = () => {
    client.reload();
    snaps.reload();
    events.reload();
    images.reload();
  };

  if (!c) {
    return h(
      'div',
      { class: 'page' },
      h('a', { class: 'back', href: link('/') }, '← Clients'),
      client.error ? h('p', { class: 'error' }, client.error) : h('p', { class: 'muted' }, 'Loading…'),
    );
  }
  const remove = async () => {
    const ok = await confirmAction({
      title: `Delete ${c.name || c.mac}?`,
      body: h('p', null, 'The client, its disk and all its snapshots are deleted. The golden image stays.'),
      confirmLabel: 'Delete client',
      danger: true,
    });
    if (!ok) return;
    try {
      await api('DELETE', base);
      toast(`Deleted ${c.name || c.mac}`);
      location.hash = link('/');
    } catch (err) {
      toastError('Delete failed', err);
    }
  };

  return h(
    'div',
    { class: 'page' },
    h('a', { class: 'back', href: link('/') }, '← Clients'),
    h(
      'div',
      { class: 'page-head' },
      h(
        'div',
        null,
        h(ClientTitle, { client: c, changed }),
        h(
          'div',
          { class: 'sub' },
          h('span', { class: 'mono' }, c.mac),
          ' · ',
          h(Dot, { state: c.online ? 'ok' : 'off', text: c.online ? `online (${c.sessions ?? 1} session${(c.sessions ?? 1) === 1 ? '' : 's'})` : 'offline' }),
          c.lastEvent ? h('span', { class: 'muted' }, ` · ${stageLabel(c.lastEvent.stage)} ${ago(c.lastEvent.at)}`) : null,
        ),
      ),
      h(ActionButton, { class: 'ghost-danger', onClick: remove }, 'Delete client'),
    ),
    h(
      'div',
      { class: 'grid2' },
      h(
        'div',
        { class: 'col' },
        h(Snapshots, { client: c, snapshots: snaps.data, error: snaps.error, changed }),
        h(ImageAssign, { client: c, images: images.data ?? [], changed }),
      ),
      h(
        'div',
        { class: 'col' },
        h(BootTimeline, { client: c, events: events.data, error: events.error }),
        c.disks ? h(BootChoicesCard, { client: c, images: images.data ?? [], changed }) : null,
        h(
          Card,
          { title: 'Disk and target' },
          h(
            'dl',
            { class: 'facts' },
            h('dt', null, 'Disk'),
            h('dd', null, diskLine(c)),
            c.holders?.length
              ? [
                  h('dt', null, 'In use by'),
                  h(
                    'dd',
                    null,
                    c.holders.map((x) =>
                      h(
                        'div',
                        { key: x.initiatorName + x.address, class: 'mono wrap' },
                        `${x.initiatorName} from ${x.address}, ${ago(x.since).replace(' ago', '')}`,
                      ),
                    ),
                  ),
                ]
              : null,
            h('dt', null, 'Target'),
            h('dd', { class: 'mono wrap' }, c.target),
            c.rootPath ? [h('dt', null, 'Root path'), h('dd', { class: 'mono wrap' }, c.rootPath)] : null,
            h('dt', null, 'Initiator'),
            h('dd', { class: 'mono wrap' }, c.initiatorName ?? '—'),
            c.initiators?.length ? [h('dt', null, 'Also allowed'), h('dd', { class: 'mono wrap' }, c.initiators.join(', '))] : null,
            h('dt', null, 'CHAP'),
            h('dd', null, c.chap ? `user ${c.chap.user}${c.chap.mutual ? ' · mutual' : ''}` : h('span', { class: 'bad-text' }, 'off')),
            c.warnings?.length
              ? [
                  h('dt', null, 'Warning'),
                  h(
                    'dd',
                    null,
                    c.warnings.map((w) => h('div', { key: w, class: 'bad-text' }, w)),
                  ),
                ]
              : null,
            h('dt', null, 'Address'),
            h('dd', { class: 'mono' }, c.ip || 'from DHCP'),
            h('dt', null, 'Created'),
            h('dd', null, when(c.createdAt)),
            h('dt', null, 'Download'),
            h(
              'dd',
              null,
              h('a', { href: `${base}/export?format=qcow2`, download: true }, 'qcow2'),
              ' · ',
              h('a', { href: `${base}/export?format=raw`, download: true }, 'raw'),
              h('span', { class: 'sub' }, ' (the disk as it is now)'),
            ),
          ),
        ),
      ),
    ),
  );
}
