import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../appliance/iscsi/buffer-pool';

describe('buffer pool', () => {
  it('hands a released buffer out again for a write of the same size class, never one still in use', () => {
    const pool = new BufferPool(4 << 20);
    const a = pool.acquire(1 << 20);
    const b = pool.acquire(1 << 20);
    expect(a.length).toBe(1 << 20);
    expect(a.buffer).not.toBe(b.buffer);
    pool.release(a);
    expect(pool.idleTotal).toBe(1 << 20);
    // 768 KiB rounds up to the same 1 MiB class: the released memory comes back, sized to fit.
    const c = pool.acquire(768 * 1024);
    expect(c.buffer).toBe(a.buffer);
    expect(c.length).toBe(768 * 1024);
    expect(pool.idleTotal).toBe(0);
    // b is still out: a new acquire never returns it.
    const d = pool.acquire(1 << 20);
    expect(d.buffer).not.toBe(b.buffer);
    expect(d.buffer).not.toBe(c.buffer);
  });

  it('keeps at most maxIdleBytes idle and leaves small or foreign buffers to the GC', () => {
    const pool = new BufferPool(2 << 20);
    const bufs = [pool.acquire(1 << 20), pool.acquire(1 << 20), pool.acquire(1 << 20)];
    for (const b of bufs) pool.release(b);
    expect(pool.idleTotal).toBe(2 << 20);
    const small = pool.acquire(4096);
    expect(small.length).toBe(4096);
    pool.release(small);
    pool.release(Buffer.alloc(1 << 20).subarray(1));
    expect(pool.idleTotal).toBe(2 << 20);
  });

  it("never takes in a buffer it did not make: Node's shared slab for small ones is 64 KiB on Node 24 (issue #16)", () => {
    const pool = new BufferPool(4 << 20);
    // A small buffer from Node's slab, at its start: same size class and offset as a pooled one.
    let small = pool.acquire(1024);
    for (let i = 0; i < 200 && small.byteOffset !== 0; i++) small = pool.acquire(1024);
    pool.release(small);
    pool.release(Buffer.from(new ArrayBuffer(1 << 16)));
    expect(pool.idleTotal).toBe(0);
    const big = pool.acquire(1 << 16);
    expect(big.buffer).not.toBe(small.buffer);
  });

  it('frees a buffer beyond the idle limit at once where the runtime can detach it (issue #16)', () => {
    const pool = new BufferPool(1 << 20);
    const [a, b] = [pool.acquire(1 << 20), pool.acquire(1 << 20)];
    pool.release(a);
    pool.release(b);
    expect(pool.idleTotal).toBe(1 << 20);
    // The kept one is whole; the dropped one's memory went back (ES2024 transfer(): Node 21+).
    expect(a.buffer.byteLength).toBe(1 << 20);
    const canDetach = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
    expect(b.buffer.byteLength).toBe(canDetach ? 0 : 1 << 20);
    // What comes back out is the kept buffer, not the freed one.
    expect(pool.acquire(1 << 20).buffer).toBe(a.buffer);
  });
});
