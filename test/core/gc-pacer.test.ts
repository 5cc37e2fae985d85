import { describe, expect, it } from 'vitest';
import { gcPacer } from '../../appliance/core/gc-pacer';

describe('gc pacer (issue #16)', () => {
  it('runs one minor GC per everyBytes received, whatever the chunk sizes', () => {
    const calls: unknown[] = [];
    const p = gcPacer(1000, (o) => calls.push(o));
    for (let i = 0; i < 9; i++) p.received(100);
    expect(calls).toEqual([]);
    p.received(100);
    expect(calls).toEqual([{ type: 'minor' }]);
    p.received(2500);
    expect(calls.length).toBe(2);
    for (let i = 0; i < 10; i++) p.received(100);
    expect(calls.length).toBe(3);
  });

  it('does nothing without a gc function (node not started with --expose-gc)', () => {
    const p = gcPacer(10, undefined);
    expect(() => p.received(1 << 30)).not.toThrow();
  });
});
