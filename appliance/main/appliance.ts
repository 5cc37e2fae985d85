import type Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { mkdirSync, statfsSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { BootPolicy } from '../boot/boot-policy';
import type { BootScriptContext } from '../boot/http';
import { procNeighbours } from '../boot/neighbours';
import { ScriptTokens } from '../boot/script-tokens';
import { ClientRegistry } from '../clients/registry';
import { ClientTargets } from '../clients/targets';
import type { StoreBackend } from '../clients/disk-store';
import { DhcpServer } from '../dhcp/server';
import { buildHttpApp, type RoutePlugin } from '../http/app';
import { bootRoutes } from '../http/routes/boot';
import { clientRoutes, type SessionView } from '../http/routes/clients';
import { imageRoutes } from '../http/routes/images';
import { metricsRoutes } from '../http/routes/metrics';
import { statusRoutes, type StorageUsage } from '../http/routes/status';
import { systemRoutes } from '../http/routes/system';
import { uiRoutes } from '../http/routes/ui';
import { HttpService } from '../http/service';
import { uiAuth } from '../http/ui-auth';
import { ImportJobs } from '../images/import-jobs';
import { ensureImportDir, importDirs } from '../images/import-paths';
import { ImageFlagStore } from '../images/image-flags';
import { SnapshotScheduler } from '../backups/snapshot-scheduler';
import { clientUseRoutes } from '../http/routes/client-uses';
import { IscsiServer } from '../iscsi/server';
import { GC_PACE_BYTES, gcPacer } from '../core/gc-pacer';
import { MdnsAdvertiser } from '../mdns/advertiser';
import { bootingMacs } from '../ra/policy';
import { findRaHelper, RaResponder } from '../ra/responder';
import { readRuntimeSettings, writeRuntimeSettings } from '../settings/runtime-settings';
import { SystemCollector } from '../storage/collector';
import { BootEventStore } from '../telemetry/boot-events';
import { EventBatch } from '../telemetry/event-batch';
import { chainFileSources, DirectoryFileSource, defaultTftpRoots } from '../tftp/file-source';
import { ext4Opener } from '../boot/disk-files/ext4';
import { fatOpener } from '../boot/disk-files/kernel-lookup';
import { GrubFileSource, volumeReader } from '../boot/grub-files';
import { TftpServer } from '../tftp/server';
import { ImageStore } from '../../image-store/store';
import { RbdStore } from '../../image-store/rbd/store';
import { ensureAdminToken } from '../core/admin-token';
import type { Clock } from '../core/clock';
import type { Config } from '../core/config';
import { openDatabase, nativeBindingPath } from '../core/db';
import { startAll, stopAll } from '../core/lifecycle';
import type { Logger } from '../core/log';
import { LinkWatcher } from '../core/link-watch';
import { resolveServerAddress } from '../core/network';
import type { Service } from '../core/service';

/** The wired appliance: every service, in start order, and what they share. */
export interface Appliance {
  readonly services: readonly Service[];
  readonly http: FastifyInstance;
  readonly httpService: HttpService;
  readonly token: string;
  readonly serverAddress: string;
  readonly db: Database.Database;
  readonly store: StoreBackend;
  readonly clients: ClientRegistry;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface ApplianceDeps {
  log: Logger;
  clock: Clock;
  version: string;
}

/**
 * Builds every part from the config: the databases and stores first, then the protocol
 * services in the order a boot uses them (TFTP, iSCSI, DHCP), the HTTP API after them so it
 * reports on all of them, mDNS last (announce only what already answers). Nothing listens
 * until start().
 */
export async function createAppliance(config: Readonly<Config>, deps: ApplianceDeps): Promise<Appliance> {
  const { log, clock } = deps;
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const token = ensureAdminToken(dataDir);
  // The TFTP extra root (custom iPXE builds, files an admin drops in) lives under dataDir by default.
  if (!config.tftp.root) mkdirSync(join(dataDir, 'tftp'), { recursive: true });
  // Server-side imports read only from here and images.importDirs (issue #13: no host file through an import).
  ensureImportDir(dataDir);
  const db = openDatabase(join(dataDir, 'appliance.db'));
  // Registered clients keep their boot timelines; other MACs (spoofable by anyone on the
  // segment) are bounded (issue #13). `clients` is built below; events are recorded only later.
  const events = new BootEventStore(db, clock, { isClient: (mac) => clients.byMac(mac) !== undefined });
  // Every service records through one batch (telemetry/event-batch.ts): written after the replies,
  // one commit per window, flushed at stop. An event of an unknown MAC may put it on the
  // router-solicitation allow-list (issue #17): the responder hears of it as it is written.
  const bootEvents = new EventBatch(
    {
      record(event) {
        events.record(event);
        if (!clients.byMac(event.mac)) ra.refresh();
      },
    },
    { log: log.child({ service: 'telemetry' }), clock, db },
  );
  const serverAddress = resolveServerAddress(config.serverAddress, config.dhcp.interface);
  // Issue #14: the served interface is watched (carrier, address, lease); 'auto' follows its
  // address, an explicit serverAddress stays. `serverAddress` above is only the start-time guess.
  const network = new LinkWatcher({ interface: config.dhcp.interface, clock, log });
  const currentAddress = () => (config.serverAddress !== 'auto' ? config.serverAddress : network.link().address || serverAddress);
  const startedAt = clock.now();
  const child = (service: string) => log.child({ service });

  const rbd = config.store.backend === 'rbd' ? config.store.rbd! : undefined;
  const store: StoreBackend = rbd
    ? await RbdStore.open({
        dir: join(dataDir, 'store-rbd'),
        clock,
        log: child('store'),
        rbd: { pool: rbd.pool, conf: rbd.conf, id: rbd.user, keyring: rbd.keyring, prefix: rbd.prefix },
        sqliteBinding: nativeBindingPath(),
      })
    : ImageStore.open({
        dir: join(dataDir, 'store'),
        clock,
        log: child('store'),
        segmentMiB: config.store.segmentMiB,
        chunkKiB: config.store.chunkKiB,
        reserveMiB: config.store.reserveMiB,
        reservationMiB: config.store.reservationMiB,
        sqliteBinding: nativeBindingPath(),
      });
  // `jobs` is built below; the registry asks it only when a verb names an image that is not ready.
  const clients = new ClientRegistry(db, store, {
    iqnPrefix: config.iscsi.iqnPrefix,
    clock,
    chapByDefault: config.boot.chapByDefault,
    importing: (name) => jobs.get(name),
  });

  // --- protocol services -------------------------------------------------------------------
  const tftp = new TftpServer({
    host: config.tftp.host,
    port: config.tftp.port,
    // The GRUB road's signed binaries, dispatcher and per-client files first (issue #15).
    files: chainFileSources({ resolve: (file, peer) => grubFiles.resolve(file, peer) }, new DirectoryFileSource(defaultTftpRoots({ ...config, dataDir }))),
    clock,
    log: child('tftp'),
    timeoutSeconds: config.tftp.timeoutSeconds,
    retries: config.tftp.retries,
    maxTransfers: config.tftp.maxTransfers,
    events: bootEvents,
    macForAddress: (ip) => dhcp.macForAddress(ip),
  });
  const iscsi = new IscsiServer({
    host: config.iscsi.host,
    port: config.iscsi.port,
    directory: new ClientTargets(clients, store),
    clock,
    log,
    events: bootEvents,
    maxConnections: config.iscsi.maxConnections,
    nopInIntervalSeconds: config.iscsi.nopInIntervalSeconds,
    maxConnectionsPerAddress: config.iscsi.maxConnectionsPerAddress,
    loginTimeoutSeconds: config.iscsi.loginTimeoutSeconds,
    discoveryTimeoutSeconds: config.iscsi.discoveryTimeoutSeconds,
    maxQueuedDataInMiB: config.iscsi.maxQueuedDataInMiB,
    gcPacer: gcPacer(GC_PACE_BYTES),
    // A getter over the current address (issue #14). IscsiServer still caches its connection
    // context, portal included, at the first connection: test/network/iscsi-portal.test.ts.
    get portalAddress() {
      return currentAddress();
    },
  });
  // One-time script links (issue #13): minted into each DHCP answer, redeemed by the /boot route.
  const scriptTokens = new ScriptTokens({ clock, ttlMs: config.boot.scriptTokenSeconds * 1000 });
  const policy = new BootPolicy({
    boot: config.boot,
    clients,
    httpPort: config.http.port,
    iscsiPort: config.iscsi.port,
    log: child('boot'),
    clock,
    tokens: scriptTokens,
    bundleDir: __dirname,
    // boot.unknownClients 'auto' follows the DHCP mode, which the settings page can change.
    dhcpMode: () => dhcpMode,
  });
  const grubFiles = new GrubFileSource({
    clients,
    onGrubRoad: (c) => policy.grubRoad(c),
    signed: policy.signed,
    openDisk: async (c) => {
      const vol = store.openVolume(c.disk, { readOnly: true });
      return { read: volumeReader(vol), size: vol.blockSize * vol.blockCount, close: async () => void (await vol.close()) };
    },
    openers: [fatOpener, ext4Opener],
    neighbours: procNeighbours('/proc/net/arp', (err) => child('boot').warn({ err }, 'cannot read the neighbour table: GRUB road files are refused')),
    serverAddress: currentAddress,
    iscsiPort: config.iscsi.port,
    uiHint: config.mdns.enabled ? `Assign it at http://${config.mdns.name}.local` : "Assign it in the appliance's web UI",
    openHostFile: (path) => new DirectoryFileSource([{ dir: dirname(path), trustSymlinks: true }]).resolve(basename(path)),
    events: bootEvents,
    log: child('boot'),
  });
  const settings = readRuntimeSettings(dataDir);
  let dhcpMode = settings.dhcp?.mode ?? config.dhcp.mode;
  // Mode changes run one at a time: two at once each started a DHCP service, and both answered.
  let modeChange: Promise<void> = Promise.resolve();
  const makeDhcp = (mode: Config['dhcp']['mode']) =>
    new DhcpServer({
      config: { ...config.dhcp, mode },
      serverAddress: config.serverAddress === 'auto' ? 'auto' : serverAddress,
      tftpPort: config.tftp.port,
      clients,
      policy,
      db,
      clock,
      log,
      events: bootEvents,
      network,
    });
  let dhcp = makeDhcp(dhcpMode);

  const enroll = async (mac: string) => clients.create(mac, config.boot.enrollImage, { name: `auto-${mac.replace(/:/g, '')}` });
  const bootCtx = (): BootScriptContext => ({
    clients,
    serverAddress: dhcp.serverAddress || currentAddress(),
    httpPort: httpService.boundPort,
    iscsiPort: iscsi.port || config.iscsi.port,
    unknownClients: config.boot.unknownClients,
    dhcpMode,
    mdnsHost: config.mdns.enabled ? `${config.mdns.name}.local` : '',
    enroll: config.boot.unknownClients === 'enroll' ? enroll : undefined,
    archOf: (mac) => policy.archOf(mac),
    events: bootEvents,
    log: child('boot'),
  });

  // --- HTTP: API, boot scripts, UI -----------------------------------------------------------
  const sessions = (): SessionView[] =>
    iscsi
      .sessions()
      .filter((s) => s.target !== null)
      .map((s) => ({ ...s, id: String(s.id), target: s.target! }));
  const system = new SystemCollector();
  const storage = async (): Promise<StorageUsage> => {
    const fs = statfsSync(dataDir);
    const u = store.usage();
    return {
      dataDir,
      filesystem: { totalBytes: fs.blocks * fs.bsize, freeBytes: fs.bfree * fs.bsize, availableBytes: fs.bavail * fs.bsize },
      store: { capacityBytes: u.capacityBytes, usedBytes: u.usedBytes, freeBytes: u.freeBytes },
    };
  };
  const jobs = new ImportJobs(store, clock, child('images'));
  const flags = new ImageFlagStore(db);
  const scheduler = new SnapshotScheduler(clients, store, clock, child('scheduler'));
  const ui = uiAuth({ db, dataDir, clock, token, log: child('http') });

  let services: Service[] = [];
  const routes: RoutePlugin[] = [
    statusRoutes({
      version: deps.version,
      startedAt,
      now: () => clock.now(),
      serverAddress: currentAddress,
      network: () => network.link(),
      services: () => services,
      storage,
      storeHealth: () => store.health(),
      memory: () => process.memoryUsage(),
    }),
    metricsRoutes(() => services),
    imageRoutes({ store, clients, jobs, flags, uploadDir: join(dataDir, 'uploads'), importDirs: importDirs(dataDir, config.images.importDirs) }),
    clientUseRoutes({ clients, store, flags, scheduler }),
    clientRoutes({
      clients,
      store,
      events,
      sessions,
      iscsiPort: () => iscsi.port || config.iscsi.port,
      disconnect: (t) => iscsi.disconnect(t),
      // Read per request: a getter, so root paths follow the address (issue #14).
      get serverAddress() {
        return currentAddress();
      },
      unknownMode: () => ({ mode: policy.unknownClients(), setting: config.boot.unknownClients, dhcpMode }),
    }),
    systemRoutes({
      storage: () => system.storage(dataDir),
      health: () => system.health(),
      storeUsage: () => store.usage(),
      settings: () => ({ dhcp: { mode: dhcpMode, interface: config.dhcp.interface, canServeFull: config.dhcp.range.length === 2 } }),
      setDhcpMode: (mode) =>
        (modeChange = modeChange
          .catch(() => undefined)
          .then(async () => {
            if (mode === dhcpMode) return;
            const old = dhcp;
            await old.stop();
            const next = makeDhcp(mode);
            try {
              await next.start();
            } catch (err) {
              dhcp = makeDhcp(dhcpMode);
              services = services.map((s) => (s === old ? dhcp : s));
              await dhcp.start().catch((e) => log.error({ err: e }, 'could not restart DHCP in its previous mode'));
              throw err;
            }
            dhcp = next;
            services = services.map((s) => (s === old ? next : s));
            dhcpMode = mode;
            writeRuntimeSettings(dataDir, { ...readRuntimeSettings(dataDir), dhcp: { mode } });
            log.info({ mode }, 'DHCP mode changed');
          })),
    }),
    bootRoutes(bootCtx, () => policy.binaries, clients, {
      tokens: scriptTokens,
      neighbours: procNeighbours('/proc/net/arp', (err) =>
        child('boot').warn({ err }, 'cannot read the neighbour table: one-time boot links only work for DHCP-bound addresses'),
      ),
      now: () => clock.now(),
    }),
    ui.routes,
    uiRoutes(),
  ];
  // Names the UI and API answer to besides localhost and the box's interface addresses (DNS rebinding).
  const hosts = { names: [`${config.mdns.name}.local`, serverAddress, ...config.http.allowedHosts] };
  const http = await buildHttpApp({ log: child('http'), token, routes, authenticators: [ui.authenticator], hosts });
  const httpService = new HttpService(http, config.http.host, config.http.port);
  const mdns = config.mdns.enabled
    ? new MdnsAdvertiser({
        name: config.mdns.name,
        httpPort: config.http.port,
        version: deps.version,
        interface: config.dhcp.interface || undefined,
        log,
        clock,
      })
    : undefined;
  // ciao would notice a new address only on its own 15 s poll: announce again at once.
  if (mdns) network.onChange((now, before) => void (now.address && now.address !== before.address && mdns.refresh()));

  // iPXE waits for an IPv6 router advertisement before it uses its DHCP answer: answer the
  // solicitations of the clients this appliance boots (appliance/ra/, issue #17).
  const raInterface = config.ra.interface || config.dhcp.interface;
  const raHelper = findRaHelper(config.ra.helper, __dirname);
  const ra = new RaResponder({
    interface: raInterface,
    helperPath: raHelper ?? '',
    clock,
    log: child('ra'),
    booting: () =>
      bootingMacs(
        clients.list().map((c) => c.mac),
        events.unknownClients(),
        policy.unknownClients(),
        clock.now(),
      ),
    probeMs: config.ra.probeSeconds * 1000,
    holdMs: config.ra.routerHoldSeconds * 1000,
    disabledReason: !config.ra.enabled
      ? 'ra.enabled is false'
      : !raInterface
        ? 'no interface (set dhcp.interface or ra.interface)'
        : !raHelper
          ? `the ra-responder helper is missing (${config.ra.helper || 'beside the bundle'}): run make build`
          : undefined,
  });

  const enabled = <T>(on: boolean, s: T) => (on ? [s] : []);
  services = [
    network,
    ...enabled(config.tftp.enabled, tftp),
    ...enabled(config.iscsi.enabled, iscsi),
    dhcp,
    ra,
    scheduler,
    httpService,
    ...(mdns ? [mdns] : []),
  ];

  let started = false;
  let closed = false;
  return {
    get services() {
      return services;
    },
    http,
    httpService,
    token,
    serverAddress,
    db,
    store,
    clients,
    async start() {
      await startAll(services, log);
      started = true;
    },
    async stop() {
      if (closed) return;
      closed = true;
      jobs.stopAll();
      // Services stop in reverse: mDNS and HTTP first (no new work), iSCSI flushes and closes
      // every volume, then the store makes everything durable and closes its database.
      if (started) await stopAll(services, log);
      bootEvents.flush();
      await store.close();
      db.close();
    },
  };
}
