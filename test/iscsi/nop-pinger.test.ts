/**
 * Dead-peer detection (appliance/iscsi/nop-pinger.ts, split out of the connection for issue #18)
 * on a fake clock: the early probe, dropping only initiators that answered a ping before, and
 * the timing issue #14 relies on (a silent Linux client dropped 10 s after its last PDU).
 */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { NopPinger, PROBE_MS } from '../../appliance/iscsi/nop-pinger';

function setup(intervalMs = 5000) {
  const clock = new FakeClock();
  const pings: { ttt: number; at: number }[] = [];
  let deadAt: number | undefined;
  let ttt = 0;
  let full = true;
  const pinger = new NopPinger(clock, intervalMs, {
    inFullFeature: () => full,
    isClosed: () => deadAt !== undefined,
    nextTtt: () => ++ttt,
    sendPing: (t) => pings.push({ ttt: t, at: clock.now() }),
    dead: () => {
      deadAt = clock.now();
    },
  });
  const step = (ms: number, every = 50) => {
    for (let t = 0; t < ms; t += every) clock.advance(every);
  };
  return { clock, pinger, pings, step, dead: () => deadAt, setFull: (v: boolean) => (full = v) };
}

describe('NOP-In pinger', () => {
  it('probes once PROBE_MS after full feature phase, busy or not', () => {
    const s = setup();
    s.pinger.start();
    s.step(PROBE_MS - 50);
    expect(s.pings).toHaveLength(0);
    s.pinger.heard();
    s.step(100);
    expect(s.pings.map((p) => p.ttt)).toEqual([1]);
  });

  it('a Linux initiator that answered the probe and then went silent is dropped 10 s after its last PDU', () => {
    const s = setup();
    s.pinger.start();
    s.step(300);
    s.pinger.answered(s.pings[0]!.ttt);
    const lastWord = s.clock.now();
    s.pinger.heard();
    s.step(20_000);
    expect(s.dead()).toBeDefined();
    expect(s.dead()! - lastWord).toBeGreaterThanOrEqual(10_000);
    expect(s.dead()! - lastWord).toBeLessThanOrEqual(10_100);
  });

  it('an initiator that talks keeps its connection; one that answers each ping too', () => {
    const s = setup();
    s.pinger.start();
    s.step(300);
    s.pinger.answered(s.pings[0]!.ttt);
    for (let i = 0; i < 60; i++) {
      s.step(1000);
      if (i % 2 === 0) s.pinger.heard();
      const last = s.pings[s.pings.length - 1]!;
      s.pinger.answered(last.ttt);
    }
    expect(s.dead()).toBeUndefined();
  });

  it('iPXE never answers NOP-In: it is pinged but never dropped for it', () => {
    const s = setup();
    s.pinger.start();
    s.step(60_000);
    expect(s.pings.length).toBeGreaterThan(5);
    expect(s.dead()).toBeUndefined();
  });

  it('a wrong TTT is not an answer; no pings outside full feature phase; interval 0 turns it off', () => {
    const s = setup();
    s.pinger.start();
    s.step(300);
    s.pinger.answered(999);
    s.step(20_000);
    expect(s.dead()).toBeUndefined();

    const l = setup();
    l.setFull(false);
    l.pinger.start();
    l.step(20_000);
    expect(l.pings).toHaveLength(0);

    const off = setup(0);
    off.pinger.start();
    off.step(20_000);
    expect(off.pings).toHaveLength(0);
  });
});
