/**
 * The bundles `npm run build:aws` makes, run against S3 and SQS (fauxqs 1.9.2 on 127.0.0.1) with the AWS SDK v3
 * they carry inside (resolved to its ES module build by the build): what the unbundled tests cannot show — that the
 * chunks, the lazily loaded job ports and csv-parse, the multipart upload and the model files all work from
 * `.deploy/aws/build/`. Each entry is imported from the build folder, as the Lambda runtime imports it, and called
 * with the events Lambda would send. Not real here: the Lambda runtime and its event source mapping (the test
 * receives the SQS messages and builds the event, as the mapping does).
 */
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { S3EventRecord, SQSEvent } from 'aws-lambda';
import { buildApp, interceptLocalhostDns } from 'fauxqs';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelRepository } from '../handlers/model-repository.ts';
import { buildAws } from '../scripts/build-aws.ts';
import { httpApiV2Event, lambdaContext, readResult } from './support/aws-events.ts';

type Handler = (event: unknown, context: unknown) => Promise<any>;

const TAKEOVER = { logins: 3, failed_logins: 12, sessions: 2, session_minutes: 45, bytes_downloaded_mb: 900, distinct_ips: 9, countries: 4, night_activity_ratio: 0.7, api_calls: 150, files_accessed: 400, privilege_changes: 2 };
const ORDINARY = { logins: 3, failed_logins: 0, sessions: 2, session_minutes: 30, bytes_downloaded_mb: 5, distinct_ips: 1, countries: 1, night_activity_ratio: 0.1, api_calls: 20, files_accessed: 4, privilege_changes: 0 };

let dir: string;
let fauxqs: ReturnType<typeof buildApp>;
let restoreDns: () => void;
let s3: S3Client;
let sqs: SQSClient;
let queue: { url: string; arn: string };
const entries: Record<string, Handler> = {};
/** The scores the bundled http function gives over v1 predict: what the other paths must agree with. */
let expected: { takeover: number; ordinary: number };

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'modelfn-aws-bundle-'));
  const build = await buildAws({ outDir: path.join(dir, 'build') });

  fauxqs = buildApp({ logger: false });
  await fauxqs.listen({ port: 0, host: '127.0.0.1' });
  // fauxqs's queue URLs are http://sqs.<region>.localhost:<port>/…: resolve *.localhost to 127.0.0.1 in this process.
  restoreDns = interceptLocalhostDns();
  const endpoint = `http://127.0.0.1:${(fauxqs.server.address() as AddressInfo).port}`;
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    MODELFN_S3_FORCE_PATH_STYLE: '1',
    LOG_LEVEL: 'silent',
  });
  s3 = new S3Client({ forcePathStyle: true });
  sqs = new SQSClient({ useQueueUrlAsEndpoint: false }); // every call to fauxqs (AWS_ENDPOINT_URL), as the adapter's client
  await s3.send(new CreateBucketCommand({ Bucket: 'modelfn-jobs' }));
  await s3.send(new CreateBucketCommand({ Bucket: 'modelfn-batch' }));
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'modelfn-jobs' }));
  const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }));
  queue = { url: QueueUrl!, arn: Attributes!.QueueArn! };
  Object.assign(process.env, { MODELFN_JOBS_BUCKET: 'modelfn-jobs', MODELFN_JOBS_QUEUE_URL: queue.url, MODELFN_BATCH_BUCKET: 'modelfn-batch' });

  for (const file of build.entries) {
    entries[file.replace(/\.mjs$/, '')] = ((await import(pathToFileURL(path.join(build.outDir, file)).href)) as { handler: Handler }).handler;
  }
  const predicted = readResult(
    await entries.http!(httpApiV2Event({ method: 'POST', path: '/v1/models/anomaly:predict', body: JSON.stringify({ instances: [TAKEOVER, ORDINARY] }) }), lambdaContext()),
  );
  expect(predicted.status).toBe(200);
  const [takeover, ordinary] = (JSON.parse(predicted.body) as { predictions: { score: number }[] }).predictions;
  expected = { takeover: takeover!.score, ordinary: ordinary!.score };
}, 60_000);

