import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { BufferPool, toNetascii } from '../../appliance/tftp/block-reader';
import { memoryFile } from '../../appliance/tftp/file-source';
import { decodePacket, encodePacket } from '../../appliance/tftp/packet';
import { MIN_RTO_MS, ReadTransfer, type TransferResult } from '../../appliance/tftp/transfer';
import { runTransfer, testData } from './harness';

const opt = (name: string, value: string) => ({ name, value });
const dataPackets = (sent: { op: string }[]) => sent.filter((p) => p.op === 'data').length;

describe('ReadTransfer on a perfect link', () => {
  it('lock-step 512: every block once, no retransmission, byte-identical', async () => {
    const data = testData(512 * 20 + 100);
    const r = await runTransfer({ data });
    expect(r.result).toMatchObject({ ok: true, bytes: data.length, retransmits: 0 });
    expect(r.received.equals(data)).toBe(true);
    expect(dataPackets(r.serverSent)).toBe(21);
  });

  it('a file that is a multiple of blksize ends with an empty DATA (RFC 1350)', async () => {
    const data = testData(512 * 4);
    const r = await runTransfer({ data });
    expect(r.received.equals(data)).toBe(true);
    const last = r.serverSent.at(-1) as { op: string; block: number; data: Buffer };
    expect(last).toMatchObject({ op: 'data', block: 5 });
    expect(last.data.length).toBe(0);
  });

  it('an empty file is one empty DATA 1', async () => {
    const r = await runTransfer({ data: Buffer.alloc(0) });
    expect(r.result).toMatchObject({ ok: true, bytes: 0 });
    expect(r.serverSent).toEqual([{ op: 'data', block: 1, data: Buffer.alloc(0) }]);
  });

  it('negotiates blksize and windowsize, answers tsize with the real size, and ACKs once per window', async () => {
    const data = testData(1468 * 64 + 5);
    const r = await runTransfer({ data, options: [opt('tsize', '0'), opt('blksize', '1468'), opt('windowsize', '16'), opt('x-unknown', '1')] });
    expect(r.serverSent[0]).toEqual({ op: 'oack', options: [opt('tsize', String(data.length)), opt('blksize', '1468'), opt('windowsize', '16')] });
    expect(r.received.equals(data)).toBe(true);
    expect(r.result).toMatchObject({ ok: true, retransmits: 0 });
    // ACK 0 for the OACK, one ACK per full window (4), one for the final short block.
    expect(r.clientSent.filter((p) => p.op === 'ack').length).toBe(1 + 4 + 1);
  });

  it('clamps blksize to the limit and windowsize to the window byte budget', async () => {
    const data = testData(100_000);
    const r = await runTransfer({ data, options: [opt('windowsize', '16'), opt('BLKSIZE', '70000')], maxWindowBytes: 64 * 1024 });
    // 65464 is RFC 2348's maximum; 64 KiB / 65464 leaves a window of one block.
    expect(r.serverSent[0]).toEqual({ op: 'oack', options: [opt('windowsize', '1'), opt('BLKSIZE', '65464')] });
    expect(r.received.equals(data)).toBe(true);
  });

  it('sends no OACK when only unknown options were asked for', async () => {
    const r = await runTransfer({ data: testData(10), options: [opt('multicast', '')] });
    expect(r.serverSent[0]).toMatchObject({ op: 'data', block: 1 });
  });

  it('rolls block numbers over past 65535 (0 follows 65535) and delivers every byte', async () => {
    const data = testData(8 * 65536 + 3 * 8 + 1);
    const r = await runTransfer({ data, options: [opt('blksize', '8')] });
    expect(r.result).toMatchObject({ ok: true, bytes: data.length, retransmits: 0 });
    expect(r.received.equals(data)).toBe(true);
    const blocks = r.serverSent.filter((p) => p.op === 'data').map((p) => (p as { block: number }).block);
    expect(blocks.slice(65534, 65538)).toEqual([65535, 0, 1, 2]);
  }, 60_000);

  it('netascii: converts LF to CR LF and CR to CR NUL, and leaves tsize out', async () => {
    const text = Buffer.from('line1\nline2\r\nend\r');
    const r = await runTransfer({ data: text, mode: 'NetASCII', options: [opt('tsize', '0'), opt('blksize', '8')] });
    expect(r.serverSent[0]).toEqual({ op: 'oack', options: [opt('blksize', '8')] });
    expect(r.received.toString('latin1')).toBe('line1\r\nline2\r\x00\r\nend\r\x00');
    expect(toNetascii(text).equals(r.received)).toBe(true);
  });
});

