/**
 * Dead-peer detection for one connection (issue #14; split out of connection.ts for issue #18):
 * NOP-In pings (RFC 7143 §11.19) on the injected clock. No sockets: the connection says what it
 * heard and when the session reached full feature phase; the pinger asks it to send a ping or to
 * drop the connection.
 *
 * - One early probe, PROBE_MS after full feature phase, busy or not, learns whether this
 *   initiator answers pings at all: a Linux initiator that logs in, boots and powers off within
 *   one interval would otherwise never have answered one, and its dead session would hold the
 *   disk until TCP keepalive gave up (about 11 minutes), refusing restores meanwhile. The kernel
 *   initiator answers it even while iscsistart hands the connection over (the PDU waits in the
 *   socket until the kernel reads).
 * - Then a connection silent for an interval is pinged; only initiators that have answered a ping
 *   before are dropped for missing one: iPXE never answers NOP-In (it ignores pings with a TTT),
 *   and an idle iPXE session during the OS handoff must survive. Dead peers that never answered
 *   are left to TCP keepalive. The next tick is armed from the last PDU heard, so a dead peer is
 *   pinged one interval after its last word and dropped PING_ANSWER_MS later.
 */
import type { Clock } from '../core/clock';

/** Delay of the early probe. In the e2e lab an initramfs logs in, mounts root, writes and powers off within half a second. */
export const PROBE_MS = 250;
/**
 * How long an initiator known to answer pings gets to answer one: open-iscsi's own ping timeout
 * (noop_out_timeout, 5 s). With the default 5 s interval a powered-off client's session is gone
 * 10 s after the last PDU it sent (issue #14: restorable within 15 s).
 */
export const PING_ANSWER_MS = 5_000;

export interface NopPingerHost {
  /** True while the connection is in full feature phase (pings only go out then). */
  inFullFeature(): boolean;
  /** True once the connection is closed (the pinger stops). */
  isClosed(): boolean;
  /** Sends a NOP-In ping with this TTT (a fresh one per ping). */
  sendPing(ttt: number): void;
  /** A fresh target transfer tag (shared with R2Ts). */
  nextTtt(): number;
  /** The initiator answered pings before and missed this one: drop the connection. */
  dead(silentMs: number): void;
}

export class NopPinger {
  private cancel: (() => void) | null = null;
  private lastRx: number;
  private outstanding: number | null = null;
  private answersPings = false;
  private probed = false;
  /** When the outstanding ping went out (meaningful while `outstanding` is set). */
  private pingSentAt = 0;

  constructor(
    private readonly clock: Clock,
    /** The NOP-In interval (0: no pings). */
    private readonly intervalMs: number,
    private readonly host: NopPingerHost,
  ) {
    this.lastRx = clock.now();
  }

  /** The peer sent something (any PDU counts as a sign of life). */
  heard(): void {
    this.lastRx = this.clock.now();
  }

  /** Full feature phase reached: the early probe goes out soon. */
  start(): void {
    this.arm(Math.min(PROBE_MS, this.intervalMs));
  }

  /** A NOP-Out with the reserved ITT and this TTT: the answer to our ping when the TTT matches. */
  answered(ttt: number): void {
    if (ttt === this.outstanding) {
      this.outstanding = null;
      this.answersPings = true;
    }
  }

  stop(): void {
    this.cancel?.();
    this.cancel = null;
  }

  private arm(delayMs = this.intervalMs): void {
    if (this.intervalMs <= 0) return;
    this.cancel = this.clock.setTimeout(() => this.tick(), delayMs);
  }

  private tick(): void {
    this.cancel = null;
    if (this.host.isClosed()) return;
    const now = this.clock.now();
    const interval = this.intervalMs;
    if (!this.probed) {
      this.probed = true;
      if (this.host.inFullFeature() && this.outstanding === null) this.ping(now);
      this.arm();
      return;
    }
    if (!this.host.inFullFeature()) {
      this.arm();
      return;
    }
    const answerMs = Math.min(PING_ANSWER_MS, interval);
    if (this.outstanding !== null && this.answersPings && now - this.pingSentAt >= answerMs) {
      this.host.dead(now - this.lastRx);
      return;
    }
    const silent = now - this.lastRx;
    if (silent < interval) {
      this.arm(interval - silent);
      return;
    }
    if (this.outstanding === null || !this.answersPings) this.ping(now);
    this.arm(this.answersPings ? answerMs - (now - this.pingSentAt) : interval);
  }

  private ping(now: number): void {
    this.pingSentAt = now;
    const ttt = this.host.nextTtt();
    this.outstanding = ttt;
    this.host.sendPing(ttt);
  }
}
