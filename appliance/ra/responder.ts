/**
 * The router-solicitation responder as a service: runs ra-responder (the raw ICMPv6 socket Node
 * does not have) on one interface, keeps its allow-list equal to decideRa()'s, and notes every
 * other router it hears. Restarts the helper with back-off when it dies; stop() ends it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import type { Service, ServiceStatus } from '../core/service';
import { allowCommand, parseHelperLine, SOLICIT_COMMAND, type HelperEvent } from './helper-protocol';
import { decideRa, MAX_ALLOWED, type RaDecision } from './policy';

/**
 * The helper's path: the configured one, else `ra-responder` beside the bundle (dist/, or
 * /opt/netboot on the box), else dist/ra-responder from the source tree (tsx runs). Undefined
 * when none exists.
 */
export function findRaHelper(configured: string, bundleDir: string): string | undefined {
  const candidates = configured ? [configured] : [join(bundleDir, 'ra-responder'), join(bundleDir, '../../dist/ra-responder')];
  return candidates.find((p) => existsSync(p));
}

export interface RaResponderOptions {
  /** Interface to answer on; '' = the service stays disabled. */
  interface: string;
  /** The ra-responder executable. */
  helperPath: string;
  clock: Clock;
  log: Logger;
  /** The MACs being booted now (bootingMacs()); asked every tick. */
  booting: () => readonly string[];
  /** Nobody is answered until this long after the helper starts (routers answer an RS within 0.5 s, RFC 4861 §6.2.6). */
  probeMs: number;
  /** Another router counts as present this long after its last RA. */
  holdMs: number;
  /** Why the service is off, when it is (config switch, no interface). */
  disabledReason?: string;
}

/** How often the allow-list is recomputed (a new unknown client is answered within this). */
const TICK_MS = 1000;
const MAX_BACKOFF_MS = 60_000;
/** refresh() recomputes at most this often. */
const REFRESH_MS = 250;
/** A helper up this long before it died is restarted after 1 s again. */
const STABLE_MS = 60_000;
/** Router solicitations sent at start, one per tick (RFC 4861 §6.3.7: MAX_RTR_SOLICITATIONS). */
const MAX_SOLICITS = 3;
/** At most this many routers remembered (a flood of forged RAs cannot grow the map). */
const MAX_ROUTERS = 64;

export class RaResponder implements Service {
  readonly name = 'ra';
  private child: ChildProcess | undefined;
  private state: ServiceStatus['state'] = 'stopped';
  private detail = '';
  private stopping = false;
  private cancelTick: (() => void) | undefined;
  private cancelRestart: (() => void) | undefined;
  private backoffMs = 1000;
  private readyAt: number | undefined;
  private warnedTooMany = false;
  private lastApplyAt = -Infinity;
  private cancelRefresh: (() => void) | undefined;
  private probeUntil = Infinity;
  private solicitsLeft = 0;
  private readonly routers = new Map<string, number>();
  private sentAllow: string | undefined;
  private decision: RaDecision | undefined;
  private readonly counters = { answered: 0, refused: 0, limited: 0, foreign_ras: 0, helper_starts: 0 };

  constructor(private readonly opts: RaResponderOptions) {}

