import type { APIGatewayProxyEvent, APIGatewayProxyEventV2, APIGatewayProxyResult, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { apiGatewayV1 } from './api-gateway-v1.ts';
import { apiGatewayV2 } from './api-gateway-v2.ts';
import { isRecord } from './common.ts';
import { functionUrl, isFunctionUrlEvent } from './function-url.ts';
import type { EventProcessor } from './types.ts';

export { apiGatewayV1 } from './api-gateway-v1.ts';
export { apiGatewayV2 } from './api-gateway-v2.ts';
export { functionUrl } from './function-url.ts';
export { decodeBody, encodeBody, isRecord, MalformedEventError } from './common.ts';
export type { EventProcessor, HttpEventKind, HttpResponse } from './types.ts';

export type HttpEvent = APIGatewayProxyEvent | APIGatewayProxyEventV2;
export type HttpResult = APIGatewayProxyResult | APIGatewayProxyStructuredResultV2;
export type AnyEventProcessor = EventProcessor<HttpEvent, HttpResult>;

/**
 * The processor for an HTTP event, or undefined when the event is not one. Payload 2.0 carries
 * `version: "2.0"` and `rawPath` (a Function URL's domain tells it from an HTTP API's); payload 1.0 carries
 * `httpMethod`/`path` beside a `requestContext`. Application Load Balancer events (`requestContext.elb`)
 * are not served yet.
 */
export function getProcessor(event: unknown): AnyEventProcessor | undefined {
  if (!isRecord(event)) return undefined;
  if (event.version === '2.0' || 'rawPath' in event) {
    return (isFunctionUrlEvent(event) ? functionUrl : apiGatewayV2) as AnyEventProcessor;
  }
  const context = event.requestContext;
  if (isRecord(context) && !('elb' in context) && ('httpMethod' in event || 'path' in event)) {
    return apiGatewayV1 as AnyEventProcessor;
  }
  return undefined;
}
