import { randomBytes } from 'node:crypto';
import type { ChapCredentials } from '../core/model';
import { chapResponse, chapVerify, CHAP_MD5, decodeChapBinary, encodeChapBinary } from './chap';
import { LoginStatus, Stage } from './constants';
import type { LoginRequest } from './pdu';
import { DecodeError } from './pdu';
import { defaultParams, isLoginKey, negotiateKey, type SessionParams, type TargetLimits } from './params';
import type { TargetDirectory, TargetEntry } from './target-directory';
import { decodeText, type TextPair } from './text';

/**
 * The login phase of one connection (RFC 7143 §6.3, §11.12): security negotiation (None or
 * CHAP), operational negotiation, stage transitions. Pure apart from the random challenge
 * source: no sockets, no clock. The connection feeds it Login Requests and sends the
 * responses it returns; policy (who may log in, session reinstatement) comes in through
 * the directory and the admit() callback.
 */

/** What the login decides for one request. */
export interface LoginReply {
  transit: boolean;
  cont: boolean;
  csg: number;
  nsg: number;
  /** Login status class/detail (LoginStatus). */
  status: number;
  pairs: TextPair[];
}

/**
 * How strongly a login authenticated (RFC 7143 §12.1): none, one-way CHAP (the initiator proved
 * its secret), mutual CHAP (the target proved its own as well). Ordered: none < chap < mutual.
 */
export type AuthStrength = 'none' | 'chap' | 'mutual';

/** AuthStrength as a number, for "at least as strong as" comparisons. */
export function authRank(a: AuthStrength): number {
  return a === 'mutual' ? 2 : a === 'chap' ? 1 : 0;
}

/** A finished login: what the session needs. */
export interface LoginOutcome {
  sessionType: 'Normal' | 'Discovery';
  initiatorName: string;
  initiatorAlias?: string;
  target: TargetEntry | null;
  params: SessionParams;
  isid: string;
  tsih: number;
  cid: number;
  /** What the security stage proved; a live session is only taken over by a login at least as strong. */
  auth: AuthStrength;
}

/** One step of the login. `failure` names the refusal for logs and telemetry. */
export type LoginStep =
  | { kind: 'continue'; reply: LoginReply }
  | { kind: 'complete'; reply: LoginReply; outcome: LoginOutcome }
  | { kind: 'fail'; reply: LoginReply; reason: string };

/** What admit() sees: enough to apply ACLs, TSIH rules and exclusive-writer policy. */
export interface AdmitRequest {
  sessionType: 'Normal' | 'Discovery';
  initiatorName: string;
  target: TargetEntry | null;
  isid: string;
  tsih: number;
}

export interface LoginOptions {
  directory: TargetDirectory;
  limits: TargetLimits;
  portalGroupTag: number;
  /** Session-level checks (TSIH, exclusivity); returns LoginStatus.Success or a refusal. */
  admit(req: AdmitRequest): { status: number; reason?: string };
  /**
   * Last check before the final Login Response, once authentication is known (session
   * takeover needs it); LoginStatus.Success or a refusal. Absent = always admitted.
   */
  admitSession?(outcome: LoginOutcome): { status: number; reason?: string };
  /** Challenge source (tests inject a fixed one). */
  random?: (n: number) => Buffer;
}

type AuthState = 'open' | 'wantMethod' | 'wantAlgorithm' | 'wantResponse' | 'done';

/** Login state machine for one connection. */
export class LoginNegotiation {
  private first = true;
  private stage: number = Stage.Security;
  private pending: Buffer[] = [];
  private initiatorName = '';
  private initiatorAlias: string | undefined;
  private sessionType: 'Normal' | 'Discovery' = 'Normal';
  private target: TargetEntry | null = null;
  private chap: ChapCredentials | null = null;
  private auth: AuthState = 'open';
  private mutual = false;
  private chapId = 0;
  private chapChallenge: Buffer = Buffer.alloc(0);
  private isid = '';
  private tsih = 0;
  private cid = 0;
  readonly params: SessionParams;

  constructor(private readonly opts: LoginOptions) {
    this.params = defaultParams(opts.limits.maxRecvDataSegmentLength);
  }

  /** The initiator name from the first request ('' before it). */
  get initiator(): string {
    return this.initiatorName;
  }

  /** The resolved target, once known. */
  get targetEntry(): TargetEntry | null {
    return this.target;
  }

