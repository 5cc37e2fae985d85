import { describe, expect, it } from 'vitest';
import type { ChapCredentials } from '../../appliance/core/model';
import { chapResponse, decodeChapBinary } from '../../appliance/iscsi/chap';
import { LoginStatus } from '../../appliance/iscsi/constants';
import { LoginNegotiation, type LoginStep } from '../../appliance/iscsi/login';
import { DEFAULT_LIMITS } from '../../appliance/iscsi/params';
import type { LoginRequest } from '../../appliance/iscsi/pdu';
import { encodeText, type TextPair } from '../../appliance/iscsi/text';
import { StaticDirectory, target, IQN_INITIATOR } from './harness';

const T = 'iqn.2026-11.local.netboot:client1';
const lun = {
  lun: 0,
  open: () => {
    throw new Error('not opened in login tests');
  },
  readOnly: false,
};

function req(csg: number, nsg: number, transit: boolean, pairs: TextPair[]): LoginRequest {
  return {
    op: 'loginRequest',
    immediate: true,
    itt: 1,
    header: Buffer.alloc(48),
    data: encodeText(pairs),
    transit,
    cont: false,
    csg,
    nsg,
    versionMax: 0,
    versionMin: 0,
    isid: '400001370000',
    tsih: 0,
    cid: 0,
    cmdSN: 1,
    expStatSN: 0,
  };
}

function negotiation(chap: ChapCredentials | null = null) {
  const dir = new StaticDirectory([target(T, [lun], { chap })]);
  return new LoginNegotiation({
    directory: dir,
    limits: DEFAULT_LIMITS,
    portalGroupTag: 1,
    admit: () => ({ status: LoginStatus.Success }),
    random: (n) => Buffer.alloc(n, 0x11),
  });
}

const pairs = (s: LoginStep) => new Map(s.reply.pairs);

// The keys iPXE sends (src/net/tcp/iscsi.c), in its order.
const IPXE_OPERATIONAL: TextPair[] = [
  ['HeaderDigest', 'None'],
  ['DataDigest', 'None'],
  ['MaxConnections', '1'],
  ['InitialR2T', 'Yes'],
  ['ImmediateData', 'No'],
  ['MaxRecvDataSegmentLength', '8192'],
  ['MaxBurstLength', '262144'],
  ['FirstBurstLength', '65536'],
  ['DefaultTime2Wait', '0'],
  ['DefaultTime2Retain', '0'],
  ['MaxOutstandingR2T', '1'],
  ['DataPDUInOrder', 'Yes'],
  ['DataSequenceInOrder', 'Yes'],
  ['ErrorRecoveryLevel', '0'],
];

