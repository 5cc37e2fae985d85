// Long file: one connection is one session: login and its phases, the task table, dispatch and
// output throttling, TMF, text and logout. Its parts with their own state or rules are split out
// (issue #18 step 3): pdu-writer, command-window, nop-pinger, write-assembly, data-in.
import type { Socket } from 'node:net';
import type { Clock } from '../core/clock';
import type { Logger } from '../core/log';
import { BHS_LENGTH, LogoutReason, LogoutResponseCode, RejectReason, RESERVED_TAG, TmfFunction, TmfResponse } from './constants';
import { PduFramer, type FramedPdu } from './framer';
import { CommandWindow } from './command-window';
import { buildDataIn, residualsOf, type Residuals } from './data-in';
import { NopPinger } from './nop-pinger';
import { PduWriter } from './pdu-writer';
import { newTask, type Task } from './task';
import { MAX_EDTL, WriteAssembly } from './write-assembly';
import { LoginNegotiation, type AdmitRequest, type LoginOutcome } from './login';
import {
  decodePdu,
  DecodeError,
  encodeLoginResponse,
  encodeLogoutResponse,
  encodeNopIn,
  encodeR2T,
  encodeReject,
  encodeScsiResponse,
  encodeTaskMgmtResponse,
  encodeTextResponse,
  type InitiatorPdu,
  type LoginRequest,
  type LogoutRequest,
  type NopOut,
  type ScsiCommand,
  type TaskMgmtRequest,
  type TextRequest,
} from './pdu';
import type { SessionParams, TargetLimits } from './params';
import { LogicalUnit, noSuchLun, reportLuns, type ScsiResult } from './scsi/logical-unit';
import type { LuShared } from './scsi/logical-unit';
import { mediumTransfer } from './scsi/opcodes';
import { Asc, dataPhaseError, encodeSense, ScsiError, SenseKey, Status } from './scsi/sense';
import { MIN_CLASS, type BufferPool } from './buffer-pool';
import type { TargetDirectory, TargetEntry } from './target-directory';
import { decodeText, encodeText, type TextPair } from './text';

/**
 * One TCP connection: login, then the full feature phase of its session (RFC 7143 §4).
 * Sessions have exactly one connection (MaxConnections=1), so the connection also holds
 * the session state: CmdSN window, tasks, opened logical units. It only talks to disks
 * through LogicalUnit and never blocks other connections: every volume call is async,
 * output is bounded by pausing the socket when the peer stops reading.
 */

/**
 * Commands the initiator may have outstanding. The window we advertise (MaxCmdSN - ExpCmdSN + 1,
 * §4.2.2.1) is what is left of QUEUE_DEPTH after the commands not yet answered, so a peer can
 * never have more than QUEUE_DEPTH commands (plus as many immediate ones) held here at once.
 */
export const QUEUE_DEPTH = 128;

/** What a connection needs from the server. */
export interface ConnectionContext {
  clock: Clock;
  log: Logger;
  directory: TargetDirectory;
  limits: TargetLimits;
  portalGroupTag: number;
  /** "address:port,tpgt" for SendTargets. */
  portal: string;
  nopInIntervalMs: number;
  /** A connection not in full-feature phase of a normal session by then is closed. */
  loginTimeoutMs: number;
  /** A discovery session is closed this long after its login completed. */
  discoveryTimeoutMs: number;
  /**
   * Bytes of Data-In (queued on the socket, batched, or being read for commands already
   * started) beyond which this connection starts no new command and reads no more from its
   * peer until the peer has taken some (issue #13).
   */
  maxQueuedDataIn: number;
  /** A warning about this connection's peer, rate-limited per address by the server. */
  warn(conn: IscsiConnection, fields: Record<string, unknown>, msg: string): void;
  admit(conn: IscsiConnection, req: AdmitRequest): { status: number; reason?: string };
  /** Final admission once authentication is known (session takeover rules). */
  admitSession(conn: IscsiConnection, outcome: LoginOutcome): { status: number; reason?: string };
  /** Called once the login succeeds; returns the TSIH of the (new) session. */
  sessionStarted(conn: IscsiConnection, outcome: LoginOutcome): number;
  sessionEnded(conn: IscsiConnection): void;
  /**
   * The state every session of one medium shares (reservations, range locks, unit attentions),
   * by volume id: a client disk reached through its own target and as LUN 1 of a rescue
   * target is one medium, so COMPARE AND WRITE stays atomic across both.
   */
  luShared(volumeId: string): LuShared;
  /** Buffers for large commands' write data and Data-In, shared by every connection. */
  buffers: BufferPool;
  loginRefused(conn: IscsiConnection, target: TargetEntry | null, initiator: string, reason: string, status: number): void;
  count(name: 'pdusIn' | 'pdusOut' | 'bytesIn' | 'bytesOut' | 'commands' | 'errors' | 'rejects', n?: number): void;
}

type Phase = 'login' | 'full' | 'logout' | 'closed';

