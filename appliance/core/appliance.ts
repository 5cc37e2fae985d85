import type Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { mkdirSync, statfsSync } from 'node:fs';
import { resolve } from 'node:path';
import { buildHttpApp, type RoutePlugin } from '../http/app';
import { metricsRoutes } from '../http/routes/metrics';
import { statusRoutes, type StorageUsage } from '../http/routes/status';
import { HttpService } from '../http/service';
import { BootEventStore } from '../telemetry/boot-events';
import { ensureAdminToken } from './admin-token';
import type { Clock } from './clock';
import type { Config } from './config';
import { openDatabase } from './db';
import { startAll, stopAll } from './lifecycle';
import type { Logger } from './log';
import { resolveServerAddress } from './network';
import type { Service } from './service';

/** The wired appliance: every service, in start order, and what they share. */
export interface Appliance {
  readonly services: readonly Service[];
  readonly http: FastifyInstance;
  readonly httpService: HttpService;
  readonly token: string;
  readonly serverAddress: string;
  readonly db: Database.Database;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface ApplianceDeps {
  log: Logger;
  clock: Clock;
  version: string;
}

/**
 * Builds every part from the config: the database and stores first, then the protocol
 * services in the order a boot uses them, the HTTP API last so it reports on all of them.
 * Nothing listens until start().
 */
export async function createAppliance(config: Readonly<Config>, deps: ApplianceDeps): Promise<Appliance> {
  const { log, clock } = deps;
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o750 });
  const token = ensureAdminToken(dataDir);
  const db = openDatabase(resolve(dataDir, 'appliance.db'));
  const events = new BootEventStore(db, clock);
  const serverAddress = resolveServerAddress(config.serverAddress, config.dhcp.interface);
  const startedAt = clock.now();

  const services: Service[] = [];
  const routes: RoutePlugin[] = [];

  const storage = async (): Promise<StorageUsage> => {
    const fs = statfsSync(dataDir);
    return {
      dataDir,
      filesystem: { totalBytes: fs.blocks * fs.bsize, freeBytes: fs.bfree * fs.bsize, availableBytes: fs.bavail * fs.bsize },
    };
  };

  let allServices: Service[] = [];
  routes.push(
    statusRoutes({ version: deps.version, startedAt, now: () => clock.now(), serverAddress, services: () => allServices, storage }),
    metricsRoutes(() => allServices),
  );
  void events;

  const http = await buildHttpApp({ log: log.child({ service: 'http' }), token, routes });
  const httpService = new HttpService(http, config.http.host, config.http.port);
  allServices = [...services, httpService];

  let started = false;
  return {
    services: allServices,
    http,
    httpService,
    token,
    serverAddress,
    db,
    async start() {
      await startAll(allServices, log);
      started = true;
    },
    async stop() {
      if (started) await stopAll(allServices, log);
      started = false;
      db.close();
    },
  };
}
