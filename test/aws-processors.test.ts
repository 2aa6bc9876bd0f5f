/**
 * The AWS adapter's pieces on their own (no core, no model): each HTTP event processor's two-way translation,
 * warm-up detection and the per-environment container. Events are the documented examples in test/fixtures/aws/.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyEventV2 } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import type { Core } from '../handlers/index.ts';
import { Container } from '../adapters/aws/container.ts';
import { apiGatewayV1, apiGatewayV2, functionUrl, getProcessor, MalformedEventError } from '../adapters/aws/http/index.ts';
import { isBase64 } from '../adapters/aws/http/common.ts';
import { warmupSource } from '../adapters/aws/warmup.ts';
import { fixture, lambdaContext } from './support/aws-events.ts';

const json = { status: 200, headers: { 'content-type': 'application/json', 'x-request-id': 'r' }, body: '{"ok":true}' };

describe('API Gateway REST (payload v1)', () => {
  const event = () => fixture<APIGatewayProxyEvent>('api-gateway-rest-v1');

  it('translates the documented example: method, stage-free path, every query value, lower-case headers, body', () => {
    expect(apiGatewayV1.createRequest(event())).toEqual({
      method: 'POST',
      url: '/hello/world?name=me&multivalueName=you&multivalueName=me',
      headers: expect.objectContaining({
        accept: '*/*',
        'content-type': 'application/json',
        headername: 'headerValue',
        host: 'gy415nuibc.execute-api.us-east-1.amazonaws.com',
        'x-forwarded-for': '54.240.196.186, 54.182.214.83',
      }),
      body: '{\r\n\t"a": 1\r\n}',
    });
  });

  it('joins repeated values and lets multiValueHeaders win over headers', () => {
    const e = event();
    e.multiValueHeaders.Accept = ['application/json', 'text/plain'];
    e.headers.Accept = 'text/plain';
    e.multiValueHeaders.Cookie = ['a=1', 'b=2'];
    const headers = apiGatewayV1.createRequest(e).headers;
    expect([headers.accept, headers.cookie]).toEqual(['application/json, text/plain', 'a=1; b=2']);
  });

  it('falls back to headers and queryStringParameters when the multi-value fields are null', () => {
    const e = { ...event(), multiValueHeaders: null, multiValueQueryStringParameters: null } as unknown as APIGatewayProxyEvent;
    const request = apiGatewayV1.createRequest(e);
    expect(request.url).toBe('/hello/world?name=me&multivalueName=me');
    expect(request.headers['content-type']).toBe('application/json');
  });

  it('decodes a base64 body to bytes and encodes query values it re-assembles', () => {
    const e = { ...event(), body: Buffer.from('{"a":1}').toString('base64'), isBase64Encoded: true, multiValueQueryStringParameters: { q: ['a b&c'] } };
    const request = apiGatewayV1.createRequest(e);
    expect(Buffer.from(request.body as Uint8Array).toString()).toBe('{"a":1}');
    expect(request.url).toBe('/hello/world?q=a%20b%26c');
  });

  it('answers in multiValueHeaders when asked with them, in headers otherwise; bytes go out base64', () => {
    expect(apiGatewayV1.createResult(event(), json)).toEqual({
      statusCode: 200,
      multiValueHeaders: { 'content-type': ['application/json'], 'x-request-id': ['r'] },
      body: '{"ok":true}',
      isBase64Encoded: false,
    });
    const single = { ...event(), multiValueHeaders: undefined } as unknown as APIGatewayProxyEvent;
    expect(apiGatewayV1.createResult(single, { ...json, body: new Uint8Array([0, 1, 2, 255]) })).toEqual({
      statusCode: 200,
      headers: json.headers,
      body: 'AAEC/w==',
      isBase64Encoded: true,
    });
  });

  it('names the field when the event is malformed', () => {
    expect(() => apiGatewayV1.createRequest({ ...event(), path: 42 } as never)).toThrow(
      new MalformedEventError('malformed API Gateway REST (payload v1) event: path is a number; expected a path starting with "/"'),
    );
  });
});