  async start(): Promise<void> {
    if (this.opts.disabledReason) {
      this.state = 'disabled';
      this.detail = this.opts.disabledReason;
      this.opts.log.info({ reason: this.detail }, 'not answering router solicitations: iPXE waits ~15 s for IPv6 before it boots');
      return;
    }
    this.stopping = false;
    this.state = 'starting';
    this.launch();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.cancelTick?.();
    this.cancelRefresh?.();
    this.cancelRefresh = undefined;
    this.cancelRestart?.();
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      // EOF on stdin ends the helper; SIGTERM if it does not go within a second.
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGTERM'), 1000);
      await exited;
      clearTimeout(timer);
    }
    if (this.state !== 'disabled') this.state = 'stopped';
  }

  status(): ServiceStatus {
    const allowed = this.decision?.answer ? this.decision.allow.length : 0;
    return {
      state: this.state,
      listen: this.state === 'running' ? [`icmpv6 ${this.opts.interface}`] : [],
      counters: { ...this.counters },
      gauges: { allowed, routers_heard: this.routers.size },
      detail: this.detail || undefined,
    };
  }

  /**
   * Recomputes the allow-list now rather than at the next tick (the composition root calls it
   * when DHCP hears an unknown MAC). At most once per REFRESH_MS: a flood of spoofed DHCP
   * requests costs no more than the tick does.
   */
  refresh(): void {
    if (this.state !== 'running' || this.cancelRefresh) return;
    const wait = this.lastApplyAt + REFRESH_MS - this.opts.clock.now();
    if (wait <= 0) return this.apply();
    // Too soon after the last one: once, when REFRESH_MS have passed.
    this.cancelRefresh = this.opts.clock.setTimeout(() => {
      this.cancelRefresh = undefined;
      if (this.state === 'running') this.apply();
    }, wait);
  }

  /** The current decision (tests, status). */
  current(): RaDecision | undefined {
    return this.decision;
  }

  private launch(): void {
    const { log } = this.opts;
    this.counters.helper_starts++;
    this.sentAllow = undefined;
    const child = spawn(this.opts.helperPath, [this.opts.interface], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child = child;
    let lastError = '';
    child.stdin!.on('error', () => undefined); // EPIPE when it died; 'exit' reports it
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const ev = parseHelperLine(line);
      if (!ev) log.debug({ line }, 'ra-responder: unknown line');
      else if (ev.kind === 'error') {
        lastError = ev.text;
        log.warn({ error: ev.text }, 'ra-responder reported an error');
      } else this.onEvent(ev);
    });
    // A helper that could not be started (EACCES, ENOENT) emits 'error' and never 'exit'.
    child.on('error', (err) => {
      lastError = err.message;
      if (child.pid === undefined) gone(null, null);
    });
    child.on('exit', (code, signal) => gone(code, signal));
    const gone = (code: number | null, signal: NodeJS.Signals | null) => {
      if (this.child !== child) return;
      this.child = undefined;
      this.cancelTick?.();
      if (this.stopping) return;
      // A helper that ran a good while starts the back-off afresh; one that keeps dying soon
      // after start is retried less and less often (a crash loop must not spin).
      if (this.readyAt !== undefined && this.opts.clock.now() - this.readyAt >= STABLE_MS) this.backoffMs = 1000;
      this.readyAt = undefined;
      this.state = 'failed';
      this.detail = `ra-responder exited (${code ?? signal ?? 'not started'})${lastError ? `: ${lastError}` : ''}; retrying in ${this.backoffMs / 1000} s`;
      log.error({ code, signal, error: lastError, retryMs: this.backoffMs }, 'ra-responder exited: router solicitations go unanswered until it is back');
      this.cancelRestart = this.opts.clock.setTimeout(() => this.launch(), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    };
  }

  private onEvent(ev: Exclude<HelperEvent, { kind: 'error' }>): void {
    const { log, clock } = this.opts;
    switch (ev.kind) {
      case 'ready':
        this.state = 'running';
        this.readyAt = clock.now();
        this.probeUntil = clock.now() + this.opts.probeMs;
        this.solicitsLeft = MAX_SOLICITS;
        log.info(
          { interface: this.opts.interface, probeMs: this.opts.probeMs },
          'answering router solicitations of booting clients (after a look for other routers)',
        );
        this.tick();
        return;
      case 'rs': {
        this.counters[ev.outcome]++;
        const mac = this.decision?.answer ? this.decision.macByAddress.get(ev.source) : undefined;
        log.debug({ source: ev.source, mac, outcome: ev.outcome }, 'router solicitation');
        return;
      }
      case 'ra': {
        this.counters.foreign_ras++;
        const known = this.routers.has(ev.source);
        if (!known) {
          log.info(
            { router: ev.source, lifetime: ev.lifetime, flags: ev.flags },
            'another router advertises on the link: not answering router solicitations while it does',
          );
          if (this.routers.size >= MAX_ROUTERS) this.routers.delete(this.routers.keys().next().value!);
        }
        this.routers.delete(ev.source);
        this.routers.set(ev.source, clock.now());
        // A new router silences the answers at once; a known one's RAs only refresh its time
        // (a flood of forged RAs must not cost a recomputation each).
        if (!known) this.apply();
        return;
      }
    }
  }

  private tick(): void {
    this.cancelTick?.();
    // Start-up solicitations, one per tick (the first may fail while the link-local address is
    // still tentative); routers answer within 0.5 s (RFC 4861 §6.2.6).
    if (this.solicitsLeft > 0) {
      this.solicitsLeft--;
      this.send(SOLICIT_COMMAND);
    }
    this.apply();
    this.cancelTick = this.opts.clock.setTimeout(() => this.tick(), TICK_MS);
  }

  /** Recomputes the decision and sends the allow-list when it changed. */
  private apply(): void {
    const now = this.opts.clock.now();
    this.lastApplyAt = now;
    for (const [addr, at] of this.routers) if (now - at >= this.opts.holdMs) this.routers.delete(addr);
    let booting: readonly string[] = [];
    try {
      booting = this.opts.booting();
    } catch (err) {
      this.opts.log.warn({ err }, 'cannot list booting clients: answering nobody');
    }
    if (booting.length > MAX_ALLOWED && !this.warnedTooMany) {
      this.warnedTooMany = true;
      this.opts.log.warn(
        { booting: booting.length, max: MAX_ALLOWED },
        'more booting clients than the router-solicitation allow-list holds: the rest wait for IPv6 as without it',
      );
    }
    const decision = decideRa({ now, probeUntil: this.probeUntil, routers: this.routers, holdMs: this.opts.holdMs, booting });
    const was = this.decision;
    this.decision = decision;
    this.detail = decision.answer ? `answering ${decision.allow.length} client(s) on ${this.opts.interface}` : `silent: ${decision.reason}`;
    if (was && was.answer !== decision.answer) this.opts.log.info({ answer: decision.answer, detail: this.detail }, 'router solicitation answers changed');
    const cmd = allowCommand(decision.answer ? decision.allow : []);
    if (cmd !== this.sentAllow) {
      this.sentAllow = cmd;
      this.send(cmd);
    }
  }

  private send(line: string): void {
    const stdin = this.child?.stdin;
    if (stdin && !stdin.destroyed) stdin.write(line);
  }
}
