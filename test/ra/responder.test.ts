/**
 * Issue #17: the RaResponder service's timing with a FakeClock (probe window, router hold,
 * restart back-off, stop() cancelling every timer), driving a stand-in for ra-responder: a small
 * shell script that speaks the helper's line protocol, records every command it gets, and plays
 * the link (with a router that answers our solicitation, or without). The real helper on a real
 * link is test/network/ra-responder.test.ts.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../appliance/core/clock';
import { RaResponder } from '../../appliance/ra/responder';

const dir = mkdtempSync(join(tmpdir(), 'nb-ra-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A stand-in helper: logs commands to `log`; `router`: answers "solicit" with a router's RA;
 * `dies`: exits with status 3 at the first "solicit" (which the service sends once it is ready).
 */
function stub(name: string, link: 'plain' | 'router' | 'dies'): { path: string; log: string } {
  const path = join(dir, name);
  const log = join(dir, `${name}.log`);
  writeFileSync(
    path,
    `#!/bin/sh\necho "ready 7"\nwhile read -r line; do\n  echo "$line" >> '${log}'\n` +
      (link === 'dies' ? `  [ "$line" = solicit ] && exit 3\n` : '') +
      (link === 'router' ? `  [ "$line" = solicit ] && echo "ra fe80::1 1800 00"\n` : '') +
      `done\n`,
  );
  chmodSync(path, 0o755);
  writeFileSync(log, '');
  return { path, log };
}

async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (ok()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const log = pino({ level: 'silent' });
const commands = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);
const MAC = '52:54:00:e2:02:00';
const LL = 'fe80::5054:ff:fee2:200';

describe('RaResponder (FakeClock, a stand-in helper)', () => {
  it('answers nobody while probing, then the booting clients; follows the booting list each tick', async () => {
    const clock = new FakeClock();
    const h = stub('plain', 'plain');
    let booting = [MAC];
    const ra = new RaResponder({ interface: 'br0', helperPath: h.path, clock, log, booting: () => booting, probeMs: 2000, holdMs: 60_000 });
    await ra.start();
    await until(() => ra.status().state === 'running', 'ready');
    await until(() => commands(h.log).includes('allow'), 'the empty allow-list');
    expect(ra.current()).toMatchObject({ answer: false, reason: /looking for other routers/ });
    clock.advance(2000);
    await until(() => commands(h.log).includes(`allow ${LL}`), 'the allow-list');
    expect(commands(h.log).filter((c) => c === 'solicit')).toHaveLength(3); // one per tick while probing
    // refresh() (DHCP heard an unknown MAC) applies a change between ticks, at most every 250 ms.
    booting = [MAC, '52:54:00:e2:02:01'];
    clock.advance(250);
    ra.refresh();
    await until(() => commands(h.log).at(-1) === `allow ${LL} fe80::5054:ff:fee2:201`, 'the list refreshed between ticks');
    booting = [MAC];
    clock.advance(100);
    ra.refresh();
    expect(ra.current()).toMatchObject({ allow: [LL, 'fe80::5054:ff:fee2:201'] }); // too soon: not yet
    clock.advance(150);
    expect(ra.current()).toMatchObject({ allow: [LL] }); // 250 ms after the last: applied
    booting = [];
    clock.advance(1000);
    await until(() => commands(h.log).at(-1) === 'allow', 'the list emptied');
    expect(ra.status().detail).toBe('silent: no client to answer');
    await ra.stop();
    expect(clock.pending).toBe(0);
  });

  it('keeps quiet while another router was heard within the hold time, then answers', async () => {
    const clock = new FakeClock();
    const h = stub('router', 'router');
    const ra = new RaResponder({ interface: 'br0', helperPath: h.path, clock, log, booting: () => [MAC], probeMs: 500, holdMs: 10_000 });
    await ra.start();
    await until(() => ra.status().counters.foreign_ras === 1, 'the router heard');
    clock.advance(1000);
    clock.advance(1000);
    await until(() => ra.status().counters.foreign_ras === 3, 'the router heard for each solicitation');
    expect(ra.current()).toMatchObject({ answer: false, router: 'fe80::1' });
    expect(commands(h.log)).not.toContain(`allow ${LL}`);
    clock.advance(9000); // 10 s after the last RA
    expect(ra.current()?.answer).toBe(false);
    clock.advance(1000);
    await until(() => commands(h.log).includes(`allow ${LL}`), 'answers after the hold time');
    await ra.stop();
    expect(clock.pending).toBe(0);
  });

  it('restarts a helper that dies, with back-off, and reports it as failed meanwhile', async () => {
    const clock = new FakeClock();
    const h = stub('dies', 'dies');
    const ra = new RaResponder({ interface: 'br0', helperPath: h.path, clock, log, booting: () => [MAC], probeMs: 0, holdMs: 10_000 });
    await ra.start();
    await until(() => ra.status().state === 'failed', 'failed');
    expect(ra.status().detail).toMatch(/exited \(3\).*retrying in 1 s/);
    clock.advance(999);
    expect(ra.status().counters.helper_starts).toBe(1);
    clock.advance(1);
    expect(ra.status().counters.helper_starts).toBe(2);
    // It dies again at once: the next wait doubles.
    await until(() => /retrying in 2 s/.test(ra.status().detail ?? ''), 'the second failure');
    clock.advance(1999);
    expect(ra.status().counters.helper_starts).toBe(2);
    clock.advance(1);
    expect(ra.status().counters.helper_starts).toBe(3);
    await until(() => /retrying in 4 s/.test(ra.status().detail ?? ''), 'the third failure');
    await ra.stop();
    expect(clock.pending).toBe(0);
  });

  it('a helper that cannot be executed is failed and retried, not left starting', async () => {
    const clock = new FakeClock();
    const path = join(dir, 'not-executable');
    writeFileSync(path, 'x', { mode: 0o644 });
    const ra = new RaResponder({ interface: 'br0', helperPath: path, clock, log, booting: () => [MAC], probeMs: 0, holdMs: 1 });
    await ra.start();
    await until(() => ra.status().state === 'failed', 'failed');
    expect(ra.status().detail).toMatch(/not started.*EACCES.*retrying in 1 s/);
    clock.advance(1000);
    await until(() => /retrying in 2 s/.test(ra.status().detail ?? ''), 'the retry failing too');
    expect(ra.status().counters.helper_starts).toBe(2);
    await ra.stop();
    expect(clock.pending).toBe(0);
  });

  it('stays disabled, spawning nothing, with the reason', async () => {
    const ra = new RaResponder({
      interface: 'br0',
      helperPath: '/nonexistent',
      clock: new FakeClock(),
      log,
      booting: () => [MAC],
      probeMs: 0,
      holdMs: 1,
      disabledReason: 'ra.enabled is false',
    });
    await ra.start();
    expect(ra.status()).toMatchObject({ state: 'disabled', detail: 'ra.enabled is false', counters: { helper_starts: 0 } });
    await ra.stop();
  });
});
