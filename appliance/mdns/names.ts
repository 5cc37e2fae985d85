/**
 * The names the appliance claims on the link, and how a conflict picks the next ones. Pure: no
 * sockets, no timers.
 *
 * RFC 6762 §9 says a responder that loses a name must pick a new one; it leaves the scheme to the
 * implementation. @homebridge/ciao appends "-(N)" to host names ("netboot-(2).local"), which
 * most resolvers accept but people do not type. We use the scheme avahi and macOS users know
 * from printers: "<name>-2", "<name>-3", ... (a plain DNS label, RFC 1123 §2.1).
 */

/** One set of names published together: a host record and two service instances. */
export interface MdnsNames {
  /** Host label the UI is reached at: `<host>.local` (A/AAAA records). */
  host: string;
  /**
   * Host label behind the `_netboot._tcp` SRV record. ciao keeps one host record per service
   * and treats two services of one responder sharing a host name as a conflict with itself, so
   * the API service owns a second label with the same addresses.
   */
  apiHost: string;
  /** Service instance name of both `_http._tcp` and `_netboot._tcp` (different FQDNs, no clash). */
  instance: string;
}

/** Longest label we produce: 63 octets (RFC 1035 §2.3.4), minus room for "-api" and "-NN". */
const MAX_BASE = 63 - '-api'.length - '-99'.length;

/** The names for attempt `index` (1 = the configured name itself, 2 = "<name>-2", ...). */
export function namesFor(base: string, index: number): MdnsNames {
  if (!Number.isInteger(index) || index < 1) throw new RangeError(`index must be >= 1, got ${index}`);
  const label = base.toLowerCase().slice(0, MAX_BASE).replace(/-+$/, '') || 'netboot';
  const host = index === 1 ? label : `${label}-${index}`;
  return { host, apiHost: `${host}-api`, instance: host };
}
