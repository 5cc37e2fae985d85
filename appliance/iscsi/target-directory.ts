import type { ChapCredentials } from '../core/model';
import type { BlockVolume } from '../../image-store/block-volume';

/**
 * How the iSCSI target learns which targets exist and who may use them. The integrator maps
 * clients to targets (one target per client); the target never decides policy itself.
 */
export interface TargetDirectory {
  /** Targets an initiator may see in SendTargets (only those it may log in to). */
  list(initiatorName: string): { name: string }[];
  /** Resolves a target for a login: undefined = unknown target (login status 0x0203 NOT FOUND). */
  resolve(targetName: string): TargetEntry | undefined;
}

/** One logical unit of a target. */
export interface TargetLun {
  /** LUN number as the initiator addresses it (the disk is LUN 0, iPXE's default). */
  lun: number;
  /** Opens the volume for one session; the session closes it (flush first) on logout or drop. */
  open(): BlockVolume | Promise<BlockVolume>;
  /** Exported read-only whatever the volume says (WRITE gets DATA PROTECT). */
  readOnly: boolean;
}

/** A target: its LUNs and who may log in. */
export interface TargetEntry {
  name: string;
  /** The client this target belongs to, for boot telemetry. */
  clientMac?: string;
  luns: TargetLun[];
  /** Exact IQN match (case-insensitive, iSCSI names are normalised lower-case, RFC 3722); others get 0x0202. */
  allowedInitiators: string[];
  /** When set, CHAP is required (one-way; mutual when targetUser/targetSecret are set and the initiator asks). */
  chap: ChapCredentials | null;
  /**
   * Refuse a read-write login while a session of another initiator holds the disk. A login of
   * the same initiator name replaces its older session instead (iPXE never logs out: the OS's
   * iscsistart login, with the iBFT's name, must take over), provided it authenticated at least
   * as strongly as that session (CHAP replaces only CHAP; issue #13). Refused with 0x0301 SERVICE
   * UNAVAILABLE (§11.13.5): the condition is transient, the initiator did nothing wrong
   * (class 2 would say it did), and open-iscsi retries class 3 errors; 0x0206 "too many
   * connections" is about connections within one session and 0x0208 about session spanning.
   */
  exclusiveWriter?: boolean;
}
