import { silentLogger } from '../../appliance/core/log';
import { systemClock } from '../../appliance/core/clock';
import type { BootEvent, ChapCredentials } from '../../appliance/core/model';
import { IscsiServer, type IscsiServerOptions } from '../../appliance/iscsi/server';
import type { TargetDirectory, TargetEntry, TargetLun } from '../../appliance/iscsi/target-directory';
import type { Logger } from '../../appliance/core/log';

/** Initiator names the tests log in with. */
export const IQN_INITIATOR = 'iqn.2026-11.local.netboot:initiator:test1';
export const IQN_INITIATOR2 = 'iqn.2026-11.local.netboot:initiator:test2';

/** A directory over a fixed list of targets (the integrator's mapping, simplified). */
export class StaticDirectory implements TargetDirectory {
  /** Replaceable: a test swaps an entry to model the integrator changing a client (e.g. CHAP off). */
  constructor(public targets: TargetEntry[]) {}
  list(initiatorName: string): { name: string }[] {
    return this.targets.filter((t) => t.allowedInitiators.includes(initiatorName)).map((t) => ({ name: t.name }));
  }
  resolve(targetName: string): TargetEntry | undefined {
    return this.targets.find((t) => t.name === targetName);
  }
}

/** Builds a target entry with sensible test defaults. */
export function target(
  name: string,
  luns: TargetLun[],
  opts: { chap?: ChapCredentials | null; allowed?: string[]; exclusiveWriter?: boolean; mac?: string } = {},
): TargetEntry {
  return {
    name,
    luns,
    clientMac: opts.mac ?? '52:54:00:00:00:01',
    allowedInitiators: opts.allowed ?? [IQN_INITIATOR, IQN_INITIATOR2],
    chap: opts.chap ?? null,
    exclusiveWriter: opts.exclusiveWriter,
  };
}

/** Starts a target on 127.0.0.1 and a free port; `extra` overrides any server option. */
export async function startTarget(
  targets: TargetEntry[],
  opts: { log?: Logger; nopInIntervalSeconds?: number; port?: number; extra?: Partial<IscsiServerOptions> } = {},
) {
  const events: BootEvent[] = [];
  const directory = new StaticDirectory(targets);
  const server = new IscsiServer({
    host: '127.0.0.1',
    port: opts.port ?? 0,
    directory,
    clock: systemClock,
    log: opts.log ?? silentLogger(),
    events: { record: (e) => events.push(e) },
    maxConnections: 64,
    nopInIntervalSeconds: opts.nopInIntervalSeconds ?? 30,
    portalAddress: '127.0.0.1',
    ...opts.extra,
  });
  await server.start();
  return { server, port: server.port, events, directory };
}
