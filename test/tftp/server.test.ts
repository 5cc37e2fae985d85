import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../appliance/core/clock';
import { silentLogger } from '../../appliance/core/log';
import type { BootEvent } from '../../appliance/core/model';
import { DirectoryFileSource } from '../../appliance/tftp/file-source';
import { decodePacket, encodePacket, type TftpPacket } from '../../appliance/tftp/packet';
import { TftpServer, type TftpServerOptions } from '../../appliance/tftp/server';
import { testData } from './harness';

let dir: string;
const data = testData(512 * 6 + 17);
const servers: TftpServer[] = [];
const sockets: dgram.Socket[] = [];

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'tftp-server-'));
  mkdirSync(path.join(dir, 'root'));
  writeFileSync(path.join(dir, 'root', 'file.bin'), data);
});
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  for (const s of servers.splice(0)) await s.stop();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function server(extra: Partial<TftpServerOptions> = {}): Promise<TftpServer> {
  const s = new TftpServer({
    host: '127.0.0.1',
    port: 0,
    files: new DirectoryFileSource([path.join(dir, 'root')]),
    clock: systemClock,
    log: silentLogger(),
    timeoutSeconds: 1,
    retries: 2,
    maxTransfers: 16,
    ...extra,
  });
  servers.push(s);
  await s.start();
  return s;
}