/** Per-session counters for GET /api/sessions. */
export interface SessionStats {
  readBytes: number;
  writtenBytes: number;
  readCommands: number;
  writeCommands: number;
}

/** A connection and its (single-connection) session. */
export class IscsiConnection {
  phase: Phase = 'login';
  readonly since: number;
  readonly stats: SessionStats = { readBytes: 0, writtenBytes: 0, readCommands: 0, writeCommands: 0 };
  outcome: LoginOutcome | null = null;
  tsih = 0;
  /** Set once the first READ completed (boot telemetry: iscsi-first-read). */
  firstReadDone = false;
  /** "initiator,i,0xISID": the I_T nexus name (§4.4.3). */
  nexus = '';

  private readonly framer: PduFramer;
  private readonly login: LoginNegotiation;
  private params: SessionParams | null = null;
  private statSN: number;
  private readonly window = new CommandWindow<InitiatorPdu>(QUEUE_DEPTH);
  private readonly tasks = new Map<number, Task>();
  private readonly luns = new Map<number, LogicalUnit>();
  private lunsOpening: Promise<void> | null = null;
  private readonly writes: WriteAssembly;
  /** Data-In bytes of reads executing (reserved before their volume call). */
  private dataInReserved = 0;
  /**
   * Commands ready to execute but held because too much Data-In is queued for this peer, in
   * the order they became ready: once one waits, every later one waits behind it, so the
   * target never reorders a peer's commands for it.
   */
  private readonly dispatchWaiters: Task[] = [];
  /** Highest MaxCmdSN advertised: the window never shrinks below it (§4.2.2.1). */
  private nextTtt = 1;
  /** The login timeout, then (discovery sessions) the discovery timeout. */
  private cancelPhaseTimer: (() => void) | null = null;
  private readonly pinger: NopPinger;
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  private readonly log: Logger;
  private readonly writer: PduWriter;