  /** Handles one Login Request. After 'fail' or 'complete' the connection stops calling. */
  handle(req: LoginRequest): LoginStep {
    const fail = (status: number, reason: string): LoginStep => ({
      kind: 'fail',
      reason,
      reply: { transit: false, cont: false, csg: req.csg, nsg: 0, status, pairs: [] },
    });
    // Version 0 is the only version (§11.12.4).
    if (req.versionMin > 0) return fail(LoginStatus.UnsupportedVersion, `version ${req.versionMin} unsupported`);
    if (req.csg === 2 || req.csg === Stage.FullFeature) return fail(LoginStatus.InitiatorError, `bad CSG ${req.csg}`);
    if (req.transit && (req.nsg === 2 || req.nsg <= req.csg)) return fail(LoginStatus.InitiatorError, `bad NSG ${req.nsg}`);
    if (req.transit && req.cont) return fail(LoginStatus.InitiatorError, 'T and C both set');

    // Text split over several PDUs (C bit, §11.12.2): answer empty until the last piece.
    if (req.cont) {
      this.pending.push(Buffer.from(req.data));
      if (this.pending.reduce((n, b) => n + b.length, 0) > 65536) return fail(LoginStatus.InitiatorError, 'login text too long');
      return { kind: 'continue', reply: { transit: false, cont: false, csg: req.csg, nsg: 0, status: 0, pairs: [] } };
    }
    let text = req.data;
    if (this.pending.length) {
      text = Buffer.concat([...this.pending, req.data]);
      this.pending = [];
    }
    let pairs: TextPair[];
    try {
      pairs = decodeText(text);
    } catch (err) {
      return fail(LoginStatus.InitiatorError, err instanceof DecodeError ? err.reason : 'bad login text');
    }
    const keys = new Map(pairs);
    const answer: TextPair[] = [];

    if (this.first) {
      this.first = false;
      this.isid = req.isid;
      this.tsih = req.tsih;
      this.cid = req.cid;
      const name = keys.get('InitiatorName');
      if (!name) return fail(LoginStatus.MissingParameter, 'no InitiatorName');
      // iSCSI names are case-insensitive and normalised to lower case (RFC 3722 stringprep).
      this.initiatorName = name.toLowerCase();
      this.initiatorAlias = keys.get('InitiatorAlias');
      const type = keys.get('SessionType') ?? 'Normal';
      if (type !== 'Normal' && type !== 'Discovery') return fail(LoginStatus.SessionTypeNotSupported, `session type ${type}`);
      this.sessionType = type;
      if (type === 'Normal') {
        const targetName = keys.get('TargetName');
        if (!targetName) return fail(LoginStatus.MissingParameter, 'no TargetName');
        const target = this.opts.directory.resolve(targetName.toLowerCase());
        if (!target) return fail(LoginStatus.NotFound, 'unknown target');
        // Known before the ACL check so a refusal is reported against the client it concerns.
        this.target = target;
        const allowed = target.allowedInitiators.some((i) => i.toLowerCase() === this.initiatorName);
        if (!allowed) return fail(LoginStatus.AuthorizationFailure, 'initiator not allowed');
        this.chap = target.chap;
        answer.push(['TargetPortalGroupTag', String(this.opts.portalGroupTag)]);
      }
      const admitted = this.opts.admit({
        sessionType: this.sessionType,
        initiatorName: this.initiatorName,
        target: this.target,
        isid: this.isid,
        tsih: this.tsih,
      });
      if (admitted.status !== LoginStatus.Success) return fail(admitted.status, admitted.reason ?? 'refused');
      if (this.chap) this.auth = 'wantMethod';
      else this.auth = 'done';
      // Skipping the security stage is only allowed when no authentication is required (§6.3).
      if (req.csg !== Stage.Security && this.chap) return fail(LoginStatus.AuthenticationFailure, 'CHAP required, security stage skipped');
      this.stage = req.csg;
    } else if (req.isid !== this.isid || req.tsih !== this.tsih) {
      return fail(LoginStatus.InitiatorError, 'ISID/TSIH changed during login');
    }
    if (req.csg !== this.stage) return fail(LoginStatus.InitiatorError, `CSG ${req.csg} while in stage ${this.stage}`);

    // Security keys (only meaningful in the security stage).
    if (this.stage === Stage.Security) {
      const r = this.security(keys, answer);
      if (r) return fail(LoginStatus.AuthenticationFailure, r);
    }
    for (const [key, value] of pairs) {
      if (isLoginKey(key)) continue;
      const a = negotiateKey(key, value, this.params, this.opts.limits);
      if (a) answer.push(a);
    }

    let transit = false;
    let nsg = 0;
    if (req.transit) {
      if (this.stage === Stage.Security && this.auth !== 'done') {
        // Mid-exchange we hold the initiator in the security stage (T=0); an initiator that
        // wants out without having authenticated has failed authentication.
        if (this.auth === 'wantMethod') return fail(LoginStatus.AuthenticationFailure, 'CHAP required, not offered');
      } else {
        transit = true;
        nsg = req.nsg;
      }
    }
    const reply: LoginReply = { transit, cont: false, csg: this.stage, nsg, status: LoginStatus.Success, pairs: answer };
    if (transit) {
      this.stage = nsg;
      if (nsg === Stage.FullFeature) {
        const outcome: LoginOutcome = {
          sessionType: this.sessionType,
          initiatorName: this.initiatorName,
          initiatorAlias: this.initiatorAlias,
          target: this.target,
          params: this.params,
          isid: this.isid,
          tsih: this.tsih,
          cid: this.cid,
          auth: !this.chap ? 'none' : this.mutual ? 'mutual' : 'chap',
        };
        const admitted = this.opts.admitSession?.(outcome) ?? { status: LoginStatus.Success };
        if (admitted.status !== LoginStatus.Success) return fail(admitted.status, admitted.reason ?? 'refused');
        return { kind: 'complete', reply, outcome };
      }
    }
    return { kind: 'continue', reply };
  }

