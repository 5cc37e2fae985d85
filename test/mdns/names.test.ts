import { describe, expect, it } from 'vitest';
import { namesFor } from '../../appliance/mdns/names';

describe('namesFor', () => {
  it('uses the configured label first, then <label>-N, keeping UI and API names paired', () => {
    expect(namesFor('netboot', 1)).toEqual({ host: 'netboot', apiHost: 'netboot-api', instance: 'netboot' });
    expect(namesFor('netboot', 2)).toEqual({ host: 'netboot-2', apiHost: 'netboot-2-api', instance: 'netboot-2' });
    expect(namesFor('Lab-Box', 3).host).toBe('lab-box-3');
  });

  it('keeps every label within 63 octets (RFC 1035 §2.3.4) and never ends one with a dash', () => {
    const long = `a${'b'.repeat(55)}-------`;
    for (const i of [1, 9, 32, 99]) {
      const n = namesFor(long, i);
      for (const label of [n.host, n.apiHost]) {
        expect(label.length).toBeLessThanOrEqual(63);
        expect(label).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/);
      }
    }
  });

  it('rejects attempt numbers below 1', () => {
    expect(() => namesFor('netboot', 0)).toThrow(RangeError);
  });
});
