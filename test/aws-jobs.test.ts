/**
 * Async jobs on AWS: submit through the real HTTP entry (adapters/aws/handler.ts, HTTP API v2 events), the
 * job stored in S3 and sent to SQS, the real messages received from the queue and handed to the SQS entry
 * (adapters/aws/sqs-jobs.ts) as Lambda's event source mapping would, results read back from S3 and through
 * GET /v1/jobs/{id}. S3 and SQS are fauxqs 1.9.2 on 127.0.0.1 with the real AWS SDK v3 clients; the model is
 * the real anomaly model on onnxruntime.
 *
 * Not real here: no Lambda runtime or event source mapping — test/support/sqs-events.ts receives, invokes,
 * deletes the records that did not fail and makes the failed ones visible again at once (Lambda would wait
 * out the visibility timeout). fauxqs 1.9.2 does not enforce `If-None-Match` on PutObject (its putObject
 * ignores the header): for the race between submits with one Idempotency-Key, a client middleware answers
 * the conditional PUT of an existing key with S3's documented 412, as S3 would; everything else there is real.
 */
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { PurgeQueueCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Core, Job } from '../handlers/index.ts';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifyWebhook } from '../handlers/webhook.ts';
import { generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';
import { fixture, httpApiV2Event, lambdaContext, readResult } from './support/aws-events.ts';
import { startAwsJobsWorld, type AwsJobsWorld, type QueueRef } from './support/aws-jobs-world.ts';
import { pollOnce, receive } from './support/sqs-events.ts';

const SECRET = 'aws-jobs-webhook-secret';
const BUCKET = 'modelfn-jobs-test';
const MAX_RECEIVES = 3;
const BATCH_BUCKET = 'modelfn-batch-api-test';

let world: AwsJobsWorld;
let s3: S3Client;
let sqs: SQSClient;
let queue: QueueRef;
let dlq: QueueRef;
let http$: AwsJobsWorld['http'];
let worker: AwsJobsWorld['worker'];
let environment: AwsJobsWorld['environment'];
let core: Core;

beforeAll(async () => {
  world = await startAwsJobsWorld({
    bucket: BUCKET,
    env: {
      MODELFN_JOBS_MAX_RECEIVES: String(MAX_RECEIVES),
      MODELFN_WEBHOOK_SECRET: SECRET,
      // First webhook retry after 1–2 s: a delay SQS must hold (DelaySeconds 1 or 2), short enough for a test.
      MODELFN_WEBHOOK_RETRY_BASE_MS: '2000',
      MODELFN_BATCH_BUCKET: BATCH_BUCKET,
    },
    // As serverless.yml makes it: 256 KiB messages, redrive to the DLQ after MAX_RECEIVES receives.
    makeQueue: async (createQueue) => {
      dlq = await createQueue('modelfn-jobs-dlq');
      return createQueue('modelfn-jobs', {
        MaximumMessageSize: '262144',
        VisibilityTimeout: '30',
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: MAX_RECEIVES }),
      });
    },
  });
  ({ s3, sqs, queue, http: http$, worker, environment, core } = world);
});

afterAll(async () => {
  await world?.stop();
});

async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const result = await http$.handler(httpApiV2Event({ method, path, body: body === undefined ? undefined : JSON.stringify(body), headers }), lambdaContext() as never);
  const read = readResult(result as never);
  return { status: read.status, headers: read.headers, body: read.body ? (JSON.parse(read.body) as Record<string, unknown>) : undefined };
}

const submit = (body: unknown, headers: Record<string, string> = {}) => api('POST', '/v1/models/anomaly/jobs', body, headers);

const runWorker = (event: unknown) => worker.handler(event, lambdaContext({ functionName: 'modelfn-jobsWorker' }) as never) as Promise<SQSBatchResponse>;
const poll = (max = 10) => pollOnce(sqs, queue, (event: SQSEvent) => runWorker(event), max);

async function storedJob(id: string): Promise<Job | undefined> {
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `jobs/${id}.json` }));
    return JSON.parse(await object.Body!.transformToString()) as Job;
  } catch {
    return undefined;
  }
}

const batchRuns = () => world.tensorRuns('anomaly');

const instancesOf = (count: number, seed: number) => generateUserDays(count, seed).map((day, i) => ({ id: `s${seed}-${i}`, ...toFeatures(day) }));

