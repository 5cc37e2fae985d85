/**
 * The line protocol between the appliance and ra-responder (ra-responder.c): commands written to
 * its stdin, events read from its stdout. Pure: text in, values out.
 */

/** One event line from the helper. */
export type HelperEvent =
  | { kind: 'ready'; ifindex: number }
  | { kind: 'rs'; source: string; outcome: 'answered' | 'refused' | 'limited' }
  | { kind: 'ra'; source: string; lifetime: number; flags: number }
  | { kind: 'error'; text: string };

/** Parses one line; undefined for anything it does not know (logged by the caller). */
export function parseHelperLine(line: string): HelperEvent | undefined {
  const w = line.trim().split(/\s+/);
  switch (w[0]) {
    case 'ready':
      return w.length === 2 ? { kind: 'ready', ifindex: Number(w[1]) } : undefined;
    case 'rs':
      return w.length === 3 && (w[2] === 'answered' || w[2] === 'refused' || w[2] === 'limited') ? { kind: 'rs', source: w[1]!, outcome: w[2] } : undefined;
    case 'ra': {
      const lifetime = Number(w[2]);
      const flags = parseInt(w[3] ?? '', 16);
      return w.length === 4 && Number.isInteger(lifetime) && Number.isInteger(flags) ? { kind: 'ra', source: w[1]!, lifetime, flags } : undefined;
    }
    case 'error':
      return { kind: 'error', text: line.trim().slice(6) };
    default:
      return undefined;
  }
}

/** `allow A B ...`: the whole allow-list (none: answer nobody). */
export function allowCommand(addresses: readonly string[]): string {
  for (const a of addresses) if (!/^fe80:[0-9a-f:]+$/.test(a)) throw new Error(`not a link-local address: ${a}`);
  return `allow${addresses.map((a) => ` ${a}`).join('')}\n`;
}

/** Sends one router solicitation (start-up: find routers already there). */
export const SOLICIT_COMMAND = 'solicit\n';
