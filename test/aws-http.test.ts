/**
 * The AWS Lambda adapter's real-time HTTP path and warm-up pings, through the real entry
 * (adapters/aws/handler.ts, MODELFN_PRELOAD unset) with real onnxruntime and the bundled models.
 *
 * Not real here: there is no Lambda runtime — the handler is called the way the Node.js runtime calls it,
 * `handler(event, context)`, with a Context built by the test — and no API Gateway: the events are the examples
 * documented in the AWS developer guides (test/fixtures/aws/, provenance in its README), re-aimed per test at a
 * path, method, headers and body. serverless-offline (API Gateway and Lambda emulated over HTTP) comes with the
 * next slice of issue 4.
 */
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { configFromEnv, createCore, DEFAULT_BODY_LIMIT_BYTES, type Core } from '../handlers/index.ts';
import { eventFor, fixture, functionUrlEvent, httpApiV2Event, lambdaContext, readResult, restV1Event, type HttpCall, type HttpKind } from './support/aws-events.ts';

type AwsModule = typeof import('../adapters/aws/handler.ts');
let aws: AwsModule;
/** The core's own HTTP app, which every adapter must match status for status, body for body. */
let reference: Core;

beforeAll(async () => {
  delete process.env.MODELFN_PRELOAD;
  aws = await import('../adapters/aws/handler.ts');
  reference = await createCore(configFromEnv());
});

afterAll(async () => {
  await aws.coreForTests()?.repository.dispose();
  await reference.repository.dispose();
});

const invoke = (event: unknown, context: Context = lambdaContext()) => aws.handler(event, context as never);

async function call(kind: HttpKind, request: HttpCall) {
  const result = await invoke(eventFor[kind](request));
  return { ...readResult(result as never), raw: result as Record<string, unknown> };
}

async function viaCore(request: HttpCall) {
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  const response = await reference.http.handle({ method: request.method, url: request.path, headers: { 'content-type': 'application/json' }, body });
  return { status: response.status, body: response.body };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

// The README's example user-day: an account takeover pattern.
const features = [3, 12, 2, 45, 900, 9, 4, 0.7, 150, 400, 2];
const inferBody = JSON.stringify({ id: 'r1', inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 11], data: features }] });
const names = ['logins', 'failed_logins', 'sessions', 'session_minutes', 'bytes_downloaded_mb', 'distinct_ips', 'countries', 'night_activity_ratio', 'api_calls', 'files_accessed', 'privilege_changes'];
const predictBody = JSON.stringify({ instances: [{ id: 'u1', ...Object.fromEntries(names.map((name, i) => [name, features[i]])) }] });

describe('warm-up pings (first in this file: the first invocation of the environment is one)', () => {
  const pluginPayload = { source: 'serverless-plugin-warmup' };
  // serverless-plugin-warmup invokes with Payload and ClientContext `{"custom": <payload>}`; the runtime parses the latter.
  const clientContextOnly = () => lambdaContext({ clientContext: { custom: pluginPayload } as never });

  it('answers the plugin payload at once, reporting the cold start, creating nothing', async () => {
    expect(await invoke(pluginPayload)).toEqual({ warm: true, cold: true });
    expect(aws.coreForTests()).toBeUndefined();
  });

  it('answers the clientContext form and an EventBridge scheduled event, warm from now on', async () => {
    expect(await invoke({}, clientContextOnly())).toEqual({ warm: true, cold: false });
    expect(await invoke(fixture('eventbridge-scheduled'))).toEqual({ warm: true, cold: false });
    expect(await invoke(pluginPayload)).toEqual({ warm: true, cold: false });
    expect(aws.coreForTests()).toBeUndefined();
  });

  it('takes well under a millisecond per ping (median of 200)', async () => {
    const scheduled = fixture('eventbridge-scheduled');
    const forms: [unknown, () => Context][] = [
      [pluginPayload, () => lambdaContext()],
      [{}, clientContextOnly],
      [scheduled, () => lambdaContext()],
    ];
    for (let i = 0; i < 50; i++) await invoke(pluginPayload); // JIT warm-up of the path itself
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const [event, context] = forms[i % forms.length]!;
      const ctx = context();
      const started = performance.now();
      const result = await invoke(event, ctx);
      times.push(performance.now() - started);
      expect(result).toEqual({ warm: true, cold: false });
    }
    const ms = median(times);
    console.log(`warm-up ping: median ${(ms * 1000).toFixed(1)} µs over 200 (p99 ${(([...times].sort((a, b) => a - b)[197]!) * 1000).toFixed(1)} µs)`);
    expect(ms).toBeLessThan(1);
    expect(aws.coreForTests()).toBeUndefined();
  });

  it('leaves models unloaded once the core exists, and never runs one', async () => {
    const ready = await call('rest-v1', { method: 'GET', path: '/v2/health/ready' });
    expect([ready.status, ready.headers['x-modelfn-cold']]).toEqual([200, 'false']);
    const core = aws.coreForTests()!;
    expect(core.repository.get('anomaly').runtime.state).toBe('unloaded');
    for (const event of [pluginPayload, fixture('eventbridge-scheduled')]) expect(await invoke(event)).toEqual({ warm: true, cold: false });
    expect(await invoke({}, clientContextOnly())).toEqual({ warm: true, cold: false });
    expect(core.repository.get('anomaly').runtime.state).toBe('unloaded');
    expect(core.repository.get('vad').runtime.state).toBe('unloaded');
  });
});

