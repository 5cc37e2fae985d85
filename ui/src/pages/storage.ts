/**
 * Storage and health: where state lives and how full it is, the attached disks, the box's CPU,
 * memory and network, and every service's state. Shapes follow appliance/storage/report.ts and
 * health.ts; anything the report grows later is shown generically rather than hidden.
 */
import { api, type Status } from '../api';
import { ago, bytes, duration, when } from '../format';
import { Card, Dot, Empty, HeadRow, Meter, h, usePoll, type El } from '../ui';

interface Warning {
  code?: string;
  level?: 'info' | 'warning' | 'critical';
  message: string;
}
interface Partition {
  device: string;
  fsType: string;
  label: string;
  sizeBytes: number;
  mount: string;
  usedBytes: number | null;
  freeBytes: number | null;
  holdsDataDir: boolean;
}
interface Disk {
  device: string;
  name: string;
  model: string;
  serial?: string;
  sizeBytes: number;
  removable: boolean;
  usb: boolean;
  transport: string;
  system: boolean;
  inUse: boolean;
  holdsDataDir: boolean;
  partitions: Partition[];
}
interface DataDir {
  path: string;
  realPath: string | null;
  mount: string | null;
  source: string | null;
  fsType: string | null;
  sizeBytes: number | null;
  freeBytes: number | null;
  disk: string | null;
  onRootFilesystem: boolean;
  state: 'ok' | 'low' | 'missing';
}
interface Iface {
  name: string;
  mac: string;
  up: boolean;
  type: string;
  speedMbps: number | null;
  defaultRoute: boolean;
  addresses: { family: string; address: string; netmask: string }[];
}
interface Health {
  cpu?: { count: number; percent: number | null; loadAvg: [number, number, number]; temperatureC: number | null };
  memory?: { totalBytes: number; availableBytes: number; usedPercent: number };
  uptimeSeconds?: number;
  interfaces?: Iface[];
  warnings?: Warning[];
}
interface StoreUsage {
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  allocatedBytes?: number;
  segments?: number;
  segmentBytes?: number;
  chunkBytes?: number;
}
interface StorageReport {
  dataDir?: DataDir;
  disks?: Disk[];
  warnings?: Warning[];
  health?: Health;
  store?: StoreUsage;
  collectedAt?: number;
  [k: string]: unknown;
}

function Usage(props: { used: number | null | undefined; total: number | null | undefined }): El | null {
  const { used, total } = props;
  if (typeof used !== 'number' || typeof total !== 'number' || total <= 0) return null;
  return h(
    'div',
    { class: 'usage' },
    h(Meter, { used, total }),
    h('span', { class: 'sub' }, `${bytes(used)} of ${bytes(total)} used · ${bytes(total - used)} free (${Math.round((used / total) * 100)} %)`),
  );
}

function Warnings(props: { list: Warning[] }): El | null {
  if (!props.list.length) return null;
  return h(
    'div',
    { class: 'stack' },
    props.list.map((w, i) =>
      h('div', { key: w.code ?? i, class: `notice ${w.level ?? 'warning'}`, role: w.level === 'critical' ? 'alert' : 'status' }, w.message),
    ),
  );
}

