import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { featureVector, generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';
import { identityModel, writeModelRepository } from './support/onnx-models.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

const speechWav = readFileSync(new URL('./fixtures/speech-16k.wav', import.meta.url)).toString('base64');

describe('npm start: the server as a process', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServerProcess();
  });
  afterAll(() => server.stop('SIGKILL'));

  it('answers the issue-2 curl checks: an OIP anomaly score and vad speech segments', async () => {
    const row = featureVector(generateUserDays(1, 3)[0]!);
    const infer = await fetch(`${server.url}/v2/models/anomaly/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ name: 'features', shape: [1, 11], datatype: 'FP32', data: row }] }),
    });
    const tensors = (await infer.json()) as { outputs: { name: string; data: number[] }[] };
    const score = tensors.outputs.find((output) => output.name === 'score')!.data[0]!;
    expect(score).toBeGreaterThanOrEqual(0);
    expect(score).toBeLessThanOrEqual(1);

    const predict = await fetch(`${server.url}/v1/models/vad:predict`, { method: 'POST', body: JSON.stringify({ instances: [{ wav: speechWav }] }) });
    expect(predict.status).toBe(200);
    const { predictions } = (await predict.json()) as { predictions: { segments: { start: number; end: number }[] }[] };
    // The fixture: 1.0 s silence, speech from 1.000 s to 2.919 s, then silence (test/fixtures/README.md).
    expect(predictions[0]!.segments).toHaveLength(1);
    expect(predictions[0]!.segments[0]!.start).toBeGreaterThan(0.8);
    expect(predictions[0]!.segments[0]!.end).toBeLessThan(3.2);
  });

  it('writes one JSON log line per request with the request id and cold/warm', async () => {
    await fetch(`${server.url}/v2/models/anomaly/ready`, { headers: { 'x-request-id': 'log-check-1' } });
    // Lines are buffered and flushed every 250 ms.
    for (let waited = 0; waited < 2000 && !server.logs.some((entry) => entry.requestId === 'log-check-1'); waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const line = server.logs.find((entry) => entry.requestId === 'log-check-1');
    expect(line).toMatchObject({ level: 30, msg: 'request', method: 'GET', path: '/v2/models/anomaly/ready', status: 200, model: 'anomaly' });
    expect(server.logs.some((entry) => entry.msg === 'request' && entry.cold === true && typeof entry.loadMs === 'number')).toBe(true);
  });

  it('survives 1,000 random malformed bodies with no 5xx', async () => {
    const valid = {
      anomalyV1: { instances: [toFeatures(generateUserDays(1, 1)[0]!)] },
      anomalyV2: { inputs: [{ name: 'features', shape: [1, 11], datatype: 'FP32', data: featureVector(generateUserDays(1, 2)[0]!) }] },
      vadV1: { instances: [{ samples: [0, 0.1, -0.1, 0.2], sampleRate: 16000 }] },
    };
    const routes = ['/v1/models/anomaly:predict', '/v2/models/anomaly/infer', '/v1/models/vad:predict', '/v2/models/vad/infer', '/v1/models/anomaly/jobs', '/v1/models/vad/jobs'];
    // Bodies: random JSON, valid bodies with one part replaced by random JSON, truncated JSON, and raw bytes.
    const mutate = (body: unknown, path: (string | number)[], value: unknown): unknown => {
      if (path.length === 0 || typeof body !== 'object' || body === null) return value;
      const [key, ...rest] = path;
      const copy = (Array.isArray(body) ? [...body] : { ...body }) as Record<string | number, unknown>;
      copy[key!] = mutate(copy[key!], rest, value);
      return copy;
    };
    const anyJson = fc.jsonValue({ maxDepth: 3 });
    const mutatedPaths: [keyof typeof valid, (string | number)[]][] = [
      ['anomalyV1', ['instances']],
      ['anomalyV1', ['instances', 0]],
      ['anomalyV1', ['instances', 0, 'logins']],
      ['anomalyV2', ['inputs']],
      ['anomalyV2', ['inputs', 0, 'shape']],
      ['anomalyV2', ['inputs', 0, 'datatype']],
      ['anomalyV2', ['inputs', 0, 'data']],
      ['anomalyV2', ['inputs', 0, 'data', 3]],
      ['anomalyV2', ['inputs', 0, 'name']],
      ['vadV1', ['instances', 0, 'samples']],
      ['vadV1', ['instances', 0, 'sampleRate']],
      ['vadV1', ['instances', 0, 'wav']],
    ];
    const body = fc.oneof(
      anyJson.map((value) => JSON.stringify(value)),
      fc.tuple(fc.constantFrom(...mutatedPaths), anyJson).map(([[which, path], value]) => JSON.stringify(mutate(valid[which], path, value))),
      fc.tuple(fc.constantFrom(...Object.values(valid)), fc.nat()).map(([value, cut]) => {
        const text = JSON.stringify(value);
        return text.slice(0, cut % text.length);
      }),
      fc.uint8Array({ maxLength: 512 }).map((bytes) => Buffer.from(bytes)),
    );
    const cases = fc.sample(fc.tuple(fc.constantFrom(...routes), body), { numRuns: 1000, seed: 20261125 });

    const statuses = new Map<number, number>();
    const fivexx: string[] = [];
    for (let start = 0; start < cases.length; start += 16) {
      await Promise.all(
        cases.slice(start, start + 16).map(async ([route, payload]) => {
          const response = await fetch(server.url + route, { method: 'POST', body: payload });
          const json = (await response.json()) as { error?: string };
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          if (response.status >= 500) fivexx.push(`${response.status} ${route} ${String(payload).slice(0, 200)} -> ${json.error}`);
          if (response.status >= 400) expect(json.error).toEqual(expect.any(String));
        }),
      );
    }
    expect(fivexx).toEqual([]);
    expect([...statuses.keys()].every((status) => status < 500)).toBe(true);
    expect(statuses.get(400)).toBeGreaterThan(500);
    expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
    expect(server.child.exitCode).toBeNull();
  });
});

describe('SIGTERM drains in-flight requests, then exits', () => {
  it('finishes every accepted request, refuses new connections, exits 0', async () => {
    // A model that takes 500 ms per request, so requests are surely in flight when the signal lands.
    const dir = writeModelRepository([
      {
        name: 'slow',
        onnx: identityModel([{ name: 'x', type: 'float32', dims: ['batch', 2] }]),
        source: `import { Tensor } from 'onnxruntime-node';
export default {
  name: 'slow', version: '1', file: 'model.onnx', batching: false,
  async predict(instances, runner) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const out = await runner.run({ x: new Tensor('float32', Float32Array.from(instances.flat()), [instances.length, 2]) });
    return Array.from({ length: instances.length }, (_, i) => Array.from(out.x_out.data.slice(i * 2, i * 2 + 2)));
  },
};
`,
      },
    ], { insideProject: true });
    const server = await startServerProcess({ MODELFN_MODELS_DIR: dir, MODELFN_PRELOAD: '1' });
    const inFlight = Array.from({ length: 8 }, (_, i) =>
      fetch(`${server.url}/v1/models/slow:predict`, { method: 'POST', body: JSON.stringify({ instances: [[i + 1, -(i + 1)]] }) }).then(async (response) => ({
        status: response.status,
        body: await response.json(),
      })),
    );
    await new Promise((resolve) => setTimeout(resolve, 150));
    server.child.kill('SIGTERM');
    const results = await Promise.all(inFlight);
    expect(results).toEqual(Array.from({ length: 8 }, (_, i) => ({ status: 200, body: { predictions: [[i + 1, -(i + 1)]] } })));
    expect(await server.exited).toBe(0);
    await expect(fetch(`${server.url}/v2/health/live`)).rejects.toThrow();
    expect(server.logs.map((entry) => entry.msg)).toContain('draining in-flight requests');
  });
});
