import { Asc, invalidCdb, invalidParam, ScsiError, SenseKey } from './sense';

/**
 * Reservations of one logical unit, shared by every session that reaches it: SPC-2
 * RESERVE(6)/RELEASE(6) and SPC-4 persistent reservations (§5.13, PERSISTENT RESERVE IN/OUT
 * §6.15-6.16). The I_T nexus is named "<initiator>,i,0x<isid>" (RFC 7143 §4.4.3, the
 * initiator port name). Registrations live in memory: APTPL is not supported, so they end
 * with the process, which SPC-4 allows (PTPL_C=0).
 */

/** Thrown when a command meets another nexus's reservation: status RESERVATION CONFLICT. */
export class ReservationConflict extends Error {
  constructor() {
    super('reservation conflict');
    this.name = 'ReservationConflict';
  }
}

/** Persistent reservation types (SPC-4 Table 170). */
export const PrType = { WriteExclusive: 1, ExclusiveAccess: 3, WERegistrantsOnly: 5, EARegistrantsOnly: 6, WEAllRegistrants: 7, EAAllRegistrants: 8 } as const;
const VALID_TYPES = new Set<number>(Object.values(PrType));

/** How a command touches the medium, for conflict checks. */
import type { AccessKind } from './opcodes';

export type { AccessKind };

interface Reservation {
  holder: string;
  type: number;
}

/** The reservation state of one LU. */
export class LuReservations {
  /**
   * @param hooks the LU's other effects of a reset (unit attention, mode parameters) and of
   * a session leaving: the session code reaches the LU through reset() and nexusLost() here.
   */
  constructor(private readonly hooks: { onReset?: () => void; onNexusLost?: (nexus: string) => void } = {}) {}

  private legacyHolder: string | null = null;
  private generation = 0;
  private readonly keys = new Map<string, bigint>();
  private reservation: Reservation | null = null;

  /** Throws ReservationConflict when `nexus` may not run a command of this kind now. */
  check(nexus: string, kind: AccessKind, opcode: number): void {
    if (this.legacyHolder !== null && this.legacyHolder !== nexus) {
      // SPC-2 §7.21: only a few commands pass another initiator's RESERVE(6).
      const allowed =
        opcode === 0x12 || opcode === 0xa0 || opcode === 0x03 || opcode === 0x17 || opcode === 0xa3 || opcode === 0x5e || opcode === 0x25 || opcode === 0x9e;
      if (!allowed) throw new ReservationConflict();
      return;
    }
    const r = this.reservation;
    if (!r || kind === 'none' || this.isHolder(nexus)) return;
    const registered = this.keys.has(nexus);
    switch (r.type) {
      case PrType.WriteExclusive:
        if (kind === 'write') throw new ReservationConflict();
        return;
      case PrType.ExclusiveAccess:
        throw new ReservationConflict();
      case PrType.WERegistrantsOnly:
      case PrType.WEAllRegistrants:
        if (!registered && kind === 'write') throw new ReservationConflict();
        return;
      case PrType.EARegistrantsOnly:
      case PrType.EAAllRegistrants:
        if (!registered) throw new ReservationConflict();
        return;
    }
  }

  private isHolder(nexus: string): boolean {
    const r = this.reservation;
    if (!r) return false;
    if (r.type === PrType.WEAllRegistrants || r.type === PrType.EAAllRegistrants) return this.keys.has(nexus);
    return r.holder === nexus;
  }

  /** RESERVE(6). */
  reserve6(nexus: string): void {
    if (this.reservation || this.keys.size > 0) throw new ReservationConflict();
    if (this.legacyHolder !== null && this.legacyHolder !== nexus) throw new ReservationConflict();
    this.legacyHolder = nexus;
  }

  /** RELEASE(6): releases only the caller's own reservation; otherwise GOOD and nothing happens. */
  release6(nexus: string): void {
    if (this.legacyHolder === nexus) this.legacyHolder = null;
  }

  /** The nexus went away (logout, dropped connection, reset): its RESERVE(6) ends (SPC-2 §5.5.1). */
  nexusLost(nexus: string): void {
    if (this.legacyHolder === nexus) this.legacyHolder = null;
    this.hooks.onNexusLost?.(nexus);
  }

  /**
   * LOGICAL UNIT RESET (and target warm/cold reset) releases RESERVE(6) reservations;
   * persistent ones survive (SPC-4 §5.13.1). Then the LU's other reset effects run.
   */
  reset(): void {
    this.legacyHolder = null;
    this.hooks.onReset?.();
  }