/** A raw client socket that queues what it receives. */
async function client() {
  const sock = dgram.createSocket('udp4');
  sockets.push(sock);
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const queue: { p: TftpPacket; port: number }[] = [];
  const waiters: (() => void)[] = [];
  sock.on('message', (msg, rinfo) => {
    queue.push({ p: decodePacket(msg), port: rinfo.port });
    waiters.splice(0).forEach((w) => w());
  });
  return {
    sock,
    send: (p: TftpPacket, port: number) => sock.send(encodePacket(p), port, '127.0.0.1'),
    async next(ms = 3000): Promise<{ p: TftpPacket; port: number }> {
      const deadline = Date.now() + ms;
      while (queue.length === 0) {
        if (Date.now() > deadline) throw new Error('no packet');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return queue.shift()!;
    },
    queue,
  };
}

const rrq = (filename: string, options: { name: string; value: string }[] = []): TftpPacket => ({ op: 'rrq', filename, mode: 'octet', options });

describe('TftpServer', () => {
  it('answers from a new TID; a packet from an unknown TID gets ERROR 5 and the transfer goes on', async () => {
    const s = await server();
    const c = await client();
    const intruder = await client();
    c.send(rrq('file.bin'), s.port);
    const first = await c.next();
    expect(first.p).toMatchObject({ op: 'data', block: 1 });
    expect(first.port).not.toBe(s.port);
    intruder.send({ op: 'ack', block: 1 }, first.port);
    expect((await intruder.next()).p).toMatchObject({ op: 'error', code: 5 });
    const got: Buffer[] = [(first.p as { data: Buffer }).data];
    for (let block = 1; ; block++) {
      c.send({ op: 'ack', block }, first.port);
      if (got.at(-1)!.length < 512) break;
      const { p, port } = await c.next();
      expect(port).toBe(first.port);
      expect(p).toMatchObject({ op: 'data', block: block + 1 });
      got.push((p as { data: Buffer }).data);
    }
    expect(Buffer.concat(got).equals(data)).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(s.status()).toMatchObject({ state: 'running', counters: { transfers: 1, bytes: data.length, errors: 0 }, gauges: { activeTransfers: 0 } });
  });

  it('refuses WRQ with ERROR 2, missing files with ERROR 1, escapes with ERROR 2', async () => {
    const s = await server();
    const c = await client();
    c.send({ op: 'wrq', filename: 'x', mode: 'octet', options: [] }, s.port);
    expect((await c.next()).p).toMatchObject({ op: 'error', code: 2, message: expect.stringMatching(/read-only/) });
    c.send(rrq('missing.bin'), s.port);
    expect((await c.next()).p).toEqual({ op: 'error', code: 1, message: 'file not found' });
    c.send(rrq('../root/file.bin'), s.port);
    expect((await c.next()).p).toMatchObject({ op: 'error', code: 2 });
    c.send(rrq('/etc/passwd'), s.port);
    expect((await c.next()).p).toMatchObject({ op: 'error', code: 2 });
    expect(s.status().counters).toMatchObject({ requests: 4, errors: 4, transfers: 0 });
  });

  it('refuses bad options with ERROR 8 from the transfer TID', async () => {
    const s = await server();
    const c = await client();
    c.send(rrq('file.bin', [{ name: 'blksize', value: '2' }]), s.port);
    expect((await c.next()).p).toMatchObject({ op: 'error', code: 8 });
  });

  it('drops malformed requests and stray packets, and keeps serving', async () => {
    const s = await server();
    const c = await client();
    c.sock.send(Buffer.from([0, 1, 0x41]), s.port, '127.0.0.1');
    c.send({ op: 'ack', block: 3 }, s.port);
    c.send(rrq('file.bin', [{ name: 'blksize', value: '4096' }]), s.port);
    expect((await c.next()).p).toMatchObject({ op: 'oack', options: [{ name: 'blksize', value: '4096' }] });
  });

  it('ignores a repeated RRQ from the same client port while its transfer runs', async () => {
    const s = await server();
    const c = await client();
    c.send(rrq('file.bin'), s.port);
    c.send(rrq('file.bin'), s.port);
    const first = await c.next();
    expect(first.p).toMatchObject({ op: 'data', block: 1 });
    await new Promise((r) => setTimeout(r, 200));
    expect(c.queue).toHaveLength(0);
    expect(s.status().counters.transfers).toBe(1);
    expect(s.status().gauges).toEqual({ activeTransfers: 1 });
  });

  it('answers ERROR 0 "server busy" beyond maxTransfers', async () => {
    const s = await server({ maxTransfers: 2 });
    const cs = await Promise.all([client(), client(), client()]);
    cs[0]!.send(rrq('file.bin'), s.port);
    cs[1]!.send(rrq('file.bin'), s.port);
    await cs[0]!.next();
    await cs[1]!.next();
    cs[2]!.send(rrq('file.bin'), s.port);
    expect((await cs[2]!.next()).p).toMatchObject({ op: 'error', code: 0, message: expect.stringMatching(/busy/) });
    expect(s.status().gauges).toEqual({ activeTransfers: 2 });
  });

  it('gives up on a silent client after bounded retransmissions', async () => {
    const s = await server({ timeoutSeconds: 1, retries: 1 });
    const c = await client();
    c.send(rrq('file.bin', [{ name: 'timeout', value: '1' }]), s.port);
    const seen: TftpPacket[] = [];
    for (;;) {
      const { p } = await c.next(4000);
      seen.push(p);
      if (p.op === 'error') break;
    }
    // OACK, one retransmission, then ERROR 0.
    expect(seen.map((p) => p.op)).toEqual(['oack', 'oack', 'error']);
    await new Promise((r) => setTimeout(r, 20));
    expect(s.status().counters).toMatchObject({ errors: 1, retransmits: 1 });
    expect(s.status().gauges).toEqual({ activeTransfers: 0 });
  });

  it('records tftp-start / tftp-done / tftp-error for clients whose MAC is known', async () => {
    const events: BootEvent[] = [];
    const s = await server({ events: { record: (e) => events.push(e) }, macForAddress: (ip) => (ip === '127.0.0.1' ? 'aa:bb:cc:dd:ee:ff' : undefined) });
    const c = await client();
    c.send(rrq('file.bin', [{ name: 'blksize', value: '8192' }]), s.port);
    const oack = await c.next();
    c.send({ op: 'ack', block: 0 }, oack.port);
    expect((await c.next()).p).toMatchObject({ op: 'data', block: 1 });
    c.send({ op: 'ack', block: 1 }, oack.port);
    c.send(rrq('gone.bin'), s.port);
    await c.next();
    await new Promise((r) => setTimeout(r, 50));
    expect(events.map((e) => e.stage)).toEqual(['tftp-start', 'tftp-done', 'tftp-error']);
    expect(events[0]).toMatchObject({ mac: 'aa:bb:cc:dd:ee:ff', detail: { file: 'file.bin', size: data.length } });
    expect(events[1]).toMatchObject({ detail: { file: 'file.bin', bytes: data.length } });
    expect(typeof events[1]!.detail!.ms).toBe('number');
    expect(events[2]).toMatchObject({ detail: { file: 'gone.bin', code: 1 } });
  });

  it('a PXE ROM size probe (RRQ tsize, OACK, client ERROR) is not counted or recorded as an error', async () => {
    const events: BootEvent[] = [];
    const s = await server({ events: { record: (e) => events.push(e) }, macForAddress: () => 'aa:bb:cc:dd:ee:ff' });
    const c = await client();
    c.send(rrq('file.bin', [{ name: 'tsize', value: '0' }]), s.port);
    const oack = await c.next();
    expect(oack.p).toEqual({ op: 'oack', options: [{ name: 'tsize', value: String(data.length) }] });
    c.send({ op: 'error', code: 0, message: 'TFTP Aborted' }, oack.port);
    await new Promise((r) => setTimeout(r, 50));
    expect(s.status().counters.errors).toBe(0);
    expect(s.status().gauges).toEqual({ activeTransfers: 0 });
    expect(events.map((e) => e.stage)).toEqual(['tftp-start']);
  });

  it('stop() ends running transfers with ERROR 0 and frees the port', async () => {
    const s = await server();
    const c = await client();
    c.send(rrq('file.bin'), s.port);
    await c.next();
    const port = s.port;
    await s.stop();
    expect((await c.next()).p).toMatchObject({ op: 'error', code: 0 });
    expect(s.status().state).toBe('stopped');
    // The port can be bound again.
    const again = await server({ port });
    expect(again.port).toBe(port);
  });

  it('binds to a host name too (tftp.host "localhost")', async () => {
    const s = await server({ host: 'localhost' });
    const c = await client();
    c.send(rrq('file.bin'), s.port);
    expect((await c.next()).p).toMatchObject({ op: 'data', block: 1 });
  });

  it('start() rejects with a FatalError naming the port when it is taken', async () => {
    const s = await server();
    const clash = new TftpServer({
      host: '127.0.0.1',
      port: s.port,
      files: new DirectoryFileSource([dir]),
      clock: systemClock,
      log: silentLogger(),
      timeoutSeconds: 1,
      retries: 1,
      maxTransfers: 1,
    });
    await expect(clash.start()).rejects.toThrow(new RegExp(`udp port ${s.port} on 127.0.0.1 is already in use`));
  });
});
