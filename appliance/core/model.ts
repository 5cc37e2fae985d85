/**
 * The records the services share. The client registry (appliance/clients) owns them; boot
 * policy, DHCP, TFTP and the iSCSI target only read them through the narrow directories below.
 */

/** One diskless machine, keyed by its MAC. */
export interface ClientRecord {
  /** Normalised: lower-case, colon-separated (aa:bb:cc:dd:ee:ff). */
  mac: string;
  name: string;
  /** The golden image its disk was cloned from. */
  image: string;
  /** The client disk's name in the image store. */
  disk: string;
  /** The iSCSI target that serves this client's disk (LUN 0). */
  target: string;
  lun: number;
  /** The initiator name the appliance assigns (DHCP option 203 / `set initiator-iqn`; iBFT carries it on). */
  initiatorName: string;
  /** Further initiator names allowed to log in to this client's target. */
  initiators: string[];
  /** CHAP: one-way when only user/secret, mutual when the target's own credentials are set too. */
  chap: ChapCredentials | null;
  /** Full-DHCP reservation (optional). */
  ip: string | null;
  createdAt: number;
  /** Which of the client's named disks boots by default ('default' = the disk made at enrolment). */
  bootDisk?: string;
  /** A one-shot choice for the next boot only, consumed when iPXE fetches its script. */
  nextBoot?: NextBoot | null;
  /** Scheduled snapshots of the boot disk. */
  schedule?: SnapshotSchedule | null;
  /** The boot road (issue #15, docs/boot-roads.md); absent means 'auto'. */
  road?: BootRoadSetting;
}

/**
 * How a client boots: iPXE sanboot over iSCSI, or shim + GRUB + its own kernel (Secure Boot PCs,
 * ARM64). 'auto' lets the architecture and boot.uefiX64Road decide (boot/policy.ts roadFor).
 */
export type BootRoadSetting = 'auto' | 'ipxe' | 'grub';

/**
 * What the next boot (only) runs: a golden image on a throw-away clone, another named disk of
 * the client, or a rescue image (throw-away clone) with the client's own disk attached as LUN 1.
 */
export type NextBoot = { kind: 'image'; image: string } | { kind: 'disk'; disk: string } | { kind: 'rescue'; image: string };

/** Take a snapshot every `everyMinutes`, keeping the newest `keep` scheduled ones. */
export interface SnapshotSchedule {
  everyMinutes: number;
  keep: number;
}

export interface ChapCredentials {
  user: string;
  secret: string;
  /** Mutual CHAP: the name/secret the target answers with. */
  targetUser?: string;
  targetSecret?: string;
}

/** Read access to clients, for boot policy and DHCP. */
export interface ClientDirectory {
  byMac(mac: string): ClientRecord | undefined;
}

/** Normalises a MAC in any common spelling (aa:bb.., AA-BB-.., aabb.ccdd.eeff, aabbccddeeff); undefined when invalid. */
export function normaliseMac(input: string): string | undefined {
  const hex = input
    .trim()
    .toLowerCase()
    .replace(/[:\-.\s]/g, '');
  if (!/^[0-9a-f]{12}$/.test(hex)) return undefined;
  return hex.match(/../g)!.join(':');
}

/** Stages of a client's boot, in the order a healthy boot passes them. */
export const BOOT_STAGES = [
  'dhcp-discover',
  'dhcp-offer',
  'dhcp-request',
  'dhcp-ack',
  'tftp-start',
  'tftp-done',
  'tftp-error',
  'script-fetched',
  'grub-config',
  'kernel-fetched',
  'boot-error',
  'iscsi-login',
  'iscsi-login-refused',
  'iscsi-first-read',
  'iscsi-logout',
  'iscsi-disconnect',
] as const;
export type BootStage = (typeof BOOT_STAGES)[number];

export interface BootEvent {
  mac: string;
  stage: BootStage;
  /** Short machine-readable details: { file, arch, ip, initiator, bytes, reason, ... }. */
  detail?: Record<string, string | number | boolean>;
}

/** Where services report boot progress; the telemetry store keeps a bounded timeline per client. */
export interface BootEventSink {
  record(event: BootEvent): void;
}