  /** PERSISTENT RESERVE IN: returns the full response (the caller truncates to the allocation length). */
  prIn(cdb: Buffer): Buffer {
    const sa = cdb[1] & 0x1f;
    switch (sa) {
      case 0x00: {
        // READ KEYS
        const keys = [...this.keys.values()];
        const b = Buffer.alloc(8 + 8 * keys.length);
        b.writeUInt32BE(this.generation, 0);
        b.writeUInt32BE(8 * keys.length, 4);
        keys.forEach((k, i) => b.writeBigUInt64BE(k, 8 + 8 * i));
        return b;
      }
      case 0x01: {
        // READ RESERVATION
        const r = this.reservation;
        const b = Buffer.alloc(r ? 24 : 8);
        b.writeUInt32BE(this.generation, 0);
        if (r) {
          b.writeUInt32BE(16, 4);
          const allReg = r.type === PrType.WEAllRegistrants || r.type === PrType.EAAllRegistrants;
          b.writeBigUInt64BE(allReg ? 0n : (this.keys.get(r.holder) ?? 0n), 8);
          b[21] = r.type & 0x0f; // scope 0 (LU)
        }
        return b;
      }
      case 0x02: {
        // REPORT CAPABILITIES
        const b = Buffer.alloc(8);
        b.writeUInt16BE(8, 0);
        b[2] = 0x10; // CRH: RESERVE/RELEASE(6) compatible
        b[3] = 0x80; // TMV: the type mask is valid
        b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
        b[5] = 0x01; // EX_AC_AR
        return b;
      }
      case 0x03: {
        // READ FULL STATUS
        const entries: Buffer[] = [];
        for (const [nexus, key] of this.keys) {
          const name = Buffer.from(nexus, 'utf8');
          const tid = Buffer.alloc(4 + ((name.length + 1 + 3) & ~3));
          tid[0] = 0x45; // format 01b (port name), protocol 5 (iSCSI)
          name.copy(tid, 4);
          tid.writeUInt16BE(tid.length - 4, 2);
          const e = Buffer.alloc(24);
          e.writeBigUInt64BE(key, 0);
          if (this.isHolder(nexus)) {
            e[12] = 0x01; // R_HOLDER
            e[13] = this.reservation!.type & 0x0f;
          }
          e[12] |= 0x00;
          e.writeUInt32BE(tid.length, 20);
          entries.push(e, tid);
        }
        const body = Buffer.concat(entries);
        const b = Buffer.alloc(8);
        b.writeUInt32BE(this.generation, 0);
        b.writeUInt32BE(body.length, 4);
        return Buffer.concat([b, body]);
      }
      default:
        throw invalidCdb(1, 4);
    }
  }

  /** PERSISTENT RESERVE OUT. Throws ReservationConflict or ScsiError. */
  prOut(cdb: Buffer, data: Buffer, nexus: string): void {
    const sa = cdb[1] & 0x1f;
    const scope = cdb[2] >> 4;
    const type = cdb[2] & 0x0f;
    const listLength = cdb.readUInt32BE(5);
    if (sa > 6) throw invalidCdb(1, 4);
    if (listLength !== 24) throw new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);
    if (data.length < 24) throw new ScsiError(SenseKey.IllegalRequest, Asc.ParameterListLengthError);
    const key = data.readBigUInt64BE(0);
    const saKey = data.readBigUInt64BE(8);
    const flags = data[20];
    if (flags & 0x08) throw invalidParam(20, 3); // SPEC_I_PT unsupported
    if (flags & 0x01) throw invalidParam(20, 0); // APTPL unsupported
    const mine = this.keys.get(nexus);

    if (sa === 0x00 || sa === 0x06) {
      // REGISTER / REGISTER AND IGNORE EXISTING KEY
      if (this.legacyHolder !== null && this.legacyHolder !== nexus) throw new ReservationConflict();
      if (sa === 0x00) {
        if (mine === undefined ? key !== 0n : key !== mine) throw new ReservationConflict();
      }
      if (saKey === 0n) {
        if (mine !== undefined) this.unregister(nexus);
      } else {
        this.keys.set(nexus, saKey);
      }
      this.generation++;
      return;
    }
    // Every other service action needs a registered caller quoting its key.
    if (mine === undefined || key !== mine) throw new ReservationConflict();
    switch (sa) {
      case 0x01: {
        // RESERVE
        if (scope !== 0) throw invalidCdb(2, 4);
        if (!VALID_TYPES.has(type)) throw invalidCdb(2, 0);
        const r = this.reservation;
        if (r) {
          if (this.isHolder(nexus) && r.type === type) return;
          throw new ReservationConflict();
        }
        this.reservation = { holder: nexus, type };
        return;
      }
      case 0x02: {
        // RELEASE
        const r = this.reservation;
        if (!r || !this.isHolder(nexus)) return;
        if (scope !== 0 || r.type !== type) throw new ScsiError(SenseKey.IllegalRequest, [0x26, 0x04]);
        this.reservation = null;
        return;
      }
      case 0x03: // CLEAR
        this.keys.clear();
        this.reservation = null;
        this.generation++;
        return;
      case 0x04:
      case 0x05: {
        // PREEMPT, PREEMPT AND ABORT
        const r = this.reservation;
        const allReg = r && (r.type === PrType.WEAllRegistrants || r.type === PrType.EAAllRegistrants);
        if (r && allReg && saKey === 0n) {
          if (!VALID_TYPES.has(type)) throw invalidCdb(2, 0);
          for (const n of [...this.keys.keys()]) if (n !== nexus) this.keys.delete(n);
          this.reservation = { holder: nexus, type };
          this.generation++;
          return;
        }
        if (saKey === 0n) throw invalidParam(8);
        const holderKey = r && !allReg ? this.keys.get(r.holder) : undefined;
        let removed = false;
        for (const [n, k] of [...this.keys]) {
          if (k === saKey && n !== nexus) {
            this.keys.delete(n);
            removed = true;
          }
        }
        if (r && holderKey === saKey) {
          if (!VALID_TYPES.has(type)) throw invalidCdb(2, 0);
          this.reservation = { holder: nexus, type };
        } else if (!removed) {
          throw new ReservationConflict();
        }
        this.generation++;
        return;
      }
    }
  }

  private unregister(nexus: string): void {
    this.keys.delete(nexus);
    const r = this.reservation;
    if (!r) return;
    const allReg = r.type === PrType.WEAllRegistrants || r.type === PrType.EAAllRegistrants;
    if ((allReg && this.keys.size === 0) || (!allReg && r.holder === nexus)) this.reservation = null;
  }
}
