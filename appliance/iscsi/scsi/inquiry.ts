import { createHash } from 'node:crypto';
import type { BlockVolume } from '../../../image-store/block-volume';
import { atomicWriteBlocks } from './atomic-write';
import { thirdPartyCopyPage } from './extended-copy';
import { canBlockErase } from './sanitize';
import { invalidCdb } from './sense';

/**
 * INQUIRY data (SPC-4 §6.6) and the VPD pages Linux, Windows and libiscsi ask for:
 * 0x00 supported pages, 0x80 unit serial number, 0x83 device identification, 0xB0 block
 * limits, 0xB1 block device characteristics, 0xB2 logical block provisioning (SBC-3 §6.6).
 */

/** Limits this target advertises in VPD 0xB0 and enforces. */
export const BLOCK_LIMITS = {
  /** Largest READ/WRITE in blocks (8 MiB at 512 bytes): bounds per-command memory. */
  maxTransferBlocks: 16384,
  /** Optimal transfer length granularity in blocks (4 KiB). */
  optimalGranularityBlocks: 8,
  maxUnmapBlocks: 0x100000,
  maxUnmapDescriptors: 256,
  /** WRITE SAME: largest number of blocks per command (16 MiB at 512 bytes). */
  maxWriteSameBlocks: 32768,
  /** COMPARE AND WRITE: largest number of blocks. */
  maxCompareAndWriteBlocks: 255,
} as const;

/** Identity of a logical unit, derived from the volume id so it is stable across restarts. */
export interface LuIdentity {
  /** 8-byte NAA locally assigned designator (NAA 3, SPC-4 §7.8.6.6.3). */
  naa: Buffer;
  /** Unit serial number (VPD 0x80), ASCII. */
  serial: string;
}

/**
 * Derives the NAA identifier and serial from volume.id: a hash, so identical ids give the
 * same identity across restarts and different disks differ (Windows merges disks with equal
 * NAA ids and bugchecks without one). NAA 3 = "locally assigned": we own no IEEE OUI.
 */
export function luIdentity(volumeId: string): LuIdentity {
  const h = createHash('sha256').update('netboot-lu:').update(volumeId).digest();
  const naa = Buffer.from(h.subarray(0, 8));
  naa[0] = 0x30 | (naa[0] & 0x0f);
  return { naa, serial: h.toString('hex', 8, 24) };
}

function ascii(s: string, len: number): Buffer {
  return Buffer.from(s.padEnd(len, ' ').slice(0, len), 'ascii');
}

/** Standard INQUIRY data; `present` false gives the "no LU here" form (qualifier 3, type 0x1f). */
export function standardInquiry(present: boolean): Buffer {
  const b = Buffer.alloc(96);
  b[0] = present ? 0x00 : 0x7f; // direct access block device / not connected
  b[1] = 0x00; // RMB=0: fixed medium
  b[2] = 0x06; // SPC-4
  b[3] = 0x12; // HISUP, response data format 2
  b[4] = b.length - 5;
  b[5] = 0x00;
  b[6] = 0x00;
  b[7] = 0x02; // CMDQUE
  ascii('NETBOOT', 8).copy(b, 8);
  ascii('VIRTUAL-DISK', 16).copy(b, 16);
  ascii('0001', 4).copy(b, 32);
  // Version descriptors (SPC-4 Table 35): SAM-5, iSCSI (no version), SBC-3, SPC-4.
  [0x00a0, 0x0960, 0x04c0, 0x0460].forEach((v, i) => b.writeUInt16BE(v, 58 + i * 2));
  return b;
}

/** The VPD pages we serve, in ascending order (VPD 0x00 lists exactly these). */
export const VPD_PAGES = [0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2] as const;

function page(code: number, body: Buffer): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b[1] = code;
  b.writeUInt16BE(body.length, 2);
  body.copy(b, 4);
  return b;
}

function designator(codeSet: number, assocType: number, id: Buffer, protocolId = 0, piv = false): Buffer {
  const b = Buffer.alloc(4 + id.length);
  b[0] = (protocolId << 4) | codeSet;
  b[1] = (piv ? 0x80 : 0) | assocType;
  b[3] = id.length;
  id.copy(b, 4);
  return b;
}

