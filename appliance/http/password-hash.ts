import { Worker } from 'node:worker_threads';

/** scrypt cost parameters (RFC 7914 §2). */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
  keyLen: number;
}

/**
 * The worker's whole program, inline so the esbuild single-file bundle needs no second file.
 * scryptSync on purpose: the async scrypt would queue on libuv's thread pool, which is shared
 * with the image store's file I/O and has only two threads (core/io-threads.ts); a login storm
 * once took iSCSI read latency from 16 ms to 766 ms that way.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { scryptSync } = require('node:crypto');
parentPort.on('message', (m) => {
  try {
    const key = scryptSync(m.password, Buffer.from(m.salt), m.keyLen, { N: m.N, r: m.r, p: m.p, maxmem: 256 * m.N * m.r });
    parentPort.postMessage({ key });
  } catch (err) {
    parentPort.postMessage({ error: String((err && err.message) || err) });
  }
});
`;

/** What the UI auth needs from a hasher (a fake in tests that count attempts). */
export interface PasswordHashing {
  /** Starts a hash, or returns undefined when the hasher is at its concurrency limit. */
  tryHash(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> | undefined;
  close(): Promise<void>;
}

interface Job {
  resolve: (key: Buffer) => void;
  reject: (err: Error) => void;
}

/**
 * Password hashing off the main thread and off libuv's pool, at most `concurrency` hashes at
 * once. Each of up to `concurrency` workers (created on first use) hashes one password at a
 * time; when all are busy tryHash refuses at once instead of queueing, so a login storm costs
 * at most `concurrency` cores and no memory beyond them (each hash holds 128·N·r bytes).
 */
export class PasswordHasher implements PasswordHashing {
  /** Hashes begun since creation (tests and metrics). */
  started = 0;
  private readonly idle: Worker[] = [];
  private readonly jobs = new Map<Worker, Job>();
  private closed = false;

  constructor(private readonly concurrency = 2) {}

  /** Hashes running now. */
  get running(): number {
    return this.jobs.size;
  }

  /** Starts a hash, or returns undefined when `concurrency` are already running. */
  tryHash(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> | undefined {
    if (this.closed) throw new Error('password hasher closed');
    if (this.jobs.size >= this.concurrency) return undefined;
    const worker = this.idle.pop() ?? this.spawn();
    this.started++;
    worker.ref();
    return new Promise<Buffer>((resolve, reject) => {
      this.jobs.set(worker, { resolve, reject });
      worker.postMessage({ password, salt: new Uint8Array(salt), N: params.N, r: params.r, p: params.p, keyLen: params.keyLen });
    });
  }

  /** Ends every worker; a hash still running rejects. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.idle, ...this.jobs.keys()];
    this.idle.length = 0;
    await Promise.all(all.map((w) => w.terminate()));
  }

  private spawn(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (m: { key?: Uint8Array; error?: string }) => {
      // An idle worker never keeps the process alive (a test that forgets close()).
      worker.unref();
      const job = this.jobs.get(worker);
      this.jobs.delete(worker);
      if (!this.closed) this.idle.push(worker);
      if (!job) return;
      if (m.key) job.resolve(Buffer.from(m.key.buffer, m.key.byteOffset, m.key.byteLength));
      else job.reject(new Error(m.error ?? 'scrypt failed'));
    });
    const fail = (err: Error) => {
      const job = this.jobs.get(worker);
      this.jobs.delete(worker);
      const i = this.idle.indexOf(worker);
      if (i >= 0) this.idle.splice(i, 1);
      job?.reject(err);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`password worker exited (${code})`)));
    return worker;
  }
}