describe('ReadTransfer refusals (ERROR 8, RFC 2347; ERROR 4)', () => {
  for (const [name, value] of [
    ['blksize', '4'],
    ['blksize', 'abc'],
    ['timeout', '0'],
    ['timeout', '256'],
    ['windowsize', '0'],
    ['tsize', '-1'],
  ]) {
    it(`${name} ${value} is refused with ERROR 8`, async () => {
      const r = await runTransfer({ data: testData(10), options: [opt(name!, value!)] });
      expect(r.serverSent).toHaveLength(1);
      expect(r.serverSent[0]).toMatchObject({ op: 'error', code: 8 });
      expect(r.result).toMatchObject({ ok: false, code: 8 });
    });
  }

  it('mode "mail" is refused with ERROR 4', async () => {
    const r = await runTransfer({ data: testData(10), mode: 'mail' });
    expect(r.serverSent[0]).toMatchObject({ op: 'error', code: 4 });
  });

  it('a client refusing the OACK with ERROR 8 ends the transfer without a reply', async () => {
    const r = await runTransfer({ data: testData(10), options: [opt('blksize', '1024')], refuseOack: true });
    expect(r.result).toMatchObject({ ok: false, reason: 'client sent ERROR 8: no thanks', probe: true });
    expect(r.serverSent.map((p) => p.op)).toEqual(['oack']);
  });
});

describe('ReadTransfer on a lossy link', () => {
  const faults = { drop: 0.1, duplicate: 0.05, reorder: 0.1 };
  for (const [label, options] of [
    ['lock-step 512', []],
    ['blksize 1024 windowsize 8', [opt('blksize', '1024'), opt('windowsize', '8')]],
  ] as const) {
    for (const seed of [1, 2, 3]) {
      it(`${label}, seed ${seed}: byte-identical despite drops, duplicates and reordering`, async () => {
        const data = testData(40_000 + seed);
        const r = await runTransfer({ data, options: [...options], toClient: faults, toServer: faults, seed, retries: 8 });
        expect(r.result?.ok).toBe(true);
        expect(r.received.equals(data)).toBe(true);
        // Bounded: with 10% loss each way, lock-step resends about one block per loss, a window
        // (go-back-N, RFC 7440) about a window per loss.
        const blocks = Math.ceil(data.length / (options.length ? 1024 : 512));
        expect(dataPackets(r.serverSent)).toBeLessThan(blocks * (options.length ? 4 : 2));
        expect(r.result!.retransmits).toBe(dataPackets(r.serverSent) - blocks - (data.length % (options.length ? 1024 : 512) === 0 ? 1 : 0));
      });
    }
  }

  it("duplicate ACKs never trigger a retransmission (Sorcerer's Apprentice, RFC 1123 4.2.3.1)", async () => {
    const data = testData(512 * 50 + 1);
    const r = await runTransfer({ data, toServer: { duplicate: 1 } });
    expect(r.received.equals(data)).toBe(true);
    expect(r.result).toMatchObject({ ok: true, retransmits: 0 });
    expect(dataPackets(r.serverSent)).toBe(51);
  });

  it('a lost window tail is resent after the adaptive timeout, not the full one', async () => {
    const data = testData(1024 * 8 * 4 + 1);
    let drops = 0;
    // The link drops the last block of the second window once; the client, which only ACKs full
    // windows, never notices the gap: only the server's timer can recover.
    const r = await runTransfer({
      data,
      options: [opt('blksize', '1024'), opt('windowsize', '8')],
      timeoutMs: 5000,
      clientTimeoutMs: 10_000,
      dropToClient: (p) => p.op === 'data' && p.block === 16 && drops++ === 0,
    });
    expect(r.received.equals(data)).toBe(true);
    expect(r.result).toMatchObject({ ok: true });
    expect(r.result!.retransmits).toBeGreaterThanOrEqual(1);
    expect(r.elapsedMs).toBeLessThan(500);
  });
});

