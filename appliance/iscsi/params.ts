import type { TextPair } from './text';

/**
 * Operational parameters (RFC 7143 §13) and the responder side of their negotiation (§6.2).
 * Pure: given what the initiator offered and what this target accepts, compute the answer
 * and the resulting session values. Rules honoured for every standard key:
 * list keys pick the first offered value we support; boolean "OR" keys (InitialR2T,
 * DataPDUInOrder, DataSequenceInOrder) and "AND" keys (ImmediateData) combine with ours;
 * numeric keys take min (max for DefaultTime2Wait); declarative keys are recorded and, for
 * MaxRecvDataSegmentLength, answered with our own declaration. Unknown keys are answered
 * NotUnderstood (§6.2.1) and never Reject; a malformed value of a known key gets Reject
 * (§6.2.1), the only case we send it.
 */

/** The values a full-feature session runs with. */
export interface SessionParams {
  headerDigest: boolean;
  dataDigest: boolean;
  maxConnections: number;
  initialR2T: boolean;
  immediateData: boolean;
  maxBurstLength: number;
  firstBurstLength: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
  /** What the initiator can receive in one PDU: we split Data-In to it (§13.12). */
  initiatorMaxRecvDataSegmentLength: number;
  /** What we declared we receive. */
  targetMaxRecvDataSegmentLength: number;
}

/** RFC defaults (§13): what applies when a key is never negotiated. */
export function defaultParams(targetMaxRecvDataSegmentLength: number): SessionParams {
  return {
    headerDigest: false,
    dataDigest: false,
    maxConnections: 1,
    initialR2T: true,
    immediateData: true,
    maxBurstLength: 262144,
    firstBurstLength: 65536,
    defaultTime2Wait: 2,
    defaultTime2Retain: 20,
    maxOutstandingR2T: 1,
    dataPDUInOrder: true,
    dataSequenceInOrder: true,
    errorRecoveryLevel: 0,
    initiatorMaxRecvDataSegmentLength: 8192,
    targetMaxRecvDataSegmentLength,
  };
}

/** What this target accepts (the responder's side of each negotiation). */
export interface TargetLimits {
  /** Our MaxRecvDataSegmentLength declaration. */
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  maxOutstandingR2T: number;
  /** Offer CRC32C digests when the initiator lists them first (we always can). */
  allowDigests: boolean;
}

/** Defaults that suit Linux and Windows initiators (large bursts, no forced R2T). */
export const DEFAULT_LIMITS: TargetLimits = {
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 16776192,
  firstBurstLength: 262144,
  maxOutstandingR2T: 16,
  allowDigests: true,
};

const RANGE = {
  MaxRecvDataSegmentLength: [512, 16777215],
  MaxBurstLength: [512, 16777215],
  FirstBurstLength: [512, 16777215],
  DefaultTime2Wait: [0, 3600],
  DefaultTime2Retain: [0, 3600],
  MaxOutstandingR2T: [1, 65535],
  MaxConnections: [1, 65535],
  ErrorRecoveryLevel: [0, 2],
} as const;

function num(v: string, key: keyof typeof RANGE): number | undefined {
  // Numbers may be decimal or 0x hex (§6.1).
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v.slice(2), 16) : /^\d+$/.test(v) ? Number(v) : NaN;
  const [lo, hi] = RANGE[key];
  return Number.isInteger(n) && n >= lo && n <= hi ? n : undefined;
}

function bool(v: string): boolean | undefined {
  return v === 'Yes' ? true : v === 'No' ? false : undefined;
}

/** Keys that belong to login/text handling elsewhere and need no answer here. */
const DECLARED_ELSEWHERE = new Set([
  'InitiatorName',
  'InitiatorAlias',
  'TargetName',
  'SessionType',
  'AuthMethod',
  'CHAP_A',
  'CHAP_N',
  'CHAP_R',
  'CHAP_I',
  'CHAP_C',
  'SendTargets',
  'TargetAddress',
  'TargetPortalGroupTag',
]);

/** True when `key` is handled by the login state machine rather than negotiate(). */
export function isLoginKey(key: string): boolean {
  return DECLARED_ELSEWHERE.has(key);
}

