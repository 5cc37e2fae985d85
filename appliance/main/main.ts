// First: sets the file I/O thread pool's size before anything can start the pool.
import '../core/io-threads';
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { apiVerbs } from '../cli/verbs';
import { localVerbs } from '../cli/local-verbs';

import { CliError } from '../cli/api-client';
import { adminTokenPath } from '../core/admin-token';
import { removeRuntimeInfo, writeRuntimeInfo } from '../core/runtime-info';
import { systemClock } from '../core/clock';
import { ConfigError, loadConfig, type Config } from '../core/config';
import { createLogger } from '../core/log';
import { FatalError } from '../core/service';
import { applianceVersion } from '../core/version';

/** Every verb but serve, in the order --help lists them. */
const verbs = [...apiVerbs, ...localVerbs];

const HELP = `netboot appliance ${applianceVersion()}: diskless PCs boot their own disk over the network

usage: appliance <verb> [--config FILE] [--json]

verbs:
  serve                 run the appliance (DHCP/proxyDHCP, TFTP, iPXE scripts, iSCSI, web UI and API)
${verbs.map((v) => `  ${v.usage.padEnd(22)}${v.usage.length > 21 ? '\n' + ' '.repeat(24) : ''}${v.summary}`).join('\n')}

options:
  --config FILE         JSON configuration (default: embedded defaults, state in ./var)
  --json                machine-readable output
  --help, --version
`;

function configOrExit(file: string | undefined): Readonly<Config> {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      process.exit(2);
    }
    throw err;
  }
}

async function serve(config: Readonly<Config>): Promise<void> {
  const log = createLogger(config.log);
  // Loaded lazily so the CLI verbs start fast (the bundle evaluates a module on first use).
  const { createAppliance } = await import('./appliance');
  let appliance: Awaited<ReturnType<typeof createAppliance>>;
  try {
    appliance = await createAppliance(config, { log, clock: systemClock, version: applianceVersion() });
  } catch (err) {
    // E.g. the data directory is not writable, or another process owns the image store.
    log.fatal({ err: (err as Error).message }, 'cannot start');
    process.stderr.write(`appliance: cannot start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  let stopping = false;
  const shutdown = async (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'stopping');
    const force = setTimeout(() => {
      log.error('services did not stop within 10 s; exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    await appliance.stop();
    removeRuntimeInfo(resolve(config.dataDir));
    log.info('stopped');
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM', 0));
  process.on('SIGINT', () => void shutdown('SIGINT', 0));
  try {
    await appliance.start();
  } catch (err) {
    const msg = err instanceof FatalError ? err.message : ((err as Error).stack ?? String(err));
    log.fatal({ err: msg }, 'cannot start');
    process.stderr.write(`appliance: cannot start: ${msg}\n`);
    await appliance.stop().catch(() => undefined);
    process.exit(1);
  }
  const port = appliance.httpService.boundPort;
  const host = config.http.host === '0.0.0.0' ? 'localhost' : config.http.host;
  writeRuntimeInfo(resolve(config.dataDir), { pid: process.pid, httpPort: port });
  log.info(
    { url: `http://${host}:${port}/`, token: adminTokenPath(resolve(config.dataDir)), serverAddress: appliance.serverAddress },
    `appliance running: open http://${host}:${port}/ (admin token in ${adminTokenPath(resolve(config.dataDir))})`,
  );
}

/** Entry point of dist/appliance.cjs. */
export async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}`);
    process.exit(2);
  }
  const { values, positionals } = parsed;
  if (values.version) return void process.stdout.write(applianceVersion() + '\n');
  const [verb, ...args] = positionals;
  if (values.help || !verb || verb === 'help') return void process.stdout.write(HELP);
  const config = configOrExit(values.config);
  if (verb === 'serve') return serve(config);
  const v = verbs.find((x) => x.name === verb);
  if (!v) {
    process.stderr.write(`unknown verb "${verb}"\n\n${HELP}`);
    process.exit(2);
  }
  try {
    await v.run(args, config, { json: values.json ?? false });
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`appliance: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    throw err;
  }
}

void main(process.argv.slice(2));