describe('ReadTransfer file reads', () => {
  it('waits for a slow disk (reads taking 30 ms) and resumes without retransmitting', async () => {
    const data = testData(300_000);
    const mem = memoryFile(data);
    let reads = 0;
    const r = await runTransfer({
      data,
      options: [opt('blksize', '1468'), opt('windowsize', '4')],
      file: (clock) => ({
        size: data.length,
        read: (buf, off, len, pos) => {
          reads++;
          return new Promise((res) => clock.setTimeout(() => void mem.read(buf, off, len, pos).then(res), 30));
        },
        close: async () => {},
      }),
    });
    expect(r.received.equals(data)).toBe(true);
    expect(r.result).toMatchObject({ ok: true, retransmits: 0 });
    // 64 KiB chunks: a handful of reads, not one per block.
    expect(reads).toBe(Math.ceil(data.length / 65536));
  });

  it('ends with ERROR 0 when the file cannot be read', async () => {
    const data = testData(200_000);
    const mem = memoryFile(data);
    let reads = 0;
    const r = await runTransfer({
      data,
      file: {
        size: data.length,
        read: (buf, off, len, pos) => (++reads >= 2 ? Promise.reject(new Error('EIO')) : mem.read(buf, off, len, pos)),
        close: async () => {},
      },
    });
    expect(r.result).toMatchObject({ ok: false, code: 0, reason: 'read error on the server' });
    expect(r.serverSent.at(-1)).toMatchObject({ op: 'error', code: 0 });
  });

  it('a file that shrank after opening ends at its new end with a short block', async () => {
    const data = testData(100_000);
    const real = data.subarray(0, 70_000);
    const r = await runTransfer({ data, file: { ...memoryFile(real), size: data.length } });
    expect(r.result).toMatchObject({ ok: true, bytes: 70_000 });
    expect(r.received.equals(real)).toBe(true);
  });

  it('copes with a source that returns short reads (e.g. a generated file)', async () => {
    const data = testData(50_000);
    const mem = memoryFile(data);
    const r = await runTransfer({
      data,
      options: [opt('blksize', '1468')],
      file: { size: data.length, read: (buf, off, len, pos) => mem.read(buf, off, Math.min(len, 700), pos), close: async () => {} },
    });
    expect(r.result).toMatchObject({ ok: true, bytes: data.length });
    expect(r.received.equals(data)).toBe(true);
  });

  it('closes the file exactly once when the transfer ends', async () => {
    let closes = 0;
    const data = testData(5000);
    await runTransfer({ data, file: { ...memoryFile(data), close: async () => void closes++ } });
    expect(closes).toBe(1);
  });
});

