/** Storage and service health: where state lives, how full it is, and every service's state. */
import { api, type Status } from '../api';
import { bytes, duration, when } from '../format';
import { Card, Dot, Empty, Meter, h, usePoll, type El } from '../ui';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const human = (k: string) => k.replace(/Bytes$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').replace(/[_-]/g, ' ').toLowerCase();

/** One value, formatted by what its key says it is. */
function value(k: string, v: Json): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number' && /bytes$/i.test(k)) return bytes(v);
  if (typeof v === 'number' && /seconds$/i.test(k)) return duration(v);
  if (typeof v === 'string' && /(At|Time)$/.test(k) && !Number.isNaN(Date.parse(v))) return when(v);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v)) return v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A used/total meter when an object carries both. */
function usage(o: Record<string, Json>): El | null {
  const total = (o.totalBytes ?? o.sizeBytes ?? o.capacityBytes) as number | undefined;
  const used = (o.usedBytes ?? (typeof total === 'number' && typeof o.availableBytes === 'number' ? total - (o.availableBytes as number) : typeof total === 'number' && typeof o.freeBytes === 'number' ? total - (o.freeBytes as number) : undefined)) as number | undefined;
  if (typeof total !== 'number' || typeof used !== 'number' || total <= 0) return null;
  return h('div', { class: 'usage' }, h(Meter, { used, total }), h('span', { class: 'sub' }, `${bytes(used)} of ${bytes(total)} used (${Math.round((used / total) * 100)} %)`));
}

/** A generic, readable rendering of an object from the API (the storage report grows over time). */
function Facts(props: { o: Record<string, Json> }): El {
  const entries = Object.entries(props.o).filter(([, v]) => typeof v !== 'object' || v === null || (Array.isArray(v) && v.every((x) => typeof x !== 'object')));
  const nested = Object.entries(props.o).filter(([, v]) => v !== null && typeof v === 'object' && !(Array.isArray(v) && v.every((x) => typeof x !== 'object')));
  return h('div', null,
    usage(props.o),
    entries.length ? h('dl', { class: 'facts' }, entries.flatMap(([k, v]) => [h('dt', { key: `t${k}` }, human(k)), h('dd', { key: `d${k}`, class: typeof v === 'string' && v.startsWith('/') ? 'mono wrap' : 'wrap' }, value(k, v))])) : null,
    nested.map(([k, v]) => h('div', { key: k, class: 'nested' }, h('h3', null, human(k)), Array.isArray(v) ? h(List, { items: v }) : h(Facts, { o: v as Record<string, Json> }))),
  );
}

function List(props: { items: Json[] }): El {
  if (!props.items.length) return h(Empty, null, 'none');
  return h('div', { class: 'stack' }, props.items.map((item, i) =>
    typeof item === 'object' && item !== null && !Array.isArray(item)
      ? h('div', { key: i, class: 'subcard' + (item.holdsDataDir || item.dataDir === true ? ' highlight' : '') }, h(Facts, { o: item }))
      : h('div', { key: i }, value('', item))));
}

function Warnings(props: { warnings: Json }): El | null {
  const list = Array.isArray(props.warnings) ? props.warnings : [];
  if (!list.length) return null;
  return h('div', { class: 'warnings', role: 'alert' }, list.map((w, i) =>
    h('p', { key: i }, '⚠ ', typeof w === 'string' ? w : typeof w === 'object' && w && !Array.isArray(w) ? String(w.message ?? JSON.stringify(w)) : String(w))));
}

export function StoragePage(props: { status: Status | undefined }): El {
  const storage = usePoll(() => api<Record<string, Json>>('GET', '/api/storage'), [], 5000);
  const s = props.status;
  const report = storage.data ?? {};
  const { warnings, ...rest } = report;
  return h('div', { class: 'page' },
    h(Warnings, { warnings: warnings ?? null }),
    s?.storage ? h(Card, { title: 'Where state lives' },
      h('p', { class: 'mono wrap' }, s.storage.dataDir),
      s.storage.store ? h('div', null, h('h3', null, 'image store'), usage(s.storage.store as unknown as Record<string, Json>)) : null,
      s.storage.filesystem ? h('div', null, h('h3', null, 'filesystem'), usage(s.storage.filesystem as unknown as Record<string, Json>)) : null) : null,
    h(Card, { title: 'Disks and filesystems' },
      storage.error ? h('p', { class: 'error' }, storage.error) : null,
      storage.data === undefined && !storage.error ? h('p', { class: 'muted' }, 'Loading…') : h(Facts, { o: rest })),
    h(Card, { title: 'Services' },
      !s ? h('p', { class: 'muted' }, 'Loading…') : h('div', { class: 'rows' }, s.services.map((svc) =>
        h('div', { key: svc.name, class: 'row service-row' },
          h('div', { class: 'cell main' }, h('div', { class: 'title' }, svc.name), svc.detail ? h('div', { class: 'sub' }, svc.detail) : null),
          h('div', { class: 'cell' }, h(Dot, { state: svc.state === 'running' ? 'ok' : svc.state === 'failed' ? 'bad' : svc.state === 'disabled' || svc.state === 'stopped' ? 'off' : 'warn', text: svc.state })),
          h('div', { class: 'cell mono wrap' }, svc.listen.join(', ') || '—'),
          h('div', { class: 'cell sub' }, Object.entries(svc.counters ?? {}).slice(0, 4).map(([k, v]) => `${human(k)} ${v}`).join(' · '))))),
      s ? h('p', { class: 'sub' }, `version ${s.version} · started ${when(s.startedAt)} · up ${duration(s.uptimeSeconds)} · server address ${s.serverAddress}`) : null),
  );
}