/** A VPD page for volume/identity; throws INVALID FIELD IN CDB for a page we lack. */
export function vpdPage(code: number, volume: BlockVolume, identity: LuIdentity, targetName: string): Buffer {
  switch (code) {
    case 0x00:
      return page(0x00, Buffer.from(VPD_PAGES));
    case 0x80:
      return page(0x80, Buffer.from(identity.serial, 'ascii'));
    case 0x83: {
      const t10 = Buffer.concat([ascii('NETBOOT', 8), Buffer.from(identity.serial, 'ascii')]);
      const port = Buffer.alloc(4);
      port.writeUInt16BE(1, 2);
      // SCSI name string of the target port (iSCSI protocol id 5), NUL-terminated, padded to 4.
      const nameBytes = Buffer.from(`${targetName},t,0x0001`, 'utf8');
      const name = Buffer.alloc((nameBytes.length + 4) & ~3);
      nameBytes.copy(name);
      return page(
        0x83,
        Buffer.concat([
          designator(0x1, 0x03, identity.naa), // binary, LU, NAA
          designator(0x2, 0x01, t10), // ASCII, LU, T10 vendor id
          designator(0x1, 0x14, port, 5, true), // binary, target port, relative target port
          designator(0x3, 0x18, name, 5, true), // UTF-8, target port, SCSI name string
        ]),
      );
    }
    case 0x8f:
      return page(0x8f, thirdPartyCopyPage());
    case 0xb0: {
      const b = Buffer.alloc(60);
      b[0] = 0x00; // WSNZ=0: WRITE SAME of zero blocks means "to the end" (bounded below)
      b[1] = BLOCK_LIMITS.maxCompareAndWriteBlocks;
      b.writeUInt16BE(BLOCK_LIMITS.optimalGranularityBlocks, 2);
      b.writeUInt32BE(BLOCK_LIMITS.maxTransferBlocks, 4);
      b.writeUInt32BE(BLOCK_LIMITS.maxTransferBlocks, 8); // optimal transfer length
      b.writeUInt32BE(0, 12); // max prefetch length: no limit
      if (volume.thin.provisioned) {
        b.writeUInt32BE(BLOCK_LIMITS.maxUnmapBlocks, 16);
        b.writeUInt32BE(BLOCK_LIMITS.maxUnmapDescriptors, 20);
        b.writeUInt32BE(Math.max(1, volume.thin.granularityBlocks), 24);
        b.writeUInt32BE(0x80000000, 28); // UGAVALID, alignment 0
      }
      b.writeBigUInt64BE(BigInt(BLOCK_LIMITS.maxWriteSameBlocks), 32);
      // MAXIMUM ATOMIC TRANSFER LENGTH (0: no WRITE ATOMIC); alignment and granularity 0
      // (none), no atomic boundaries (SBC-4 §6.6.4).
      b.writeUInt32BE(atomicWriteBlocks(volume, BLOCK_LIMITS.maxTransferBlocks), 40);
      return page(0xb0, b);
    }
    case 0xb1: {
      const b = Buffer.alloc(60);
      b.writeUInt16BE(0x0001, 0); // non-rotating medium
      // WABEREQ 01b: after SANITIZE BLOCK ERASE, reads of unwritten blocks succeed (they read
      // zeros); WACEREQ 0 (no CRYPTO ERASE); form factor not reported.
      b[3] = canBlockErase(volume) ? 0x40 : 0x00;
      return page(0xb1, b);
    }
    case 0xb2: {
      const b = Buffer.alloc(4);
      if (volume.thin.provisioned) {
        b[0] = 0; // threshold exponent: no thresholds
        // LBPU (UNMAP), LBPWS (WRITE SAME 16 unmap), LBPWS10, LBPRZ only when unmapped reads are zero.
        b[1] = 0x80 | 0x40 | 0x20 | (volume.thin.unmappedReads === 'zero' ? 0x04 : 0);
        b[2] = 0x02; // provisioning type: thin
      }
      return page(0xb2, b);
    }
    default:
      throw invalidCdb(2);
  }
}
