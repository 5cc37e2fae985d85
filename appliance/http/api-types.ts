/**
 * The JSON API's response bodies, defined once (issue #18, step 5): the routes are typed against
 * them, so a server change that breaks the contract fails `tsc`, and the UI imports them with
 * `import type` only (biome.json lets ui/src reach this file and nothing else of the appliance).
 * Type-only: it imports nothing at run time, so the UI bundle gains no server code. Times are
 * milliseconds since the epoch, as the server sends them.
 */

/** A golden image (GET /api/images, /api/images/:name): ready, or an import in progress or failed. */
export interface ImageView {
  name: string;
  sizeBytes: number;
  usedBytes?: number;
  state: 'ready' | 'importing' | 'failed';
  /** 0..1 while importing. */
  progress?: number;
  error?: string;
  createdAt: number;
  /** How many clients boot from it. */
  clients: number;
  /** Marked as a rescue image (bootable once with a client's own disk attached). */
  rescue?: boolean;
}

/** One iSCSI session (GET /api/sessions, and what a client view counts). */
export interface SessionView {
  id: string;
  initiatorName: string;
  address: string;
  target: string;
  since: number;
  readBytes: number;
  writtenBytes: number;
  readCommands: number;
  writeCommands: number;
}

/** GET /api/sessions rows: the session and the client whose disk it holds. */
export type SessionRow = SessionView & { clientMac: string | null };

/** A one-shot choice for the next boot only. */
export type NextBootView = { kind: 'image'; image: string } | { kind: 'disk'; disk: string } | { kind: 'rescue'; image: string };

/** GET /api/clients/:mac (and each entry of GET /api/clients). */
export interface ClientView {
  mac: string;
  name: string;
  image: string;
  disk: string;
  target: string;
  lun: number;
  rootPath: string;
  initiatorName: string;
  initiators: string[];
  /** CHAP secrets are never returned: the user, and whether mutual CHAP is set. */
  chap: { user: string; mutual: boolean } | null;
  /** What an admin should know (e.g. CHAP off: the disk opens to its initiator name alone). */
  warnings: string[];
  ip: string | null;
  createdAt: number;
  online: boolean;
  sessions: number;
  lastEvent: { stage: string; at: number } | null;
  diskUsedBytes: number;
  diskSizeBytes: number;
  /** Which named disk boots by default. */
  bootDisk: string;
  nextBoot: NextBootView | null;
  schedule: { everyMinutes: number; keep: number } | null;
  /** The boot road (issue #15): iPXE sanboot, or signed shim + GRUB + the disk's own kernel. */
  road: 'auto' | 'ipxe' | 'grub';
  disks: { name: string; image: string; target: string; throwaway: boolean; inUse: boolean }[];
  /** Who holds the disk now. */
  holders: { initiatorName: string; address: string; since: number }[];
}

/** A network-boot machine heard that is not a client yet (GET /api/unknown-clients). */
export interface UnknownClientView {
  mac: string;
  /** Option 93 (client architecture), when a DHCP request carried it. */
  arch: number | null;
  /** Option 60 (PXEClient:Arch:..., HTTPClient..., iPXE's own), when seen. */
  vendorClass: string | null;
  /** Its address, when the exchange told us. */
  address: string | null;
  firstSeen: number;
  lastSeen: number;
  /** How far it got: DHCP only, fetched iPXE over TFTP, iPXE asked DHCP, iPXE fetched its script. */
  stage: 'dhcp' | 'tftp' | 'ipxe' | 'script';
}

/** GET /api/unknown-clients: what unknown machines get now, why, and the list. */
export interface UnknownClientsView {
  mode: 'ignore' | 'menu' | 'enroll' | 'wait';
  setting: string;
  dhcpMode: string;
  clients: UnknownClientView[];
}

/** One entry of a boot timeline (GET /api/clients/:mac/events). */
export interface BootEventView {
  id: number;
  at: number;
  stage: string;
  detail?: Record<string, string | number | boolean> | null;
  /** How many identical events this row stands for (repeats are folded). */
  count?: number;
}
