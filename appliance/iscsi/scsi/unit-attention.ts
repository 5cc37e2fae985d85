/**
 * Unit attention conditions of one logical unit (SPC-4 §5.14, SAM-5 §5.14): events that
 * every I_T nexus (or every one but the cause) must be told about once, on its next command
 * other than INQUIRY, REPORT LUNS or REQUEST SENSE, with CHECK CONDITION / UNIT ATTENTION.
 *
 * Kept as a short log of numbered events instead of a queue per nexus: each session's view
 * of the LU remembers the last number it has seen, so a session that ends leaves nothing
 * behind, and a new session starts at the latest number (it sees only later events).
 */

interface Condition {
  seq: number;
  asc: readonly [number, number];
  /** The nexus that caused it and is not told (MODE SELECT's own nexus), or null. */
  except: string | null;
}

/** Oldest events are dropped past this many; a nexus that far behind has missed some (SPC-4 allows reporting the most important one only). */
const KEEP = 8;

export class UnitAttentions {
  private seq = 0;
  private log: Condition[] = [];

  /** The number of the newest event; a new nexus starts here. */
  get latest(): number {
    return this.seq;
  }

  /**
   * Raises a condition for every nexus but `except`. `supersede` drops the ones still
   * pending: a reset condition replaces what came before it (SPC-4 §5.14: a reset's unit
   * attention takes precedence and the older conditions are cleared).
   */
  raise(asc: readonly [number, number], except: string | null = null, supersede = false): void {
    this.seq++;
    if (supersede) this.log = [];
    this.log.push({ seq: this.seq, asc, except });
    if (this.log.length > KEEP) this.log.shift();
  }

  /**
   * The oldest condition after `seen` that `nexus` should be told about, and the number it
   * has seen once told (or, when nothing is left for it, `latest`).
   */
  next(seen: number, nexus: string): { asc: readonly [number, number] | null; seen: number } {
    for (const c of this.log) {
      if (c.seq > seen && c.except !== nexus) return { asc: c.asc, seen: c.seq };
    }
    return { asc: null, seen: this.seq };
  }
}
