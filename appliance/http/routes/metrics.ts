import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Service } from '../../core/service';

const metricName = (s: string) => s.replace(/[^a-zA-Z0-9_]/g, '_').replace(/^([0-9])/, '_$1');

/** Prometheus text for every service's counters (`_total`) and gauges, labelled by service. */
export function serviceMetricsText(services: readonly Service[]): string {
  const counters = new Map<string, string[]>();
  const gauges = new Map<string, string[]>();
  for (const s of services) {
    const st = s.status();
    const label = `{service="${metricName(s.name)}"}`;
    const add = (map: Map<string, string[]>, name: string, line: string) => {
      if (!map.has(name)) map.set(name, []);
      map.get(name)!.push(line);
    };
    add(gauges, 'netboot_service_up', `netboot_service_up${label} ${st.state === 'running' ? 1 : 0}`);
    for (const [k, v] of Object.entries(st.counters)) {
      const n = `netboot_${metricName(s.name)}_${metricName(k)}_total`;
      add(counters, n, `${n} ${v}`);
    }
    for (const [k, v] of Object.entries(st.gauges ?? {})) {
      const n = `netboot_${metricName(s.name)}_${metricName(k)}`;
      add(gauges, n, `${n} ${v}`);
    }
  }
  let out = '';
  for (const [n, lines] of counters) out += `# TYPE ${n} counter\n${lines.join('\n')}\n`;
  for (const [n, lines] of gauges) out += `# TYPE ${n} gauge\n${lines.join('\n')}\n`;
  return out;
}

/**
 * GET /metrics: process metrics (prom-client's defaults: CPU, RSS, heap, event-loop lag) and
 * per-service counters. Not under /api: Prometheus scrapers usually carry no token, and these
 * numbers hold no secrets (no names, MACs or addresses).
 *
 * prom-client and its default collectors (an event-loop delay histogram, a GC observer that
 * records every collection) are loaded at the first scrape: a box nobody scrapes does not carry
 * them (issue #16, a 1 GiB board). The event-loop and GC figures count from that scrape on.
 */
export function metricsRoutes(services: () => readonly Service[]) {
  let registry: Promise<Registry> | undefined;
  const load = () =>
    (registry ??= import('prom-client').then(({ Registry, collectDefaultMetrics }) => {
      const r = new Registry();
      collectDefaultMetrics({ register: r, prefix: 'netboot_' });
      return r;
    }));
  return async (app: FastifyInstance) => {
    app.get('/metrics', { config: { public: true } }, async (_req, reply) => {
      const r = await load();
      reply.header('Content-Type', r.contentType);
      return (await r.metrics()) + serviceMetricsText(services());
    });
  };
}
