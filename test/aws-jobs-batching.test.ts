/**
 * How the AWS jobs worker groups a batch into tensor runs and what becomes of the jobs when a run fails:
 * packing at the model's maxBatchSize, a joint run the model rejects falling back to one run per job,
 * internal failures retried through SQS (DelaySeconds) then given up into dead-letter/, and a model that
 * cannot load failing the whole run without a fallback. Through the real entries (adapters/aws/handler.ts
 * and sqs-jobs.ts), S3 and SQS on fauxqs 1.9.2 (127.0.0.1), real onnxruntime with throwaway models.
 * No Lambda runtime or event source mapping: test/support/sqs-events.ts plays the latter.
 */
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Core, Job } from '../handlers/index.ts';
import { httpApiV2Event, lambdaContext, readResult } from './support/aws-events.ts';
import { identityModel, writeModelRepository } from './support/onnx-models.ts';
import { startAwsJobsWorld, type AwsJobsWorld, type QueueRef } from './support/aws-jobs-world.ts';
import { pollOnce, receive } from './support/sqs-events.ts';

const BUCKET = 'modelfn-jobs-batching';
let world: AwsJobsWorld;
let s3: S3Client;
let sqs: SQSClient;
let queue: QueueRef;
let http$: AwsJobsWorld['http'];
let worker: AwsJobsWorld['worker'];
let environment: AwsJobsWorld['environment'];
let core: Core;

// `pairs`: {a, b} -> the same back through an Identity model on [batch, 2], at most 4 rows a run. An instance
// with `wide: true` makes the feed [n, 3], which onnxruntime refuses (an input error, as for real bad data).
const pairsSource = `import { Tensor } from 'onnxruntime-node';
export default {
  name: 'pairs', version: '1', file: 'model.onnx',
  batching: { maxBatchSize: 4 },
  preprocess(instances) {
    const width = instances.some((instance) => instance.wide) ? 3 : 2;
    const data = new Float32Array(instances.length * width);
    instances.forEach((instance, i) => { data[i * width] = instance.a; data[i * width + 1] = instance.b; });
    return { x: new Tensor('float32', data, [instances.length, width]) };
  },
  postprocess(outputs, instances) {
    const data = outputs.x_out.data;
    return instances.map((_, i) => ({ a: data[i * 2], b: data[i * 2 + 1] }));
  },
};
`;
const customPredict = (name: string, body: string) => `let calls = 0;
export default {
  name: '${name}', version: '1', file: 'model.onnx', batching: false,
  async predict(instances) {
    calls++;
    ${body}
    return instances.map((instance) => ({ echo: instance, calls }));
  },
};
`;

beforeAll(async () => {
  const onnx = identityModel([{ name: 'x', type: 'float32', dims: ['batch', 2] }]);
  const modelsDir = writeModelRepository(
    [
      { name: 'pairs', onnx, source: pairsSource },
      { name: 'flaky', onnx, source: customPredict('flaky', "if (calls === 1) throw new Error('transient failure');") },
      { name: 'failing', onnx, source: customPredict('failing', "throw new Error('always fails');") },
      { name: 'corrupt', onnx: 'not an onnx file', source: pairsSource.replaceAll('pairs', 'corrupt') },
    ],
    { insideProject: true },
  );
  world = await startAwsJobsWorld({
    bucket: BUCKET,
    env: { MODELFN_MODELS_DIR: modelsDir, MODELFN_JOB_MAX_ATTEMPTS: '2', MODELFN_JOB_RETRY_BASE_MS: '20' },
    makeQueue: (createQueue) => createQueue('modelfn-jobs-batching'),
  });
  ({ s3, sqs, queue, http: http$, worker, environment, core } = world);
});

afterAll(async () => {
  await world?.stop();
});

async function submit(model: string, instances: unknown[]): Promise<string> {
  const result = readResult((await http$.handler(httpApiV2Event({ method: 'POST', path: `/v1/models/${model}/jobs`, body: JSON.stringify({ instances }) }), lambdaContext() as never)) as never);
  expect(result.status).toBe(202);
  return (JSON.parse(result.body) as { id: string }).id;
}

async function storedJob(id: string): Promise<Job> {
  const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `jobs/${id}.json` }));
  return JSON.parse(await object.Body!.transformToString()) as Job;
}

/** One batch through the worker; the worker's own "sqs job batch" log line comes back with it. */
async function pollBatch(max = 20) {
  const info = vi.spyOn(environment.logger, 'info');
  try {
    const result = await pollOnce(sqs, queue, (event: SQSEvent) => worker.handler(event, lambdaContext() as never) as Promise<SQSBatchResponse>, max);
    const line = info.mock.calls.find((call) => call[1] === 'sqs job batch')?.[0] as Record<string, unknown> | undefined;
    return { ...result, line };
  } finally {
    info.mockRestore();
  }
}

