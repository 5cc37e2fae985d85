import { connect, type Socket } from 'node:net';
import { chapResponse, decodeChapBinary } from '../../appliance/iscsi/chap';
import { crc32c } from '../../appliance/iscsi/crc32c';
import { PduFramer } from '../../appliance/iscsi/framer';
import { decodeText, encodeText, type TextPair } from '../../appliance/iscsi/text';

/**
 * A small iSCSI initiator for tests (fuzzing alongside, sessions, NOP, reinstatement,
 * digests): login with optional CHAP, SCSI commands with R2T/Data-Out, NOP-Out, logout.
 * It parses target PDUs itself, independently of the target's codec, so the two check
 * each other.
 */

export interface LoginOptions {
  initiatorName: string;
  targetName?: string;
  sessionType?: 'Normal' | 'Discovery';
  isid?: string;
  /** CHAP; `mutual` also challenges the target (CHAP_I/CHAP_C, §12.1.3). */
  chap?: { user: string; secret: string; mutual?: boolean };
  digests?: boolean;
  /** Operational keys to offer (defaults: iPXE-like, InitialR2T=Yes, ImmediateData=No). */
  keys?: TextPair[];
  /** Answer NOP-In pings (iPXE does not). */
  answerPings?: boolean;
}

export interface CommandResult {
  status: number;
  sense: Buffer | null;
  data: Buffer;
  residual: number;
  underflow: boolean;
  overflow: boolean;
}

interface Pending {
  resolve: (r: CommandResult) => void;
  reject: (e: Error) => void;
  chunks: Buffer[];
  dataOut: Buffer | null;
  lun: number;
  /** Data-Out stops before this offset (a writer that never sends its last bytes). */
  sendUpTo: number;
}

export class TestInitiator {
  private socket!: Socket;
  private framer!: PduFramer;
  private itt = 0x1000;
  cmdSN = 1;
  expStatSN = 0;
  maxCmdSN = 1;
  private pending = new Map<number, Pending>();
  private waiters = new Map<number, (h: Buffer, d: Buffer) => void>();
  private loginWaiter: ((h: Buffer, d: Buffer) => void) | null = null;
  private digests = false;
  closed = false;
  tsih = 0;
  negotiated = new Map<string, string>();
  pingsSeen = 0;
  answerPings = true;
  private closedWaiters: (() => void)[] = [];

  /** Connects; `localAddress` picks the source address (127.0.0.2 is loopback too). */
  static async connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<TestInitiator> {
    const t = new TestInitiator();
    await new Promise<void>((resolve, reject) => {
      t.socket = connect({ port, host, localAddress }, resolve);
      t.socket.once('error', reject);
    });
    t.socket.on('error', () => undefined);
    t.framer = new PduFramer(1 << 24, (p) => t.onPdu(p.header, p.data));
    t.socket.on('data', (c) => {
      try {
        t.framer.push(c);
      } catch {
        t.socket.destroy();
      }
    });
    t.socket.on('close', () => {
      t.closed = true;
      for (const p of t.pending.values()) p.reject(new Error('connection closed'));
      t.pending.clear();
      for (const w of t.closedWaiters.splice(0)) w();
    });
    return t;
  }

