import pino from 'pino';
import pinoPretty from 'pino-pretty';

/** The logger type every service receives (a pino child logger: log.info({ mac }, 'msg')). */
export type Logger = pino.Logger;

export interface LogOptions {
  level: string;
  /** 'auto' = readable when stdout is a terminal, JSON otherwise. */
  format: 'auto' | 'json' | 'pretty';
}

/**
 * The root logger. JSON lines in production (journald keeps them); readable when a terminal
 * is attached. pino-pretty runs in-process (no worker thread) so the single-file bundle works.
 */
export function createLogger(opts: LogOptions): Logger {
  const pretty = opts.format === 'pretty' || (opts.format === 'auto' && process.stdout.isTTY === true);
  if (pretty) {
    return pino({ level: opts.level }, pinoPretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  }
  return pino({ level: opts.level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that drops everything: for tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
