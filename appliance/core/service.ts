/**
 * A long-running part of the appliance (a protocol server, the HTTP API, a scheduler).
 * main/main.ts starts services in order and stops them in reverse on SIGTERM/SIGINT or on the
 * first fatal error. start() resolves once the service is listening; it rejects with a
 * FatalError naming the port when a socket cannot be bound. stop() must close listeners, let
 * in-flight work finish or make it durable, and cancel every timer.
 */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** For GET /api/status and /metrics. Cheap; called often. */
  status(): ServiceStatus;
}

export type ServiceState = 'stopped' | 'starting' | 'running' | 'stopping' | 'failed' | 'disabled';

export interface ServiceStatus {
  state: ServiceState;
  /** Where it listens, e.g. ["udp 0.0.0.0:67", "tcp 0.0.0.0:3260"]. */
  listen: string[];
  /** Monotonic counters exported to /metrics as netboot_<service>_<name>_total. */
  counters: Record<string, number>;
  /** Current values exported to /metrics as gauges (e.g. active sessions). */
  gauges?: Record<string, number>;
  /** Why the service is failed or disabled, for humans. */
  detail?: string;
}

/** An error that should stop the appliance with a clear message (e.g. a port in use). */
export class FatalError extends Error {
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'FatalError';
  }
}

/** Turns a bind error into a FatalError naming the protocol, address and port. */
export function bindError(proto: string, host: string, port: number, err: unknown): FatalError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const why =
    code === 'EADDRINUSE'
      ? 'is already in use'
      : code === 'EACCES'
        ? 'needs privileges (ports below 1024 need CAP_NET_BIND_SERVICE)'
        : code === 'EADDRNOTAVAIL'
          ? 'is not an address of this machine'
          : `cannot be bound (${code ?? String(err)})`;
  return new FatalError(`${proto} port ${port} on ${host} ${why}`, err);
}