  constructor(
    readonly socket: Socket,
    readonly address: string,
    private readonly ctx: ConnectionContext,
  ) {
    this.since = ctx.clock.now();
    this.statSN = (Math.random() * 0x7fffffff) >>> 0;
    this.log = ctx.log.child({ peer: address });
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    this.framer = new PduFramer(Math.max(ctx.limits.maxRecvDataSegmentLength, 8192), (p) => this.onFramed(p));
    this.framer.placeData = (h, len) => this.writes.place(h, len);
    this.login = new LoginNegotiation({
      directory: ctx.directory,
      limits: ctx.limits,
      portalGroupTag: ctx.portalGroupTag,
      admit: (req) => ctx.admit(this, req),
      admitSession: (outcome) => ctx.admitSession(this, outcome),
    });
    this.writes = new WriteAssembly({
      params: () => this.params!,
      task: (itt) => this.tasks.get(itt),
      acquire: (bytes) => ctx.buffers.acquire(bytes),
      takeTtt: () => this.takeTtt(),
      sendR2T: (r) => this.send(encodeR2T({ ...r, statSN: this.statSN, expCmdSN: this.window.expCmdSN, maxCmdSN: this.maxCmdSN() }), null),
      protocolError: (reason) => this.protocolError(reason),
      ready: (task) => this.maybeExecute(task),
      inFullFeature: () => this.phase === 'full',
      closed: () => this.phase === 'closed',
      debug: (obj, msg) => this.log.debug(obj, msg),
    });
    this.pinger = new NopPinger(ctx.clock, ctx.nopInIntervalMs, {
      inFullFeature: () => this.phase === 'full',
      isClosed: () => this.phase === 'closed',
      nextTtt: () => this.takeTtt(),
      sendPing: (ttt) => {
        const hdr = encodeNopIn({
          lun: 0,
          itt: RESERVED_TAG,
          ttt,
          dataLength: 0,
          statSN: this.statSN,
          expCmdSN: this.window.expCmdSN,
          maxCmdSN: this.maxCmdSN(),
        });
        // A ping does not advance StatSN (§11.19.2).
        this.send(hdr, null);
      },
      dead: (silentMs) => {
        this.log.info({ initiator: this.initiatorName, silentMs }, 'NOP-In ping unanswered, dropping connection');
        this.destroy();
      },
    });
    this.writer = new PduWriter(socket, {
      countBytes: (n) => ctx.count('bytesOut', n),
      countPdu: () => ctx.count('pdusOut'),
      release: (b) => ctx.buffers.release(b),
      taken: this.onOutputTaken,
      flushed: () => this.throttleInput(),
      digests: () => {
        const p = this.phase === 'full' || this.phase === 'logout' ? this.params : null;
        return p ? { header: p.headerDigest, data: p.dataDigest } : null;
      },
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.onClose());
    socket.on('drain', this.onOutputTaken);
    // A login must finish in loginTimeoutMs, whether or not NOP pings are on: a peer that
    // connects and stalls must not hold a connection slot (issue #13).
    this.cancelPhaseTimer = ctx.clock.setTimeout(() => {
      this.cancelPhaseTimer = null;
      if (this.phase === 'login') {
        this.ctx.warn(this, { peer: this.address, initiator: this.initiatorName }, 'login not completed in time, closing');
        this.destroy();
      }
    }, ctx.loginTimeoutMs);
  }

  /** The initiator name (known after the first login PDU). */
  get initiatorName(): string {
    return this.outcome?.initiatorName ?? this.login.initiator;
  }

  /** The target of a normal session. */
  get target(): TargetEntry | null {
    return this.outcome?.target ?? this.login.targetEntry;
  }

  /** Resolves once the socket is closed and volumes are released. */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** True when this session holds a LUN read-write (exclusive-writer policy). */
  get holdsWritable(): boolean {
    return this.phase !== 'closed' && (this.outcome?.target?.luns.some((l) => !l.readOnly) ?? false);
  }

  private onData(chunk: Buffer): void {
    this.ctx.count('bytesIn', chunk.length);
    this.pinger.heard();
    try {
      this.framer.push(chunk);
    } catch (err) {
      this.protocolError(err instanceof DecodeError ? err.reason : String(err));
    }
    this.throttleInput();
  }

  /** Drops the connection for a protocol violation (ERL 0: no recovery within the connection, §7.1.1). */
  protocolError(reason: string): void {
    if (this.phase === 'closed') return;
    this.ctx.count('errors');
    this.log.debug({ reason, initiator: this.initiatorName }, 'protocol error, dropping connection');
    this.destroy();
  }

  private onFramed(f: FramedPdu): void {
    if (this.phase === 'closed') return;
    this.ctx.count('pdusIn');
    let pdu: InitiatorPdu;
    try {
      pdu = decodePdu(f.header, f.data);
    } catch (err) {
      this.protocolError(err instanceof DecodeError ? err.reason : String(err));
      return;
    }
    if (f.dataDigestError) {
      // §7.8: discard the PDU and say so; the initiator retries the command (ERL 0 may drop).
      this.reject(RejectReason.DataDigestError, f.header);
      if (pdu.op === 'dataOut') this.protocolError('data digest error in Data-Out');
      return;
    }
    if (this.phase === 'login') {
      if (pdu.op !== 'loginRequest') return this.protocolError(`${pdu.op} before login completed`);
      return this.onLogin(pdu);
    }
    // While logging out or stopping, data for commands already accepted still comes in.
    if (this.phase === 'logout' && pdu.op === 'dataOut') return this.writes.onDataOut(pdu);
    if (this.phase !== 'full') return;
    switch (pdu.op) {
      case 'scsiCommand':
        return this.ordered(pdu, () => this.onCommand(pdu));
      case 'dataOut':
        return this.writes.onDataOut(pdu);
      case 'nopOut':
        return this.onNopOut(pdu);
      case 'taskMgmt':
        return this.ordered(pdu, () => this.onTaskMgmt(pdu));
      case 'textRequest':
        return this.ordered(pdu, () => this.onText(pdu));
      case 'logoutRequest':
        return this.ordered(pdu, () => void this.onLogout(pdu));
      case 'loginRequest':
        return this.protocolError('login request in full feature phase');
      case 'snack':
        return this.reject(RejectReason.CommandNotSupported, f.header); // ERL 0: no SNACK (§7.1)
      default:
        return this.reject(RejectReason.CommandNotSupported, f.header);
    }
  }

  // ---- login ------------------------------------------------------------------------------

  private onLogin(req: LoginRequest): void {
    const step = this.login.handle(req);
    // CmdSN during login: the login request is immediate; the initiator's CmdSN is the first one.
    this.window.start(req.cmdSN);
    let tsih = 0;
    if (step.kind === 'complete') {
      this.outcome = step.outcome;
      this.params = step.outcome.params;
      this.nexus = `${step.outcome.initiatorName},i,0x${step.outcome.isid}`;
      tsih = this.ctx.sessionStarted(this, step.outcome);
      this.tsih = tsih;
    }
    const data = encodeText(step.reply.pairs);
    const hdr = encodeLoginResponse({
      transit: step.reply.transit,
      cont: step.reply.cont,
      csg: step.reply.csg,
      nsg: step.reply.nsg,
      versionMax: 0,
      versionActive: 0,
      isid: req.isid,
      tsih,
      itt: req.itt,
      status: step.reply.status,
      dataLength: data.length,
      statSN: this.statSN,
      expCmdSN: this.window.expCmdSN,
      maxCmdSN: this.maxCmdSN(),
    });
    // StatSN advances with every response once the connection has one (§11.13.4).
    this.statSN = (this.statSN + 1) >>> 0;
    this.send(hdr, data);
    if (step.kind === 'fail') {
      this.ctx.loginRefused(this, this.login.targetEntry, this.login.initiator, step.reason, step.reply.status);
      this.log.info({ initiator: this.login.initiator, reason: step.reason, status: step.reply.status.toString(16) }, 'login refused');
      this.flushAndEnd();
      return;
    }
    if (step.kind === 'complete') {
      this.phase = 'full';
      this.cancelPhaseTimer?.();
      this.cancelPhaseTimer = null;
      if (step.outcome.sessionType === 'Discovery') {
        // SendTargets needs a second or two; a discovery session kept open holds a slot for
        // nothing (issue #13), so it ends after discoveryTimeoutMs whatever it does.
        this.cancelPhaseTimer = this.ctx.clock.setTimeout(() => {
          this.cancelPhaseTimer = null;
          if (this.phase === 'closed') return;
          this.ctx.warn(this, { peer: this.address, initiator: this.initiatorName }, 'discovery session open too long, closing');
          this.destroy();
        }, this.ctx.discoveryTimeoutMs);
      }
      this.pinger.start();
      // Digests start with the first PDU after the final Login Response (§13.1).
      this.framer.headerDigest = this.params!.headerDigest;
      this.framer.dataDigest = this.params!.dataDigest;
      this.framer.maxDataSegment = this.params!.targetMaxRecvDataSegmentLength;
      if (step.outcome.sessionType === 'Normal') {
        // Commands wait for the volumes only while they are being opened.
        const opening = this.openLuns().finally(() => {
          if (this.lunsOpening === opening) this.lunsOpening = null;
        });
        this.lunsOpening = opening;
      }
      this.log.info({ initiator: step.outcome.initiatorName, target: step.outcome.target?.name, type: step.outcome.sessionType, tsih }, 'login');
    }
  }

  private async openLuns(): Promise<void> {
    const target = this.outcome!.target!;
    for (const l of target.luns) {
      try {
        const volume = await l.open();
        this.luns.set(l.lun, new LogicalUnit(l.lun, volume, l.readOnly, this.ctx.luShared(volume.id), target.name));
      } catch (err) {
        this.log.warn({ err: (err as Error).message, lun: l.lun, target: target.name }, 'cannot open volume');
      }
    }
    if (this.phase === 'closed') await this.closeLuns();
  }

  // ---- CmdSN ordering ---------------------------------------------------------------------

  /**
   * MaxCmdSN for the next PDU we send: the window grants only the slots of QUEUE_DEPTH that
   * unanswered commands leave free, and never moves back below what was already advertised
   * (the initiator ignores a smaller MaxCmdSN and may already use it, §4.2.2.1).
   */
  private maxCmdSN(): number {
    return this.window.maxCmdSN(this.tasks.size);
  }

  /**
   * Delivers a command in CmdSN order (command-window.ts). Immediate PDUs go straight through;
   * CmdSNs outside [ExpCmdSN, MaxCmdSN] are silently dropped; early ones wait for the gap to fill.
   */
  private ordered(pdu: ScsiCommand | TaskMgmtRequest | TextRequest | LogoutRequest, deliver: () => void): void {
    if (pdu.immediate) {
      // Immediate commands take no CmdSN, so the window does not bound them: past QUEUE_DEPTH
      // unanswered commands they are rejected (§11.17.1 reason 0x06, "too many immediate commands").
      if (pdu.op === 'scsiCommand' && this.tasks.size >= QUEUE_DEPTH) return this.reject(RejectReason.ImmediateCommandReject, pdu.header);
      return deliver();
    }
    const where = this.window.place(pdu.cmdSN, this.tasks.size);
    if (where === 'outside') {
      this.log.debug({ cmdSN: pdu.cmdSN, expCmdSN: this.window.expCmdSN }, 'CmdSN outside the window, ignored');
      return;
    }
    if (where === 'early') {
      if (pdu.op === 'scsiCommand') this.registerTask(pdu, false);
      this.window.hold(pdu.cmdSN, pdu);
      return;
    }
    deliver();
    for (let next = this.window.nextHeld(); next; next = this.window.nextHeld()) this.deliverQueued(next);
  }

  private deliverQueued(pdu: InitiatorPdu): void {
    switch (pdu.op) {
      case 'scsiCommand': {
        const t = this.tasks.get(pdu.itt);
        if (t) {
          t.ordered = true;
          this.maybeExecute(t);
        }
        return;
      }
      case 'taskMgmt':
        return this.onTaskMgmt(pdu);
      case 'textRequest':
        return this.onText(pdu);
      case 'logoutRequest':
        return void this.onLogout(pdu);
      default:
        return;
    }
  }

  // ---- SCSI commands ----------------------------------------------------------------------

  private onCommand(cmd: ScsiCommand): void {
    const existing = this.tasks.get(cmd.itt);
    if (existing && existing.cmd === cmd) {
      existing.ordered = true;
      this.maybeExecute(existing);
      return;
    }
    this.registerTask(cmd, true);
  }

  private registerTask(cmd: ScsiCommand, ordered: boolean): void {
    this.ctx.count('commands');
    if (this.tasks.has(cmd.itt)) {
      // §11.2.1.7: ITTs are unique among outstanding tasks.
      this.reject(RejectReason.TaskInProgress, cmd.header);
      return;
    }
    const task = newTask(cmd, this.luns.get(cmd.lun) ?? null, ordered);
    this.tasks.set(cmd.itt, task);
    if (cmd.write && cmd.edtl > 0) {
      if (cmd.edtl > MAX_EDTL) {
        // Answer at once; Data-Out for this ITT will find no task and be dropped.
        this.tasks.delete(cmd.itt);
        this.inFlight++;
        this.complete(task, {
          status: Status.CheckCondition,
          sense: encodeSense(new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInCdb)),
          dataIn: null,
          dataOutWanted: 0,
        });
        return;
      }
      const begun = this.writes.begin(task);
      if (begun === 'refused') {
        this.tasks.delete(cmd.itt);
        this.protocolError('immediate data not allowed or too long');
        return;
      }
      if (begun === 'waiting') return;
    }
    this.maybeExecute(task);
  }

