import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildStorageReport, filesystemFor, formatBytes, isUnder, type BlockDeviceRow, type FsSizeRow } from '../../appliance/storage/report';

const fixture = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'pi4-usb-ssd.json'), 'utf8')) as {
  blockDevices: BlockDeviceRow[];
  fsSizes: FsSizeRow[];
  fsSize: FsSizeRow[];
};
const GiB = 1024 ** 3;
const base = { blockDevices: fixture.blockDevices, fsSizes: fixture.fsSize, collectedAt: 1 };

describe('filesystemFor / isUnder', () => {
  it('picks the longest mount point on a path-component boundary', () => {
    expect(filesystemFor('/srv/netboot/images', fixture.fsSize)?.fs).toBe('/dev/sda1');
    expect(filesystemFor('/srv/netboot', fixture.fsSize)?.fs).toBe('/dev/sda1');
    // "/srv/netboot2" is not under "/srv/netboot": a plain string prefix would say it is.
    expect(filesystemFor('/srv/netboot2', fixture.fsSize)?.fs).toBe('/dev/mmcblk0p2');
    expect(filesystemFor('/boot/firmware/config.txt', fixture.fsSize)?.fs).toBe('/dev/mmcblk0p1');
    expect(isUnder('/x', '/')).toBe(true);
    expect(isUnder('/srv', '/srv/netboot')).toBe(false);
  });
});

describe('buildStorageReport on a Pi 4 with a USB SSD', () => {
  const r = buildStorageReport({ ...base, dataDir: '/srv/netboot', realDataDir: '/srv/netboot', expectedMount: '/srv/netboot' });

  it('finds the USB disk holding the data directory and its free space', () => {
    expect(r.dataDir).toMatchObject({
      mount: '/srv/netboot',
      source: '/dev/sda1',
      fsType: 'ext4',
      disk: '/dev/sda',
      freeBytes: 370921873408,
      sizeBytes: 491180957696,
      onRootFilesystem: false,
      state: 'ok',
    });
    expect(r.warnings).toEqual([]);
  });

  it('lists disks with partitions, marks the SD card as the system disk and drops zram', () => {
    expect(r.disks.map((d) => d.device)).toEqual(['/dev/mmcblk0', '/dev/sda', '/dev/sdb']);
    const [sd, ssd, stick] = r.disks;
    expect(sd).toMatchObject({ system: true, inUse: true, usb: false, holdsDataDir: false });
    expect(sd!.partitions.map((p) => p.device)).toEqual(['/dev/mmcblk0p1', '/dev/mmcblk0p2']);
    expect(ssd).toMatchObject({ model: 'Samsung SSD 870 EVO 500GB', usb: true, system: false, holdsDataDir: true });
    expect(ssd!.partitions[0]).toMatchObject({ label: 'NETBOOT', mount: '/srv/netboot', holdsDataDir: true, freeBytes: 370921873408 });
    // The empty stick: a candidate for "prepare disk".
    expect(stick).toMatchObject({ model: 'Cruzer Blade', removable: true, usb: true, inUse: false, system: false, partitions: [] });
  });
});

describe('warnings', () => {
  const withFree = (available: number, size = 100 * GiB) =>
    fixture.fsSize.map((f) => (f.mount === '/srv/netboot' ? { ...f, size, available, used: size - available } : f));

  it('warns below 10 % free, and below 1 GiB free on a large disk', () => {
    const pct = buildStorageReport({ ...base, fsSizes: withFree(9 * GiB), dataDir: '/srv/netboot', realDataDir: '/srv/netboot' });
    expect(pct.dataDir.state).toBe('low');
    expect(pct.warnings.map((w) => [w.code, w.level])).toEqual([['DATA_DIR_LOW_SPACE', 'warning']]);
    const abs = buildStorageReport({ ...base, fsSizes: withFree(0.9 * GiB, 4 * GiB), dataDir: '/srv/netboot', realDataDir: '/srv/netboot' });
    expect(abs.warnings[0]?.code).toBe('DATA_DIR_LOW_SPACE');
    const ok = buildStorageReport({ ...base, fsSizes: withFree(11 * GiB), dataDir: '/srv/netboot', realDataDir: '/srv/netboot' });
    expect(ok.warnings).toEqual([]);
    const critical = buildStorageReport({ ...base, fsSizes: withFree(0.2 * GiB), dataDir: '/srv/netboot', realDataDir: '/srv/netboot' });
    expect(critical.warnings[0]).toMatchObject({ code: 'DATA_DIR_LOW_SPACE', level: 'critical' });
    expect(critical.warnings[0]!.message).toContain('204.8 MiB free of 100.0 GiB');
  });

  it('reports a data directory that no longer exists as missing', () => {
    const r = buildStorageReport({ ...base, dataDir: '/srv/netboot/var', realDataDir: null });
    expect(r.dataDir).toMatchObject({ state: 'missing', mount: null, disk: null });
    expect(r.warnings.map((w) => w.code)).toEqual(['DATA_DIR_MISSING']);
  });

  it('says the USB disk is not mounted when the directory falls through to the SD card', () => {
    const unplugged = fixture.fsSize.filter((f) => f.mount !== '/srv/netboot');
    const r = buildStorageReport({ ...base, fsSizes: unplugged, dataDir: '/srv/netboot', realDataDir: '/srv/netboot', expectedMount: '/srv/netboot' });
    expect(r.dataDir).toMatchObject({ state: 'missing', mount: '/', onRootFilesystem: true });
    expect(r.warnings.map((w) => [w.code, w.level])).toEqual([['DATA_DIR_NOT_MOUNTED', 'critical']]);
  });

  it('notes a data directory on the system disk when no mount is expected, and read-only mounts', () => {
    const r = buildStorageReport({ ...base, dataDir: './var', realDataDir: '/home/pi/netboot/var' });
    expect(r.warnings.map((w) => [w.code, w.level])).toEqual([['DATA_DIR_ON_SYSTEM_DISK', 'info']]);
    const ro = fixture.fsSize.map((f) => (f.mount === '/srv/netboot' ? { ...f, rw: false } : f));
    expect(buildStorageReport({ ...base, fsSizes: ro, dataDir: '/srv/netboot', realDataDir: '/srv/netboot' }).warnings.map((w) => w.code)).toEqual([
      'DATA_DIR_READ_ONLY',
    ]);
  });

  it('formats sizes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(370921873408)).toBe('345.4 GiB');
  });
});
