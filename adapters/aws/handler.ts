import { container, lambdaHandler, logger, preloadIfAsked } from './environment.ts';
import { describeEvent } from './events.ts';
import { getProcessor, MalformedEventError, type AnyEventProcessor, type HttpEvent, type HttpResponse, type HttpResult } from './http/index.ts';
import type { Invocation, InvocationContext } from './invocation.ts';
import { errorMessage, type Core, type CoreHttpRequest } from '../../handlers/index.ts';

/**
 * The Lambda entry (`handler` in serverless.yml: `adapters/aws/handler.handler`): real-time HTTP from
 * API Gateway REST (payload v1), HTTP APIs (payload v2) and Function URLs, plus warm-up pings.
 * It translates events to the core and back; the core does everything else.
 */

await preloadIfAsked();

const NOT_READY = 'not ready: the model server failed to start; the next request retries (details in the function log)';

/** Thrown for an event this function does not serve; Lambda reports it to the caller as the invocation's error. */
export class UnsupportedEventError extends Error {
  override readonly name = 'UnsupportedEventError';
  constructor(event: unknown) {
    super(`unsupported event: expected an API Gateway v1/v2 or Function URL event, got ${describeEvent(event)}`);
  }
}

async function serveHttp(event: unknown, context: InvocationContext): Promise<HttpResult> {
  const processor = getProcessor(event);
  if (!processor) throw new UnsupportedEventError(event);
  context.modelfn.event = processor.kind;
  const response = await respond(processor, event as HttpEvent, context);
  return processor.createResult(event as HttpEvent, stamp(response, context.modelfn));
}

/** The core's answer to the event's request, or the adapter's own 400 (malformed event) or 503 (no core). */
async function respond(processor: AnyEventProcessor, event: HttpEvent, context: InvocationContext): Promise<HttpResponse> {
  let request: CoreHttpRequest;
  try {
    request = processor.createRequest(event);
  } catch (error) {
    if (!(error instanceof MalformedEventError)) throw error;
    logger.warn({ awsRequestId: context.awsRequestId, event: processor.kind, error: error.message }, 'malformed event');
    return jsonError(400, error.message, context.awsRequestId);
  }
  // Tie the core's request log line to this invocation unless the caller brought its own id.
  request.headers['x-request-id'] ||= context.awsRequestId;

  let core: Core;
  try {
    core = await container.get();
  } catch (error) {
    // A broken start (models folder missing, a bad MODELFN_* value) is "not ready", not a crashed environment:
    // the details go to the log, the caller gets a 503, and the next invocation tries again.
    logger.error({ awsRequestId: context.awsRequestId, error: errorMessage(error) }, 'creating the core failed');
    return jsonError(503, NOT_READY, request.headers['x-request-id']);
  }
  context.modelfn.initMs = container.takeInitMs();
  return core.http.handle(request);
}

function jsonError(status: number, message: string, requestId: string | undefined): HttpResponse {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (requestId) headers['x-request-id'] = requestId;
  return { status, headers, body: JSON.stringify({ error: message }) };
}

/** Every HTTP response says whether the invocation was cold, and (once) what creating the core cost. */
function stamp(response: HttpResponse, record: Invocation): HttpResponse {
  const headers: Record<string, string> = { ...response.headers, 'x-modelfn-cold': String(record.cold) };
  if (record.initMs !== undefined) {
    const init = `init;dur=${Math.round(record.initMs * 1000) / 1000};desc="container"`;
    headers['server-timing'] = headers['server-timing'] ? `${init}, ${headers['server-timing']}` : init;
  }
  return { ...response, headers };
}


export const handler = lambdaHandler<unknown, HttpResult>(serveHttp);

/** The core if this environment has created it (tests: to check what a warm-up did not load). */
export function coreForTests(): Core | undefined {
  return container.current;
}

/** The adapter's logger (tests: to read the invocation log lines). */
export { logger as loggerForTests };
