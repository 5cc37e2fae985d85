/**
 * System health for the dashboard: CPU load, memory, temperature, network interfaces. Pure: it
 * shapes systeminformation's output (plus os.loadavg()) and derives warnings, so tests use fixtures.
 */

/** The fields we use from systeminformation's networkInterfaces(). */
export interface NetIfRow {
  iface: string;
  ip4: string;
  ip4subnet: string;
  ip6: string;
  ip6subnet: string;
  mac: string;
  internal: boolean;
  virtual: boolean;
  operstate: string;
  type: string;
  mtu: number | null;
  speed: number | null;
  default: boolean;
}

export interface HealthInput {
  /** os.loadavg(): 1, 5, 15 minutes. */
  loadAvg: [number, number, number];
  cpuCount: number;
  /** systeminformation currentLoad().currentLoad: percent busy since the previous call. */
  cpuPercent: number | null;
  memTotal: number;
  /** systeminformation mem().available: what can be had without swapping. */
  memAvailable: number;
  /** cpuTemperature().main in °C; null where the board exposes none (VMs). */
  temperatureC: number | null;
  uptimeSeconds: number;
  interfaces: NetIfRow[];
  collectedAt: number;
}

export interface InterfaceEntry {
  name: string;
  mac: string;
  up: boolean;
  /** 'wired' | 'wireless' | 'virtual' | ... as systeminformation reports it. */
  type: string;
  speedMbps: number | null;
  mtu: number | null;
  /** Holds the default route. */
  defaultRoute: boolean;
  addresses: { family: 'IPv4' | 'IPv6'; address: string; netmask: string }[];
}

export interface HealthWarning {
  code: 'CPU_HOT' | 'CPU_THROTTLING' | 'MEMORY_LOW' | 'LOAD_HIGH' | 'NO_NETWORK';
  level: 'warning' | 'critical';
  message: string;
}

/** The health part of the dashboard (GET /api/storage carries it as `health`). */
export interface HealthReport {
  cpu: { count: number; percent: number | null; loadAvg: [number, number, number]; temperatureC: number | null };
  memory: { totalBytes: number; availableBytes: number; usedPercent: number };
  uptimeSeconds: number;
  interfaces: InterfaceEntry[];
  warnings: HealthWarning[];
  collectedAt: number;
}

/**
 * Raspberry Pi firmware starts soft-throttling at 80 °C and hard-throttles at 85 °C
 * (raspberrypi.com "Frequency management and thermal control"); warn just before each.
 */
const HOT_C = 75;
const THROTTLE_C = 80;

/** Shapes health facts and derives warnings. */
export function buildHealthReport(input: HealthInput): HealthReport {
  const interfaces: InterfaceEntry[] = input.interfaces
    .filter((i) => !i.internal)
    .map((i) => ({
      name: i.iface,
      mac: i.mac,
      up: i.operstate === 'up',
      type: i.type,
      speedMbps: i.speed !== null && i.speed > 0 ? i.speed : null,
      mtu: i.mtu,
      defaultRoute: i.default,
      addresses: [
        ...(i.ip4 ? [{ family: 'IPv4' as const, address: i.ip4, netmask: i.ip4subnet }] : []),
        ...(i.ip6 ? [{ family: 'IPv6' as const, address: i.ip6, netmask: i.ip6subnet }] : []),
      ],
    }));
  const usedPercent = input.memTotal > 0 ? round1(((input.memTotal - input.memAvailable) / input.memTotal) * 100) : 0;
  const warnings: HealthWarning[] = [];
  const t = input.temperatureC;
  if (t !== null && t >= THROTTLE_C) {
    warnings.push({
      code: 'CPU_THROTTLING',
      level: 'critical',
      message: `CPU at ${t.toFixed(0)} °C: the board is slowing itself down. Add a heatsink or a fan.`,
    });
  } else if (t !== null && t >= HOT_C) {
    warnings.push({ code: 'CPU_HOT', level: 'warning', message: `CPU at ${t.toFixed(0)} °C, close to the 80 °C throttling point.` });
  }
  if (input.memTotal > 0 && input.memAvailable / input.memTotal < 0.1) {
    warnings.push({ code: 'MEMORY_LOW', level: 'warning', message: `Only ${round1((input.memAvailable / input.memTotal) * 100)} % of memory is available.` });
  }
  if (input.cpuCount > 0 && input.loadAvg[1] > input.cpuCount * 2) {
    warnings.push({
      code: 'LOAD_HIGH',
      level: 'warning',
      message: `Load ${input.loadAvg[1].toFixed(2)} over 5 minutes on ${input.cpuCount} CPUs: boots will be slow.`,
    });
  }
  if (!interfaces.some((i) => i.up && i.addresses.some((a) => a.family === 'IPv4'))) {
    warnings.push({ code: 'NO_NETWORK', level: 'critical', message: 'No network interface is up with an IPv4 address: clients cannot reach the appliance.' });
  }
  return {
    cpu: { count: input.cpuCount, percent: input.cpuPercent === null ? null : round1(input.cpuPercent), loadAvg: input.loadAvg, temperatureC: t },
    memory: { totalBytes: input.memTotal, availableBytes: input.memAvailable, usedPercent },
    uptimeSeconds: input.uptimeSeconds,
    interfaces,
    warnings,
    collectedAt: input.collectedAt,
  };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