function expectSamePredictions(actual: unknown, expected: { id?: unknown; score: number; anomaly: boolean }[]) {
  const predictions = actual as typeof expected;
  expect(predictions).toHaveLength(expected.length);
  predictions.forEach((prediction, i) => {
    expect(prediction.id).toEqual(expected[i]!.id);
    expect(prediction.anomaly).toBe(expected[i]!.anomaly);
    expect(prediction.score).toBeCloseTo(expected[i]!.score, 6);
  });
}

describe('async jobs through API Gateway, SQS and S3', () => {
  it('a batch of 10 jobs: 202 + Location, messages in the real queue, ONE tensor run, results in S3 and on GET', async () => {
    const inputs = Array.from({ length: 10 }, (_, n) => instancesOf(1 + (n % 3), 100 + n));
    const accepted = [];
    for (const instances of inputs) {
      const response = await submit({ instances });
      expect(response.status).toBe(202);
      expect(response.body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), status: 'queued' });
      expect(response.headers.location).toBe(`/v1/jobs/${response.body!.id as string}`);
      accepted.push(response.body!.id as string);
    }
    // Stored before acknowledged, without its input (the message carries that).
    const queued = (await storedJob(accepted[0]!))!;
    expect(queued).toMatchObject({ id: accepted[0], model: 'anomaly', status: 'queued', attempts: 0 });
    expect(queued.instances).toBeUndefined();

    const info = vi.spyOn(environment.logger, 'info');
    const before = await batchRuns();
    const { messages, response } = await poll();
    expect(messages).toHaveLength(10);
    expect(messages.map((message) => JSON.parse(message.Body!).jobId)).toEqual(accepted);
    expect(JSON.parse(messages[3]!.Body!)).toEqual({ jobId: accepted[3], model: 'anomaly', instances: inputs[3] });
    expect(messages.every((message) => message.Attributes!.ApproximateReceiveCount === '1')).toBe(true);
    expect(response).toEqual({ batchItemFailures: [] });

    const after = await batchRuns();
    const rows = inputs.reduce((sum, instances) => sum + instances.length, 0);
    expect({ runs: after.runs - before.runs, rows: after.rows - before.rows }).toEqual({ runs: 1, rows });
    const batchLine = info.mock.calls.find((call) => call[1] === 'sqs job batch')?.[0] as Record<string, unknown>;
    info.mockRestore();
    expect(batchLine).toMatchObject({ event: 'sqs', cold: false, records: 10, tensorRuns: 1, outcomes: { succeeded: 10 }, failedRecords: 0 });

    const service = core.repository.get('anomaly');
    for (const [n, id] of accepted.entries()) {
      const direct = (await service.predict(inputs[n]!)).predictions as { id: string; score: number; anomaly: boolean }[];
      const stored = (await storedJob(id))!;
      expect(stored).toMatchObject({ id, status: 'succeeded', attempts: 1 });
      expectSamePredictions((stored.result as { predictions: unknown[] }).predictions, direct);
      const got = await api('GET', `/v1/jobs/${id}`);
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ id, status: 'succeeded' });
      expect(got.body!.instances).toBeUndefined();
      expectSamePredictions((got.body!.result as { predictions: unknown }).predictions, direct);
    }
    expect(await receive(sqs, queue.url)).toEqual([]); // every message was deleted
  });

  it('a redelivered message does not run its finished job again', async () => {
    const { body } = await submit({ instances: instancesOf(1, 7) });
    const [message] = await receive(sqs, queue.url, 1);
    const event = { Records: [{ ...fixture<SQSEvent>('sqs').Records[0]!, messageId: message!.MessageId!, body: message!.Body! }] };
    expect(await runWorker(event)).toEqual({ batchItemFailures: [] });
    const first = (await storedJob(body!.id as string))!;
    expect(await runWorker(event)).toEqual({ batchItemFailures: [] });
    expect(await storedJob(body!.id as string)).toEqual(first);
    expect(first).toMatchObject({ status: 'succeeded', attempts: 1 });
    await sqs.send(new PurgeQueueCommand({ QueueUrl: queue.url }));
  });

  it('poison messages in a batch of 10 fail alone: bad JSON and an unknown job come back, a rejected input fails its job, the rest succeed', async () => {
    const good: string[] = [];
    for (let n = 0; n < 7; n++) good.push((await submit({ instances: instancesOf(2, 200 + n) })).body!.id as string);
    const badJson = await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: '{"jobId": "oops' }));
    const unknownId = '00000000-0000-4000-8000-000000000000';
    const unknown = await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: JSON.stringify({ jobId: unknownId, model: 'anomaly', instances: instancesOf(1, 1) }) }));
    // A job accepted under an older schema (say): stored and queued through the real ports, input the model now refuses.
    const { store, queue: jobQueue } = await environment.awsJobPorts();
    const now = new Date().toISOString();
    const rejected: Job = { id: '11111111-1111-4111-8111-111111111111', model: 'anomaly', status: 'queued', createdAt: now, updatedAt: now, attempts: 0, instances: [{ logins: 1 }] };
    await store.create(rejected);
    await jobQueue.send(rejected);

    const info = vi.spyOn(environment.logger, 'info');
    const { messages, response } = await poll();
    const line = info.mock.calls.find((call) => call[1] === 'sqs job batch')?.[0];
    info.mockRestore();
    expect(messages).toHaveLength(10);
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier).sort()).toEqual([badJson.MessageId, unknown.MessageId].sort());
    // The bad job failed its own validation: the other jobs still ran in one tensor run.
    expect(line).toMatchObject({ records: 10, tensorRuns: 1, outcomes: { succeeded: 7, failed: 1, 'not-found': 1 }, failedRecords: 2 });
    for (const id of good) expect(await storedJob(id)).toMatchObject({ status: 'succeeded', attempts: 1 });
    expect(await storedJob(rejected.id)).toMatchObject({ status: 'failed', attempts: 1, error: 'instances[0] is missing required property "failed_logins"' });
    const deadLetters = await api('GET', '/v1/dead-letter');
    expect((deadLetters.body!.jobs as { id: string }[]).map((job) => job.id)).not.toContain(rejected.id);
    // Only the two failed records are back in the queue: the rejected job is not retried.
    const back = await receive(sqs, queue.url);
    expect(back.map((message) => message.MessageId).sort()).toEqual([badJson.MessageId, unknown.MessageId].sort());
    await sqs.send(new PurgeQueueCommand({ QueueUrl: queue.url }));
  });

  it('a record that keeps failing ends in the real DLQ after maxReceiveCount, its job marked failed on the last receive', async () => {
    const { store } = await environment.awsJobPorts();
    const now = new Date().toISOString();
    const job: Job = { id: '22222222-2222-4222-8222-222222222222', model: 'anomaly', status: 'queued', createdAt: now, updatedAt: now, attempts: 0, callbackUrl: undefined };
    delete job.callbackUrl;
    await store.create(job);
    // A claim-check message whose input object is gone (deleted, or never written).
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: JSON.stringify({ jobId: job.id, model: 'anomaly', inputKey: `inputs/${job.id}.json` }) }));
    const warn = vi.spyOn(environment.logger, 'warn');
    for (let receiveCount = 1; receiveCount <= MAX_RECEIVES; receiveCount++) {
      const { messages, response } = await poll();
      expect(messages.map((message) => [message.MessageId, message.Attributes!.ApproximateReceiveCount])).toEqual([[sent.MessageId, String(receiveCount)]]);
      expect(response.batchItemFailures).toEqual([{ itemIdentifier: sent.MessageId }]);
      expect((await storedJob(job.id))!.status).toBe(receiveCount < MAX_RECEIVES ? 'queued' : 'failed');
    }
    const lines = warn.mock.calls.map((call) => call[0] as Record<string, unknown>).filter((fields) => fields.messageId === sent.MessageId);
    warn.mockRestore();
    expect(lines.map((fields) => [fields.receiveCount, fields.lastReceive, fields.reason])).toEqual(
      [1, 2, 3].map((n) => [n, n === MAX_RECEIVES, `job ${job.id}: the claim-check object inputs/${job.id}.json does not exist`]),
    );
    expect(await storedJob(job.id)).toMatchObject({
      status: 'failed',
      error: `gave up after ${MAX_RECEIVES} deliveries: job ${job.id}: the claim-check object inputs/${job.id}.json does not exist`,
    });
    const deadLetters = await api('GET', '/v1/dead-letter');
    expect((deadLetters.body!.jobs as { id: string }[]).map((dead) => dead.id)).toContain(job.id);
    // The next receive moves it to the DLQ (SQS's redrive), where nothing is lost.
    expect((await poll()).messages).toEqual([]);
    const inDlq = await receive(sqs, dlq.url);
    expect(inDlq.map((message) => message.MessageId)).toEqual([sent.MessageId]);
  });

  it('a worker that dies on every delivery: the job reaches the DLQ still "running", and jobsDeadLetters marks it failed', async () => {
    const { store } = await environment.awsJobPorts();
    const deadLetters = await import('../adapters/aws/sqs-dead-letters.ts');
    const drain = (event: SQSEvent) => deadLetters.handler(event, lambdaContext({ functionName: 'modelfn-jobsDeadLetters' }) as never) as Promise<SQSBatchResponse>;
    const now = new Date().toISOString();
    // Claimed by a worker (running, one attempt) that then crashed, ran out of memory or timed out, every time.
    const stuck: Job = { id: '66666666-6666-4666-8666-666666666666', model: 'anomaly', status: 'running', createdAt: now, updatedAt: now, attempts: 1 };
    const finished: Job = { id: '77777777-7777-4777-8777-777777777777', model: 'anomaly', status: 'succeeded', createdAt: now, updatedAt: now, attempts: 1, result: { predictions: [] } };
    await store.create(stuck);
    await store.create(finished);
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: JSON.stringify({ jobId: stuck.id, model: 'anomaly', instances: instancesOf(1, 15) }) }));
    const dies = async (event: SQSEvent): Promise<SQSBatchResponse> => ({ batchItemFailures: event.Records.map((record) => ({ itemIdentifier: record.messageId })) });
    for (let receive = 1; receive <= MAX_RECEIVES; receive++) expect((await pollOnce(sqs, queue, dies)).messages).toHaveLength(1);
    expect((await poll()).messages).toEqual([]); // redriven
    expect((await storedJob(stuck.id))!.status).toBe('running');

    // Beside it in the DLQ: a message for a job that did finish, and one that names no job.
    await sqs.send(new SendMessageCommand({ QueueUrl: dlq.url, MessageBody: JSON.stringify({ jobId: finished.id, model: 'anomaly', instances: [] }) }));
    await sqs.send(new SendMessageCommand({ QueueUrl: dlq.url, MessageBody: 'not a job message' }));
    const info = vi.spyOn(environment.logger, 'info');
    const error = vi.spyOn(environment.logger, 'error');
    const { messages, response } = await pollOnce(sqs, dlq, drain);
    expect(messages.map((message) => message.MessageId)).toContain(sent.MessageId);
    expect(response.batchItemFailures).toEqual([]);
    expect(info.mock.calls.map((call) => call[0]).find((fields) => (fields as { event?: string }).event === 'sqs-dead-letters')).toMatchObject({
      records: 3,
      failed: 1,
      alreadyFinished: 1,
      unreadable: 1,
      failedRecords: 0,
    });
    expect(error.mock.calls.find((call) => call[1] === 'dead letter names no job: dropped')?.[0]).toMatchObject({
      reason: 'the record body is not JSON: Unexpected token \'o\', "not a job message" is not valid JSON',
    });
    info.mockRestore();
    error.mockRestore();

    expect(await storedJob(stuck.id)).toMatchObject({
      status: 'failed',
      error: `its message went to the dead-letter queue after ${MAX_RECEIVES} deliveries with no answer from the worker (it crashed, ran out of memory or timed out)`,
    });
    expect((await storedJob(finished.id))!.status).toBe('succeeded');
    const listed = await api('GET', '/v1/dead-letter');
    expect((listed.body!.jobs as { id: string }[]).map((dead) => dead.id)).toContain(stuck.id);
    expect((await api('GET', `/v1/jobs/${stuck.id}`)).body).toMatchObject({ id: stuck.id, status: 'failed' });
    expect(await receive(sqs, dlq.url)).toEqual([]); // drained: nothing comes back to it
  });

  it('POST /v1/models/{name}/batch: an object in the batch bucket scored by the worker into output/, the job saying where', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: BATCH_BUCKET }));
    const rows = instancesOf(3, 16);
    const body = `${[rows[0], { id: 'bad', logins: 1 }, rows[1], rows[2]].map((row) => JSON.stringify(row)).join('\n')}\n`;
    await s3.send(new PutObjectCommand({ Bucket: BATCH_BUCKET, Key: 'uploads/day.jsonl', Body: body }));

    // Refused before anything is stored: outputs go under output/ only, inputs never come from there.
    expect(await api('POST', '/v1/models/anomaly/batch', { input: 'uploads/day.jsonl', output: 'results/day.jsonl' })).toMatchObject({
      status: 400,
      body: { error: '"output" must be a key under "output/" in the batch bucket' },
    });
    expect(await api('POST', '/v1/models/anomaly/batch', { input: 'output/x.jsonl', output: 'output/y.jsonl' })).toMatchObject({
      status: 400,
      body: { error: '"input" must not be under the output prefix "output/"' },
    });

    const accepted = await api('POST', '/v1/models/anomaly/batch', { input: 'uploads/day.jsonl', output: 'output/api/day.jsonl' });
    expect(accepted.status).toBe(202);
    const id = accepted.body!.id as string;
    const { messages, response } = await poll();
    expect(messages).toHaveLength(1);
    expect(response.batchItemFailures).toEqual([]);
    expect((await api('GET', `/v1/jobs/${id}`)).body).toMatchObject({
      id,
      status: 'succeeded',
      result: { records: 4, succeeded: 3, failed: 1, output: 'output/api/day.jsonl', errors: 'output/api/day.jsonl.errors.jsonl' },
    });
    const read = async (key: string) => (await (await s3.send(new GetObjectCommand({ Bucket: BATCH_BUCKET, Key: key }))).Body!.transformToString()).trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const results = await read('output/api/day.jsonl');
    expect(results.map((result) => [result.id, result.line])).toEqual([[rows[0]!.id, 1], [rows[1]!.id, 3], [rows[2]!.id, 4]]);
    const direct = (await core.repository.get('anomaly').predict(rows.map(({ id: _id, ...features }) => features))).predictions as { score: number }[];
    results.forEach((result, i) => expect((result.prediction as { score: number }).score).toBeCloseTo(direct[i]!.score, 6));
    expect(await read('output/api/day.jsonl.errors.jsonl')).toEqual([{ line: 2, id: 'bad', error: 'line 2 is missing required property "failed_logins"' }]);
  });

  it('a batch job that would outlive the worker stops before its timeout, failed and saying why; nothing is written', async () => {
    const rows = instancesOf(600, 17);
    await s3.send(new PutObjectCommand({ Bucket: BATCH_BUCKET, Key: 'uploads/big.jsonl', Body: `${rows.map((row) => JSON.stringify(row)).join('\n')}\n` }));
    const accepted = await api('POST', '/v1/models/anomaly/batch', { input: 'uploads/big.jsonl', output: 'output/api/big.jsonl' });
    expect(accepted.status).toBe(202);
    // 5 s left: under the 10 s margin (MODELFN_BATCH_TIME_MARGIN_MS) at the first check.
    const context = lambdaContext({ functionName: 'modelfn-jobsWorker', getRemainingTimeInMillis: () => 5_000 });
    const { response } = await pollOnce(sqs, queue, (event) => worker.handler(event, context as never) as Promise<SQSBatchResponse>);
    expect(response.batchItemFailures).toEqual([]);
    expect((await api('GET', `/v1/jobs/${accepted.body!.id as string}`)).body).toMatchObject({
      status: 'failed',
      attempts: 1,
      error: 'input object "uploads/big.jsonl" takes longer than one run of this worker allows (stopped within its first chunk; nothing written): split it into smaller objects',
    });
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BATCH_BUCKET, Prefix: 'output/api/big' }));
    expect(listed.Contents ?? []).toEqual([]);
  });

  it('claim check: a job with ~400 KB of instances travels through S3 and succeeds', async () => {
    const instances = instancesOf(1800, 9);
    const inline = JSON.stringify({ jobId: '33333333-3333-4333-8333-333333333333', model: 'anomaly', instances });
    expect(Buffer.byteLength(inline)).toBeGreaterThan(390_000);
    // The queue would refuse it inline.
    await expect(sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: inline }))).rejects.toThrow(/262144|too long|size/i);

    const accepted = await submit({ instances });
    expect(accepted.status).toBe(202);
    const id = accepted.body!.id as string;
    const input = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `inputs/${id}.json` }));
    expect(JSON.parse(await input.Body!.transformToString())).toEqual(instances);

    const { messages, response } = await poll();
    expect(messages.map((message) => JSON.parse(message.Body!))).toEqual([{ jobId: id, model: 'anomaly', inputKey: `inputs/${id}.json` }]);
    expect(response).toEqual({ batchItemFailures: [] });
    const job = (await storedJob(id))!;
    expect(job.status).toBe('succeeded');
    expectSamePredictions((job.result as { predictions: unknown[] }).predictions, (await core.repository.get('anomaly').predict(instances)).predictions as never);
  });

  it('the same Idempotency-Key returns the same job and sends one message', async () => {
    const body = { instances: instancesOf(1, 11) };
    const first = await submit(body, { 'idempotency-key': 'order-42' });
    const again = await submit(body, { 'idempotency-key': 'order-42' });
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.body!.id).toBe(first.body!.id);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    const other = await submit(body, { 'idempotency-key': 'order-43' });
    expect(other.body!.id).not.toBe(first.body!.id);
    const { messages } = await poll();
    expect(messages.map((message) => JSON.parse(message.Body!).jobId)).toEqual([first.body!.id, other.body!.id]);
    expect(await storedJob(first.body!.id as string)).toMatchObject({ status: 'succeeded', attempts: 1 });
  });

  it('POSTs the finished job to callbackUrl, signed; a failed delivery is retried through the queue (DelaySeconds)', async () => {
    const deliveries: { status: number; verified: boolean; body: Record<string, unknown> }[] = [];
    const receiver = http.createServer((req, res) => {
      let text = '';
      req.on('data', (chunk: Buffer) => (text += chunk));
      req.on('end', () => {
        const verified = verifyWebhook(SECRET, { signature: req.headers[SIGNATURE_HEADER] as string, timestamp: req.headers[TIMESTAMP_HEADER] as string }, text);
        const status = deliveries.length === 0 ? 503 : 204;
        deliveries.push({ status, verified, body: JSON.parse(text) as Record<string, unknown> });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
      const accepted = await submit({ instances: instancesOf(2, 12), callbackUrl });
      const id = accepted.body!.id as string;
      await poll();
      // The worker waited for the first attempt before returning (Lambda freezes the process after).
      expect(deliveries.map((delivery) => delivery.status)).toEqual([503]);
      expect(await storedJob(id)).toMatchObject({ status: 'succeeded', webhook: { delivered: false, attempts: 1, lastError: 'HTTP 503' } });
      // The retry is a delayed message for the finished job, without its input.
      expect(await receive(sqs, queue.url)).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const { messages, response } = await poll();
      expect(messages.map((message) => JSON.parse(message.Body!))).toEqual([{ jobId: id, model: 'anomaly' }]);
      expect(response).toEqual({ batchItemFailures: [] });
      expect(deliveries.map((delivery) => delivery.status)).toEqual([503, 204]);
      expect(deliveries.every((delivery) => delivery.verified)).toBe(true);
      expect(deliveries[1]!.body).toMatchObject({ id, status: 'succeeded', result: { predictions: [expect.objectContaining({ id: 's12-0' }), expect.objectContaining({ id: 's12-1' })] } });
      expect(await storedJob(id)).toMatchObject({ status: 'succeeded', webhook: { delivered: true, attempts: 2 } });
    } finally {
      receiver.close();
    }
  });

  it('GET /v1/jobs/{id}: 404 for an unknown job, read from S3', async () => {
    const missing = await api('GET', '/v1/jobs/44444444-4444-4444-8444-444444444444');
    expect([missing.status, missing.body]).toEqual([404, { error: 'job "44444444-4444-4444-8444-444444444444" not found' }]);
    const listing = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'jobs/' }));
    expect(listing.Contents!.length).toBeGreaterThan(20);
  });
});

