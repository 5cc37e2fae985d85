/** Display helpers: sizes, rates, times. Pure functions. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 -> "1.5 KiB"; undefined -> "—". */
export function bytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !Number.isFinite(n)) return '—';
  let v = Math.max(0, n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}`;
}

/** Bytes per second, e.g. "12.4 MiB/s". */
export const rate = (bps: number) => (bps < 1 ? '0 B/s' : `${bytes(bps)}/s`);

/** A timestamp from the API (ISO string or epoch ms) as epoch ms. */
export function toMs(t: string | number | undefined | null): number | undefined {
  if (t === undefined || t === null || t === '') return undefined;
  const ms = typeof t === 'number' ? t : Date.parse(t);
  return Number.isFinite(ms) ? ms : undefined;
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function ago(t: string | number | undefined | null, now = Date.now()): string {
  const ms = toMs(t);
  if (ms === undefined) return '—';
  const s = Math.round((now - ms) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Local date and time, for tooltips and timelines. */
export function when(t: string | number | undefined | null): string {
  const ms = toMs(t);
  return ms === undefined ? '—' : new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** Uptime: "3 d 4 h", "2 h 5 min", "40 s". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min`;
  return `${s} s`;
}

/** A fraction 0..1 from an API progress value that may be 0..1 or 0..100. */
export function fraction(progress: number | undefined): number | undefined {
  if (progress === undefined || !Number.isFinite(progress)) return undefined;
  return Math.min(1, Math.max(0, progress > 1 ? progress / 100 : progress));
}

/** Boot stages in the order a boot passes them, with human names. Unknown stages show as sent. */
export const STAGE_LABEL: Record<string, string> = {
  'dhcp-discover': 'DHCP discover',
  'dhcp-offer': 'DHCP offer',
  'dhcp-request': 'DHCP request',
  'dhcp-ack': 'DHCP ack',
  'tftp-start': 'TFTP download',
  'tftp-done': 'iPXE loaded',
  'tftp-error': 'TFTP failed',
  'script-fetched': 'iPXE script fetched',
  'iscsi-login': 'iSCSI login',
  'iscsi-login-refused': 'iSCSI login refused',
  'iscsi-first-read': 'disk read',
  'iscsi-logout': 'iSCSI logout',
  'iscsi-disconnect': 'iSCSI disconnect',
};

/** Stages that mean something went wrong (shown in red). */
export const isBadStage = (s: string) => /error|refused|fail/.test(s);

export const stageLabel = (s: string) => STAGE_LABEL[s] ?? s.replace(/[-_]/g, ' ');

/** Normalises a MAC in any common spelling, or undefined when it is not one (as the server does). */
export function normaliseMac(input: string): string | undefined {
  const hex = input
    .trim()
    .toLowerCase()
    .replace(/[:\-.\s]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(':');
}
