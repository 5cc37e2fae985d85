import { networkInterfaces } from 'node:os';

/** IPv4 addresses of one interface (or of every non-internal one when name is ''). */
export function interfaceAddresses(name: string): string[] {
  const all = networkInterfaces();
  const entries = name
    ? (all[name] ?? [])
    : Object.values(all)
        .flat()
        .filter((a) => a && !a.internal);
  return entries.filter((a) => a && a.family === 'IPv4').map((a) => a!.address);
}

/**
 * The address clients are told to reach the appliance at: the configured one, else the DHCP
 * interface's first IPv4 address, else the first non-loopback IPv4 address, else 127.0.0.1.
 * Read once, at build time, as a first guess: the running appliance follows the interface with
 * core/link-watch.ts (os.networkInterfaces() hides interfaces without carrier, issue #14).
 */
export function resolveServerAddress(configured: string, dhcpInterface: string): string {
  if (configured !== 'auto') return configured;
  return interfaceAddresses(dhcpInterface)[0] ?? interfaceAddresses('')[0] ?? '127.0.0.1';
}
