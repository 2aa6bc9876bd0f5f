import type { MiddlewareObj } from '@middy/core';
import type { Context } from 'aws-lambda';
import type { Logger } from '../../handlers/index.ts';
import type { Container } from './container.ts';

/** One invocation as the log line tells it; the handler fills in what only it knows. */
export interface Invocation {
  cold: boolean;
  started: number;
  /** The event kind the handler recognised (api-gateway-v1, function-url, …). */
  event?: string;
  /** Time spent creating the core, on the first invocation that used it. */
  initMs?: number;
  /** Models whose session was already loaded when the invocation began (to tell which this one loaded). */
  loadedBefore?: Set<string>;
}

/** The Lambda context, carrying this invocation's record from the middleware to the handler (middy's way). */
export interface InvocationContext extends Context {
  modelfn: Invocation;
}

/**
 * Counts the invocation (cold or warm) and writes one JSON log line for it when it ends, with its outcome,
 * duration, cold flag and init time. Errors are logged and passed on: Lambda reports them to the caller.
 */
export function invocation(options: { container: Container; logger: Logger }): MiddlewareObj<unknown, unknown, Error, InvocationContext> {
  const { container, logger } = options;
  const fields = (context: InvocationContext) => {
    // Absent only when a middleware before this one threw.
    const record = context.modelfn ?? { cold: false, started: performance.now() };
    return {
      awsRequestId: context.awsRequestId,
      event: record.event ?? 'unknown',
      cold: record.cold,
      ...(record.initMs !== undefined && { initMs: round(record.initMs) }),
      ...modelLoads(container, record),
      ms: round(performance.now() - record.started),
    };
  };
  return {
    name: 'modelfn-invocation',
    before(request) {
      request.context.modelfn = { cold: container.beginInvocation(), started: performance.now(), loadedBefore: loadedModels(container) };
    },
    after(request) {
      const response = request.response as { statusCode?: unknown } | undefined;
      logger.info({ ...fields(request.context), status: response?.statusCode }, 'invocation');
    },
    onError(request) {
      logger.error({ ...fields(request.context), error: request.error?.message }, 'invocation failed');
    },
  };
}

function loadedModels(container: Container): Set<string> {
  return new Set(container.current?.repository.list().filter((service) => service.runtime.state === 'ready').map((service) => service.name));
}

/** `modelLoadMs: {model: ms}` for the sessions this invocation loaded, whatever the trigger. */
function modelLoads(container: Container, record: Invocation): { modelLoadMs?: Record<string, number> } {
  const loaded = container.current?.repository.list().filter((service) => service.runtime.state === 'ready' && !record.loadedBefore?.has(service.name) && service.runtime.loadMs !== undefined);
  if (!loaded?.length) return {};
  return { modelLoadMs: Object.fromEntries(loaded.map((service) => [service.name, round(service.runtime.loadMs!)])) };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
