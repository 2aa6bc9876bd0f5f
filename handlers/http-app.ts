import { addRoute, createRouter, findRoute, type RouterContext } from 'rou3';
import { nodeCrypto } from './builtins.ts';
import { CONTROL_CHARACTER } from './object-store.ts';
import { describeError, InputError, MethodNotAllowedError, NotFoundError, PayloadTooLargeError } from './errors.ts';
import type { JobService } from './jobs.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { ModelRepository } from './model-repository.ts';
import type { StageTimings } from './model-service.ts';

/** An HTTP request as every adapter hands it to the core: the provider's event, translated. */
export interface CoreHttpRequest {
  method: string;
  /** Path with query string, as received. */
  url: string;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  body?: Uint8Array | string;
}

export interface CoreHttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface HttpAppOptions {
  repository: ModelRepository;
  metrics?: Metrics;
  logger?: Logger;
  /** Largest accepted body; adapters that stream the body should stop reading past it. Default 6 MB. */
  bodyLimitBytes?: number;
  serverVersion?: string;
  /** Asynchronous jobs; without it the job routes answer 404. */
  jobs?: JobService;
}

export const DEFAULT_BODY_LIMIT_BYTES = 6 * 1024 * 1024;

interface RouteContext {
  params: Record<string, string | undefined>;
  request: CoreHttpRequest;
  /** Filled by handlers that ran a model, for Server-Timing and the log line. */
  timings?: StageTimings;
  model?: string;
}

