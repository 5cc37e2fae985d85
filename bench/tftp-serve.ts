/**
 * Runs the TFTP server alone (for manual checks and the dnsmasq bench):
 * npx tsx bench/tftp-serve.ts ROOT [PORT] [HOST]
 */
import { systemClock } from '../appliance/core/clock';
import { createLogger } from '../appliance/core/log';
import { DirectoryFileSource } from '../appliance/tftp/file-source';
import { TftpServer } from '../appliance/tftp/server';

const [root = '.', port = '6969', host = '127.0.0.1'] = process.argv.slice(2);
const server = new TftpServer({
  host,
  port: Number(port),
  files: new DirectoryFileSource([root]),
  clock: systemClock,
  log: createLogger({ level: process.env.TFTP_LOG ?? 'warn', format: 'json' }),
  timeoutSeconds: 2,
  retries: 5,
  maxTransfers: 256,
});
void server.start().then(() => {
  process.stdout.write(`listening ${server.port}\n`);
  const stop = () => void server.stop().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
