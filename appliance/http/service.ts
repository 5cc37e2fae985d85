import type { FastifyInstance } from 'fastify';
import { bindError, type Service, type ServiceStatus } from '../core/service';

/** Runs the fastify app as a Service: listen on start, close (draining requests) on stop. */
export class HttpService implements Service {
  readonly name = 'http';
  private state: ServiceStatus['state'] = 'stopped';
  private requests = 0;
  private address = '';

  constructor(
    private readonly app: FastifyInstance,
    private readonly host: string,
    private readonly port: number,
  ) {
    app.addHook('onRequest', async () => {
      this.requests++;
    });
  }

  async start(): Promise<void> {
    this.state = 'starting';
    try {
      await this.app.listen({ host: this.host, port: this.port });
    } catch (err) {
      this.state = 'failed';
      throw bindError('HTTP', this.host, this.port, err);
    }
    const addr = this.app.server.address();
    this.address = typeof addr === 'object' && addr ? `tcp ${addr.address}:${addr.port}` : String(addr);
    this.state = 'running';
  }

  /** The bound port (useful when configured as 0). */
  get boundPort(): number {
    const addr = this.app.server.address();
    return typeof addr === 'object' && addr ? addr.port : this.port;
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopping';
    await this.app.close();
    this.state = 'stopped';
  }

  status(): ServiceStatus {
    return { state: this.state, listen: this.address ? [this.address] : [], counters: { requests: this.requests } };
  }
}
