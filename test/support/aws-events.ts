import { readFileSync } from 'node:fs';
import type { APIGatewayProxyEvent, APIGatewayProxyEventV2, APIGatewayProxyResult, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';

/** The documented example events (test/fixtures/aws/README.md), fresh copies each call. */
export function fixture<T = Record<string, unknown>>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/aws/${name}.json`, import.meta.url), 'utf8')) as T;
}

export type HttpKind = 'rest-v1' | 'http-v2' | 'function-url';

export interface HttpCall {
  method: string;
  path: string;
  body?: string;
  /** Send the body base64-encoded with isBase64Encoded: true, as API Gateway does for binary media types. */
  base64?: boolean;
  headers?: Record<string, string | string[]>;
}

const encode = (call: HttpCall) => ({
  body: call.body === undefined ? null : call.base64 ? Buffer.from(call.body).toString('base64') : call.body,
  isBase64Encoded: call.base64 === true,
});

/** The REST API example, re-aimed: `path` without the stage, as API Gateway sends it. */
export function restV1Event(call: HttpCall): APIGatewayProxyEvent {
  const event = fixture<APIGatewayProxyEvent>('api-gateway-rest-v1');
  event.httpMethod = call.method;
  event.requestContext.httpMethod = call.method;
  event.path = call.path;
  event.pathParameters = { proxy: call.path.slice(1) };
  for (const [name, value] of Object.entries(call.headers ?? {})) {
    const values = Array.isArray(value) ? value : [value];
    event.headers[name] = values.at(-1);
    event.multiValueHeaders[name] = values;
  }
  return { ...event, ...encode(call) };
}

function v2Event(name: 'http-api-v2' | 'function-url', call: HttpCall): APIGatewayProxyEventV2 {
  const event = fixture<APIGatewayProxyEventV2>(name);
  event.rawPath = call.path;
  event.requestContext.http.method = call.method;
  event.requestContext.http.path = call.path;
  event.headers['content-type'] = 'application/json';
  for (const [header, value] of Object.entries(call.headers ?? {})) event.headers[header] = Array.isArray(value) ? value.join(',') : value;
  const { body, isBase64Encoded } = encode(call);
  const result: APIGatewayProxyEventV2 = { ...event, isBase64Encoded };
  if (body === null) delete result.body;
  else result.body = body;
  return result;
}

export const httpApiV2Event = (call: HttpCall) => v2Event('http-api-v2', call);
export const functionUrlEvent = (call: HttpCall) => v2Event('function-url', call);

export const eventFor: Record<HttpKind, (call: HttpCall) => APIGatewayProxyEvent | APIGatewayProxyEventV2> = {
  'rest-v1': restV1Event,
  'http-v2': httpApiV2Event,
  'function-url': functionUrlEvent,
};

let invocations = 0;

/** A Context like the Node.js runtime's, one per invocation. */
export function lambdaContext(overrides: Partial<Context> = {}): Context {
  const unsupported = () => {
    throw new Error('deprecated Context callbacks are not used by modelfn');
  };
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: 'modelfn-http',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:modelfn-http',
    memoryLimitInMB: '2048',
    awsRequestId: `00000000-0000-4000-8000-${String(++invocations).padStart(12, '0')}`,
    logGroupName: '/aws/lambda/modelfn-http',
    logStreamName: '2026/11/26/[$LATEST]0123456789abcdef',
    getRemainingTimeInMillis: () => 30_000,
    done: unsupported,
    fail: unsupported,
    succeed: unsupported,
    ...overrides,
  };
}

/** A provider result read back as a client would see it: status, lower-case headers (one value each), body text. */
export function readResult(result: APIGatewayProxyResult | APIGatewayProxyStructuredResultV2) {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name.toLowerCase()] = String(value);
  for (const [name, values] of Object.entries((result as APIGatewayProxyResult).multiValueHeaders ?? {})) {
    headers[name.toLowerCase()] = values.map(String).join(', ');
  }
  const body = result.isBase64Encoded ? Buffer.from(result.body ?? '', 'base64').toString('utf8') : (result.body ?? '');
  return { status: result.statusCode ?? 200, headers, body };
}