describe('SQS unavailable at submit', () => {
  it('the job is stored failed (never left "queued" with no message) and the caller gets 503', async () => {
    const { JsonObjects, S3JobStore, SqsJobQueue } = await import('../adapters/aws/jobs/index.ts');
    const { createCore } = await import('../handlers/index.ts');
    const objects = new JsonObjects(s3, BUCKET);
    const missingQueue = queue.url.replace(/modelfn-jobs$/, 'no-such-queue');
    const broken = await createCore({ preload: false }, { jobs: { store: new S3JobStore(objects), queue: new SqsJobQueue(sqs, missingQueue, objects) } });
    const keys = async () => new Set(((await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'jobs/' }))).Contents ?? []).map((object) => object.Key!));
    const before = await keys();
    try {
      const response = await broken.http.handle({ method: 'POST', url: '/v1/models/anomaly/jobs', headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ instances: instancesOf(1, 15) })) });
      expect([response.status, JSON.parse(response.body as string)]).toEqual([503, { error: 'the job queue is unavailable; submit the job again (with a new Idempotency-Key if you sent one)' }]);
      const added = [...(await keys())].filter((key) => !before.has(key));
      expect(added).toHaveLength(1);
      const stored = JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: added[0]! }))).Body!.transformToString()) as Job;
      expect(stored).toMatchObject({ status: 'failed', error: 'the job could not be queued', attempts: 0 });
    } finally {
      await broken.repository.dispose();
    }
  });
});

