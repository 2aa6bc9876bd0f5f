import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalServer, type LocalServer } from '../adapters/local/server.ts';
import { createCore, type Core } from '../handlers/index.ts';
import { featureVector, generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';

let core: Core;
let server: LocalServer;

beforeAll(async () => {
  core = await createCore({ preload: false, bodyLimitBytes: 64 * 1024 });
  server = await startLocalServer(core.http, { port: 0 });
});

afterAll(async () => {
  await server.close();
  await core.repository.dispose();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(server.url + path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

describe('local server: the DESIGN.md routes over real HTTP', () => {
  it('answers OIP health, server metadata and the model repository', async () => {
    expect(await (await fetch(`${server.url}/v2/health/live`)).json()).toEqual({ live: true });
    const ready = await fetch(`${server.url}/v2/health/ready`);
    expect(ready.status).toBe(200);
    expect(await (await fetch(`${server.url}/v2`)).json()).toMatchObject({ name: 'modelfn', extensions: [] });
    const index = (await (await fetch(`${server.url}/v2/repository/index`)).json()) as { name: string }[];
    expect(index.map((model) => model.name)).toEqual(['anomaly', 'vad']);
  });

  it('serves anomaly model metadata and readiness', async () => {
    expect(await (await fetch(`${server.url}/v2/models/anomaly`)).json()).toEqual({
      name: 'anomaly',
      versions: ['1'],
      platform: 'onnx_onnxv1',
      inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 11] }],
      outputs: [
        { name: 'score', datatype: 'FP32', shape: [-1, 1] },
        { name: 'label', datatype: 'BOOL', shape: [-1, 1] },
      ],
    });
    const ready = await fetch(`${server.url}/v2/models/anomaly/ready`);
    expect([ready.status, await ready.json()]).toEqual([200, { name: 'anomaly', ready: true }]);
  });

  it('scores OIP v2 tensors and v1 instances the same way, with Server-Timing and a request id', async () => {
    const days = generateUserDays(40, 99);
    const takeover = { ...toFeatures(days[0]!), failed_logins: 40, countries: 4, distinct_ips: 12, night_activity_ratio: 0.8 };
    const rows = [takeover, ...days.slice(1, 4).map(toFeatures)];

    const v2 = await post('/v2/models/anomaly/infer', {
      id: 'abc',
      inputs: [{ name: 'features', shape: [rows.length, 11], datatype: 'FP32', data: rows.map(featureVector) }],
    });
    expect(v2.status).toBe(200);
    expect(v2.headers.get('server-timing')).toMatch(/^(load;dur=[\d.]+;desc="cold"|warm;dur=0), validate;dur=[\d.]+, preprocess;dur=[\d.]+, queue;dur=[\d.]+, run;dur=[\d.]+, postprocess;dur=[\d.]+, total;dur=[\d.]+, batch;desc="\d+ rows, \d+ requests"$/);
    expect(v2.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const tensors = (await v2.json()) as { id: string; outputs: { name: string; data: (number | boolean)[] }[] };
    expect(tensors.id).toBe('abc');
    const scores = tensors.outputs.find((output) => output.name === 'score')!.data as number[];
    expect(scores).toHaveLength(4);
    expect(scores[0]).toBeGreaterThan(0.9);
    expect(Math.max(...scores.slice(1))).toBeLessThan(scores[0]!);

    const v1 = await post('/v1/models/anomaly:predict', { instances: rows.map((row, i) => ({ id: `u${i}`, ...row })) }, { 'x-request-id': 'req-42' });
    expect(v1.status).toBe(200);
    expect(v1.headers.get('x-request-id')).toBe('req-42');
    const { predictions } = (await v1.json()) as { predictions: { id: string; score: number; anomaly: boolean }[] };
    expect(predictions.map((p) => p.id)).toEqual(['u0', 'u1', 'u2', 'u3']);
    predictions.forEach((prediction, i) => expect(prediction.score).toBeCloseTo(scores[i]!, 5));
    expect(predictions[0]!.anomaly).toBe(true);
  });

  it('exposes Prometheus metrics: requests, latency, batch sizes, model load time', async () => {
    const response = await fetch(`${server.url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toMatch(/^modelfn_requests_total\{route="\/v2\/models\/:name\/infer",model="anomaly",status="200"\} [1-9]/m);
    expect(text).toMatch(/^modelfn_request_duration_seconds_bucket\{le="0\.1",route="\/v2\/models\/:name\/infer",model="anomaly"\} [1-9]/m);
    expect(text).toMatch(/^modelfn_batch_rows_count\{model="anomaly"\} [1-9]/m);
    expect(text).toMatch(/^modelfn_model_load_seconds\{model="anomaly"\} 0\.\d+/m);
  });

  it('stacks concurrent requests into shared tensor runs and answers each with its own rows', async () => {
    const days = generateUserDays(64, 5).map(toFeatures);
    const single = await Promise.all(
      days.map(async (day) => ((await (await post('/v1/models/anomaly:predict', { instances: [day] })).json()) as { predictions: { score: number }[] }).predictions[0]!.score),
    );
    const together = (await (await post('/v1/models/anomaly:predict', { instances: days })).json()) as { predictions: { score: number }[] };
    together.predictions.forEach((prediction, i) => expect(prediction.score).toBeCloseTo(single[i]!, 5));

    // Requests that arrive while a run is in flight share the next run (deterministic at the service level).
    const service = core.repository.get('anomaly');
    const results = await Promise.all(days.map((day) => service.predict([day])));
    expect(results.map((result) => result.timings.batchRequests)).toEqual([1, ...new Array(63).fill(63)]);
    results.forEach((result, i) => expect((result.predictions[0] as { score: number }).score).toBeCloseTo(single[i]!, 5));
  });

  it.each<[string, string, unknown, number, RegExp]>([
    ['malformed JSON', '/v2/models/anomaly/infer', '{"inputs": [', 400, /^request body is not valid JSON: /],
    ['an empty body', '/v2/models/anomaly/infer', '', 400, /^request body is empty; expected JSON$/],
    ['no instances', '/v1/models/anomaly:predict', { rows: [] }, 400, /^request body must be an object with a non-empty "instances" array$/],
    ['a missing feature', '/v1/models/anomaly:predict', { instances: [{ logins: 1 }] }, 400, /^instances\[0\] is missing required property "failed_logins"$/],
    ['an extra field', '/v1/models/anomaly:predict', { instances: [{ ...toFeatures(generateUserDays(1, 1)[0]!), color: 'red' }] }, 400, /^instances\[0\] has unexpected property "color"$/],
    ['a string feature', '/v1/models/anomaly:predict', { instances: [{ ...toFeatures(generateUserDays(1, 1)[0]!), logins: 'many' }] }, 400, /^instances\[0\]\.logins must be number$/],
    ['the wrong shape', '/v2/models/anomaly/infer', { inputs: [{ name: 'features', shape: [1, 10], datatype: 'FP32', data: new Array(10).fill(0) }] }, 400, /^inputs\[0\] "features" has shape \[1,10\], the model expects \[-1,11\]$/],
    ['an unknown model', '/v1/models/nope:predict', { instances: [1] }, 404, /^model "nope" not found; available: anomaly, vad$/],
    ['an unknown route', '/v3/whatever', {}, 404, /^no route for POST \/v3\/whatever$/],
  ])('%s: a 4xx whose message names the problem', async (_case, path, body, status, message) => {
    const response = await post(path, body);
    expect(response.status).toBe(status);
    expect(((await response.json()) as { error: string }).error).toMatch(message);
  });

  it('405 with Allow for a known path and the wrong method', async () => {
    const response = await fetch(`${server.url}/v2/models/anomaly/infer`);
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
    expect(await response.json()).toEqual({ error: 'method GET is not allowed on /v2/models/anomaly/infer; use POST' });
  });

  it('413 for a body over the limit, declared or streamed, and the server keeps serving', async () => {
    const big = JSON.stringify({ instances: new Array(20_000).fill({ logins: 1 }) });
    const declared = await post('/v1/models/anomaly:predict', big);
    expect(declared.status).toBe(413);
    expect(await declared.json()).toEqual({ error: 'request body exceeds the limit of 65536 bytes' });

    const chunked = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 40; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(4096)));
        controller.close();
      },
    });
    const streamed = await fetch(`${server.url}/v1/models/anomaly:predict`, { method: 'POST', body: chunked, duplex: 'half' } as RequestInit);
    expect(streamed.status).toBe(413);
    expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
  });
});
