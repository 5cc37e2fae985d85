/**
 * One MdnsAdvertiser in its own process for test/network/mdns-follow.test.ts: prints a JSON line
 * once announced, and again after each SIGUSR2, which calls refresh() (what the appliance does
 * when its address changes, issue #14). argv: <name> <interface>.
 */
import { MdnsAdvertiser } from '../../appliance/mdns/advertiser';
import { silentLogger } from '../../appliance/core/log';

const [name = 'netboot', iface] = process.argv.slice(2);
const adv = new MdnsAdvertiser({ name, httpPort: 8080, version: '0.0.0', interface: iface, log: silentLogger() });
const announced = () =>
  adv.whenAdvertised().then(
    (names) => process.stdout.write(`${JSON.stringify({ names, status: adv.status() })}\n`),
    (err: Error) => process.stdout.write(`${JSON.stringify({ error: err.message })}\n`),
  );
void adv.start().then(announced);
process.on('SIGUSR2', () => void adv.refresh().then(announced));
const stop = () => void adv.stop().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