interface RouteResult {
  status?: number;
  body: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

type RouteHandler = (context: RouteContext) => Promise<RouteResult> | RouteResult;

interface Route {
  /** The route's pattern as metrics label it. */
  pattern: string;
  handler: RouteHandler;
}

/**
 * The routes every HTTP adapter serves (DESIGN.md), on a transport-neutral request/response pair,
 * so the local server, Lambda, Cloud Functions, Azure and containers answer byte for byte the same.
 */
export function createHttpApp(options: HttpAppOptions) {
  const { repository, metrics, logger } = options;
  const bodyLimitBytes = options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  // rou3 0.7: its routes build in ~1 ms at a cold start (1.x's take ~4); one trailing slash is ignored.
  const router = createRouter<Route>();
  const route = (method: 'GET' | 'POST', pattern: string, handler: RouteHandler) =>
    addRoute(router, method, routingPath(pattern), { pattern, handler });

  const modelOf = (context: RouteContext) => {
    const service = repository.get(context.params.name!);
    context.model = service.name;
    const version = context.params.version;
    if (version !== undefined && version !== service.version) {
      throw new NotFoundError(`model "${service.name}" has no version "${version}"; available: ${service.version}`);
    }
    return service;
  };

  route('GET', '/v2/health/live', () => ({ body: { live: true } }));
  route('GET', '/v2/health/ready', () => {
    const notReady = [
      ...repository.broken.map((model) => ({ name: model.name, error: model.error })),
      ...repository.list().filter((s) => s.runtime.state === 'failed').map((s) => ({ name: s.name, error: s.runtime.loadError })),
    ];
    return notReady.length === 0 ? { body: { ready: true } } : { status: 503, body: { ready: false, models: notReady } };
  });
  route('GET', '/v2', () => ({ body: { name: 'modelfn', version: options.serverVersion ?? '0', extensions: [] } }));
  route('GET', '/v2/repository/index', () => ({
    body: repository.list().map((s) => ({ name: s.name, version: s.version, state: s.runtime.state === 'ready' ? 'READY' : s.runtime.state.toUpperCase() })),
  }));

  for (const prefix of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
    route('GET', prefix, async (context) => ({ body: await modelOf(context).metadata() }));
    route('GET', `${prefix}/ready`, async (context) => {
      const service = modelOf(context);
      const ready = await service.ready();
      return ready
        ? { body: { name: service.name, ready: true } }
        : { status: 503, body: { name: service.name, ready: false, error: service.runtime.loadError } };
    });
    route('POST', `${prefix}/infer`, async (context) => {
      const service = modelOf(context);
      const body = parseJsonBody(context.request);
      const { response, timings } = await service.infer(body);
      context.timings = timings;
      return { body: response };
    });
  }

  route('POST', '/v1/models/:name:predict', async (context) => {
    const service = modelOf(context);
    const body = parseJsonBody(context.request);
    const instances = isObject(body) ? body.instances : undefined;
    const { predictions, timings } = await service.predict(instances);
    context.timings = timings;
    return { body: { predictions } };
  });

  const jobsOf = () => {
    if (!options.jobs) throw new NotFoundError('asynchronous jobs are not enabled on this server');
    return options.jobs;
  };
  // Both answer 202 with the job's id and status once it is stored and queued.
  const submitJob = (submit: 'submit' | 'submitBatch') => async (context: RouteContext): Promise<RouteResult> => {
    const jobs = jobsOf();
    context.model = context.params.name;
    const body = parseJsonBody(context.request);
    const { job, created } = await jobs[submit](context.params.name!, body, context.request.headers['idempotency-key']);
    return {
      status: 202,
      body: { id: job.id, status: job.status },
      headers: { location: `/v1/jobs/${job.id}`, ...(!created && { 'idempotent-replayed': 'true' }) },
    };
  };
  route('POST', '/v1/models/:name/jobs', submitJob('submit'));
  route('POST', '/v1/models/:name/batch', submitJob('submitBatch'));
  route('GET', '/v1/jobs/:id', async (context) => ({ body: await jobsOf().get(context.params.id!) }));
  route('GET', '/v1/dead-letter', async () => ({ body: { jobs: await jobsOf().listDeadLetters() } }));

  route('GET', '/metrics', async () => {
    if (!metrics) throw new NotFoundError('metrics are not enabled');
    const { contentType, body } = await metrics.text();
    return { body, contentType };
  });

  function parseJsonBody(request: CoreHttpRequest): unknown {
    const { body } = request;
    const size = body === undefined ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
    if (size > bodyLimitBytes) throw new PayloadTooLargeError(bodyLimitBytes);
    if (size === 0) throw new InputError('request body is empty; expected JSON');
    const text = typeof body === 'string' ? body : Buffer.from(body!.buffer, body!.byteOffset, body!.byteLength).toString('utf8');
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new InputError(`request body is not valid JSON: ${(error as Error).message}`);
    }
  }

  async function handle(request: CoreHttpRequest): Promise<CoreHttpResponse> {
    const started = performance.now();
    const requestId = request.headers['x-request-id'] || nodeCrypto().randomUUID();
    const queryAt = request.url.indexOf('?');
    const path = queryAt === -1 ? request.url : request.url.slice(0, queryAt);
    const method = request.method.toUpperCase();
    const found = lookup(router, method === 'HEAD' ? 'GET' : method, path);
    const pattern = found ? found.data.pattern : 'unmatched';
    const context: RouteContext = { params: found?.params ?? {}, request };

    let status: number;
    let payload: string;
    let contentType = 'application/json';
    const headers: Record<string, string> = {};
    try {
      if (!found) throw notFoundOrWrongMethod(router, method, path);
      const result = await found.data.handler(context);
      status = result.status ?? 200;
      if (result.headers) Object.assign(headers, result.headers);
      if (result.contentType) {
        contentType = result.contentType;
        payload = String(result.body);
      } else {
        payload = JSON.stringify(result.body);
      }
    } catch (error) {
      const described = describeError(error);
      if (error instanceof MethodNotAllowedError) headers.allow = error.allow.join(', ');
      status = described.status;
      payload = JSON.stringify({ error: described.message });
      if (status >= 500 && status !== 503) logger?.error({ requestId, err: error, path }, 'request failed');
    }

    const totalMs = performance.now() - started;
    headers['content-type'] = contentType;
    headers['x-request-id'] = requestId;
    if (context.timings) headers['server-timing'] = serverTiming(context.timings, totalMs);
    const model = context.model ?? '';
    const timings = context.timings;
    afterResponse(() => {
      metrics?.recordRequest(pattern, model, status, totalMs / 1000);
      logger?.info(
        {
          requestId,
          method,
          path,
          status,
          ms: round(totalMs),
          ...(model && { model }),
          ...(timings && { cold: timings.cold, loadMs: round(timings.loadMs), batchRows: timings.batchRows }),
        },
        'request',
      );
    });
    return { status, headers, body: method === 'HEAD' ? '' : payload };
  }

