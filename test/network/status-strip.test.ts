/**
 * The dashboard's status strip warns about the box's own network (issue #14): no carrier or no
 * address, and an address that is a DHCP lease. ServicesStrip is a pure function of the status:
 * its vnode tree is walked for the texts it shows, no DOM needed.
 */
import { describe, expect, it } from 'vitest';
import type { Status } from '../../ui/src/api';
import { ServicesStrip } from '../../ui/src/pages/dashboard';

/** Every string child and `text` prop in a vnode tree. */
function texts(node: unknown): string[] {
  if (node === null || node === undefined || typeof node === 'boolean') return [];
  if (typeof node === 'string' || typeof node === 'number') return [String(node)];
  if (Array.isArray(node)) return node.flatMap(texts);
  const props = (node as { props?: { text?: string; children?: unknown } }).props ?? {};
  return [...(props.text ? [props.text] : []), ...texts(props.children)];
}

const base: Status = { version: '1', startedAt: '2026-12-03T10:00:00Z', uptimeSeconds: 5, serverAddress: '192.168.1.20', services: [] };

describe('ServicesStrip network warnings', () => {
  it('says nothing about a fixed address that is up', () => {
    const out = texts(
      ServicesStrip({ status: { ...base, network: { interface: 'eth0', state: 'up', address: '192.168.1.20', since: base.startedAt, leased: false } } }),
    );
    expect(out.join(' ')).not.toMatch(/network:|DHCP lease/);
  });

  it('shows a missing carrier and a leased address with what to do', () => {
    const down = texts(
      ServicesStrip({ status: { ...base, network: { interface: 'eth0', state: 'no-carrier', address: '', since: base.startedAt, leased: false } } }),
    );
    expect(down.join(' ')).toMatch(/network: eth0 no carrier; DHCP serves once it has carrier and an address/);
    const leased = texts(
      ServicesStrip({
        status: { ...base, network: { interface: 'eth0', state: 'up', address: '192.168.1.20', since: base.startedAt, leased: true, warning: 'w' } },
      }),
    );
    expect(leased.join(' ')).toMatch(/192\.168\.1\.20 is a DHCP lease: reserve it on the router or run "sudo netboot-fixed-address"/);
  });
});