describe.each<HttpKind>(['rest-v1', 'http-v2', 'function-url'])('%s events', (kind) => {
  it('GET /v2/health/ready', async () => {
    const ready = await call(kind, { method: 'GET', path: '/v2/health/ready' });
    expect([ready.status, JSON.parse(ready.body)]).toEqual([200, { ready: true }]);
    expect(ready.headers['x-modelfn-cold']).toBe('false');
    expect(ready.raw.isBase64Encoded).toBe(false);
  });

  it('GET /v2/models/anomaly: the same metadata as the core', async () => {
    const metadata = await call(kind, { method: 'GET', path: '/v2/models/anomaly' });
    expect({ status: metadata.status, body: metadata.body }).toEqual(await viaCore({ method: 'GET', path: '/v2/models/anomaly' }));
    expect(JSON.parse(metadata.body)).toMatchObject({ name: 'anomaly', platform: 'onnx_onnxv1' });
  });

  it.each([false, true])('POST /v2/models/anomaly/infer scores for real (base64 body: %s)', async (base64) => {
    const scored = await call(kind, { method: 'POST', path: '/v2/models/anomaly/infer', body: inferBody, base64 });
    expect(scored.status).toBe(200);
    const response = JSON.parse(scored.body) as { id: string; outputs: { name: string; data: number[] }[] };
    const score = response.outputs.find((output) => output.name === 'score')!.data[0]!;
    expect(score).toBeGreaterThan(0.5); // the takeover pattern is an anomaly
    expect(score).toBeLessThanOrEqual(1);
    expect(scored.body).toBe((await viaCore({ method: 'POST', path: '/v2/models/anomaly/infer', body: inferBody })).body);
    expect(scored.headers['server-timing']).toMatch(/run;dur=[\d.]+/);
    expect(scored.headers['x-modelfn-cold']).toBe('false');
  });

  it('POST /v1/models/anomaly:predict', async () => {
    const predicted = await call(kind, { method: 'POST', path: '/v1/models/anomaly:predict', body: predictBody });
    expect(predicted.status).toBe(200);
    expect(JSON.parse(predicted.body)).toEqual({ predictions: [{ id: 'u1', score: expect.any(Number), anomaly: true }] });
    expect(predicted.body).toBe((await viaCore({ method: 'POST', path: '/v1/models/anomaly:predict', body: predictBody })).body);
  });

  const errors: [string, HttpCall, number][] = [
    ['malformed JSON', { method: 'POST', path: '/v2/models/anomaly/infer', body: '{"inputs": [' }, 400],
    ['an unknown model', { method: 'POST', path: '/v2/models/nope/infer', body: inferBody }, 404],
    ['a base64 body that decodes to invalid JSON', { method: 'POST', path: '/v1/models/anomaly:predict', body: '{"instances": nope}', base64: true }, 400],
    ['a body over the limit', { method: 'POST', path: '/v2/models/anomaly/infer', body: 'x'.repeat(DEFAULT_BODY_LIMIT_BYTES + 1) }, 413],
    ['a body over the limit, base64-encoded', { method: 'POST', path: '/v2/models/anomaly/infer', body: 'x'.repeat(DEFAULT_BODY_LIMIT_BYTES + 1), base64: true }, 413],
    ['an unknown route', { method: 'GET', path: '/v3/anything' }, 404],
    ['a wrong method', { method: 'DELETE', path: '/v2/models/anomaly/infer' }, 405],
  ];
  it.each(errors)('%s: the same status and body as the core', async (_name, request, status) => {
    const answered = await call(kind, request);
    const expected = await viaCore(request);
    expect(expected.status).toBe(status);
    expect({ status: answered.status, body: answered.body }).toEqual(expected);
  });
});