describe('Idempotency-Key under concurrency', () => {
  it('concurrent submits with one key make one job and one message (S3 conditional write; its 412 emulated, fauxqs ignores If-None-Match)', async () => {
    const { JsonObjects, S3JobStore, SqsJobQueue } = await import('../adapters/aws/jobs/index.ts');
    const { createCore } = await import('../handlers/index.ts');
    // fauxqs stores whatever is PUT; S3 refuses a PutObject with `If-None-Match: *` on an existing key with
    // 412 PreconditionFailed, atomically. This client does that in front of fauxqs (one conditional PUT at a
    // time, checked against fauxqs's real object) — the only emulated part of this test.
    const conditional = new S3Client({ forcePathStyle: true });
    let lock: Promise<unknown> = Promise.resolve();
    const conditionalPuts: string[] = [];
    conditional.middlewareStack.add(
      (next, context) => async (args) => {
        const { Key, IfNoneMatch } = (args.input ?? {}) as { Key?: string; IfNoneMatch?: string };
        if (context.commandName !== 'PutObjectCommand' || IfNoneMatch !== '*') return next(args);
        conditionalPuts.push(Key!);
        const turn = lock.then(async () => {
          const exists = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key })).then(() => true, () => false);
          if (exists) throw new S3ServiceException({ name: 'PreconditionFailed', $fault: 'client', $metadata: { httpStatusCode: 412 }, message: 'At least one of the pre-conditions you specified did not hold' });
          return next(args);
        });
        lock = turn.catch(() => undefined);
        return turn;
      },
      { step: 'initialize', name: 'emulateConditionalWrite' },
    );
    const objects = new JsonObjects(conditional, BUCKET);
    const racing = await createCore({ preload: false }, { jobs: { store: new S3JobStore(objects), queue: new SqsJobQueue(sqs, queue.url, objects) } });
    try {
      await sqs.send(new PurgeQueueCommand({ QueueUrl: queue.url }));
      const body = { instances: instancesOf(1, 16) };
      const results = await Promise.all(Array.from({ length: 6 }, () => racing.jobs!.submit('anomaly', body, 'race-1')));
      expect(new Set(results.map((result) => result.job.id)).size).toBe(1);
      expect(results.filter((result) => result.created)).toHaveLength(1);
      expect(conditionalPuts.length).toBeGreaterThan(1); // the race reached the conditional write
      const messages = await receive(sqs, queue.url);
      expect(messages.map((message) => JSON.parse(message.Body!).jobId)).toEqual([results[0]!.job.id]);
    } finally {
      await racing.repository.dispose();
      conditional.destroy();
      await sqs.send(new PurgeQueueCommand({ QueueUrl: queue.url }));
    }
  });
});