describe('login negotiation', () => {
  it('answers every key iPXE offers, never Reject, and only keys it offered plus TargetPortalGroupTag', () => {
    const n = negotiation();
    const s1 = n.handle(
      req(0, 1, true, [
        ['InitiatorName', IQN_INITIATOR],
        ['TargetName', T],
        ['SessionType', 'Normal'],
        ['AuthMethod', 'None'],
      ]),
    );
    expect(s1.kind).toBe('continue');
    expect(s1.reply.transit).toBe(true);
    expect(s1.reply.pairs).toEqual([
      ['TargetPortalGroupTag', '1'],
      ['AuthMethod', 'None'],
    ]);
    const s2 = n.handle(req(1, 3, true, IPXE_OPERATIONAL));
    expect(s2.kind).toBe('complete');
    const answered = s2.reply.pairs.map(([k]) => k);
    expect(answered).toEqual(IPXE_OPERATIONAL.map(([k]) => k));
    expect(s2.reply.pairs.some(([, v]) => v === 'Reject' || v === 'NotUnderstood')).toBe(false);
    const a = pairs(s2);
    expect(a.get('InitialR2T')).toBe('Yes');
    expect(a.get('ImmediateData')).toBe('No');
    expect(a.get('MaxBurstLength')).toBe('262144');
    expect(a.get('ErrorRecoveryLevel')).toBe('0');
    if (s2.kind !== 'complete') return;
    expect(s2.outcome.params.initiatorMaxRecvDataSegmentLength).toBe(8192);
    expect(s2.outcome.params.initialR2T).toBe(true);
    expect(s2.outcome.params.immediateData).toBe(false);
  });

  it('applies min/max/OR/AND rules to open-iscsi defaults and answers unknown keys NotUnderstood', () => {
    const n = negotiation();
    const s = n.handle(
      req(1, 3, true, [
        ['InitiatorName', IQN_INITIATOR],
        ['TargetName', T],
        ['InitialR2T', 'No'],
        ['ImmediateData', 'Yes'],
        ['FirstBurstLength', '16776192'],
        ['MaxBurstLength', '16776192'],
        ['MaxOutstandingR2T', '100'],
        ['HeaderDigest', 'CRC32C,None'],
        ['DefaultTime2Wait', '2'],
        ['X-com.example.Foo', 'bar'],
        ['MaxRecvDataSegmentLength', '262144'],
      ]),
    );
    expect(s.kind).toBe('complete');
    const a = pairs(s);
    expect(a.get('InitialR2T')).toBe('No');
    expect(a.get('ImmediateData')).toBe('Yes');
    expect(a.get('FirstBurstLength')).toBe(String(DEFAULT_LIMITS.firstBurstLength));
    expect(a.get('MaxOutstandingR2T')).toBe(String(DEFAULT_LIMITS.maxOutstandingR2T));
    expect(a.get('HeaderDigest')).toBe('CRC32C');
    expect(a.get('X-com.example.Foo')).toBe('NotUnderstood');
    expect(a.get('MaxRecvDataSegmentLength')).toBe(String(DEFAULT_LIMITS.maxRecvDataSegmentLength));
    expect(a.get('TargetPortalGroupTag')).toBe('1');
  });

  it('refuses unknown targets, unlisted initiators and missing names with the RFC status', () => {
    expect(
      negotiation().handle(
        req(0, 1, true, [
          ['InitiatorName', IQN_INITIATOR],
          ['TargetName', 'iqn.2026-11.x:nope'],
        ]),
      ).reply.status,
    ).toBe(LoginStatus.NotFound);
    expect(
      negotiation().handle(
        req(0, 1, true, [
          ['InitiatorName', 'iqn.2026-11.x:stranger'],
          ['TargetName', T],
        ]),
      ).reply.status,
    ).toBe(LoginStatus.AuthorizationFailure);
    expect(negotiation().handle(req(0, 1, true, [['TargetName', T]])).reply.status).toBe(LoginStatus.MissingParameter);
    expect(negotiation().handle(req(0, 1, true, [['InitiatorName', IQN_INITIATOR]])).reply.status).toBe(LoginStatus.MissingParameter);
    const v = req(0, 1, true, [
      ['InitiatorName', IQN_INITIATOR],
      ['TargetName', T],
    ]);
    v.versionMin = 1;
    expect(negotiation().handle(v).reply.status).toBe(LoginStatus.UnsupportedVersion);
  });

  it('accepts a discovery session without a target name', () => {
    const s = negotiation().handle(
      req(1, 3, true, [
        ['InitiatorName', IQN_INITIATOR],
        ['SessionType', 'Discovery'],
      ]),
    );
    expect(s.kind).toBe('complete');
    expect(pairs(s).has('TargetPortalGroupTag')).toBe(false);
  });
});

describe('replaying captured logins', () => {
  it("completes iPXE's real login (fixture) without Reject or NotUnderstood", async () => {
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { PduFramer } = await import('../../appliance/iscsi/framer');
    const { decodePdu } = await import('../../appliance/iscsi/pdu');
    const stream = readFileSync(join(__dirname, '..', 'fixtures', 'iscsi', 'ipxe.initiator.bin'));
    const pdus: LoginRequest[] = [];
    new PduFramer(1 << 20, (f) => {
      const p = decodePdu(Buffer.from(f.header), Buffer.from(f.data));
      if (p.op === 'loginRequest') pdus.push(p);
    }).push(stream);
    const dir = new StaticDirectory([target('iqn.2026-11.local.netboot:fixture', [lun])]);
    const n = new LoginNegotiation({ directory: dir, limits: DEFAULT_LIMITS, portalGroupTag: 1, admit: () => ({ status: 0 }) });
    const steps = pdus.map((p) => n.handle(p));
    expect(steps.map((s) => s.kind)).toEqual(['continue', 'complete']);
    for (const s of steps) expect(s.reply.pairs.some(([, v]) => v === 'Reject' || v === 'NotUnderstood')).toBe(false);
  });
});

