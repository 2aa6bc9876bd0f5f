/**
 * An SQS batch of `anomaly` job messages (1 instance each) on the AWS jobs worker, batch sizes 10 and 100.
 *
 * 1. The worker's inference path — decode the record, load the job, validate, run, encode the result — with
 *    the batch as ONE tensor run (`JobService.runJobs` over all records, what adapters/aws/sqs-jobs.ts does)
 *    vs one run per message (each record on its own, one after another, as a per-record handler loop does).
 *    Store writes are left out of both: the job store is in memory, its `put` only encodes the job to JSON.
 *    Goal (issue 4): >= 3x at 100.
 * 2. For honesty, the whole Lambda handler (adapters/aws/sqs-jobs.ts) with its S3 reads and writes to fauxqs
 *    on loopback (3 S3 calls per job: read, mark running, write the result): one invocation with the batch vs
 *    one invocation per message.
 *
 * Medians over rounds, the two sides alternating within each round. `npx tsx scripts/bench/aws-sqs-batch.ts`
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { randomUUID } from 'node:crypto';
import { decodeRecord, JsonObjects, type JobMessage } from '../../adapters/aws/jobs/index.ts';
import { createCore, viewOf, type Core, type Job, type JobStore } from '../../handlers/index.ts';
import { createLogger } from '../../handlers/log.ts';
import { lambdaSqsRecord, receive, startFauxqs } from '../../test/support/sqs-events.ts';
import { generateUserDays, toFeatures } from '../anomaly-data.ts';
import { median, ratio } from './support.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 25);
const handlerRounds = Number(process.env.BENCH_HANDLER_ROUNDS ?? 7);
const SIZES = [10, 100];

/** Jobs in memory; `put` encodes the job to JSON as the S3 store does, and writes nowhere. */
class EncodingMemoryStore implements JobStore {
  private readonly encoded = new Map<string, string>();
  async create(job: Job) {
    this.encoded.set(job.id, JSON.stringify(viewOf(job)));
    return { job, created: true };
  }
  async get(id: string) {
    const text = this.encoded.get(id);
    return text === undefined ? undefined : (JSON.parse(text) as Job);
  }
  async put(job: Job) {
    this.encoded.set(job.id, JSON.stringify(viewOf(job)));
  }
  async listUnfinished() {
    return [];
  }
  async addDeadLetter() {}
  async listDeadLetters() {
    return [];
  }
  async deleteExpired() {
    return 0;
  }
}

const instances = generateUserDays(2000, 31).map((day, i) => ({ id: `u${i}`, ...toFeatures(day) }));

/** N queued jobs in the store and the SQS records that deliver them (bodies as SqsJobQueue writes them). */
async function freshBatch(store: JobStore, size: number, offset: number): Promise<SQSRecord[]> {
  const template = lambdaSqsRecord({ MessageId: '', ReceiptHandle: 'r', Body: '', MD5OfBody: '', Attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'x', ApproximateFirstReceiveTimestamp: '0' } }, 'arn:aws:sqs:us-east-1:123456789012:modelfn-jobs');
  const records: SQSRecord[] = [];
  for (let n = 0; n < size; n++) {
    const now = new Date().toISOString();
    const job: Job = { id: randomUUID(), model: 'anomaly', status: 'queued', createdAt: now, updatedAt: now, attempts: 0, instances: [instances[(offset + n) % instances.length]] };
    await store.create(job);
    const message: JobMessage = { jobId: job.id, model: job.model, instances: job.instances };
    records.push({ ...template, messageId: randomUUID(), body: JSON.stringify(message) });
  }
  return records;
}

async function inferencePath(): Promise<string[]> {
  const store = new EncodingMemoryStore();
  // Silent, as the handler run below: a log line per job costs the same on both sides and is not inference.
  const core: Core = await createCore({ preload: true }, { logger: createLogger({ level: 'silent' }), jobs: { store, queue: { send: async () => {} } } });
  const jobs = core.jobs!;
  const objects = new JsonObjects(new S3Client({ region: 'us-east-1' }), 'unused'); // claim checks only; none here
  const decode = (record: SQSRecord) => decodeRecord(record, { objects, modelProblem: () => undefined });
  const check = (outcomes: { outcome: string }[]) => {
    if (!outcomes.every((o) => o.outcome === 'succeeded')) throw new Error(`not all succeeded: ${JSON.stringify(outcomes.map((o) => o.outcome))}`);
  };
  const oneRun = async (records: SQSRecord[]) => {
    const report = await jobs.runJobs(await Promise.all(records.map(decode)));
    check(report.outcomes);
    return report.predictCalls;
  };
  const runPerMessage = async (records: SQSRecord[]) => {
    let calls = 0;
    for (const record of records) {
      const report = await jobs.runJobs([await decode(record)]);
      check(report.outcomes);
      calls += report.predictCalls;
    }
    return calls;
  };
  const lines: string[] = [];
  try {
    for (const size of SIZES) {
      // Warm both paths (JIT, session) before measuring.
      for (let i = 0; i < 5; i++) {
        await oneRun(await freshBatch(store, size, i));
        await runPerMessage(await freshBatch(store, size, i));
      }
      const batched: number[] = [];
      const single: number[] = [];
      let runsBatched = 0;
      let runsSingle = 0;
      for (let round = 0; round < rounds; round++) {
        const a = await freshBatch(store, size, round * size);
        const b = await freshBatch(store, size, round * size);
        let started = performance.now();
        runsBatched = await oneRun(a);
        batched.push(performance.now() - started);
        started = performance.now();
        runsSingle = await runPerMessage(b);
        single.push(performance.now() - started);
      }
      const [ours, theirs] = [median(batched), median(single)];
      lines.push(
        `  batch of ${size}: one tensor run ${ours.toFixed(3)} ms (${runsBatched} run, ${((size / ours) * 1000).toFixed(0)} msg/s) vs one run per message ${theirs.toFixed(3)} ms (${runsSingle} runs, ${((size / theirs) * 1000).toFixed(0)} msg/s): ${ratio(theirs, ours)}${size === 100 ? ` — goal >= 3x ${theirs / ours >= 3 ? 'met' : 'MISSED'}` : ''}`,
      );
    }
  } finally {
    await core.repository.dispose();
  }
  return lines;
}