describe('ReadTransfer timeouts', () => {
  it('gives up after `retries` full timeouts with ERROR 0 when the client vanishes', async () => {
    const data = testData(512 * 10);
    const r = await runTransfer({ data, clientDiesAfter: 3, retries: 3, timeoutMs: 1000, clientTimeoutMs: 1e9 });
    expect(r.result).toMatchObject({ ok: false, code: 0 });
    expect((r.result as { reason: string }).reason).toMatch(/timed out after 3 retransmissions/);
    const last = r.serverSent.at(-1);
    expect(last).toMatchObject({ op: 'error', code: 0 });
    // Early (adaptive) retries double from >= MIN_RTO_MS up to 1000 ms, then 3 full ones.
    const early = Math.ceil(Math.log2(1000 / MIN_RTO_MS));
    expect(r.result!.retransmits).toBeGreaterThanOrEqual(3);
    expect(r.result!.retransmits).toBeLessThanOrEqual(3 + early);
    // (retries + 1) full timeouts, plus the early ones (50 + 100 + ... < 2 x 1000).
    expect(r.elapsedMs).toBeGreaterThanOrEqual(4 * 1000);
    expect(r.elapsedMs).toBeLessThan(4 * 1000 + 2000 + 100);
  });

  it('honours a negotiated timeout exactly (RFC 2349): no early retransmission', async () => {
    const data = testData(512 * 10);
    const r = await runTransfer({ data, options: [opt('timeout', '2')], clientDiesAfter: 2, retries: 2, clientTimeoutMs: 1e9 });
    expect(r.result).toMatchObject({ ok: false, code: 0 });
    expect(r.result!.retransmits).toBe(2);
    const sends = r.serverSent.filter((p) => p.op === 'data' && (p as { block: number }).block === 3).length;
    expect(sends).toBe(3);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(6000);
  });

  it('resends the OACK when its ACK 0 is lost', async () => {
    const data = testData(100);
    let dropped = 0;
    const r = await runTransfer({
      data,
      options: [opt('blksize', '64')],
      clientTimeoutMs: 1e9,
      dropToServer: (p) => p.op === 'ack' && p.block === 0 && dropped++ === 0,
    });
    expect(r.received.equals(data)).toBe(true);
    expect(r.serverSent.slice(0, 2).map((p) => p.op)).toEqual(['oack', 'oack']);
    expect(r.result).toMatchObject({ ok: true, retransmits: 1 });
  });

  it('stop() sends ERROR 0, ends once and cancels its timer', async () => {
    const clock = new FakeClock();
    const sent: Buffer[] = [];
    const ends: TransferResult[] = [];
    const t = new ReadTransfer({
      filename: 'f',
      mode: 'octet',
      options: [],
      file: memoryFile(testData(5000)),
      clock,
      send: (b) => sent.push(Buffer.from(b)),
      limits: { maxBlksize: 65464, maxWindowsize: 64, maxWindowBytes: 65536, defaultTimeoutMs: 1000 },
      retries: 3,
      pool: new BufferPool(65536, 2),
      onEnd: (r) => ends.push(r),
    });
    t.start();
    await new Promise((r) => setImmediate(r));
    expect(decodePacket(sent[0]!)).toMatchObject({ op: 'data', block: 1 });
    expect(clock.pending).toBe(1);
    t.stop();
    t.stop();
    expect(clock.pending).toBe(0);
    expect(ends).toHaveLength(1);
    expect(decodePacket(sent.at(-1)!)).toMatchObject({ op: 'error', code: 0 });
    // Packets after the end are ignored.
    expect(t.handle(encodePacket({ op: 'ack', block: 1 }))).toBe('transfer not running');
  });

  it('ignores stale ACKs from before a rollover and ACKs for blocks never sent', async () => {
    const clock = new FakeClock();
    const sent: Buffer[] = [];
    const t = new ReadTransfer({
      filename: 'f',
      mode: 'octet',
      options: [],
      file: memoryFile(testData(5000)),
      clock,
      send: (b) => sent.push(Buffer.from(b)),
      limits: { maxBlksize: 65464, maxWindowsize: 64, maxWindowBytes: 65536, defaultTimeoutMs: 1000 },
      retries: 3,
      pool: new BufferPool(65536, 2),
      onEnd: () => {},
    });
    t.start();
    await new Promise((r) => setImmediate(r));
    expect(t.handle(encodePacket({ op: 'ack', block: 7 }))).toMatch(/not sent/);
    expect(t.handle(encodePacket({ op: 'ack', block: 65535 }))).toMatch(/not sent/);
    expect(t.handle(encodePacket({ op: 'ack', block: 0 }))).toMatch(/duplicate/);
    expect(t.handle(encodePacket({ op: 'ack', block: 1 }))).toBeUndefined();
    expect(decodePacket(sent.at(-1)!)).toMatchObject({ op: 'data', block: 2 });
    expect(t.handle(Buffer.from([0, 9]))).toMatch(/malformed/);
    expect(t.handle(encodePacket({ op: 'data', block: 1, data: Buffer.alloc(1) }))).toMatch(/unexpected DATA/);
    t.stop();
  });
});
