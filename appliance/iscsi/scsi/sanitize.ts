import type { BlockVolume } from '../../../image-store/block-volume';
import { invalidCdb } from './sense';

/**
 * SANITIZE (SBC-3 §5.30, §4.11) for thin-provisioned volumes whose unmapped blocks read as
 * zeros. Only BLOCK ERASE (and EXIT FAILURE MODE) is offered:
 * - BLOCK ERASE is UNMAP of every LBA, then a flush: the initiator gains no power it did not
 *   already have, it touches only this volume (the golden image and snapshots are other
 *   layers), and on the image store the flush commits every unmap in one transaction, so a
 *   power cut leaves the disk either erased or untouched, never half of each.
 * - OVERWRITE is not offered: writing a pattern over a copy-on-write disk allocates all of it.
 * - CRYPTO ERASE is not offered: nothing is encrypted.
 * A volume whose unmapped blocks show the base image again ('base') cannot be erased this
 * way, so SANITIZE is not offered there at all. The erase state lives in memory: after a
 * restart mid-erase the disk is as the last flush left it (erased or not, see above), and
 * the failure mode is forgotten.
 */

/** SANITIZE service actions (SBC-3 Table 57). */
export const SanitizeAction = { Overwrite: 0x01, BlockErase: 0x02, CryptoErase: 0x03, ExitFailureMode: 0x1f } as const;

/** The fields of a SANITIZE CDB this device server acts on. */
export interface SanitizeCdb {
  action: number;
  /** Return status once the erase has started; it goes on in the background. */
  immed: boolean;
  /** Allow Unrestricted Sanitize Exit: a failure may be left with EXIT FAILURE MODE. */
  ause: boolean;
}

/** Checks a SANITIZE CDB for the actions we support; throws INVALID FIELD IN CDB. */
export function parseSanitize(cdb: Buffer): SanitizeCdb {
  if (cdb[1] & 0x40) throw invalidCdb(1, 6); // reserved in SBC-3 (ZNR in SBC-4: no zones here)
  for (let i = 2; i <= 6; i++) if (cdb[i] !== 0) throw invalidCdb(i);
  const action = cdb[1] & 0x1f;
  if (action !== SanitizeAction.BlockErase && action !== SanitizeAction.ExitFailureMode) throw invalidCdb(1, 4);
  // BLOCK ERASE and EXIT FAILURE MODE take no parameter list (SBC-3 §5.30.1).
  if (cdb.readUInt16BE(7) !== 0) throw invalidCdb(7);
  return { action, immed: (cdb[1] & 0x80) !== 0, ause: (cdb[1] & 0x20) !== 0 };
}

/** True when SANITIZE BLOCK ERASE can be done honestly on this volume (see above). */
export function canBlockErase(volume: BlockVolume): boolean {
  return volume.thin.provisioned && volume.thin.unmappedReads === 'zero';
}

/** Where a logical unit stands with respect to sanitize operations (shared by its sessions). */
export class SanitizeState {
  /** 'running': every command but INQUIRY/REQUEST SENSE is NOT READY; 'failed': medium access is refused until a new SANITIZE (or EXIT FAILURE MODE when allowed). */
  state: 'idle' | 'running' | 'failed' = 'idle';
  /** AUSE of the operation that failed. */
  exitAllowed = false;
  /** Fraction done, 0..1, for the progress indication in sense data. */
  progress = 0;
  /** Settles when the running operation ends (tests and shutdown). */
  done: Promise<void> = Promise.resolve();
}

/** Unmap every LBA in slices of `sliceBlocks` (bounded work per call), then flush. */
export async function blockErase(volume: BlockVolume, sliceBlocks: number, onProgress: (fraction: number) => void): Promise<void> {
  const total = volume.blockCount;
  for (let lba = 0; lba < total; lba += sliceBlocks) {
    const n = Math.min(sliceBlocks, total - lba);
    await volume.unmap(lba, n);
    onProgress((lba + n) / total);
  }
  await volume.flush();
}
