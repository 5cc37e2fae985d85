/** The CmdSN window (appliance/iscsi/command-window.ts, RFC 7143 §4.2.2.1), pure. */
import { describe, expect, it } from 'vitest';
import { CommandWindow, snDiff } from '../../appliance/iscsi/command-window';

describe('command window', () => {
  it('delivers in order, holds early commands until the gap fills, ignores what lies outside', () => {
    const w = new CommandWindow<string>(4);
    w.start(10);
    expect(w.maxCmdSN(0)).toBe(13);
    expect(w.place(12, 0)).toBe('early');
    w.hold(12, 'c12');
    expect(w.place(11, 1)).toBe('early');
    w.hold(11, 'c11');
    expect(w.place(14, 2)).toBe('outside'); // past MaxCmdSN 13
    expect(w.place(9, 2)).toBe('outside'); // already delivered
    expect(w.nextHeld()).toBeUndefined();
    expect(w.place(10, 2)).toBe('now');
    expect([w.nextHeld(), w.nextHeld(), w.nextHeld()]).toEqual(['c11', 'c12', undefined]);
    expect(w.expCmdSN).toBe(13);
  });

  it('the advertised MaxCmdSN shrinks the window by unanswered commands but never moves back', () => {
    const w = new CommandWindow<number>(4);
    w.start(0);
    expect(w.maxCmdSN(0)).toBe(3);
    expect(w.maxCmdSN(4)).toBe(3); // full: no new slot, and no step back
    for (const sn of [0, 1, 2, 3]) expect(w.place(sn, 4)).toBe('now');
    expect(w.place(4, 4)).toBe('outside'); // nothing answered yet: slot 4 not granted
    expect(w.maxCmdSN(2)).toBe(5);
    expect(w.place(4, 2)).toBe('now');
  });

  it('wraps around 2^32 (serial number arithmetic) and lets a NOP-Out consume its CmdSN', () => {
    const w = new CommandWindow<number>(8);
    w.start(0xfffffffe);
    expect(w.maxCmdSN(0)).toBe(5);
    expect(w.place(0xfffffffe, 0)).toBe('now');
    w.consume(0xffffffff);
    expect(w.expCmdSN).toBe(0);
    w.consume(7); // not the expected one: no effect
    expect(w.expCmdSN).toBe(0);
    expect(snDiff(1, 0xffffffff)).toBe(2);
  });
});
