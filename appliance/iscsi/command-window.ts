/**
 * The session's command window (RFC 7143 §4.2.2.1), split out of the connection (issue #18):
 * ExpCmdSN, the MaxCmdSN we advertise, and the non-immediate commands that arrived early and
 * wait for the gap before them to fill. Pure: no socket, no clock; the connection says how many
 * commands are unanswered and delivers what the window releases.
 *
 * The window we advertise (MaxCmdSN - ExpCmdSN + 1) is what is left of the queue depth after the
 * commands not yet answered, so a peer can never have more than `queueDepth` commands held here at
 * once. MaxCmdSN never moves backwards (§4.2.2.1: it must not shrink below what was granted).
 */

/** Serial number arithmetic (RFC 1982) on 32-bit sequence numbers: a - b as a signed delta. */
export function snDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** Where a non-immediate command's CmdSN falls. */
export type Placement = 'now' | 'early' | 'outside';

export class CommandWindow<T> {
  private exp = 0;
  private advertised: number | null = null;
  private readonly held = new Map<number, T>();

  constructor(private readonly queueDepth: number) {}

  /** The next CmdSN expected in order. */
  get expCmdSN(): number {
    return this.exp;
  }

  /** The login request's CmdSN is the first one (it is immediate). */
  start(cmdSN: number): void {
    this.exp = cmdSN >>> 0;
  }

  /** MaxCmdSN for the next PDU we send, given how many commands are unanswered. */
  maxCmdSN(unanswered: number): number {
    const free = Math.max(0, this.queueDepth - unanswered);
    const proposed = (this.exp + free - 1) >>> 0;
    if (this.advertised === null || snDiff(proposed, this.advertised) > 0) this.advertised = proposed;
    return this.advertised;
  }

  /**
   * Places a non-immediate command: 'now' (it is the expected one: ExpCmdSN advanced, deliver
   * it, then whatever nextHeld() releases), 'early' (hold() it until the gap fills) or 'outside'
   * the window (silently ignored, §4.2.2.1 "MUST silently ignore").
   */
  place(cmdSN: number, unanswered: number): Placement {
    const d = snDiff(cmdSN, this.exp);
    if (d < 0 || snDiff(cmdSN, this.advertised ?? this.maxCmdSN(unanswered)) > 0) return 'outside';
    if (d > 0) return 'early';
    this.exp = (this.exp + 1) >>> 0;
    return 'now';
  }

  /** Keeps an early command until its turn. */
  hold(cmdSN: number, item: T): void {
    this.held.set(cmdSN, item);
  }

  /** The held command whose turn has come (ExpCmdSN advanced past it), or undefined. */
  nextHeld(): T | undefined {
    const next = this.held.get(this.exp);
    if (next === undefined) return undefined;
    this.held.delete(this.exp);
    this.exp = (this.exp + 1) >>> 0;
    return next;
  }

  /** A non-immediate PDU that takes a CmdSN but no slot (NOP-Out): ExpCmdSN moves past it when it is the expected one. */
  consume(cmdSN: number): void {
    if (snDiff(cmdSN, this.exp) === 0) this.exp = (this.exp + 1) >>> 0;
  }
}
