/**
 * Runs the DHCP service (and optionally a minimal HTTP server for /boot/) in its own process, so
 * a test can start it inside a network namespace: `ip netns exec NS npx tsx runner.ts spec.json`.
 * Prints one line per happening on stdout: `READY {...}`, `EVENT {...}` (BootEventSink),
 * `HTTP {...}` (script fetches), `FATAL message` (then exits 3). Stops cleanly on SIGTERM.
 * The HTTP side is the appliance's own /boot route (http/routes/boot.ts) with one-time links:
 * the DHCP answers mint them, the route redeems them against this namespace's neighbour table
 * (/proc/net/arp), as the appliance does (issue #13). `HTTP` lines say whether the script served
 * carried CHAP credentials (`credentials`), never the secret or the token.
 * With `eventStore`, events go to the appliance's BootEventStore instead (database opened as the
 * appliance opens it: WAL, synchronous=FULL) and `logFile` takes the JSON log: the work a boot
 * request costs in the appliance (bench/dhcp-vs-dnsmasq.ts --appliance).
 * With `watch`, the service follows dhcp.interface through the appliance's LinkWatcher (issue #14)
 * and the runner prints `NETWORK {...}` (the watcher's status) and then `DHCP {...}` (the
 * service's status once it has acted on the change) for every change.
 */
import Fastify from 'fastify';
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import pino from 'pino';
import { parseConfig } from '../../../appliance/core/config';
import { systemClock } from '../../../appliance/core/clock';
import { openDatabase } from '../../../appliance/core/db';
import { createLogger } from '../../../appliance/core/log';
import type { ClientRecord } from '../../../appliance/core/model';
import { FatalError } from '../../../appliance/core/service';
import { BootPolicy } from '../../../appliance/boot/boot-policy';
import { procNeighbours } from '../../../appliance/boot/neighbours';
import { ScriptTokens } from '../../../appliance/boot/script-tokens';
import { bootRoutes } from '../../../appliance/http/routes/boot';
import { LinkWatcher } from '../../../appliance/core/link-watch';
import { DhcpServer } from '../../../appliance/dhcp/server';
import { BootEventStore } from '../../../appliance/telemetry/boot-events';

interface RunnerSpec {
  /** A partial appliance config (dhcp, boot, http, iscsi sections). */
  config: unknown;
  serverAddress: string;
  dbFile: string;
  clients: ClientRecord[];
  /** Serve /boot/<mac>.ipxe on config.http.port. */
  http?: boolean;
  logLevel?: string;
  /** Do not print EVENT lines (benchmarks). */
  quiet?: boolean;
  /** Record events in a BootEventStore on dbFile, opened with the appliance's settings (benchmarks). */
  eventStore?: boolean;
  /** Write the JSON log here, asynchronously like the appliance's stdout logger, instead of stdout. */
  logFile?: string;
  /** Follow dhcp.interface with a LinkWatcher polling every intervalMs (default 500). */
  watch?: { intervalMs?: number };
}

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8')) as RunnerSpec;
const cfg = parseConfig(spec.config);
const level = spec.logLevel ?? 'warn';
const log = spec.logFile
  ? pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: spec.logFile, sync: false }))
  : createLogger({ level, format: 'json' });
const byMac = new Map(spec.clients.map((c) => [c.mac, c]));
const clients = { byMac: (m: string) => byMac.get(m) };
const db = spec.eventStore ? openDatabase(spec.dbFile) : new Database(spec.dbFile);
if (!spec.eventStore) db.pragma('journal_mode = WAL');
const events = spec.eventStore
  ? new BootEventStore(db, systemClock)
  : spec.quiet
    ? undefined
    : { record: (e: unknown) => console.log(`EVENT ${JSON.stringify(e)}`) };
const tokens = new ScriptTokens({ clock: systemClock, ttlMs: cfg.boot.scriptTokenSeconds * 1000 });
const policy = new BootPolicy({
  boot: cfg.boot,
  clients,
  httpPort: cfg.http.port,
  iscsiPort: cfg.iscsi.port,
  log,
  clock: systemClock,
  tokens: spec.http ? tokens : undefined,
});
const network = spec.watch ? new LinkWatcher({ interface: cfg.dhcp.interface, clock: systemClock, log, intervalMs: spec.watch.intervalMs ?? 500 }) : undefined;
const server = new DhcpServer({
  config: cfg.dhcp,
  serverAddress: spec.serverAddress,
  clients,
  policy,
  db,
  clock: systemClock,
  log,
  events,
  tftpPort: 69,
  network,
});
network?.onChange((s) => {
  console.log(`NETWORK ${JSON.stringify(s)}`);
  // The service rebinds asynchronously (its own listener runs first): report once it settled.
  const report = (n: number) => {
    const st = server.status();
    const settled = st.state === 'failed' || !s.address || (st.state === 'running' && server.serverAddress === s.address);
    if (n > 0 && !settled) setTimeout(() => report(n - 1), 50);
    else console.log(`DHCP ${JSON.stringify({ state: st.state, listen: st.listen, detail: st.detail, address: server.serverAddress })}`);
  };
  setTimeout(() => report(40), 20);
});

const http = spec.http ? Fastify() : undefined;
if (http) {
  const ctx = () => ({
    clients,
    serverAddress: server.serverAddress,
    httpPort: cfg.http.port,
    iscsiPort: cfg.iscsi.port,
    unknownClients: cfg.boot.unknownClients,
    archOf: (mac: string) => policy.archOf(mac),
    events,
    log,
  });
  // The records are fixed here: a boot starts on the client's default disk.
  const registry = { byMac: clients.byMac, beginBoot: async (mac: string) => ({ client: byMac.get(mac)!, reason: 'default' as const }) };
  void http.register(bootRoutes(ctx, () => policy.binaries, registry, { tokens, neighbours: procNeighbours(), now: () => systemClock.now() }));
  http.addHook('onSend', async (req, reply, payload) => {
    const body = typeof payload === 'string' ? payload : '';
    const url = req.url.replace(/\?t=[^&]*/, '?t=one-time');
    console.log(
      `HTTP ${JSON.stringify({ url, peer: req.socket.remoteAddress, status: reply.statusCode, credentials: /^set password/m.test(body), sanboot: /^sanboot /m.test(body) })}`,
    );
    return payload;
  });
}

async function main(): Promise<void> {
  // Without bound sockets (waiting for an address) nothing else keeps the process alive.
  if (network) setInterval(() => undefined, 1 << 30);
  try {
    await network?.start();
    await server.start();
  } catch (err) {
    console.log(`FATAL ${(err as Error).message}`);
    db.close();
    process.exit(err instanceof FatalError ? 3 : 4);
  }
  if (http) await http.listen({ port: cfg.http.port, host: server.serverAddress });
  console.log(`READY ${JSON.stringify(server.status())}`);
}

process.on('SIGTERM', () => {
  void (async () => {
    await server.stop();
    await network?.stop();
    await http?.close();
    console.log(`STOPPED ${JSON.stringify(server.status().counters)}`);
    db.close();
    process.exit(0);
  })();
});
void main();