  private maybeExecute(task: Task): void {
    if (!task.ordered || task.executing || task.aborted || task.waiting) return;
    if (task.cmd.write && task.cmd.edtl > 0 && task.received < task.cmd.edtl) return;
    this.inFlight++;
    if (this.dispatchWaiters.length > 0 || !this.mayStart(task)) {
      task.waiting = true;
      this.dispatchWaiters.push(task);
      this.throttleInput();
      return;
    }
    this.start(task);
  }

  /** Data-In this connection holds: on the socket, in the output batch, being read for started commands. */
  private queuedDataIn(): number {
    return this.socket.writableLength + this.writer.queuedBytes + this.dataInReserved;
  }

  /**
   * Whether a command may start now (issue #13): a command returning data waits while that data
   * would take the connection's queued Data-In past maxQueuedDataIn, unless nothing is queued
   * (so one large read always goes, and an honest slow reader is slowed, never dropped).
   */
  private mayStart(task: Task): boolean {
    if (!task.cmd.read || task.cmd.edtl === 0) return true;
    const queued = this.queuedDataIn();
    return queued === 0 || queued + task.cmd.edtl <= this.ctx.maxQueuedDataIn;
  }

  /** Starts the commands waiting for Data-In room, in order, as far as room allows. */
  private pumpDispatch(): void {
    while (this.dispatchWaiters.length > 0) {
      const task = this.dispatchWaiters[0];
      if (!task.aborted && this.phase !== 'closed' && !this.mayStart(task)) break;
      this.dispatchWaiters.shift();
      task.waiting = false;
      if (task.aborted || this.phase === 'closed') this.settle();
      else this.start(task);
    }
  }