  /** Runs the CHAP exchange (§12.1.3); returns a failure reason or undefined. */
  private security(keys: Map<string, string>, answer: TextPair[]): string | undefined {
    const method = keys.get('AuthMethod');
    if (method !== undefined) {
      const offered = method.split(',');
      if (this.chap) {
        if (this.auth !== 'wantMethod') return 'AuthMethod renegotiated';
        if (!offered.includes('CHAP')) {
          answer.push(['AuthMethod', 'Reject']);
          return 'CHAP required, initiator offered ' + method;
        }
        answer.push(['AuthMethod', 'CHAP']);
        this.auth = 'wantAlgorithm';
        return undefined;
      }
      if (!offered.includes('None')) {
        answer.push(['AuthMethod', 'Reject']);
        return 'initiator requires authentication, none configured';
      }
      answer.push(['AuthMethod', 'None']);
      return undefined;
    }
    if (!this.chap) return undefined;
    if (this.auth === 'wantAlgorithm' && keys.has('CHAP_A')) {
      const algs = keys.get('CHAP_A')!.split(',');
      if (!algs.includes(String(CHAP_MD5))) {
        answer.push(['CHAP_A', 'Reject']);
        return 'no MD5 in CHAP_A';
      }
      const rnd = this.opts.random ?? randomBytes;
      this.chapId = rnd(1)[0];
      this.chapChallenge = rnd(16);
      answer.push(['CHAP_A', String(CHAP_MD5)], ['CHAP_I', String(this.chapId)], ['CHAP_C', encodeChapBinary(this.chapChallenge)]);
      this.auth = 'wantResponse';
      return undefined;
    }
    if (this.auth === 'wantResponse') {
      const n = keys.get('CHAP_N');
      const r = keys.get('CHAP_R');
      if (n === undefined || r === undefined) return 'CHAP_N/CHAP_R missing';
      const resp = decodeChapBinary(r);
      if (n !== this.chap.user || !resp || !chapVerify(this.chapId, this.chap.secret, this.chapChallenge, resp)) {
        return 'CHAP response wrong';
      }
      const i = keys.get('CHAP_I');
      const c = keys.get('CHAP_C');
      if (i !== undefined || c !== undefined) {
        // Mutual CHAP: the initiator authenticates us.
        if (!this.chap.targetUser || !this.chap.targetSecret) return 'mutual CHAP asked, no target secret configured';
        const id = /^\d+$/.test(i ?? '') ? Number(i) : NaN;
        const challenge = c === undefined ? undefined : decodeChapBinary(c);
        if (!(id >= 0 && id <= 255) || !challenge || challenge.length === 0) return 'bad mutual CHAP_I/CHAP_C';
        // Reflection attack guard (§12.1.3): never answer our own challenge.
        if (challenge.equals(this.chapChallenge)) return 'mutual CHAP challenge reflected';
        answer.push(['CHAP_N', this.chap.targetUser], ['CHAP_R', encodeChapBinary(chapResponse(id, this.chap.targetSecret, challenge))]);
        this.mutual = true;
      }
      this.auth = 'done';
      return undefined;
    }
    return undefined;
  }
}