afterAll(async () => {
  restoreDns?.();
  await fauxqs?.close();
  s3?.destroy();
  sqs?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the bundled Lambda entries', () => {
  it('each answer a warm-up ping before anything else', async () => {
    expect(Object.keys(entries).sort()).toEqual(['batch-chunk', 'http', 's3-batch', 'sqs-dead-letters', 'sqs-jobs']);
    for (const [name, handler] of Object.entries(entries)) {
      expect({ name, answer: await handler({ source: 'serverless-plugin-warmup' }, lambdaContext()) }).toMatchObject({ name, answer: { warm: true } });
    }
  });

  it('http submits a job to S3 and SQS, jobsWorker runs it from the SQS event, http reads the result', async () => {
    const submitted = readResult(
      await entries.http!(httpApiV2Event({ method: 'POST', path: '/v1/models/anomaly/jobs', body: JSON.stringify({ instances: [TAKEOVER] }) }), lambdaContext()),
    );
    expect(submitted.status).toBe(202);
    const { id } = JSON.parse(submitted.body) as { id: string };

    const { Messages = [] } = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['All'] }));
    expect(Messages).toHaveLength(1);
    const event: SQSEvent = {
      Records: Messages.map((message) => ({
        messageId: message.MessageId!,
        receiptHandle: message.ReceiptHandle!,
        body: message.Body!,
        attributes: message.Attributes as SQSEvent['Records'][number]['attributes'],
        messageAttributes: {},
        md5OfBody: message.MD5OfBody!,
        eventSource: 'aws:sqs',
        eventSourceARN: queue.arn,
        awsRegion: 'us-east-1',
      })),
    };
    expect(await entries['sqs-jobs']!(event, lambdaContext())).toEqual({ batchItemFailures: [] });

    const job = readResult(await entries.http!(httpApiV2Event({ method: 'GET', path: `/v1/jobs/${id}` }), lambdaContext()));
    expect(job.status).toBe(200);
    const view = JSON.parse(job.body) as { status: string; result: { predictions: { score: number; anomaly: boolean }[] } };
    expect(view.status).toBe('succeeded');
    expect(view.result.predictions).toEqual([{ score: expected.takeover, anomaly: true }]);
  });

  it('batchUpload scores uploaded JSONL and CSV into the output prefix, bad records to the errors file', async () => {
    const jsonl = `${JSON.stringify({ id: 'u1', ...TAKEOVER })}\n{"id": "u2", \n${JSON.stringify({ id: 'u3', ...ORDINARY })}\n`;
    const csv = `id,${Object.keys(ORDINARY).join(',')}\nc1,${Object.values(ORDINARY).join(',')}\n`;
    await s3.send(new PutObjectCommand({ Bucket: 'modelfn-batch', Key: 'input/anomaly/day.jsonl', Body: jsonl }));
    await s3.send(new PutObjectCommand({ Bucket: 'modelfn-batch', Key: 'input/anomaly/users.csv', Body: csv }));
    const record = (key: string, size: number): S3EventRecord => ({
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-east-1',
      eventTime: new Date().toISOString(),
      eventName: 'ObjectCreated:Put',
      userIdentity: { principalId: 'EXAMPLE' },
      requestParameters: { sourceIPAddress: '127.0.0.1' },
      responseElements: { 'x-amz-request-id': 'EXAMPLE', 'x-amz-id-2': 'EXAMPLE' },
      s3: { s3SchemaVersion: '1.0', configurationId: 'batch', bucket: { name: 'modelfn-batch', ownerIdentity: { principalId: 'EXAMPLE' }, arn: 'arn:aws:s3:::modelfn-batch' }, object: { key, size, eTag: 'etag', sequencer: '01' } },
    });
    await entries['s3-batch']!({ Records: [record('input/anomaly/day.jsonl', jsonl.length), record('input/anomaly/users.csv', csv.length)] }, lambdaContext());

    const read = async (key: string) => (await (await s3.send(new GetObjectCommand({ Bucket: 'modelfn-batch', Key: key }))).Body!.transformToString()).trim().split('\n').map((line) => JSON.parse(line));
    expect(await read('output/anomaly/day.jsonl')).toEqual([
      { id: 'u1', line: 1, prediction: { score: expected.takeover, anomaly: true } },
      { id: 'u3', line: 3, prediction: { score: expected.ordinary, anomaly: false } },
    ]);
    const [error] = await read('output/anomaly/day.errors.jsonl');
    expect(error).toMatchObject({ line: 2 });
    expect(error.error).toMatch(/not valid JSON/);
    const csvResults = await read('output/anomaly/users.jsonl');
    expect(csvResults).toEqual([{ id: 'c1', line: 2, prediction: { score: expected.ordinary, anomaly: false } }]);
  });
});

describe('the static model registry a bundle uses', () => {
  it('serves the registered definitions and records one that fails to import as that model’s failure only', async () => {
    const repository = await loadModelRepository({
      dir: path.resolve('models'),
      definitions: {
        anomaly: () => import('../models/anomaly/model.ts'),
        broken: () => Promise.reject(new Error('features.json: unexpected end of JSON input\n    at stack lines')),
        empty: async () => ({}),
      },
    });
    expect(repository.list().map((service) => service.name)).toEqual(['anomaly']);
    expect(() => repository.get('broken')).toThrow('model "broken" failed to load its definition: features.json: unexpected end of JSON input');
    expect(() => repository.get('empty')).toThrow('model "empty" failed to load its definition: model.ts has no default export from defineModel()');
    const { predictions } = await repository.get('anomaly').predict([TAKEOVER]);
    expect(predictions).toEqual([{ score: expected.takeover, anomaly: true }]);
    await repository.dispose();
  });
});