const rowsPerRun = (model: string) => world.tensorRuns(model);

const pair = (n: number) => ({ a: n, b: n + 0.5 });

describe('tensor runs of an SQS batch', () => {
  it('packs whole jobs into runs of at most maxBatchSize rows: 10 one-row jobs and a 6-row job make 4 runs', async () => {
    const small = [];
    for (let n = 0; n < 10; n++) small.push(await submit('pairs', [pair(n)]));
    const wide = Array.from({ length: 6 }, (_, k) => pair(100 + k));
    const big = await submit('pairs', wide);
    const { messages, response, line } = await pollBatch();
    expect(messages).toHaveLength(11);
    expect(response.batchItemFailures).toEqual([]);
    // 4 + 4 + 2 rows, then the 6-row job alone (a job is never split, as a direct predict is not).
    expect(line).toMatchObject({ records: 11, tensorRuns: 4, outcomes: { succeeded: 11 } });
    expect(await rowsPerRun('pairs')).toEqual({ runs: 4, rows: 16 });
    for (const [n, id] of small.entries()) expect((await storedJob(id)).result).toEqual({ predictions: [pair(n)] });
    expect((await storedJob(big)).result).toEqual({ predictions: wide });
  });

  it('a joint run the model rejects falls back to one run per job: only the culprit fails, with its own reason, not retried', async () => {
    const ids = [await submit('pairs', [pair(1)]), await submit('pairs', [{ ...pair(2), wide: true }]), await submit('pairs', [pair(3), pair(4)])];
    const { response, line } = await pollBatch();
    expect(response.batchItemFailures).toEqual([]);
    expect(line).toMatchObject({ records: 3, tensorRuns: 4, outcomes: { succeeded: 2, failed: 1 } });
    expect((await storedJob(ids[0]!)).result).toEqual({ predictions: [pair(1)] });
    expect((await storedJob(ids[2]!)).result).toEqual({ predictions: [pair(3), pair(4)] });
    const culprit = await storedJob(ids[1]!);
    expect(culprit).toMatchObject({ status: 'failed', attempts: 1 });
    expect(culprit.error).toMatch(/^the model rejected the input: .*dimensions/i);
    expect(await receive(sqs, queue.url)).toEqual([]);
  });

  it('internal failures are retried through SQS after their backoff (DelaySeconds), then given up into dead-letter/', async () => {
    const flaky = await submit('flaky', [{ n: 1 }]);
    const failing = await submit('failing', [{ n: 2 }]);
    const first = await pollBatch();
    expect(first.response.batchItemFailures).toEqual([]);
    expect(first.line).toMatchObject({ records: 2, outcomes: { 'retry-scheduled': 2 } });
    for (const id of [flaky, failing]) {
      expect(await storedJob(id)).toMatchObject({ status: 'queued', attempts: 1, error: 'attempt 1 failed: internal error while running the model' });
    }
    // Delayed: not visible yet.
    expect(await receive(sqs, queue.url)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const second = await pollBatch();
    // The retry messages carry the input again.
    expect(second.messages.map((message) => JSON.parse(message.Body!)).sort((x, y) => x.model.localeCompare(y.model))).toEqual([
      { jobId: failing, model: 'failing', instances: [{ n: 2 }] },
      { jobId: flaky, model: 'flaky', instances: [{ n: 1 }] },
    ]);
    expect(await storedJob(flaky)).toMatchObject({ status: 'succeeded', attempts: 2, result: { predictions: [{ echo: { n: 1 }, calls: 2 }] } });
    expect(await storedJob(failing)).toMatchObject({ status: 'failed', attempts: 2, error: 'gave up after 2 attempts: internal error while running the model' });
    const dead = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `dead-letter/${failing}.json` }));
    expect(JSON.parse(await dead.Body!.transformToString())).toMatchObject({ id: failing, status: 'failed' });
  });

  it('a model that cannot load fails the whole run once (no per-job fallback) and every job retries', async () => {
    const ids = [await submit('corrupt', [pair(1)]), await submit('corrupt', [pair(2)]), await submit('corrupt', [pair(3)])];
    const { response, line } = await pollBatch();
    expect(response.batchItemFailures).toEqual([]);
    expect(line).toMatchObject({ records: 3, tensorRuns: 1, outcomes: { 'retry-scheduled': 3 } });
    for (const id of ids) {
      const job = await storedJob(id);
      expect(job).toMatchObject({ status: 'queued', attempts: 1 });
      expect(job.error).toMatch(/^attempt 1 failed: model corrupt is not ready: /);
    }
  });
});
