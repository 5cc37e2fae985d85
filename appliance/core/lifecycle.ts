import type { Logger } from './log';
import type { Service } from './service';

/**
 * Starts services in order. If one fails, the ones already started are stopped in reverse
 * order and the error is rethrown, so nothing is left listening.
 */
export async function startAll(services: readonly Service[], log: Logger): Promise<void> {
  const started: Service[] = [];
  for (const s of services) {
    try {
      await s.start();
      started.push(s);
      log.debug({ service: s.name, listen: s.status().listen }, 'service started');
    } catch (err) {
      log.error({ service: s.name, err: (err as Error).message }, 'service failed to start');
      await stopAll(started, log);
      throw err;
    }
  }
}

/** Stops services in reverse order; one failing to stop does not keep the others running. */
export async function stopAll(services: readonly Service[], log: Logger): Promise<void> {
  for (const s of [...services].reverse()) {
    try {
      await s.stop();
    } catch (err) {
      log.error({ service: s.name, err }, 'service failed to stop cleanly');
    }
  }
}
