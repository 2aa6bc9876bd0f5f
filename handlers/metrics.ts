import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/** The Prometheus series every adapter that can be scraped exposes; one registry per app, not the global one. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'modelfn_requests_total',
    help: 'Requests handled, by route pattern, model and status code.',
    labelNames: ['route', 'model', 'status'] as const,
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: 'modelfn_request_duration_seconds',
    help: 'Time from request received to response ready, by route pattern and model.',
    labelNames: ['route', 'model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchRows = new Histogram({
    name: 'modelfn_batch_rows',
    help: 'Rows per tensor run (micro-batched requests stacked together).',
    labelNames: ['model'] as const,
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });
  readonly batchRequests = new Histogram({
    name: 'modelfn_batch_requests',
    help: 'Requests stacked into one tensor run.',
    labelNames: ['model'] as const,
    buckets: BATCH_BUCKETS,
    registers: [this.registry],
  });
  readonly modelLoadSeconds = new Gauge({
    name: 'modelfn_model_load_seconds',
    help: 'Time the last successful load of a model took.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  readonly jobs = new Counter({
    name: 'modelfn_jobs_total',
    help: 'Asynchronous jobs by model and event (accepted, succeeded, failed, retried).',
    labelNames: ['model', 'event'] as const,
    registers: [this.registry],
  });

  // Labelled children cached by key: prom-client hashes the label object on every unlabelled call.
  private readonly requestSeries = new Map<string, { inc(): void; observe(seconds: number): void }>();
  private readonly batchSeries = new Map<string, { rows: { observe(value: number): void }; requests: { observe(value: number): void } }>();

  recordRequest(route: string, model: string, status: number, seconds: number): void {
    const key = `${route}\0${model}\0${status}`;
    let series = this.requestSeries.get(key);
    if (!series) {
      const counter = this.requests.labels({ route, model, status });
      const histogram = this.requestDuration.labels({ route, model });
      series = { inc: () => counter.inc(), observe: (value) => histogram.observe(value) };
      this.requestSeries.set(key, series);
    }
    series.inc();
    series.observe(seconds);
  }

  recordBatch(model: string, rows: number, requests: number): void {
    let series = this.batchSeries.get(model);
    if (!series) {
      series = { rows: this.batchRows.labels({ model }), requests: this.batchRequests.labels({ model }) };
      this.batchSeries.set(model, series);
    }
    series.rows.observe(rows);
    series.requests.observe(requests);
  }

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'modelfn_' });
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