describe('malformed events to the SQS entry', () => {
  it.each<[string, unknown, RegExp]>([
    ['an empty object', {}, /^unsupported event: expected an SQS event \{"Records": \[\.\.\.\]\}, got keys \[\]$/],
    ['null', null, /got null$/],
    ['an API Gateway event', () => httpApiV2Event({ method: 'GET', path: '/v2/health/ready' }), /^unsupported event: expected an SQS event/],
    ['empty Records', { Records: [] }, /^malformed SQS event: "Records" is empty$/],
    ['an S3 notification', { Records: [{ eventSource: 'aws:s3', eventName: 'ObjectCreated:Put' }] }, /^unsupported event: Records\[0\]\.eventSource is "aws:s3", expected "aws:sqs"$/],
    ['a record without messageId', { Records: [{ ...fixture<SQSEvent>('sqs').Records[0]!, messageId: undefined }] }, /^malformed SQS event: Records\[0\] has no messageId$/],
  ])('%s: the invocation fails with a clear error, on the worker and on jobsDeadLetters', async (_case, event, message) => {
    await expect(runWorker(typeof event === 'function' ? event() : event)).rejects.toThrow(message);
    const deadLetters = await import('../adapters/aws/sqs-dead-letters.ts');
    await expect(deadLetters.handler(typeof event === 'function' ? event() : event, lambdaContext() as never)).rejects.toThrow(message);
  });

  it('records without a body or with a body that is not a job message fail alone; the good one succeeds', async () => {
    const example = fixture<SQSEvent>('sqs'); // the documented example: bodies "test"
    const { body } = await submit({ instances: instancesOf(1, 13) });
    const [message] = await receive(sqs, queue.url, 1);
    const template = example.Records[0]!;
    const event = {
      Records: [
        ...example.Records,
        { ...template, messageId: 'no-body', body: undefined },
        { ...template, messageId: 'not-a-job', body: JSON.stringify({ hello: 'world' }) },
        { ...template, messageId: 'path-escape', body: JSON.stringify({ jobId: body!.id, model: 'anomaly', inputKey: '../secrets.json' }) },
        { ...template, messageId: 'unknown-model', body: JSON.stringify({ jobId: body!.id, model: 'nope', instances: [{}] }) },
        { ...template, messageId: message!.MessageId!, body: message!.Body! },
      ],
    };
    const warn = vi.spyOn(environment.logger, 'warn');
    const response = await runWorker(event);
    const reasons = Object.fromEntries(warn.mock.calls.map((call) => call[0] as { messageId: string; reason: string }).map((fields) => [fields.messageId, fields.reason]));
    warn.mockRestore();
    expect(response.batchItemFailures.map((failure) => failure.itemIdentifier)).toEqual([
      example.Records[0]!.messageId,
      example.Records[1]!.messageId,
      'no-body',
      'not-a-job',
      'path-escape',
      'unknown-model',
    ]);
    expect(reasons).toMatchObject({
      [example.Records[0]!.messageId]: expect.stringMatching(/^the record body is not JSON: /),
      'no-body': 'the record has no body',
      'not-a-job': 'the record body is not a job message: expected {"jobId": "<job id>", "model": "<name>", …}, got "{\\"hello\\":\\"world\\"}"',
      'path-escape': `job ${body!.id as string}: "inputKey" must be "inputs/${body!.id as string}.json", got "../secrets.json"`,
      'unknown-model': `job ${body!.id as string}: model "nope" not found; available: anomaly, vad`,
    });
    expect(await storedJob(body!.id as string)).toMatchObject({ status: 'succeeded' });
  });

  it('answers a warm-up ping without running anything', async () => {
    expect(await runWorker({ source: 'serverless-plugin-warmup' })).toEqual({ warm: true, cold: false });
  });

  it('PUT into the bucket of a claim-check object that is not JSON fails the record with the reason', async () => {
    const { body } = await submit({ instances: instancesOf(1, 14) });
    await sqs.send(new PurgeQueueCommand({ QueueUrl: queue.url }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `inputs/${body!.id as string}.json`, Body: 'not json' }));
    const record = { ...fixture<SQSEvent>('sqs').Records[0]!, body: JSON.stringify({ jobId: body!.id, model: 'anomaly', inputKey: `inputs/${body!.id as string}.json` }) };
    const warn = vi.spyOn(environment.logger, 'warn');
    expect(await runWorker({ Records: [record] })).toEqual({ batchItemFailures: [{ itemIdentifier: record.messageId }] });
    expect(warn.mock.calls[0]![0]).toMatchObject({ reason: `job ${body!.id as string}: the claim-check object inputs/${body!.id as string}.json is not JSON` });
    warn.mockRestore();
  });
});