  /**
   * Input flow control: read nothing more from the peer while it leaves more than
   * maxQueuedDataIn unread or commands wait for Data-In room. Its commands then wait in its own
   * socket buffers and TCP window, not in our memory; reading resumes as output is taken.
   */
  private throttleInput(): void {
    if (this.socket.isPaused() || this.phase === 'closed') return;
    if (this.socket.writableLength > this.ctx.maxQueuedDataIn || this.dispatchWaiters.length > 0) this.socket.pause();
  }

  /** The peer took output (a write reached the kernel, or the socket drained). */
  private readonly onOutputTaken = (): void => {
    if (this.phase === 'closed') return;
    if (this.dispatchWaiters.length > 0) this.pumpDispatch();
    if (this.socket.isPaused() && this.socket.writableLength <= this.ctx.maxQueuedDataIn && this.dispatchWaiters.length === 0) {
      this.socket.resume();
    }
  };

  /** One command fewer in flight; wakes whenIdle() waiters at zero. */
  private settle(): void {
    this.inFlight--;
    if (this.inFlight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Executes a task counted in inFlight. */
  private start(task: Task): void {
    task.executing = true;
    if (task.cmd.read && task.cmd.edtl > 0) {
      task.dataInReserved = task.cmd.edtl;
      this.dataInReserved += task.cmd.edtl;
    }
    if (task.dataError) {
      this.complete(task, { status: Status.CheckCondition, sense: encodeSense(dataPhaseError()), dataIn: null, dataOutWanted: task.cmd.edtl });
      return;
    }
    void this.execute(task);
  }

  private async execute(task: Task): Promise<void> {
    const cmd = task.cmd;
    if (this.lunsOpening) await this.lunsOpening;
    const fast = this.luns.get(cmd.lun);
    if (fast && cmd.cdb[0] !== 0xa0) {
      // A large read's data goes into a pooled buffer, back in the pool once sent (complete()).
      if (cmd.read && cmd.edtl >= MIN_CLASS && !cmd.write) task.inBuf = this.ctx.buffers.acquire(cmd.edtl);
      // Hot path: no extra async layers between the volume's promise and the response.
      fast
        .execute({ cdb: cmd.cdb, dataOut: task.buf, edtl: cmd.edtl, nexus: this.nexus, dataInBuffer: task.inBuf ?? undefined })
        .then((r) => this.finished(task, r));
      return;
    }
    let result: ScsiResult;
    const lu = task.lu ?? this.luns.get(cmd.lun) ?? null;
    if (cmd.cdb[0] === 0xa0) {
      try {
        result = { status: Status.Good, sense: null, dataIn: reportLuns(cmd.cdb, [...this.luns.keys()]), dataOutWanted: 0 };
      } catch {
        result = {
          status: Status.CheckCondition,
          sense: encodeSense(new ScsiError(SenseKey.IllegalRequest, Asc.InvalidFieldInCdb)),
          dataIn: null,
          dataOutWanted: 0,
        };
      }
    } else if (!lu) {
      result = noSuchLun(cmd.cdb);
    } else {
      result = await lu.execute({ cdb: cmd.cdb, dataOut: task.buf, edtl: cmd.edtl, nexus: this.nexus });
    }
    this.finished(task, result);
  }

  /** Accounts a finished command (session counters, first-read telemetry), then answers it. */
  private finished(task: Task, result: ScsiResult): void {
    const op = task.cmd.cdb[0];
    if (result.status === Status.Good) {
      if (result.dataIn && mediumTransfer(op) === 'read') {
        this.stats.readBytes += result.dataIn.length;
        this.stats.readCommands++;
        if (!this.firstReadDone) {
          this.firstReadDone = true;
          this.onFirstRead?.();
        }
      } else if (result.dataOutWanted > 0 && mediumTransfer(op) === 'write') {
        this.stats.writtenBytes += Math.min(result.dataOutWanted, task.received);
        this.stats.writeCommands++;
      }
    }
    this.complete(task, result);
  }

  /** Hook for boot telemetry (set by the server). */
  onFirstRead?: () => void;

  /** Sends Data-In and status for a finished task (§10.4, §11.7: status in the last Data-In when possible). */
  private complete(task: Task, r: ScsiResult): void {
    this.tasks.delete(task.itt);
    // Its data now counts as output (outBytes, then the socket's) instead of a reservation.
    this.dataInReserved -= task.dataInReserved;
    task.dataInReserved = 0;
    // Executed (its volume call settled) or failed before it could: no Data-Out can be placed
    // into the buffer any more (placement stops once a task executes) and nothing reads it.
    if (task.pooled && task.executing) {
      task.pooled = false;
      this.ctx.buffers.release(task.buf!);
      task.buf = null;
    }
    this.writes.released(task);
    this.settle();
    if (task.aborted || this.phase === 'closed') return;
    const res = residualsOf(task.cmd, r.dataIn, r.dataOutWanted);
    const { underflow, overflow, residual, dataIn } = res;
    if (dataIn && dataIn.length > 0) {
      this.sendDataIn(task, dataIn, r, res);
      // Sent from the pooled buffer: back to the pool once the socket has taken it (flush()).
      if (task.inBuf && dataIn.buffer === task.inBuf.buffer) this.writer.releaseAfterWrite(task.inBuf);
      task.inBuf = null;
      if (r.sense === null) return;
    }
    const sense = r.sense;
    let data: Buffer | null = null;
    if (sense) {
      data = Buffer.allocUnsafe(2 + sense.length);
      data.writeUInt16BE(sense.length, 0);
      sense.copy(data, 2);
    }
    const hdr = encodeScsiResponse({
      itt: task.itt,
      status: r.status,
      response: 0,
      underflow,
      overflow,
      residual,
      expDataSN: 0,
      dataLength: data ? data.length : 0,
      statSN: this.statSN,
      expCmdSN: this.window.expCmdSN,
      maxCmdSN: this.maxCmdSN(),
    });
    this.statSN = (this.statSN + 1) >>> 0;
    this.send(hdr, data);
  }

  /** Read data as Data-In PDUs (data-in.ts), status in the last one when there is no sense. */
  private sendDataIn(task: Task, data: Buffer, r: ScsiResult, res: Residuals): void {
    const p = this.params!;
    const statusSent = buildDataIn(
      data,
      {
        segment: p.initiatorMaxRecvDataSegmentLength,
        burst: p.maxBurstLength,
        headerDigest: p.headerDigest,
        withStatus: r.sense === null,
        status: r.status,
        residuals: res,
        lun: task.cmd.lun,
        itt: task.itt,
        statSN: this.statSN,
        expCmdSN: this.window.expCmdSN,
        maxCmdSN: this.maxCmdSN(),
      },
      this.sendDataInPdu,
    );
    if (statusSent) this.statSN = (this.statSN + 1) >>> 0;
  }

  private readonly sendDataInPdu = (header: Buffer, payload: Buffer, headers: Buffer, at: number): void => this.writer.send(header, payload, headers, at);

  // ---- other requests ---------------------------------------------------------------------

  private onNopOut(n: NopOut): void {
    if (n.itt === RESERVED_TAG) {
      // The answer to our ping (§11.18.4): no response; it proves the initiator answers pings.
      if (n.ttt !== RESERVED_TAG) this.pinger.answered(n.ttt);
      return;
    }
    if (!n.immediate) this.window.consume(n.cmdSN);
    // A ping from the initiator: echo its data (§11.19), answered at once (iscsid's 5 s timeout).
    const data = n.data.length ? Buffer.from(n.data.subarray(0, this.params!.initiatorMaxRecvDataSegmentLength)) : null;
    const hdr = encodeNopIn({
      lun: Math.max(0, n.lun),
      itt: n.itt,
      ttt: RESERVED_TAG,
      dataLength: data ? data.length : 0,
      statSN: this.statSN,
      expCmdSN: this.window.expCmdSN,
      maxCmdSN: this.maxCmdSN(),
    });
    this.statSN = (this.statSN + 1) >>> 0;
    this.send(hdr, data);
  }

  private onTaskMgmt(t: TaskMgmtRequest): void {
    let response: number = TmfResponse.Complete;
    const abortWhere = (pred: (task: Task) => boolean): void => {
      for (const task of this.tasks.values()) {
        if (task.itt !== t.itt && pred(task)) this.abortTask(task);
      }
    };
    switch (t.fn) {
      case TmfFunction.AbortTask: {
        const task = this.tasks.get(t.refTaskTag);
        if (task && task.cmd.lun === t.lun) this.abortTask(task);
        else response = TmfResponse.TaskDoesNotExist;
        break;
      }
      case TmfFunction.AbortTaskSet:
      case TmfFunction.ClearTaskSet:
        if (!this.outcome?.target?.luns.some((l) => l.lun === t.lun)) response = TmfResponse.LunDoesNotExist;
        else abortWhere((task) => task.cmd.lun === t.lun);
        break;
      case TmfFunction.LogicalUnitReset: {
        const lu = this.luns.get(t.lun);
        if (!lu) response = TmfResponse.LunDoesNotExist;
        else {
          abortWhere((task) => task.cmd.lun === t.lun);
          lu.shared.reservations.reset();
        }
        break;
      }
      case TmfFunction.TargetWarmReset:
      case TmfFunction.TargetColdReset:
        abortWhere(() => true);
        for (const lu of this.luns.values()) lu.shared.reservations.reset();
        break;
      case TmfFunction.ClearAca:
        break;
      case TmfFunction.TaskReassign:
        response = TmfResponse.ReassignNotSupported; // ERL 0 (§11.5.1)
        break;
      default:
        response = TmfResponse.NotSupported;
    }
    const hdr = encodeTaskMgmtResponse({
      itt: t.itt,
      response,
      statSN: this.statSN,
      expCmdSN: this.window.expCmdSN,
      maxCmdSN: this.maxCmdSN(),
    });
    this.statSN = (this.statSN + 1) >>> 0;
    this.send(hdr, null);
    // A cold reset ends every connection (§11.5.1).
    if (t.fn === TmfFunction.TargetColdReset && response === TmfResponse.Complete) this.flushAndEnd();
  }

  private abortTask(task: Task): void {
    task.aborted = true;
    if (!task.executing) {
      // Never started: forget it now (release its write buffer).
      this.tasks.delete(task.itt);
      this.writes.abandoned(task);
      if (task.waiting) {
        this.dispatchWaiters.splice(this.dispatchWaiters.indexOf(task), 1);
        task.waiting = false;
        this.settle();
        this.pumpDispatch();
      }
    }
  }

  /** Text response bytes still to send, by the TTT we gave the initiator (§6.1: long responses span PDUs). */
  private textRest: { ttt: number; itt: number; rest: Buffer } | null = null;

  private onText(t: TextRequest): void {
    if (t.ttt !== RESERVED_TAG) {
      // The initiator asks for the next piece of a long response.
      const pending = this.textRest;
      if (!pending || pending.ttt !== t.ttt || pending.itt !== t.itt) {
        this.reject(RejectReason.InvalidPduField, t.header);
        return;
      }
      this.textRest = null;
      this.sendText(t.itt, pending.rest);
      return;
    }
    this.textRest = null;
    let pairs: TextPair[];
    try {
      pairs = decodeText(t.data);
    } catch {
      this.reject(RejectReason.ProtocolError, t.header);
      return;
    }
    const answer: TextPair[] = [];
    for (const [key, value] of pairs) {
      if (key === 'SendTargets') {
        const discovery = this.outcome?.sessionType === 'Discovery';
        // In a normal session SendTargets may only describe the session's own target (§12.3).
        const names =
          discovery && value === 'All'
            ? this.ctx.directory.list(this.initiatorName).map((e) => e.name)
            : value === 'All' || value === ''
              ? this.outcome?.target
                ? [this.outcome.target.name]
                : []
              : this.ctx.directory
                  .list(this.initiatorName)
                  .map((e) => e.name)
                  .filter((n) => n === value.toLowerCase());
        for (const name of names) answer.push(['TargetName', name], ['TargetAddress', this.ctx.portal]);
      } else {
        answer.push([key, 'NotUnderstood']);
      }
    }
    this.sendText(t.itt, encodeText(answer));
  }

  /** Sends a text response, split at the initiator's MaxRecvDataSegmentLength with C=1 and a TTT. */
  private sendText(itt: number, data: Buffer): void {
    const max = this.params!.initiatorMaxRecvDataSegmentLength;
    let piece = data;
    let ttt = RESERVED_TAG;
    if (data.length > max) {
      piece = data.subarray(0, max);
      ttt = this.takeTtt();
      this.textRest = { ttt, itt, rest: data.subarray(max) };
    }
    const more = ttt !== RESERVED_TAG;
    const hdr = encodeTextResponse({
      final: !more,
      cont: more,
      lun: 0,
      itt,
      ttt,
      dataLength: piece.length,
      statSN: this.statSN,
      expCmdSN: this.window.expCmdSN,
      maxCmdSN: this.maxCmdSN(),
    });
    this.statSN = (this.statSN + 1) >>> 0;
    this.send(hdr, piece);
  }

  private async onLogout(l: LogoutRequest): Promise<void> {
    this.phase = 'logout';
    // Let in-flight commands finish and reach the initiator before the Logout Response (§11.14).
    await this.whenIdle();
    let response: number = LogoutResponseCode.Success;
    if (l.reason === LogoutReason.RemoveForRecovery) response = LogoutResponseCode.RecoveryNotSupported;
    else if (l.reason === LogoutReason.CloseConnection && l.cid !== this.outcome?.cid) response = LogoutResponseCode.CidNotFound;
    if ((this.phase as Phase) === 'closed') return;
    const hdr = encodeLogoutResponse({ itt: l.itt, response, statSN: this.statSN, expCmdSN: this.window.expCmdSN, maxCmdSN: this.maxCmdSN() });
    this.statSN = (this.statSN + 1) >>> 0;
    this.send(hdr, null);
    this.loggedOut = true;
    this.flushAndEnd();
  }

  /** True once a Logout completed (telemetry: iscsi-logout rather than iscsi-disconnect). */
  loggedOut = false;

  /** Resolves when no command is executing or after ms, whichever comes first; leaves no timer behind. */
  private async idleOrTimeout(ms: number): Promise<void> {
    let cancel = (): void => undefined;
    await Promise.race([this.whenIdle(), new Promise<void>((r) => (cancel = this.ctx.clock.setTimeout(r, ms)))]);
    cancel();
  }

  /** Resolves when no command is executing. */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private reject(reason: number, header: Buffer): void {
    this.ctx.count('rejects');
    const bhs = header.subarray(0, BHS_LENGTH);
    const hdr = encodeReject({ reason, dataLength: bhs.length, statSN: this.statSN, expCmdSN: this.window.expCmdSN, maxCmdSN: this.maxCmdSN() });
    this.statSN = (this.statSN + 1) >>> 0;
    this.send(hdr, Buffer.from(bhs));
  }

  // ---- NOP-In pings -----------------------------------------------------------------------

  /** A fresh target transfer tag (R2Ts and pings). */
  private takeTtt(): number {
    const ttt = this.nextTtt;
    this.nextTtt = (this.nextTtt + 1) & 0x7fffffff || 1;
    return ttt;
  }

  // ---- output (pdu-writer.ts) ----------------------------------------------------------

  /** Queues one PDU (nothing once the connection is closed). */
  private send(header: Buffer, data: Buffer | null): void {
    if (this.phase === 'closed' || this.socket.destroyed) return;
    this.writer.send(header, data);
  }

  private flushAndEnd(): void {
    if (this.socket.destroyed) return;
    this.writer.flush();
    this.socket.end();
    const t = this.ctx.clock.setTimeout(() => this.destroy(), 5000);
    this.socket.once('close', t);
  }

  /** Closes the socket at once. */
  destroy(): void {
    this.socket.destroy();
    this.onClose();
  }

  /** Asks the connection to finish: stop taking commands, let in-flight ones complete, then close. */
  async shutdown(): Promise<void> {
    if (this.phase === 'closed') return;
    if (this.phase === 'login') {
      this.destroy();
      return this.closed;
    }
    this.phase = 'logout';
    await this.idleOrTimeout(10_000);
    this.flushAndEnd();
    return this.closed;
  }

  private onClose(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.pinger.stop();
    this.cancelPhaseTimer?.();
    this.cancelPhaseTimer = null;
    for (const task of this.tasks.values()) task.aborted = true;
    // Commands that never started will not: they stop counting as in flight.
    for (const task of this.dispatchWaiters.splice(0)) {
      task.waiting = false;
      this.settle();
    }
    this.ctx.sessionEnded(this);
    void (async () => {
      if (this.lunsOpening) await this.lunsOpening.catch(() => undefined);
      // Writes already handed to the volume finish before we flush and close it.
      await this.idleOrTimeout(30_000);
      await this.closeLuns();
      this.resolveClosed();
    })();
  }

  private async closeLuns(): Promise<void> {
    for (const lu of this.luns.values()) {
      lu.shared.reservations.nexusLost(this.nexus);
      try {
        await lu.volume.flush();
      } catch (err) {
        this.log.warn({ err: (err as Error).message, lun: lu.lun }, 'flush on close failed');
      }
      const closable = lu.volume as unknown as { close?: () => unknown };
      try {
        await closable.close?.();
      } catch {
        /* already closed */
      }
    }
    this.luns.clear();
  }
}