function DataDirCard(props: { d: DataDir; store: StoreUsage | undefined }): El {
  const { d, store } = props;
  const used = d.sizeBytes !== null && d.freeBytes !== null ? d.sizeBytes - d.freeBytes : null;
  return h(
    Card,
    {
      title: 'Where state lives',
      actions: h(Dot, {
        state: d.state === 'ok' ? 'ok' : d.state === 'low' ? 'warn' : 'bad',
        text: d.state === 'ok' ? 'healthy' : d.state === 'low' ? 'low on space' : 'missing',
      }),
    },
    h('p', { class: 'mono wrap big-path' }, d.realPath ?? d.path),
    h(Usage, { used, total: d.sizeBytes }),
    store
      ? h(
          'div',
          null,
          h('h3', null, 'image store'),
          h(Usage, { used: store.usedBytes, total: store.capacityBytes }),
          store.segments !== undefined
            ? h(
                'p',
                { class: 'sub' },
                `${bytes(store.allocatedBytes)} preallocated in ${store.segments} segment file${store.segments === 1 ? '' : 's'} of ${bytes(store.segmentBytes)} · copy-on-write chunks of ${bytes(store.chunkBytes)}`,
              )
            : null,
        )
      : null,
    h(
      'dl',
      { class: 'facts' },
      h('dt', null, 'Filesystem'),
      h('dd', { class: 'mono' }, [d.source, d.fsType].filter(Boolean).join(' · ') || '—'),
      h('dt', null, 'Mounted at'),
      h('dd', { class: 'mono' }, d.mount ?? '—'),
      h('dt', null, 'Disk'),
      h('dd', { class: 'mono' }, d.disk ?? '—'),
    ),
    d.onRootFilesystem
      ? h('p', { class: 'hint' }, 'This is the system disk: images wear it out and fill it. Attach a USB disk and move the data directory there.')
      : null,
  );
}

function DiskCard(props: { disk: Disk }): El {
  const d = props.disk;
  const badges = [
    d.holdsDataDir && 'data disk',
    d.system && 'system',
    d.usb ? 'USB' : d.transport,
    d.removable && 'removable',
    d.inUse && !d.holdsDataDir && 'mounted',
  ].filter(Boolean) as string[];
  return h(
    'div',
    { class: `subcard${d.holdsDataDir ? ' highlight' : ''}` },
    h(
      'div',
      { class: 'disk-head' },
      h('div', null, h('div', { class: 'title' }, d.model || d.name), h('div', { class: 'sub mono' }, `${d.device} · ${bytes(d.sizeBytes)}`)),
      h(
        'div',
        { class: 'badges' },
        badges.map((b) => h('span', { key: b, class: 'tag' }, b)),
      ),
    ),
    d.partitions.length
      ? h(
          'div',
          { class: 'parts' },
          d.partitions.map((p) =>
            h(
              'div',
              { key: p.device, class: 'part' },
              h(
                'div',
                null,
                h('span', { class: 'mono' }, p.device),
                ' ',
                h('span', { class: 'sub' }, [p.label, p.fsType, bytes(p.sizeBytes)].filter(Boolean).join(' · ')),
                p.mount ? h('span', { class: 'sub mono' }, ` on ${p.mount}`) : h('span', { class: 'sub' }, ' · not mounted'),
              ),
              h(Usage, { used: p.usedBytes, total: p.usedBytes !== null && p.freeBytes !== null ? p.usedBytes + p.freeBytes : null }),
            ),
          ),
        )
      : h('p', { class: 'sub' }, 'No partitions.'),
  );
}

function HealthCard(props: { health: Health }): El {
  const { cpu, memory, interfaces, uptimeSeconds } = props.health;
  return h(
    Card,
    { title: 'System' },
    h(Warnings, { list: props.health.warnings ?? [] }),
    h(
      'dl',
      { class: 'facts' },
      cpu
        ? [
            h('dt', null, 'CPU'),
            h(
              'dd',
              null,
              `${cpu.count} cores${cpu.percent !== null ? ` · ${Math.round(cpu.percent)} % busy` : ''} · load ${cpu.loadAvg.map((l) => l.toFixed(2)).join(' ')}`,
            ),
            cpu.temperatureC !== null ? [h('dt', null, 'Temperature'), h('dd', null, `${Math.round(cpu.temperatureC)} °C`)] : null,
          ]
        : null,
      memory ? [h('dt', null, 'Memory'), h('dd', null, h(Usage, { used: memory.totalBytes - memory.availableBytes, total: memory.totalBytes }))] : null,
      uptimeSeconds !== undefined ? [h('dt', null, 'Up for'), h('dd', null, duration(uptimeSeconds))] : null,
    ),
    interfaces?.length
      ? [
          h('h3', null, 'network'),
          h(
            'div',
            { class: 'stack' },
            interfaces.map((i) =>
              h(
                'div',
                { key: i.name, class: 'iface' },
                h(Dot, { state: i.up ? 'ok' : 'off', text: i.name }),
                h('span', { class: 'mono sub wrap' }, i.addresses.map((a) => a.address).join(', ') || 'no address'),
                h('span', { class: 'sub' }, [i.speedMbps ? `${i.speedMbps} Mb/s` : '', i.defaultRoute ? 'default route' : ''].filter(Boolean).join(' · ')),
              ),
            ),
          ),
        ]
      : null,
  );
}