/**
 * Answers one operational key, updating `p`. Returns the pair to send back, or null when the
 * key needs no answer (declarative keys other than MaxRecvDataSegmentLength).
 */
export function negotiateKey(key: string, value: string, p: SessionParams, limits: TargetLimits): TextPair | null {
  switch (key) {
    case 'HeaderDigest':
    case 'DataDigest': {
      const offered = value.split(',');
      const pick = offered.find((o) => o === 'None' || (o === 'CRC32C' && limits.allowDigests));
      if (!pick) return [key, 'Reject'];
      if (key === 'HeaderDigest') p.headerDigest = pick === 'CRC32C';
      else p.dataDigest = pick === 'CRC32C';
      return [key, pick];
    }
    case 'InitialR2T': {
      // OR: we are happy without R2T, so the initiator's value stands.
      const b = bool(value);
      if (b === undefined) return [key, 'Reject'];
      p.initialR2T = b;
      return [key, b ? 'Yes' : 'No'];
    }
    case 'ImmediateData': {
      // AND: we accept immediate data, so the initiator's value stands.
      const b = bool(value);
      if (b === undefined) return [key, 'Reject'];
      p.immediateData = b;
      return [key, b ? 'Yes' : 'No'];
    }
    case 'DataPDUInOrder':
    case 'DataSequenceInOrder': {
      // OR: we place data by offset and need neither, so the initiator's value stands.
      const b = bool(value);
      if (b === undefined) return [key, 'Reject'];
      if (key === 'DataPDUInOrder') p.dataPDUInOrder = b;
      else p.dataSequenceInOrder = b;
      return [key, b ? 'Yes' : 'No'];
    }
    case 'MaxRecvDataSegmentLength': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.initiatorMaxRecvDataSegmentLength = n;
      // Declarative (§13.12): answered with our own declaration.
      return [key, String(limits.maxRecvDataSegmentLength)];
    }
    case 'MaxBurstLength': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.maxBurstLength = Math.min(n, limits.maxBurstLength);
      if (p.firstBurstLength > p.maxBurstLength) p.firstBurstLength = p.maxBurstLength;
      return [key, String(p.maxBurstLength)];
    }
    case 'FirstBurstLength': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.firstBurstLength = Math.min(n, limits.firstBurstLength, p.maxBurstLength);
      return [key, String(p.firstBurstLength)];
    }
    case 'MaxOutstandingR2T': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.maxOutstandingR2T = Math.min(n, limits.maxOutstandingR2T);
      return [key, String(p.maxOutstandingR2T)];
    }
    case 'MaxConnections': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.maxConnections = 1; // min(offer, 1): one connection per session
      return [key, '1'];
    }
    case 'DefaultTime2Wait': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.defaultTime2Wait = n; // max(offer, 0)
      return [key, String(n)];
    }
    case 'DefaultTime2Retain': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.defaultTime2Retain = 0; // min(offer, 0): ERL 0 keeps nothing for reconnection
      return [key, '0'];
    }
    case 'ErrorRecoveryLevel': {
      const n = num(value, key);
      if (n === undefined) return [key, 'Reject'];
      p.errorRecoveryLevel = 0; // min(offer, 0)
      return [key, '0'];
    }
    case 'IFMarker':
    case 'OFMarker':
      // RFC 3720 markers (dropped by RFC 7143): AND with our No.
      return bool(value) === undefined ? [key, 'Reject'] : [key, 'No'];
    case 'IFMarkInt':
    case 'OFMarkInt':
      return [key, 'Irrelevant'];
    case 'TaskReporting': {
      // RFC 7143 §13.23: list; we implement plain RFC3720 semantics.
      return [key, value.split(',').includes('RFC3720') ? 'RFC3720' : 'Reject'];
    }
    case 'iSCSIProtocolLevel': {
      // RFC 7144 §2.1: numeric min; 1 = RFC 7143.
      if (!/^\d+$/.test(value)) return [key, 'Reject'];
      return [key, String(Math.min(Number(value), 1))];
    }
    default:
      return [key, 'NotUnderstood'];
  }
}
