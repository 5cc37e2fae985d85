import fs from 'node:fs';

/**
 * Positional read of exactly `len` bytes into buf[off..] (loops on short reads). Callback fs.read
 * rather than FileHandle: it is the cheapest path into libuv, which matters at 50k IOPS.
 */
export function preadFull(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (o: number, l: number, p: number) => {
      fs.read(fd, buf, o, l, p, (err, n) => {
        if (err) return reject(err);
        if (n === l) return resolve();
        if (n === 0) return reject(new Error(`short read at ${p}: segment file is truncated`));
        step(o + n, l - n, p + n);
      });
    };
    step(off, len, pos);
  });
}

/** Positional write of exactly `len` bytes from buf[off..] (loops on short writes). */
export function pwriteFull(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (o: number, l: number, p: number) => {
      fs.write(fd, buf, o, l, p, (err, n) => {
        if (err) return reject(err);
        if (n === l) return resolve();
        step(o + n, l - n, p + n);
      });
    };
    step(off, len, pos);
  });
}

let zeroes = Buffer.alloc(0);

/** True when buf[off..off+len) is all zero bytes (memcmp against a shared zero buffer). */
export function isZero(buf: Buffer, off: number, len: number): boolean {
  if (zeroes.length < len) zeroes = Buffer.alloc(len);
  return buf.compare(zeroes, 0, len, off, off + len) === 0;
}

/**
 * How segment data moves: positional reads/writes and fdatasync. The store uses `fileIo`; the
 * power-cut test swaps in a volatile write cache that loses unsynced sectors, which is how a
 * power cut differs from the SIGKILL the crash test can do.
 */
export interface SegmentIo {
  read(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void>;
  write(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<void>;
  sync(fd: number): Promise<void>;
}

/** The real thing: libuv pread/pwrite/fdatasync. */
export const fileIo: SegmentIo = {
  read: preadFull,
  write: pwriteFull,
  sync: (fd) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve()))),
};