describe('translation details', () => {
  it('payload v1: multiValueHeaders win over headers, names reach the core lower-cased, the answer comes back in multiValueHeaders', async () => {
    const event = restV1Event({ method: 'GET', path: '/v2/models/anomaly/ready', headers: { 'X-Request-Id': ['from-multi'] } });
    event.headers['X-Request-Id'] = 'from-single';
    const result = (await invoke(event)) as { multiValueHeaders?: Record<string, string[]>; headers?: unknown };
    expect(result.headers).toBeUndefined();
    expect(result.multiValueHeaders!['x-request-id']).toEqual(['from-multi']);
    expect(result.multiValueHeaders!['x-modelfn-cold']).toEqual(['false']);
  });

  it('payload v1 without multiValueHeaders answers in headers', async () => {
    const event = restV1Event({ method: 'GET', path: '/v2/health/live', headers: { 'X-Request-Id': 'single-only' } });
    (event as { multiValueHeaders?: unknown }).multiValueHeaders = undefined;
    const result = (await invoke(event)) as { multiValueHeaders?: unknown; headers: Record<string, string>; statusCode: number };
    expect(result.multiValueHeaders).toBeUndefined();
    expect([result.statusCode, result.headers['x-request-id']]).toEqual([200, 'single-only']);
  });

  it('an HTTP API on payload 1.0 (its documented example) is served like REST', async () => {
    const event = fixture<Record<string, unknown>>('http-api-v1');
    Object.assign(event, { path: '/v2/health/live', body: null });
    expect(readResult((await invoke(event)) as never)).toMatchObject({ status: 200, body: '{"live":true}' });
  });

  it('payload v2: a named stage in rawPath on the execute-api domain is not part of the route', async () => {
    const event = httpApiV2Event({ method: 'GET', path: '/prod/v2/health/live', headers: { 'X-Request-Id': 'staged' } });
    event.requestContext.stage = 'prod';
    const answered = readResult((await invoke(event)) as never);
    expect([answered.status, answered.body, answered.headers['x-request-id']]).toEqual([200, '{"live":true}', 'staged']);
  });

  it('the Function URL example is told from an HTTP API by its domain', async () => {
    const { getProcessor } = await import('../adapters/aws/http/index.ts');
    expect(getProcessor(functionUrlEvent({ method: 'GET', path: '/' }))!.kind).toBe('function-url');
    expect(getProcessor(httpApiV2Event({ method: 'GET', path: '/' }))!.kind).toBe('api-gateway-v2');
    expect(getProcessor(restV1Event({ method: 'GET', path: '/' }))!.kind).toBe('api-gateway-v1');
  });

  it('writes one JSON log line per invocation with the event kind, cold flag and status', async () => {
    const info = vi.spyOn(aws.loggerForTests, 'info');
    try {
      const context = lambdaContext();
      await invoke(functionUrlEvent({ method: 'GET', path: '/v2/health/live' }), context);
      await invoke({ source: 'serverless-plugin-warmup' });
      const lines = info.mock.calls.filter((args) => args[1] === 'invocation').map((args) => args[0]);
      expect(lines).toEqual([
        { awsRequestId: context.awsRequestId, event: 'function-url', cold: false, ms: expect.any(Number), status: 200 },
        { awsRequestId: expect.any(String), event: 'warmup', source: 'serverless-plugin-warmup', cold: false },
      ]);
    } finally {
      info.mockRestore();
    }
  });
});

describe('events this function does not serve', () => {
  const live = () => call('function-url', { method: 'GET', path: '/v2/health/live' });

  it.each<[string, unknown, string]>([
    ['{}', {}, 'got keys []'],
    ['null', null, 'got null'],
    ['a string', 'hello', 'got a string'],
    ['an SQS batch (its documented example)', fixture('sqs'), 'got keys [Records]'],
    ['an ALB event', { requestContext: { elb: { targetGroupArn: 'arn:aws:elasticloadbalancing:…' } }, httpMethod: 'GET', path: '/' }, 'got keys [requestContext,httpMethod,path]'],
  ])('%s: a clear error, and the next invocation is served', async (_name, event, got) => {
    await expect(invoke(event)).rejects.toThrow(`unsupported event: expected an API Gateway v1/v2 or Function URL event, ${got}`);
    expect((await live()).status).toBe(200);
  });

  it('an API Gateway event without httpMethod: 400 naming the field, then service as usual', async () => {
    const event = restV1Event({ method: 'GET', path: '/v2/health/live' }) as Partial<ReturnType<typeof restV1Event>>;
    delete event.httpMethod;
    const answered = readResult((await invoke(event)) as never);
    expect(answered.status).toBe(400);
    expect(JSON.parse(answered.body)).toEqual({
      error: 'malformed API Gateway REST (payload v1) event: httpMethod is missing; expected an HTTP method such as "GET"',
    });
    expect((await live()).status).toBe(200);
  });

  it('a v2 event without requestContext.http: 400 naming the field', async () => {
    const event = httpApiV2Event({ method: 'GET', path: '/v2/health/live' });
    delete (event.requestContext as Partial<typeof event.requestContext>).http;
    const answered = readResult((await invoke(event)) as never);
    expect([answered.status, JSON.parse(answered.body).error]).toEqual([
      400,
      'malformed API Gateway HTTP API (payload v2) event: requestContext.http.method is missing; expected an HTTP method such as "GET"',
    ]);
    expect((await live()).status).toBe(200);
  });

  it.each(['http-v2', 'function-url'] as const)('%s with isBase64Encoded: true and a body that is not base64: 400', async (kind) => {
    const event = eventFor[kind]({ method: 'POST', path: '/v2/models/anomaly/infer', body: inferBody });
    event.isBase64Encoded = true; // the body stays plain JSON: `{`, `"` and `:` are not base64
    const answered = readResult((await invoke(event)) as never);
    expect([answered.status, JSON.parse(answered.body).error]).toEqual([
      400,
      'request body is marked base64-encoded (isBase64Encoded: true) but is not valid base64',
    ]);
    expect((await live()).status).toBe(200);
  });
});
