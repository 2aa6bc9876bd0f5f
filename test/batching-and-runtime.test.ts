import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MicroBatcher } from '../handlers/batcher.ts';
import { createHttpApp } from '../handlers/http-app.ts';
import type { TensorMap } from '../handlers/model-definition.ts';
import { loadModelRepository } from '../handlers/model-repository.ts';
import { identityModel, writeModelRepository } from './support/onnx-models.ts';

const rowsOf = (values: number[]) => new Tensor('float32', Float32Array.from(values.flatMap((v) => [v, -v])), [values.length, 2]);

describe('MicroBatcher on a real onnxruntime session', () => {
  let session: InferenceSession;
  const runs: number[] = [];
  const run = async (feeds: TensorMap) => {
    runs.push(feeds.x!.dims[0]!);
    return (await session.run(feeds)) as TensorMap;
  };

  beforeAll(async () => {
    session = await InferenceSession.create(identityModel([{ name: 'x', type: 'float32', dims: ['batch', 2] }]));
  });
  afterAll(() => session.release());

  it('runs a lone request at once, with no timer wait', async () => {
    runs.length = 0;
    const batcher = new MicroBatcher(run, { maxBatchSize: 64 });
    const started = performance.now();
    const { outputs, info } = await batcher.submit({ x: rowsOf([1]) }, 1);
    expect(performance.now() - started).toBeLessThan(50);
    expect(Array.from(outputs.x_out!.data as Float32Array)).toEqual([1, -1]);
    expect(info).toMatchObject({ batchRows: 1, batchRequests: 1 });
    expect(runs).toEqual([1]);
  });

  it('stacks requests that arrive while a run is in flight, and gives each its own rows back', async () => {
    runs.length = 0;
    const batcher = new MicroBatcher(run, { maxBatchSize: 64 });
    const values = Array.from({ length: 20 }, (_, i) => i + 1);
    const results = await Promise.all(values.map((v) => batcher.submit({ x: rowsOf([v, v * 100]) }, 2)));
    // The first request finds the model idle and runs alone; the other 19 queued behind it and share one run.
    expect(runs).toEqual([2, 38]);
    results.forEach(({ outputs }, i) => {
      const v = values[i]!;
      expect(outputs.x_out!.dims).toEqual([2, 2]);
      expect(Array.from(outputs.x_out!.data as Float32Array)).toEqual([v, -v, v * 100, -v * 100]);
    });
  });

  it('never puts more than maxBatchSize rows in one run', async () => {
    runs.length = 0;
    const batcher = new MicroBatcher(run, { maxBatchSize: 8 });
    await Promise.all(Array.from({ length: 30 }, (_, i) => batcher.submit({ x: rowsOf([i]) }, 1)));
    expect(runs.every((rows) => rows <= 8)).toBe(true);
    expect(runs.reduce((a, b) => a + b, 0)).toBe(30);
  });

  it('waits up to maxDelayMs for a fuller batch when asked to', async () => {
    runs.length = 0;
    const batcher = new MicroBatcher(run, { maxBatchSize: 4, maxDelayMs: 30 });
    const first = batcher.submit({ x: rowsOf([1]) }, 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = batcher.submit({ x: rowsOf([2]) }, 1);
    await Promise.all([first, second]);
    expect(runs).toEqual([2]);
  });

  it('refuses with 503 past maxQueueRows instead of queueing without bound', async () => {
    const batcher = new MicroBatcher(run, { maxBatchSize: 2, maxQueueRows: 3 });
    // The first request runs at once; the next 3 rows wait in the queue, which is then full.
    const accepted = [batcher.submit({ x: rowsOf([1]) }, 1), batcher.submit({ x: rowsOf([2, 3, 4]) }, 3)];
    await expect(batcher.submit({ x: rowsOf([4]) }, 1)).rejects.toMatchObject({ status: 503, message: 'model is overloaded: 3 rows already queued' });
    await Promise.all(accepted);
  });

  it('keeps requests with different trailing dims in separate runs', async () => {
    const wide = await InferenceSession.create(identityModel([{ name: 'x', type: 'float32', dims: ['batch', 'width'] }]));
    const widths: string[] = [];
    const batcher = new MicroBatcher(async (feeds) => {
      widths.push(feeds.x!.dims.join('x'));
      return (await wide.run(feeds)) as TensorMap;
    }, { maxBatchSize: 64 });
    const make = (width: number) => new Tensor('float32', new Float32Array(width).fill(width), [1, width]);
    const results = await Promise.all([2, 3, 2, 3, 2].map((width) => batcher.submit({ x: make(width) }, 1)));
    expect(results.map(({ outputs }) => outputs.x_out!.dims[1])).toEqual([2, 3, 2, 3, 2]);
    // The first runs alone; then the oldest queued (width 3) goes with its own kind, then the width-2 pair.
    expect(widths).toEqual(['1x2', '2x3', '2x2']);
    await wide.release();
  });

  it('fails only the request whose tensors break a stacked run', async () => {
    let calls = 0;
    const batcher = new MicroBatcher(async (feeds) => {
      calls++;
      const data = feeds.x!.data as Float32Array;
      if (data.includes(13)) throw new Error('bad row');
      return (await session.run(feeds)) as TensorMap;
    }, { maxBatchSize: 64 });
    const settled = await Promise.allSettled([1, 2, 13, 4].map((v) => batcher.submit({ x: rowsOf([v]) }, 1)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(calls).toBeGreaterThan(2);
  });
});

describe('model runtime: lazy, single-flight, never a crash', () => {
  const modelFile = identityModel([{ name: 'x', type: 'float32', dims: ['batch', 2] }]);
  const body = JSON.stringify({ inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] });

  it('loads once under concurrent first requests, and only the requests that waited are cold', async () => {
    const dir = writeModelRepository([{ name: 'm', onnx: modelFile, definition: { batching: { maxBatchSize: 8 } } }]);
    const repository = await loadModelRepository({ dir });
    const service = repository.get('m');
    expect(service.runtime.state).toBe('unloaded');
    const loads: number[] = [];
    const original = InferenceSession.create;
    InferenceSession.create = ((...args: Parameters<typeof original>) => {
      loads.push(Date.now());
      return original(...args);
    }) as typeof original;
    try {
      const results = await Promise.all(Array.from({ length: 10 }, () => service.infer(JSON.parse(body))));
      expect(loads).toHaveLength(1);
      expect(results.every(({ timings }) => timings.cold)).toBe(true);
      const warm = await service.infer(JSON.parse(body));
      expect(warm.timings.cold).toBe(false);
      expect(loads).toHaveLength(1);
    } finally {
      InferenceSession.create = original;
      await repository.dispose();
    }
  });

  it('a missing or corrupt model file is "not ready" with the reason, and the other models still serve', async () => {
    const dir = writeModelRepository([
      { name: 'good', onnx: modelFile },
      { name: 'corrupt', onnx: 'this is not an onnx file' },
      { name: 'missing' },
      { name: 'broken-definition', source: 'export default 42;' },
    ]);
    const repository = await loadModelRepository({ dir });
    const app = createHttpApp({ repository });
    const call = async (method: string, url: string, payload?: string) => {
      const response = await app.handle({ method, url, headers: {}, body: payload });
      return { status: response.status, body: JSON.parse(response.body) };
    };

    expect(await call('GET', '/v2/models/good/ready')).toEqual({ status: 200, body: { name: 'good', ready: true } });
    const corrupt = await call('GET', '/v2/models/corrupt/ready');
    expect(corrupt.status).toBe(503);
    expect(corrupt.body.error).toMatch(/^model file could not be loaded/);
    const missing = await call('POST', '/v2/models/missing/infer', body);
    expect(missing.status).toBe(503);
    expect(missing.body.error).toMatch(/^model missing is not ready: model file not found/);
    // Asked again at once, the failure is remembered rather than retried in a loop.
    expect((await call('POST', '/v2/models/missing/infer', body)).body).toEqual(missing.body);
    expect(await call('GET', '/v2/models/broken-definition')).toEqual({
      status: 404,
      body: { error: 'model "broken-definition" failed to load its definition: model.js has no default export from defineModel()' },
    });
    const health = await call('GET', '/v2/health/ready');
    expect(health.status).toBe(503);
    expect(health.body.models.map((model: { name: string }) => model.name).sort()).toEqual(['broken-definition', 'corrupt', 'missing']);
    expect((await call('POST', '/v2/models/good/infer', body)).status).toBe(200);

    // The file appears later (a deploy finishing): after the retry pause the model loads.
    writeFileSync(path.join(dir, 'missing', 'model.onnx'), modelFile);
    await new Promise((resolve) => setTimeout(resolve, 5_100));
    expect((await call('POST', '/v2/models/missing/infer', body)).status).toBe(200);
    await repository.dispose();
  });

  it('compiles an instance schema on first use: a broken one makes v1 predict 503 naming it, and tensors still serve', async () => {
    const dir = writeModelRepository([
      {
        name: 'bad-schema',
        onnx: modelFile,
        source: `import { Tensor } from 'onnxruntime-node';
export default {
  name: 'bad-schema', version: '1', file: 'model.onnx',
  instanceSchema: { type: 'not-a-json-type' },
  preprocess: (instances) => ({ x: new Tensor('float32', instances.flatMap((i) => [i.a, i.b]), [instances.length, 2]) }),
  postprocess: (outputs) => Array.from({ length: outputs.x.dims[0] }, () => ({})),
};
`,
      },
    ], { insideProject: true });
    const repository = await loadModelRepository({ dir });
    const app = createHttpApp({ repository });
    const predict = await app.handle({ method: 'POST', url: '/v1/models/bad-schema:predict', headers: {}, body: JSON.stringify({ instances: [{ a: 1, b: 2 }] }) });
    expect(predict.status).toBe(503);
    expect(JSON.parse(predict.body).error).toMatch(/^model "bad-schema" is not ready: its instanceSchema does not compile: /);
    expect((await app.handle({ method: 'POST', url: '/v2/models/bad-schema/infer', headers: {}, body })).status).toBe(200);
    await repository.dispose();
  });
});