async function wholeHandler(): Promise<string[]> {
  const fauxqs = await startFauxqs();
  const bucket = 'modelfn-bench-jobs';
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: fauxqs.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'bench',
    AWS_SECRET_ACCESS_KEY: 'bench',
    MODELFN_S3_FORCE_PATH_STYLE: '1',
    MODELFN_JOBS_BUCKET: bucket,
    LOG_LEVEL: 'silent',
  });
  const { s3Client, sqsClient } = await import('../../adapters/aws/clients.ts');
  const s3 = s3Client();
  const sqs = sqsClient();
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: 'modelfn-bench-jobs' }));
  process.env.MODELFN_JOBS_QUEUE_URL = QueueUrl!;
  const arn = 'arn:aws:sqs:us-east-1:000000000000:modelfn-bench-jobs';
  const environment = await import('../../adapters/aws/environment.ts');
  const { handler } = await import('../../adapters/aws/sqs-jobs.ts');
  let invocation = 0;
  const context = () => ({ awsRequestId: `bench-${++invocation}`, functionName: 'modelfn-jobsWorker', getRemainingTimeInMillis: () => 900_000 });
  const invoke = async (event: SQSEvent) => {
    const response = (await handler(event, context() as never)) as SQSBatchResponse;
    if (response.batchItemFailures.length > 0) throw new Error(`${response.batchItemFailures.length} records failed`);
  };
  const core = await environment.container.get();
  const { store, queue } = await environment.awsJobPorts();
  // Jobs submitted through the real ports (S3 + SQS), their real messages received: what Lambda would hand over.
  const submitted = async (size: number, offset: number): Promise<SQSRecord[]> => {
    for (let n = 0; n < size; n++) {
      const now = new Date().toISOString();
      const job: Job = { id: randomUUID(), model: 'anomaly', status: 'queued', createdAt: now, updatedAt: now, attempts: 0, instances: [instances[(offset + n) % instances.length]] };
      await store.create(job);
      await queue.send(job);
    }
    const messages = await receive(sqs, QueueUrl!, size);
    if (messages.length !== size) throw new Error(`received ${messages.length} of ${size}`);
    return messages.map((message) => lambdaSqsRecord(message, arn));
  };
  const lines: string[] = [];
  try {
    await core.repository.preload();
    for (const size of SIZES) {
      for (let i = 0; i < 2; i++) {
        await invoke({ Records: await submitted(size, i) });
        for (const record of await submitted(size, i)) await invoke({ Records: [record] });
      }
      const batched: number[] = [];
      const single: number[] = [];
      for (let round = 0; round < handlerRounds; round++) {
        const a = await submitted(size, round * size);
        let started = performance.now();
        await invoke({ Records: a });
        batched.push(performance.now() - started);
        const b = await submitted(size, round * size);
        started = performance.now();
        for (const record of b) await invoke({ Records: [record] });
        single.push(performance.now() - started);
      }
      const [ours, theirs] = [median(batched), median(single)];
      lines.push(
        `  batch of ${size}: one invocation ${ours.toFixed(1)} ms (${((size / ours) * 1000).toFixed(0)} msg/s) vs one invocation per message ${theirs.toFixed(1)} ms (${((size / theirs) * 1000).toFixed(0)} msg/s): ${ratio(theirs, ours)}`,
      );
    }
  } finally {
    await core.repository.dispose();
    s3.destroy();
    sqs.destroy();
    (await import('../../adapters/aws/clients.ts')).resetClientsForTests();
    await fauxqs.stop();
  }
  return lines;
}

export async function benchAwsSqsBatch(): Promise<string[]> {
  return [
    `AWS SQS jobs worker, anomaly, 1 instance per message; inference path: median of ${rounds} rounds, store writes left out (in-memory store that only encodes)`,
    ...(await inferencePath()),
    `  whole handler (adapters/aws/sqs-jobs.ts) with S3 reads/writes to fauxqs on loopback, median of ${handlerRounds} rounds:`,
    ...(await wholeHandler()),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) for (const line of await benchAwsSqsBatch()) console.log(line);
