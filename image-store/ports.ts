/**
 * What the image store needs from its host, defined here so the store stands alone (it imports
 * nothing from appliance/): the appliance's clock and pino logger fit these shapes, and so does
 * anything a test or a tool passes.
 */

/** Time, injected: milliseconds since the epoch and one-shot timers that return their cancel. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): () => void;
}

type LogFn = (obj: object, msg?: string) => void;

/** Structured logging, pino-style: log.info({ disk }, 'message'). */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}

/** The real clock (timers unref'd), for tools that run the store on their own. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return () => clearTimeout(t);
  },
};

/** A logger that drops everything. */
export const silentLog: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLog,
};
