/**
 * A simulated TFTP network for transfer tests: a FakeClock, a link that drops, duplicates and
 * reorders datagrams (seeded, so failures replay), and a client that behaves like RFC 1350 /
 * RFC 7440 receivers (curl, atftp, iPXE): ACK every windowsize blocks, ACK the last in-order
 * block on a gap or a duplicate, resend its last ACK when it hears nothing for a while.
 */
import { FakeClock } from '../../appliance/core/clock';
import { BufferPool } from '../../appliance/tftp/block-reader';
import { memoryFile, type TftpFile } from '../../appliance/tftp/file-source';
import { decodePacket, encodePacket, type TftpOption, type TftpPacket } from '../../appliance/tftp/packet';
import { ReadTransfer, type TransferResult } from '../../appliance/tftp/transfer';

import { prng } from '../helpers/prng';
export { prng };

export interface LinkFaults {
  drop?: number;
  duplicate?: number;
  /** Probability that a datagram is delayed by 1..5 ms extra (overtaking others). */
  reorder?: number;
}

export interface RunOptions {
  data: Buffer;
  options?: TftpOption[];
  mode?: string;
  /** What the client assumes when no OACK comes (and for windowing it uses the OACK). */
  toServer?: LinkFaults;
  toClient?: LinkFaults;
  seed?: number;
  retries?: number;
  timeoutMs?: number;
  maxWindowsize?: number;
  maxWindowBytes?: number;
  /** The client stops answering after receiving this many DATA packets. */
  clientDiesAfter?: number;
  /** Client retransmits its last ACK after this long without hearing anything. */
  clientTimeoutMs?: number;
  /** Drops the datagrams for which this returns true (it sees each decoded datagram once). */
  dropToClient?: (p: TftpPacket) => boolean;
  dropToServer?: (p: TftpPacket) => boolean;
  /** The client answers the OACK with this ERROR instead of ACK 0. */
  refuseOack?: boolean;
  file?: TftpFile | ((clock: FakeClock) => TftpFile);
  maxSteps?: number;
}

export interface RunResult {
  result: TransferResult | undefined;
  received: Buffer;
  clientDone: boolean;
  /** Every datagram the server sent, decoded. */
  serverSent: ReturnType<typeof decodePacket>[];
  clientSent: ReturnType<typeof decodePacket>[];
  transfer: ReadTransfer;
  clock: FakeClock;
  elapsedMs: number;
}

const flush = () => new Promise<void>((r) => setImmediate(r));
/** memoryFile reads settle within a few microtask turns: cheaper than a macrotask per step. */
async function microtasks(): Promise<void> {
  for (let i = 0; i < 4; i++) await Promise.resolve();
}

