import { describe, expect, it } from 'vitest';
import { ago, bytes, duration, fraction, normaliseMac, stageLabel, toMs } from '../../ui/src/format';
import { normaliseMac as serverNormaliseMac } from '../../appliance/core/model';

describe('UI formatting', () => {
  it('sizes in binary units', () => {
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1023)).toBe('1023 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(8 * 1024 * 1024)).toBe('8.0 MiB');
    expect(bytes(465 * 1024 ** 3)).toBe('465 GiB');
    expect(bytes(undefined)).toBe('—');
  });

  it('relative times from ISO strings or epoch ms', () => {
    const now = Date.parse('2026-11-27T12:00:00Z');
    expect(ago(now - 2000, now)).toBe('just now');
    expect(ago(new Date(now - 42_000).toISOString(), now)).toBe('42 s ago');
    expect(ago(now - 5 * 60_000, now)).toBe('5 min ago');
    expect(ago(now - 3 * 3600_000, now)).toBe('3 h ago');
    expect(ago(now - 2 * 86400_000, now)).toBe('2 d ago');
    expect(ago(null, now)).toBe('—');
    expect(toMs('not a date')).toBeUndefined();
  });

  it('durations and progress fractions', () => {
    expect(duration(40)).toBe('40 s');
    expect(duration(125 * 60)).toBe('2 h 5 min');
    expect(duration(3 * 86400 + 4 * 3600)).toBe('3 d 4 h');
    expect(fraction(0.25)).toBe(0.25);
    expect(fraction(40)).toBe(0.4);
    expect(fraction(undefined)).toBeUndefined();
  });

  it('accepts MACs exactly as the server does', () => {
    for (const s of [
      '52:54:00:12:34:56',
      '52-54-00-12-34-56',
      '525400123456',
      '5254.0012.3456',
      ' 52:54:00:AB:CD:EF ',
      '52:54:00:12:34',
      'zz:54:00:12:34:56',
      '52:54:00:12:34:56:78',
      '',
    ]) {
      expect(normaliseMac(s)).toBe(serverNormaliseMac(s));
    }
    expect(normaliseMac('52-54-00-AB-CD-EF')).toBe('52:54:00:ab:cd:ef');
  });

  it('names boot stages for people and passes unknown ones through', () => {
    expect(stageLabel('tftp-done')).toBe('iPXE loaded');
    expect(stageLabel('os-ready')).toBe('os ready');
  });
});