describe('CHAP', () => {
  const chap = { user: 'client1', secret: 'sixteen-chars-ok', targetUser: 'appliance', targetSecret: 'target-secret-16' };

  function challenge(n: LoginNegotiation, method = 'CHAP,None') {
    const s1 = n.handle(
      req(0, 1, false, [
        ['InitiatorName', IQN_INITIATOR],
        ['TargetName', T],
        ['AuthMethod', method],
      ]),
    );
    expect(pairs(s1).get('AuthMethod')).toBe('CHAP');
    const s2 = n.handle(req(0, 1, false, [['CHAP_A', '5']]));
    const a = pairs(s2);
    expect(a.get('CHAP_A')).toBe('5');
    return { id: Number(a.get('CHAP_I')), c: decodeChapBinary(a.get('CHAP_C')!)! };
  }

  it('accepts the right one-way response (hex or base64) and moves on', () => {
    for (const enc of ['hex', 'base64'] as const) {
      const n = negotiation(chap);
      const { id, c } = challenge(n);
      expect(c.length).toBe(16);
      const r = chapResponse(id, chap.secret, c);
      const s = n.handle(
        req(0, 1, true, [
          ['CHAP_N', 'client1'],
          ['CHAP_R', enc === 'hex' ? `0x${r.toString('hex')}` : `0b${r.toString('base64')}`],
        ]),
      );
      expect(s.reply.status).toBe(0);
      expect(s.reply.transit).toBe(true);
    }
  });

  it('refuses a wrong secret and a wrong name with AUTHENTICATION FAILURE', () => {
    for (const [name, secret] of [
      ['client1', 'wrong-secret-xxx'],
      ['someone', chap.secret],
    ]) {
      const n = negotiation(chap);
      const { id, c } = challenge(n);
      const s = n.handle(
        req(0, 1, true, [
          ['CHAP_N', name],
          ['CHAP_R', `0x${chapResponse(id, secret, c).toString('hex')}`],
        ]),
      );
      expect(s.kind).toBe('fail');
      expect(s.reply.status).toBe(LoginStatus.AuthenticationFailure);
    }
  });

  it('answers mutual CHAP with the target credentials and refuses a reflected challenge', () => {
    const n = negotiation(chap);
    const { id, c } = challenge(n, 'CHAP');
    const mine = Buffer.alloc(16, 0x42);
    const s = n.handle(
      req(0, 1, true, [
        ['CHAP_N', 'client1'],
        ['CHAP_R', `0x${chapResponse(id, chap.secret, c).toString('hex')}`],
        ['CHAP_I', '7'],
        ['CHAP_C', `0x${mine.toString('hex')}`],
      ]),
    );
    expect(s.reply.status).toBe(0);
    const a = pairs(s);
    expect(a.get('CHAP_N')).toBe('appliance');
    expect(a.get('CHAP_R')).toBe(`0x${chapResponse(7, chap.targetSecret, mine).toString('hex')}`);

    const n2 = negotiation(chap);
    const x = challenge(n2);
    const s2 = n2.handle(
      req(0, 1, true, [
        ['CHAP_N', 'client1'],
        ['CHAP_R', `0x${chapResponse(x.id, chap.secret, x.c).toString('hex')}`],
        ['CHAP_I', String(x.id)],
        ['CHAP_C', `0x${x.c.toString('hex')}`],
      ]),
    );
    expect(s2.reply.status).toBe(LoginStatus.AuthenticationFailure);
  });

  it('refuses an initiator that skips authentication when CHAP is required', () => {
    const n = negotiation(chap);
    expect(
      n.handle(
        req(1, 3, true, [
          ['InitiatorName', IQN_INITIATOR],
          ['TargetName', T],
        ]),
      ).reply.status,
    ).toBe(LoginStatus.AuthenticationFailure);
    const n2 = negotiation(chap);
    expect(
      n2.handle(
        req(0, 1, true, [
          ['InitiatorName', IQN_INITIATOR],
          ['TargetName', T],
          ['AuthMethod', 'None'],
        ]),
      ).reply.status,
    ).toBe(LoginStatus.AuthenticationFailure);
  });
});