  return { handle, bodyLimitBytes };
}

export type HttpApp = ReturnType<typeof createHttpApp>;

/**
 * A custom verb ends the last segment after a colon (`/v1/models/anomaly:predict`, the v1 protocol's). rou3 matches
 * whole segments, so the verb is routed as a segment of its own, marked with a NUL that no HTTP path can carry:
 * `/v1/models/:name:predict` is registered as `/v1/models/:name/\0predict`, and a request is looked up the same way.
 */
const CUSTOM_VERB = /^(.*\/[^/]+):([A-Za-z]+)(\/?)$/;

function routingPath(path: string): string {
  return path.includes(':') ? path.replace(CUSTOM_VERB, '$1/\0$2$3') : path;
}

/** The route for a path as clients send it: duplicate slashes folded, params percent-decoded. */
function lookup(router: RouterContext<Route>, method: string, path: string): { data: Route; params: Record<string, string> } | undefined {
  // No route has a control character (a hand-made event could carry one, and the custom verb's mark is one).
  if (CONTROL_CHARACTER.test(path)) return undefined;
  const found = findRoute(router, method, routingPath(path.includes('//') ? path.replace(/\/{2,}/g, '/') : path));
  if (!found) return undefined;
  const params: Record<string, string> = {};
  for (const [name, value] of Object.entries(found.params ?? {})) params[name] = decodePathSegment(value);
  return { data: found.data, params };
}

function decodePathSegment(value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // malformed: kept as sent, so it names no model or job and answers 404
  }
}

function notFoundOrWrongMethod(router: RouterContext<Route>, method: string, path: string): Error {
  const allowed = (['GET', 'POST'] as const).filter((other) => other !== method && lookup(router, other, path));
  if (allowed.length > 0) {
    return new MethodNotAllowedError(`method ${method} is not allowed on ${path}; use ${allowed.join(' or ')}`, allowed);
  }
  return new NotFoundError(`no route for ${method} ${path}`);
}

const telemetryQueue: (() => void)[] = [];

/**
 * Metrics and the log line are recorded once the response is on its way: run in one batch per event-loop
 * turn (after the adapter's write), they add nothing to the latency a caller sees.
 */
function afterResponse(record: () => void): void {
  if (telemetryQueue.push(record) === 1) setImmediate(drainTelemetry);
}

function drainTelemetry(): void {
  const records = telemetryQueue.splice(0);
  for (const record of records) record();
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Server-Timing: each stage's duration, plus whether this call paid for loading the model. */
export function serverTiming(timings: StageTimings, totalMs: number): string {
  const parts = [
    timings.cold ? `load;dur=${round(timings.loadMs)};desc="cold"` : 'warm;dur=0',
    `validate;dur=${round(timings.validateMs)}`,
    `preprocess;dur=${round(timings.preprocessMs)}`,
    `queue;dur=${round(timings.queueMs)}`,
    `run;dur=${round(timings.runMs)}`,
    `postprocess;dur=${round(timings.postprocessMs)}`,
    `total;dur=${round(totalMs)}`,
  ];
  if (timings.batchRows > 0) parts.push(`batch;desc="${timings.batchRows} rows, ${timings.batchRequests} requests"`);
  return parts.join(', ');
}