describe('payload v2: HTTP API and Function URL', () => {
  it('translates the HTTP API example: raw path and query, lower-case headers, cookies as one cookie header', () => {
    expect(apiGatewayV2.createRequest(fixture('http-api-v2'))).toEqual({
      method: 'POST',
      url: '/my/path?parameter1=value1&parameter1=value2&parameter2=value',
      headers: { header1: 'value1', header2: 'value1,value2', cookie: 'cookie1; cookie2' },
      body: 'Hello from Lambda',
    });
  });

  it('translates the Function URL example the same way', () => {
    expect(functionUrl.createRequest(fixture('function-url'))).toMatchObject({ method: 'POST', url: '/my/path?parameter1=value1&parameter1=value2&parameter2=value', body: 'Hello from client!' });
  });

  it('strips a named stage only where API Gateway puts it: the execute-api domain', () => {
    const staged = (stage: string, rawPath: string, domainName = 'id.execute-api.us-east-1.amazonaws.com') => {
      const event = fixture<APIGatewayProxyEventV2>('http-api-v2');
      Object.assign(event, { rawPath, rawQueryString: '' });
      Object.assign(event.requestContext, { stage, domainName });
      return apiGatewayV2.createRequest(event).url;
    };
    expect(staged('prod', '/prod/v2/health/ready')).toBe('/v2/health/ready');
    expect(staged('prod', '/prod')).toBe('/');
    expect(staged('prod', '/production/x')).toBe('/production/x');
    expect(staged('$default', '/v2/health/ready')).toBe('/v2/health/ready');
    expect(staged('v2', '/v2/health/ready', 'api.example.com')).toBe('/v2/health/ready'); // custom domain: no stage in the path
    // A Function URL's stage is always $default, and its path is never touched.
    const url = fixture<APIGatewayProxyEventV2>('function-url');
    Object.assign(url, { rawPath: '/prod/x', rawQueryString: '?a=1' });
    url.requestContext.stage = 'prod';
    expect(functionUrl.createRequest(url).url).toBe('/prod/x?a=1');
  });

  it('answers with headers, base64 for bytes', () => {
    expect(apiGatewayV2.createResult(fixture('http-api-v2'), json)).toEqual({ statusCode: 200, headers: json.headers, body: '{"ok":true}', isBase64Encoded: false });
    expect(functionUrl.createResult(fixture('function-url'), { ...json, body: Buffer.from('hi') })).toMatchObject({ body: 'aGk=', isBase64Encoded: true });
  });

  it('accepts standard base64 only', () => {
    for (const good of ['', 'aGk=', 'aGk', 'aGVsbG8=', 'AAEC/w==', 'ab+/']) expect(isBase64(good), good).toBe(true);
    for (const bad of ['{"a":1}', 'a', 'aGk==x', 'a=bc', 'aGk=a', 'ab-_', 'ab cd']) expect(isBase64(bad), bad).toBe(false);
  });
});

describe('getProcessor', () => {
  it('tells the kinds apart, and turns away the rest', () => {
    expect(getProcessor(fixture('api-gateway-rest-v1'))?.kind).toBe('api-gateway-v1');
    expect(getProcessor(fixture('http-api-v1'))?.kind).toBe('api-gateway-v1');
    expect(getProcessor(fixture('http-api-v2'))?.kind).toBe('api-gateway-v2');
    expect(getProcessor(fixture('function-url'))?.kind).toBe('function-url');
    for (const other of [fixture('sqs'), fixture('eventbridge-scheduled'), {}, null, 'x', 1, [], { requestContext: { elb: {} }, httpMethod: 'GET', path: '/' }]) {
      expect(getProcessor(other)).toBeUndefined();
    }
  });
});

describe('warm-up detection', () => {
  it('knows the plugin payload, its clientContext form and EventBridge scheduled events', () => {
    expect(warmupSource({ source: 'serverless-plugin-warmup' }, lambdaContext())).toBe('serverless-plugin-warmup');
    expect(warmupSource({}, lambdaContext({ clientContext: { custom: { source: 'serverless-plugin-warmup' } } as never }))).toBe('serverless-plugin-warmup');
    expect(warmupSource(fixture('eventbridge-scheduled'), lambdaContext())).toBe('eventbridge-schedule');
    expect(warmupSource({ source: 'aws.events', 'detail-type': 'EC2 Instance State-change Notification' }, lambdaContext())).toBeUndefined();
    expect(warmupSource(fixture('function-url'), lambdaContext())).toBeUndefined();
    expect(warmupSource(null, undefined)).toBeUndefined();
  });
});

describe('Container', () => {
  const fakeCore = {} as Core;

  it('creates the core once for concurrent callers, reports init once, and counts only the first invocation cold', async () => {
    let created = 0;
    const container = new Container(async () => {
      created++;
      await new Promise((resolve) => setTimeout(resolve, 20));
      return fakeCore;
    });
    expect([container.beginInvocation(), container.beginInvocation()]).toEqual([true, false]);
    const cores = await Promise.all(Array.from({ length: 5 }, () => container.get()));
    expect(created).toBe(1);
    expect(cores.every((core) => core === fakeCore)).toBe(true);
    expect(container.takeInitMs()).toBeGreaterThanOrEqual(15);
    expect(container.takeInitMs()).toBeUndefined();
  });

  it('tries again after a failed creation', async () => {
    let attempts = 0;
    const container = new Container(async () => {
      if (++attempts === 1) throw new Error('models folder missing');
      return fakeCore;
    });
    await expect(Promise.all([container.get(), container.get()])).rejects.toThrow('models folder missing');
    expect(attempts).toBe(1); // concurrent callers shared the failed attempt
    expect(container.current).toBeUndefined();
    expect(await container.get()).toBe(fakeCore);
    expect(attempts).toBe(2);
  });
});