  /** Resolves when the target closes the connection. */
  whenClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((r) => this.closedWaiters.push(r));
  }

  /** Raw bytes onto the wire (fuzzing). */
  writeRaw(b: Buffer): void {
    this.socket.write(b);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Stops reading the socket: an initiator that sends commands but never takes its Data-In. */
  stopReading(): void {
    this.socket.pause();
  }

  private sendPdu(bhs: Buffer, data?: Buffer): void {
    const parts: Buffer[] = [bhs];
    if (this.digests) {
      const d = Buffer.alloc(4);
      d.writeUInt32LE(crc32c(bhs));
      parts.push(d);
    }
    if (data && data.length) {
      const pad = (4 - (data.length % 4)) % 4;
      const padded = pad ? Buffer.concat([data, Buffer.alloc(pad)]) : data;
      parts.push(padded);
      if (this.digests) {
        const d = Buffer.alloc(4);
        d.writeUInt32LE(crc32c(padded));
        parts.push(d);
      }
    }
    this.socket.write(Buffer.concat(parts));
  }

  private onPdu(h: Buffer, d: Buffer): void {
    const op = h[0] & 0x3f;
    const statSN = h.readUInt32BE(24);
    if (op !== 0x25 || h[1] & 0x01) {
      if (op !== 0x20 || h.readUInt32BE(16) !== 0xffffffff) this.expStatSN = (statSN + 1) >>> 0;
    }
    if (op !== 0x23) this.maxCmdSN = h.readUInt32BE(32);
    const itt = h.readUInt32BE(16);
    switch (op) {
      case 0x23: // login response
        this.loginWaiter?.(h, d);
        return;
      case 0x20: // NOP-In
        if (itt === 0xffffffff) {
          this.pingsSeen++;
          if (this.answerPings) {
            const b = this.bhs(0x00 | 0x40, 0x80, 0);
            b.writeUInt32BE(0xffffffff, 16);
            b.writeUInt32BE(h.readUInt32BE(20), 20);
            b.writeUInt32BE(this.cmdSN, 24);
            this.sendPdu(b);
          }
          return;
        }
        this.waiters.get(itt)?.(h, d);
        return;
      case 0x25: {
        // Data-In
        const p = this.pending.get(itt);
        if (!p) return;
        p.chunks.push(Buffer.from(d));
        if (h[1] & 0x01) {
          this.pending.delete(itt);
          p.resolve({
            status: h[3],
            sense: null,
            data: Buffer.concat(p.chunks),
            residual: h.readUInt32BE(44),
            underflow: (h[1] & 0x02) !== 0,
            overflow: (h[1] & 0x04) !== 0,
          });
        }
        return;
      }
      case 0x31: {
        // R2T
        const p = this.pending.get(itt);
        if (!p || !p.dataOut) return;
        const ttt = h.readUInt32BE(20);
        const off = h.readUInt32BE(40);
        const len = h.readUInt32BE(44);
        const seg = Number(this.negotiated.get('MaxRecvDataSegmentLength') ?? 8192);
        let sn = 0;
        for (let o = off; o < Math.min(off + len, p.sendUpTo); o += seg) {
          const n = Math.min(seg, off + len - o, p.sendUpTo - o);
          const b = this.bhs(0x05, o + n >= off + len ? 0x80 : 0, n);
          b[9] = p.lun;
          b.writeUInt32BE(itt, 16);
          b.writeUInt32BE(ttt, 20);
          b.writeUInt32BE(this.expStatSN, 28);
          b.writeUInt32BE(sn++, 36);
          b.writeUInt32BE(o, 40);
          this.sendPdu(b, p.dataOut.subarray(o, o + n));
        }
        return;
      }
      case 0x21: {
        // SCSI Response
        const p = this.pending.get(itt);
        if (!p) return;
        this.pending.delete(itt);
        const sense = d.length >= 2 ? d.subarray(2, 2 + d.readUInt16BE(0)) : null;
        p.resolve({
          status: h[3],
          sense: sense ? Buffer.from(sense) : null,
          data: Buffer.concat(p.chunks),
          residual: h.readUInt32BE(44),
          underflow: (h[1] & 0x02) !== 0,
          overflow: (h[1] & 0x04) !== 0,
        });
        return;
      }
      default:
        this.waiters.get(itt)?.(h, d);
    }
  }

  private bhs(opcode: number, flags: number, dataLength: number): Buffer {
    const b = Buffer.alloc(48);
    b[0] = opcode;
    b[1] = flags;
    b.writeUIntBE(dataLength, 5, 3);
    return b;
  }

  private loginPdu(csg: number, nsg: number, transit: boolean, isid: string, pairs: TextPair[]): Promise<{ status: number; pairs: TextPair[]; h: Buffer }> {
    const data = encodeText(pairs);
    const b = this.bhs(0x43, (transit ? 0x80 : 0) | (csg << 2) | nsg, data.length);
    b.write(isid, 8, 6, 'hex');
    b.writeUInt16BE(this.tsih, 14);
    b.writeUInt32BE(this.itt, 16);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    return new Promise((resolve) => {
      this.loginWaiter = (h, d) => {
        this.expStatSN = (h.readUInt32BE(24) + 1) >>> 0;
        this.maxCmdSN = h.readUInt32BE(32);
        resolve({ status: h.readUInt16BE(36), pairs: decodeText(d), h });
      };
      this.sendPdu(b, data);
    });
  }

  /** Logs in; returns the login status (0 = success). */
  async login(o: LoginOptions): Promise<number> {
    const isid = o.isid ?? '400001370000';
    this.answerPings = o.answerPings ?? true;
    const first: TextPair[] = [
      ['InitiatorName', o.initiatorName],
      ['SessionType', o.sessionType ?? 'Normal'],
    ];
    if (o.targetName) first.push(['TargetName', o.targetName]);
    first.push(['AuthMethod', o.chap ? 'CHAP,None' : 'None']);
    let r = await this.loginPdu(0, 1, !o.chap, isid, first);
    if (r.status) return r.status;
    if (o.chap) {
      r = await this.loginPdu(0, 1, false, isid, [['CHAP_A', '5']]);
      if (r.status) return r.status;
      const m = new Map(r.pairs);
      const resp = chapResponse(Number(m.get('CHAP_I')), o.chap.secret, decodeChapBinary(m.get('CHAP_C')!)!);
      const answer: TextPair[] = [
        ['CHAP_N', o.chap.user],
        ['CHAP_R', `0x${resp.toString('hex')}`],
      ];
      if (o.chap.mutual) answer.push(['CHAP_I', '7'], ['CHAP_C', `0x${'5a'.repeat(16)}`]);
      r = await this.loginPdu(0, 1, true, isid, answer);
      if (r.status) return r.status;
    }
    const keys: TextPair[] = o.keys ?? [
      ['HeaderDigest', o.digests ? 'CRC32C' : 'None'],
      ['DataDigest', o.digests ? 'CRC32C' : 'None'],
      ['InitialR2T', 'Yes'],
      ['ImmediateData', 'No'],
      ['MaxRecvDataSegmentLength', '8192'],
      ['MaxBurstLength', '65536'],
      ['FirstBurstLength', '16384'],
      ['MaxOutstandingR2T', '1'],
      ['ErrorRecoveryLevel', '0'],
    ];
    r = await this.loginPdu(1, 3, true, isid, keys);
    if (r.status) return r.status;
    this.negotiated = new Map(r.pairs);
    this.negotiated.set('MaxRecvDataSegmentLength', new Map(r.pairs).get('MaxRecvDataSegmentLength') ?? '8192');
    this.tsih = r.h.readUInt16BE(14);
    this.digests = this.negotiated.get('HeaderDigest') === 'CRC32C';
    this.framer.headerDigest = this.digests;
    this.framer.dataDigest = this.negotiated.get('DataDigest') === 'CRC32C';
    return 0;
  }

  /** Sends a SCSI command and waits for its status. */
  /**
   * Sends a SCSI command and waits for its status. For writes: `immediate` bytes go in the
   * command PDU and `unsolicited` more as unsolicited Data-Out (when negotiated, §13.13-13.14);
   * `sendUpTo` withholds the data from that offset on (the command then never completes).
   */
  command(
    cdb: Buffer,
    opts: { dataOut?: Buffer; edtl?: number; lun?: number; immediate?: number; unsolicited?: number; sendUpTo?: number } = {},
  ): Promise<CommandResult> {
    const itt = ++this.itt;
    const lun = opts.lun ?? 0;
    const write = !!opts.dataOut;
    const edtl = opts.edtl ?? opts.dataOut?.length ?? 0;
    const immediate = write ? Math.min(opts.immediate ?? 0, edtl) : 0;
    const unsolicited = write ? Math.min(opts.unsolicited ?? 0, edtl - immediate) : 0;
    const sendUpTo = opts.sendUpTo ?? edtl;
    // F is clear when unsolicited Data-Out follows the command (§11.3.1).
    const b = this.bhs(0x01, (unsolicited ? 0 : 0x80) | (write ? 0x20 : edtl ? 0x40 : 0) | 0x01, immediate);
    b[9] = lun;
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(edtl, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    b.writeUInt32BE(this.expStatSN, 28);
    cdb.copy(b, 32, 0, Math.min(16, cdb.length));
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      this.pending.set(itt, { resolve, reject, chunks: [], dataOut: opts.dataOut ?? null, lun, sendUpTo });
      this.sendPdu(b, immediate ? opts.dataOut!.subarray(0, immediate) : undefined);
      const seg = Number(this.negotiated.get('MaxRecvDataSegmentLength') ?? 8192);
      let sn = 0;
      const end = Math.min(immediate + unsolicited, sendUpTo);
      for (let o = immediate; o < end; o += seg) {
        const n = Math.min(seg, end - o);
        const d = this.bhs(0x05, o + n >= immediate + unsolicited ? 0x80 : 0, n);
        d[9] = lun;
        d.writeUInt32BE(itt, 16);
        d.writeUInt32BE(0xffffffff, 20);
        d.writeUInt32BE(this.expStatSN, 28);
        d.writeUInt32BE(sn++, 36);
        d.writeUInt32BE(o, 40);
        this.sendPdu(d, opts.dataOut!.subarray(o, o + n));
      }
    });
  }

  read10(lba: number, blocks: number): Promise<CommandResult> {
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x28;
    cdb.writeUInt32BE(lba, 2);
    cdb.writeUInt16BE(blocks, 7);
    return this.command(cdb, { edtl: blocks * 512 });
  }

  write10(lba: number, data: Buffer): Promise<CommandResult> {
    const cdb = Buffer.alloc(10);
    cdb[0] = 0x2a;
    cdb.writeUInt32BE(lba, 2);
    cdb.writeUInt16BE(data.length / 512, 7);
    return this.command(cdb, { dataOut: data });
  }

  /** NOP-Out ping; resolves with the echoed data. */
  nop(data = Buffer.alloc(0)): Promise<Buffer> {
    const itt = ++this.itt;
    const b = this.bhs(0x00 | 0x40, 0x80, data.length);
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(0xffffffff, 20);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      this.waiters.set(itt, (_h, d) => {
        this.waiters.delete(itt);
        resolve(Buffer.from(d));
      });
      this.sendPdu(b, data);
    });
  }

  /** Text request (SendTargets); follows C=1 continuations (§6.1) and counts the pieces. */
  async text(pairs: TextPair[]): Promise<TextPair[]> {
    const itt = ++this.itt;
    let data = encodeText(pairs);
    let ttt = 0xffffffff;
    const pieces: Buffer[] = [];
    this.textPieces = 0;
    for (;;) {
      const b = this.bhs(0x04 | 0x40, 0x80, data.length);
      b.writeUInt32BE(itt, 16);
      b.writeUInt32BE(ttt, 20);
      b.writeUInt32BE(this.cmdSN, 24);
      b.writeUInt32BE(this.expStatSN, 28);
      const [h, d] = await new Promise<[Buffer, Buffer]>((resolve) => {
        this.waiters.set(itt, (hh, dd) => resolve([Buffer.from(hh), Buffer.from(dd)]));
        this.sendPdu(b, data);
      });
      pieces.push(d);
      this.textPieces++;
      if (!(h[1] & 0x40)) break;
      ttt = h.readUInt32BE(20);
      data = Buffer.alloc(0);
    }
    return decodeText(Buffer.concat(pieces));
  }

  /** How many Text Response PDUs the last text() took. */
  textPieces = 0;

  /** Logout (close session); resolves with the response code. */
  logout(): Promise<number> {
    const itt = ++this.itt;
    const b = this.bhs(0x06 | 0x40, 0x80, 0);
    b.writeUInt32BE(itt, 16);
    b.writeUInt32BE(this.cmdSN, 24);
    b.writeUInt32BE(this.expStatSN, 28);
    return new Promise((resolve) => {
      this.waiters.set(itt, (h) => resolve(h[2]));
      this.sendPdu(b);
    });
  }
}