/** Runs one transfer to completion (or maxSteps simulated milliseconds). */
export async function runTransfer(o: RunOptions): Promise<RunResult> {
  const clock = new FakeClock();
  const start = clock.now();
  const rnd = prng(o.seed ?? 1);
  const serverSent: RunResult['serverSent'] = [];
  const clientSent: RunResult['clientSent'] = [];
  let result: TransferResult | undefined;
  let transfer!: ReadTransfer;

  const link = (faults: LinkFaults | undefined, deliver: (b: Buffer) => void, dropIf?: (p: TftpPacket) => boolean) => (buf: Buffer) => {
    const copy = Buffer.from(buf); // the sender may reuse its buffer once ACKed, as a NIC would have copied it
    if (dropIf?.(decodePacket(copy))) return;
    const f = faults ?? {};
    if (f.drop && rnd() < f.drop) return;
    const copies = f.duplicate && rnd() < f.duplicate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = 1 + (f.reorder && rnd() < f.reorder ? 1 + Math.floor(rnd() * 5) : 0);
      clock.setTimeout(() => deliver(copy), delay);
    }
  };

  // --- the client ---
  let blksize = 512;
  let windowsize = 1;
  let expected = 1;
  let inWindow = 0;
  let lastAck = -1;
  let dataCount = 0;
  let clientDone = false;
  let lastHeard = clock.now();
  const chunks: Buffer[] = [];
  const toServer = link(o.toServer, (b) => transfer.handle(b), o.dropToServer);
  const clientSend = (p: Parameters<typeof encodePacket>[0]) => {
    clientSent.push(p);
    toServer(encodePacket(p));
  };
  const ack = (block: number) => {
    lastAck = block;
    clientSend({ op: 'ack', block: block & 0xffff });
  };
  const toClient = link(
    o.toClient,
    (b) => {
      const p = decodePacket(b);
      if (o.clientDiesAfter !== undefined && dataCount >= o.clientDiesAfter) return;
      if (clientDone) {
        // Dally (RFC 1350 section 6): answer a repeated final DATA, our last ACK was lost.
        if (p.op === 'data' && p.block === ((expected - 1) & 0xffff)) ack(expected - 1);
        return;
      }
      dispatch(p);
    },
    o.dropToClient,
  );
  function dispatch(p: TftpPacket): void {
    lastHeard = clock.now();
    if (p.op === 'oack') {
      if (lastAck >= 0) return ack(0); // duplicate OACK: our ACK 0 was lost
      if (o.refuseOack) return clientSend({ op: 'error', code: 8, message: 'no thanks' });
      for (const opt of p.options) {
        if (opt.name === 'blksize') blksize = Number(opt.value);
        if (opt.name === 'windowsize') windowsize = Number(opt.value);
      }
      return ack(0);
    }
    if (p.op === 'error') {
      clientDone = true;
      return;
    }
    if (p.op !== 'data') return;
    dataCount++;
    if (p.block === (expected & 0xffff)) {
      chunks.push(Buffer.from(p.data));
      expected++;
      inWindow++;
      if (p.data.length < blksize) {
        clientDone = true;
        return ack(expected - 1);
      }
      if (inWindow >= windowsize) {
        inWindow = 0;
        ack(expected - 1);
      }
    } else {
      // A gap (RFC 7440) or a duplicate (RFC 1350): ACK the last block received in order.
      inWindow = 0;
      ack(expected - 1);
    }
  }
  const clientTimeout = o.clientTimeoutMs ?? 3000;
  const clientTimer = () => {
    if (clientDone) return;
    if (clock.now() - lastHeard >= clientTimeout && lastAck >= 0) {
      if (o.clientDiesAfter === undefined || dataCount < o.clientDiesAfter) ack(lastAck);
      lastHeard = clock.now();
    }
    clock.setTimeout(clientTimer, 100);
  };
  clock.setTimeout(clientTimer, 100);

  transfer = new ReadTransfer({
    filename: 'f',
    mode: o.mode ?? 'octet',
    options: o.options ?? [],
    file: typeof o.file === 'function' ? o.file(clock) : (o.file ?? memoryFile(o.data)),
    clock,
    send: (b) => {
      serverSent.push(decodePacket(Buffer.from(b)));
      toClient(b);
    },
    limits: {
      maxBlksize: 65464,
      maxWindowsize: o.maxWindowsize ?? 64,
      maxWindowBytes: o.maxWindowBytes ?? 1 << 20,
      defaultTimeoutMs: o.timeoutMs ?? 1000,
    },
    retries: o.retries ?? 5,
    pool: new BufferPool(64 * 1024, 4),
    onEnd: (r) => {
      result = r;
    },
  });
  transfer.start();
  const maxSteps = o.maxSteps ?? 2_000_000;
  for (let step = 0; step < maxSteps && !result; step++) {
    clock.advance(1);
    await microtasks(); // let file reads complete before the next millisecond
  }
  // Let in-flight datagrams land (a final ACK, an ERROR).
  for (let i = 0; i < 20; i++) {
    clock.advance(1);
    await flush();
  }
  return { result, received: Buffer.concat(chunks), clientDone, serverSent, clientSent, transfer, clock, elapsedMs: clock.now() - start };
}

/** Deterministic test data. */
export function testData(size: number, seed = 7): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(r() * 256);
  return b;
}
