/**
 * Runs one MdnsAdvertiser as its own process (one "appliance"), for the namespace test.
 * argv: <name> <httpPort> <version> [interface]. Prints one JSON line with the advertised
 * names (or {"error"}), then waits for SIGTERM and sends goodbyes.
 */
import { MdnsAdvertiser } from '../../appliance/mdns/advertiser';
import { silentLogger } from '../../appliance/core/log';

const [name = 'netboot', port = '8080', version = '0.0.0', iface] = process.argv.slice(2);
const adv = new MdnsAdvertiser({ name, httpPort: Number(port), version, interface: iface, log: silentLogger() });
const t0 = Date.now();
void adv
  .start()
  .then(() => adv.whenAdvertised())
  .then(
    (names) => process.stdout.write(`${JSON.stringify({ names, status: adv.status(), ms: Date.now() - t0 })}\n`),
    (err: Error) => process.stdout.write(`${JSON.stringify({ error: err.message })}\n`),
  );
const stop = () => void adv.stop().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
