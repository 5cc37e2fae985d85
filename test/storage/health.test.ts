import { describe, expect, it } from 'vitest';
import { buildHealthReport, type HealthInput, type NetIfRow } from '../../appliance/storage/health';

const eth0: NetIfRow = {
  iface: 'eth0',
  ip4: '192.168.1.20',
  ip4subnet: '255.255.255.0',
  ip6: 'fe80::dea6:32ff:fe01:203',
  ip6subnet: 'ffff:ffff:ffff:ffff::',
  mac: 'dc:a6:32:01:02:03',
  internal: false,
  virtual: false,
  operstate: 'up',
  type: 'wired',
  mtu: 1500,
  speed: 1000,
  default: true,
};
const lo: NetIfRow = {
  ...eth0,
  iface: 'lo',
  ip4: '127.0.0.1',
  ip6: '::1',
  mac: '00:00:00:00:00:00',
  internal: true,
  type: 'virtual',
  speed: null,
  default: false,
};
const wlan0: NetIfRow = { ...eth0, iface: 'wlan0', ip4: '', ip6: '', operstate: 'down', type: 'wireless', speed: -1, default: false };
const base: HealthInput = {
  loadAvg: [0.5, 0.4, 0.3],
  cpuCount: 4,
  cpuPercent: 12.345,
  memTotal: 8e9,
  memAvailable: 6e9,
  temperatureC: 48.7,
  uptimeSeconds: 3600,
  interfaces: [lo, eth0, wlan0],
  collectedAt: 5,
};

describe('buildHealthReport', () => {
  it('shapes a healthy Pi: interfaces without loopback, addresses, rounded percentages', () => {
    const r = buildHealthReport(base);
    expect(r.warnings).toEqual([]);
    expect(r.cpu).toEqual({ count: 4, percent: 12.3, loadAvg: [0.5, 0.4, 0.3], temperatureC: 48.7 });
    expect(r.memory).toEqual({ totalBytes: 8e9, availableBytes: 6e9, usedPercent: 25 });
    expect(r.interfaces.map((i) => i.name)).toEqual(['eth0', 'wlan0']);
    expect(r.interfaces[0]).toMatchObject({
      up: true,
      speedMbps: 1000,
      defaultRoute: true,
      addresses: [
        { family: 'IPv4', address: '192.168.1.20', netmask: '255.255.255.0' },
        { family: 'IPv6', address: 'fe80::dea6:32ff:fe01:203', netmask: 'ffff:ffff:ffff:ffff::' },
      ],
    });
    expect(r.interfaces[1]).toMatchObject({ up: false, speedMbps: null, addresses: [] });
  });

  it('warns before and at the Pi throttling temperature', () => {
    expect(buildHealthReport({ ...base, temperatureC: 77 }).warnings.map((w) => w.code)).toEqual(['CPU_HOT']);
    expect(buildHealthReport({ ...base, temperatureC: 82 }).warnings.map((w) => [w.code, w.level])).toEqual([['CPU_THROTTLING', 'critical']]);
    expect(buildHealthReport({ ...base, temperatureC: null }).cpu.temperatureC).toBeNull();
  });

  it('warns on low memory, high load and no usable network', () => {
    const r = buildHealthReport({ ...base, memAvailable: 0.5e9, loadAvg: [9, 9, 9], interfaces: [lo, wlan0] });
    expect(r.warnings.map((w) => w.code)).toEqual(['MEMORY_LOW', 'LOAD_HIGH', 'NO_NETWORK']);
    expect(r.warnings[0]!.message).toContain('6.3 %');
  });
});