/** A readable rendering of report keys this page does not know yet. */
function Extra(props: { o: Record<string, unknown> }): El | null {
  const entries = Object.entries(props.o);
  if (!entries.length) return null;
  return h(
    Card,
    { title: 'More' },
    h(
      'dl',
      { class: 'facts' },
      entries.flatMap(([k, v]) => [
        h('dt', { key: `t${k}` }, k),
        h(
          'dd',
          { key: `d${k}`, class: 'mono wrap' },
          typeof v === 'number' && /bytes$/i.test(k) ? bytes(v) : typeof v === 'object' ? JSON.stringify(v) : String(v),
        ),
      ]),
    ),
  );
}

function ServicesCard(props: { status: Status | undefined }): El {
  const s = props.status;
  return h(
    Card,
    { title: 'Services' },
    !s
      ? h('p', { class: 'muted' }, 'Loading…')
      : h(
          'div',
          { class: 'rows' },
          h(HeadRow, { class: 'service-row', cols: ['Service', 'State', 'Listening on', 'Counters'] }),
          s.services.map((svc) =>
            h(
              'div',
              { key: svc.name, class: 'row service-row', 'data-service': svc.name },
              h('div', { class: 'cell main' }, h('div', { class: 'title' }, svc.name), svc.detail ? h('div', { class: 'sub' }, svc.detail) : null),
              h(
                'div',
                { class: 'cell' },
                h(Dot, {
                  state: svc.state === 'running' ? 'ok' : svc.state === 'failed' ? 'bad' : svc.state === 'disabled' || svc.state === 'stopped' ? 'off' : 'warn',
                  text: svc.state,
                }),
              ),
              h('div', { class: 'cell mono wrap' }, svc.listen.join(', ') || '—'),
              h(
                'div',
                { class: 'cell sub' },
                Object.entries(svc.counters ?? {})
                  .slice(0, 4)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(' · ') || '—',
              ),
            ),
          ),
        ),
    s
      ? h('p', { class: 'sub' }, `version ${s.version} · started ${when(s.startedAt)} · up ${duration(s.uptimeSeconds)} · server address ${s.serverAddress}`)
      : null,
  );
}

export function StoragePage(props: { status: Status | undefined }): El {
  const storage = usePoll(() => api<StorageReport>('GET', '/api/storage'), [], 5000);
  const r = storage.data;
  const { dataDir, disks, warnings, health, store, collectedAt, ...extra } = r ?? {};
  return h(
    'div',
    { class: 'page' },
    storage.error ? h('p', { class: 'error' }, storage.error) : null,
    r === undefined && !storage.error ? h('p', { class: 'muted' }, 'Loading…') : null,
    h(Warnings, { list: warnings ?? [] }),
    dataDir ? h(DataDirCard, { d: dataDir, store: store ?? props.status?.storage?.store }) : null,
    disks
      ? h(
          Card,
          { title: 'Disks', actions: collectedAt ? h('span', { class: 'sub' }, `checked ${ago(collectedAt)}`) : null },
          disks.length
            ? h(
                'div',
                { class: 'stack' },
                disks.map((d) => h(DiskCard, { key: d.device, disk: d })),
              )
            : h(Empty, null, 'No disks found.'),
        )
      : null,
    health ? h(HealthCard, { health }) : null,
    r ? h(Extra, { o: extra }) : null,
    h(ServicesCard, { status: props.status }),
  );
}
