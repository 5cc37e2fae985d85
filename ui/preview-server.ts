/**
 * A design preview, not the appliance: serves the built UI with the real login/CSRF code and an
 * in-memory stand-in for the rest of the API (shaped like docs/api.md, with sample clients,
 * images and a live-looking iSCSI session) so the pages can be worked on and screenshotted
 * without disks or boots. Run: `node ui/build.mjs && npx tsx ui/preview-server.ts [port]`.
 * The admin token it accepts is printed at start.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../appliance/core/clock';
import { ApiError } from '../appliance/core/errors';
import { createLogger } from '../appliance/core/log';
import { buildHttpApp } from '../appliance/http/app';
import { uiRoutes } from '../appliance/http/routes/ui';
import { uiAuth } from '../appliance/http/ui-auth';

const GiB = 1024 ** 3;
const t0 = Date.now();
const iso = (msAgo: number) => new Date(Date.now() - msAgo).toISOString();

interface Snap { id: number; name: string; createdAt: string; usedBytes: number }
const images = [
  { name: 'debian-12', sizeBytes: 20 * GiB, usedBytes: 3.2 * GiB, state: 'ready', createdAt: iso(9 * 86400_000), rescue: false },
  { name: 'win11-lab', sizeBytes: 64 * GiB, usedBytes: 21.7 * GiB, state: 'ready', createdAt: iso(3 * 86400_000), rescue: false },
  { name: 'rescue-tools', sizeBytes: 2 * GiB, usedBytes: 0.6 * GiB, state: 'ready', createdAt: iso(20 * 86400_000), rescue: true },
  { name: 'ubuntu-24.04', sizeBytes: 25 * GiB, usedBytes: 0, state: 'importing', progress: 0.1, createdAt: iso(60_000) },
] as Record<string, unknown>[];
const clients = [
  { mac: '52:54:00:12:34:56', name: 'lab-pc-1', image: 'debian-12', online: true, diskUsedBytes: 412 * 1024 ** 2, lastEvent: { stage: 'iscsi-first-read', at: iso(40_000) } },
  { mac: '52:54:00:12:34:57', name: 'lab-pc-2', image: 'debian-12', online: false, diskUsedBytes: 1.3 * GiB, lastEvent: { stage: 'iscsi-logout', at: iso(3 * 3600_000) } },
  { mac: '52:54:00:ab:cd:ef', name: 'kiosk-front', image: 'win11-lab', online: false, diskUsedBytes: 0, lastEvent: { stage: 'tftp-error', at: iso(20 * 60_000) } },
  { mac: '00:1b:21:0a:0b:0c', name: '', image: 'win11-lab', online: false, diskUsedBytes: 0, lastEvent: null },
].map((c, i) => ({
  ...c,
  disk: `client-${c.mac.replace(/:/g, '')}`,
  target: `iqn.2026-11.local.netboot:${c.mac.replace(/:/g, '')}`,
  lun: 0,
  rootPath: `iscsi:192.168.1.10::3260:0:iqn.2026-11.local.netboot:${c.mac.replace(/:/g, '')}`,
  initiatorName: `iqn.2026-11.local.netboot:initiator:${c.mac.replace(/:/g, '')}`,
  initiators: [],
  chap: i === 2 ? { user: 'kiosk' } : null,
  ip: null,
  createdAt: iso((10 - i) * 86400_000),
  sessions: c.online ? 1 : 0,
  diskSizeBytes: c.image === 'debian-12' ? 20 * GiB : 64 * GiB,
  bootDisk: 'default',
  nextBoot: i === 1 ? { kind: 'image', image: 'win11-lab' } : null,
  schedule: i === 0 ? { everyMinutes: 1440, keep: 7 } : null,
  disks: [
    { name: 'default', image: c.image, target: `iqn.2026-11.local.netboot:client-${c.mac.replace(/:/g, '')}`, throwaway: false, inUse: c.online },
    ...(i === 0 ? [{ name: 'exam', image: 'debian-12', target: `iqn.2026-11.local.netboot:client-${c.mac.replace(/:/g, '')}.exam`, throwaway: false, inUse: false }] : []),
  ],
  holders: c.online ? [{ initiatorName: `iqn.2026-11.local.netboot:initiator-${c.mac.replace(/:/g, '')}`, address: '192.168.1.57:51234', since: iso(12 * 60_000) }] : [],
}));
const snaps = new Map<string, Snap[]>([
  ['52:54:00:12:34:56', [
    { id: 1, name: 'clean-install', createdAt: iso(8 * 86400_000), usedBytes: 120 * 1024 ** 2 },
    { id: 2, name: 'before-updates', createdAt: iso(2 * 86400_000), usedBytes: 260 * 1024 ** 2 },
  ]],
]);
let snapSeq = 10;
const bootEvents = (mac: string) => {
  if (mac !== '52:54:00:12:34:56') return mac === '52:54:00:ab:cd:ef' ? [{ id: 1, at: iso(20 * 60_000 + 4000), stage: 'dhcp-discover', detail: { arch: 'bios' }, count: 1 }, { id: 2, at: iso(20 * 60_000), stage: 'tftp-error', detail: { file: 'undionly.kpxe', reason: 'timeout' }, count: 3 }] : [];
  const base = 3 * 3600_000;
  const one = (off: number, id: number) => [
    { id: id, at: iso(off + 31_000), stage: 'dhcp-discover', detail: { arch: 'bios', vendor: 'PXEClient' }, count: 1 },
    { id: id + 1, at: iso(off + 30_500), stage: 'dhcp-offer', detail: { ip: '192.168.1.57', mode: 'proxy' }, count: 1 },
    { id: id + 2, at: iso(off + 29_000), stage: 'tftp-done', detail: { file: 'undionly.kpxe', bytes: 70_000 }, count: 1 },
    { id: id + 3, at: iso(off + 27_000), stage: 'script-fetched', detail: { via: 'http' }, count: 1 },
    { id: id + 4, at: iso(off + 26_000), stage: 'iscsi-login', detail: { initiator: 'iPXE' }, count: 1 },
    { id: id + 5, at: iso(off + 25_500), stage: 'iscsi-first-read', count: 1 },
    { id: id + 6, at: iso(off + 12_000), stage: 'iscsi-login', detail: { initiator: 'iscsistart' }, count: 1 },
  ];
  return [...one(base, 100), ...one(40_000 - 31_000, 200)];
};

const token = 'preview'.padEnd(64, '0');
const dataDir = mkdtempSync(join(tmpdir(), 'nb-ui-preview-'));
const log = createLogger({ level: 'warn', format: 'pretty' });
const auth = uiAuth({ dataDir, clock: systemClock, token, log });
const find = (mac: string) => {
  const c = clients.find((x) => x.mac === mac.toLowerCase());
  if (!c) throw new ApiError('CLIENT_NOT_FOUND', 404, `no client ${mac}`);
  return c;
};
let settings = { dhcp: { mode: 'proxy' } };

async function main(): Promise<void> {
  const app = await buildHttpApp({
    log,
    token,
    authenticators: [auth.authenticator],
    routes: [
      auth.routes,
      uiRoutes(),
      (a) => {
        a.get('/api/status', async () => ({
          version: '0.1.0', startedAt: new Date(t0).toISOString(), uptimeSeconds: Math.round((Date.now() - t0) / 1000) + 93_000, serverAddress: '192.168.1.10',
          services: [
            { name: 'dhcp', state: 'running', listen: ['udp 0.0.0.0:67', 'udp 0.0.0.0:4011'], counters: { offers: 41 } },
            { name: 'tftp', state: 'running', listen: ['udp 0.0.0.0:69'], counters: { transfers: 38 } },
            { name: 'iscsi', state: 'running', listen: ['tcp 0.0.0.0:3260'], counters: { logins: 77 } },
            { name: 'mdns', state: 'disabled', listen: [], counters: {}, detail: 'mdns.enabled is false' },
            { name: 'http', state: 'running', listen: ['tcp 0.0.0.0:8080'], counters: { requests: 1234 } },
          ],
          storage: { dataDir: '/srv/netboot', filesystem: { totalBytes: 465 * GiB, freeBytes: 402 * GiB, availableBytes: 400 * GiB }, store: { capacityBytes: 440 * GiB, usedBytes: 27 * GiB, freeBytes: 413 * GiB } },
        }));
        a.get('/api/images', async () => {
          for (const i of images) if (i.state === 'importing') i.progress = Math.min(0.97, ((Date.now() - t0) / 120_000) % 1);
          return { images: images.map((i) => ({ ...i, clients: clients.filter((c) => c.image === i.name).length })) };
        });
        a.delete<{ Params: { name: string } }>('/api/images/:name', async (req, reply) => {
          if (clients.some((c) => c.image === req.params.name)) throw new ApiError('IMAGE_IN_USE', 409, 'clients are based on this image');
          images.splice(images.findIndex((i) => i.name === req.params.name), 1);
          return reply.status(204).send();
        });
        a.get('/api/clients', async () => ({ clients }));
        a.get<{ Params: { mac: string } }>('/api/clients/:mac', async (req) => find(req.params.mac));
        a.get<{ Params: { mac: string } }>('/api/clients/:mac/events', async (req) => ({ events: bootEvents(find(req.params.mac).mac) }));
        a.get<{ Params: { mac: string } }>('/api/clients/:mac/snapshots', async (req) => ({ snapshots: snaps.get(find(req.params.mac).mac) ?? [] }));
        a.post<{ Params: { mac: string }; Body: { name: string } }>('/api/clients/:mac/snapshots', async (req, reply) => {
          const c = find(req.params.mac);
          const s = { id: ++snapSeq, name: req.body.name, createdAt: new Date().toISOString(), usedBytes: c.diskUsedBytes };
          snaps.set(c.mac, [...(snaps.get(c.mac) ?? []), s]);
          return reply.status(201).send(s);
        });
        a.post<{ Params: { mac: string; id: string } }>('/api/clients/:mac/snapshots/:id/restore', async (req) => {
          const c = find(req.params.mac);
          if (c.online) throw new ApiError('DISK_IN_USE', 409, 'an initiator is logged in');
          return {};
        });
        a.get('/api/sessions', async () => ({
          sessions: [{
            id: 's1', initiatorName: 'iqn.2026-11.local.netboot:initiator:525400123456', address: '192.168.1.57:51234', target: clients[0].target, clientMac: clients[0].mac,
            since: iso(12 * 60_000), readBytes: Math.round((Date.now() - t0) * 21_000), writtenBytes: Math.round((Date.now() - t0) * 1_300), readCommands: 0, writeCommands: 0,
          }],
        }));
        a.get('/api/storage', async () => ({
        dataDir: { path: '/srv/netboot', realPath: '/srv/netboot', mount: '/srv/netboot', source: '/dev/sda1', fsType: 'ext4', sizeBytes: 465 * GiB, freeBytes: 400 * GiB, disk: '/dev/sda', onRootFilesystem: false, state: 'ok' },
        disks: [
          { device: '/dev/sda', name: 'sda', model: 'SanDisk Extreme 55AE', serial: 'X', sizeBytes: 500 * GiB, removable: false, usb: true, transport: 'usb', system: false, inUse: true, holdsDataDir: true,
            partitions: [{ device: '/dev/sda1', fsType: 'ext4', label: 'NETBOOT', uuid: 'u', sizeBytes: 465 * GiB, mount: '/srv/netboot', usedBytes: 65 * GiB, freeBytes: 400 * GiB, holdsDataDir: true }] },
          { device: '/dev/mmcblk0', name: 'mmcblk0', model: 'SD card', serial: '', sizeBytes: 32 * GiB, removable: true, usb: false, transport: 'mmc', system: true, inUse: true, holdsDataDir: false,
            partitions: [
              { device: '/dev/mmcblk0p1', fsType: 'vfat', label: 'bootfs', uuid: 'a', sizeBytes: 512 * 1024 ** 2, mount: '/boot/firmware', usedBytes: 70 * 1024 ** 2, freeBytes: 442 * 1024 ** 2, holdsDataDir: false },
              { device: '/dev/mmcblk0p2', fsType: 'ext4', label: 'rootfs', uuid: 'b', sizeBytes: 31 * GiB, mount: '/', usedBytes: 4 * GiB, freeBytes: 27 * GiB, holdsDataDir: false },
            ] },
        ],
        warnings: [],
        health: {
          cpu: { count: 4, percent: 7, loadAvg: [0.31, 0.28, 0.22], temperatureC: 51.2 },
          memory: { totalBytes: 4 * GiB, availableBytes: 3.3 * GiB, usedPercent: 18 },
          uptimeSeconds: 93_000,
          interfaces: [{ name: 'eth0', mac: 'dc:a6:32:00:00:01', up: true, type: 'wired', speedMbps: 1000, mtu: 1500, defaultRoute: true, addresses: [{ family: 'IPv4', address: '192.168.1.10', netmask: '255.255.255.0' }] }],
          warnings: [],
          collectedAt: Date.now(),
        },
        collectedAt: Date.now() - 4000,
      }));
      a.get('/api/settings', async () => settings);
        a.patch<{ Body: { dhcp: { mode: string } } }>('/api/settings', async (req) => (settings = { dhcp: { ...settings.dhcp, ...req.body.dhcp } }));
      },
    ],
  });
  const port = Number(process.argv[2] ?? 8099);
  await app.listen({ host: '127.0.0.1', port });
  console.log(`UI preview on http://127.0.0.1:${port}/ — token ${token}`);
}

void main();
