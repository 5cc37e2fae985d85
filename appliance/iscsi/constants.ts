/**
 * Numbers from RFC 7143 (iSCSI), kept in one place so the codec, the login state machine and
 * the session agree on them.
 */

/** Opcodes, RFC 7143 §11.2.1.2. Initiator opcodes first, then target opcodes. */
export const Op = {
  NopOut: 0x00,
  ScsiCommand: 0x01,
  TaskMgmtRequest: 0x02,
  LoginRequest: 0x03,
  TextRequest: 0x04,
  DataOut: 0x05,
  LogoutRequest: 0x06,
  Snack: 0x10,
  NopIn: 0x20,
  ScsiResponse: 0x21,
  TaskMgmtResponse: 0x22,
  LoginResponse: 0x23,
  TextResponse: 0x24,
  DataIn: 0x25,
  LogoutResponse: 0x26,
  R2T: 0x31,
  AsyncMessage: 0x32,
  Reject: 0x3f,
} as const;

/** Length of the Basic Header Segment (§11.2.1). */
export const BHS_LENGTH = 48;

/** The "reserved" tag value (§11.2.1.7/§11.18.4): no ITT / no TTT. */
export const RESERVED_TAG = 0xffffffff;

/** Reject reasons, §11.17.1. */
export const RejectReason = {
  DataDigestError: 0x02,
  SnackReject: 0x03,
  ProtocolError: 0x04,
  CommandNotSupported: 0x05,
  ImmediateCommandReject: 0x06,
  TaskInProgress: 0x07,
  InvalidDataAck: 0x08,
  InvalidPduField: 0x09,
  LongOperationReject: 0x0a,
  WaitingForLogout: 0x0c,
} as const;

/** Login status class/detail pairs (§11.13.5), as (class << 8) | detail. */
export const LoginStatus = {
  Success: 0x0000,
  InitiatorError: 0x0200,
  AuthenticationFailure: 0x0201,
  AuthorizationFailure: 0x0202,
  NotFound: 0x0203,
  TargetRemoved: 0x0204,
  UnsupportedVersion: 0x0205,
  TooManyConnections: 0x0206,
  MissingParameter: 0x0207,
  CantIncludeInSession: 0x0208,
  SessionTypeNotSupported: 0x0209,
  SessionDoesNotExist: 0x020a,
  InvalidDuringLogin: 0x020b,
  TargetError: 0x0300,
  ServiceUnavailable: 0x0301,
  OutOfResources: 0x0302,
} as const;

/** Login stages (CSG/NSG), §11.12.3. */
export const Stage = { Security: 0, Operational: 1, FullFeature: 3 } as const;

/** Task management functions, §11.5.1. */
export const TmfFunction = {
  AbortTask: 1,
  AbortTaskSet: 2,
  ClearAca: 3,
  ClearTaskSet: 4,
  LogicalUnitReset: 5,
  TargetWarmReset: 6,
  TargetColdReset: 7,
  TaskReassign: 8,
} as const;

/** Task management responses, §11.6.1. */
export const TmfResponse = {
  Complete: 0,
  TaskDoesNotExist: 1,
  LunDoesNotExist: 2,
  TaskStillAllegiant: 3,
  ReassignNotSupported: 4,
  NotSupported: 5,
  AuthorizationFailed: 6,
  Rejected: 255,
} as const;

/** Logout reason codes, §11.14.1, and responses, §11.15.1. */
export const LogoutReason = { CloseSession: 0, CloseConnection: 1, RemoveForRecovery: 2 } as const;
export const LogoutResponseCode = { Success: 0, CidNotFound: 1, RecoveryNotSupported: 2, CleanupFailed: 3 } as const;
