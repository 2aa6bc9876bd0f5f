import type { JobQueue, JobStore } from '../../../handlers/index.ts';
import { S3ObjectStore } from '../batch/s3-io.ts';
import { s3Client, sqsClient } from '../clients.ts';
import { S3JobStore } from './s3-job-store.ts';
import { JsonObjects } from './s3-objects.ts';
import { SqsJobQueue } from './sqs-job-queue.ts';

export { S3JobStore, jobKey } from './s3-job-store.ts';
export { JsonObjects, isNotFound } from './s3-objects.ts';
export { SqsJobQueue, inputKey, SQS_INLINE_MAX_BYTES, SQS_MAX_DELAY_SECONDS, type JobMessage } from './sqs-job-queue.ts';
export { decodeRecord, jobMessageOf, sqsRecordsOf, MalformedSqsEventError, RecordError, type DecodedRecord } from './sqs-records.ts';

export interface JobPorts {
  store: JobStore;
  queue: JobQueue;
  objects: JsonObjects;
  /** The batch bucket (MODELFN_BATCH_BUCKET), where `POST /v1/models/{name}/batch` jobs read and write. */
  batchObjects?: S3ObjectStore;
}

/** The queue's redrive maxReceiveCount, when serverless.yml does not say. */
export const DEFAULT_MAX_RECEIVES = 5;

/** MODELFN_JOBS_MAX_RECEIVES: the jobs queue's maxReceiveCount, which serverless.yml sets from the same value. */
export function maxReceivesFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.MODELFN_JOBS_MAX_RECEIVES;
  if (value === undefined || value === '') return DEFAULT_MAX_RECEIVES;
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`MODELFN_JOBS_MAX_RECEIVES must be a whole number of at least 1 (the queue's maxReceiveCount), got "${value}"`);
  return Number(value);
}

/** The S3 store and SQS queue for the jobs bucket and queue the environment names. */
export function jobPorts(env: NodeJS.ProcessEnv = process.env): JobPorts {
  const bucket = env.MODELFN_JOBS_BUCKET;
  const queueUrl = env.MODELFN_JOBS_QUEUE_URL;
  if (!bucket) throw new Error('MODELFN_JOBS_BUCKET is not set');
  if (!queueUrl) throw new Error('MODELFN_JOBS_QUEUE_URL must be set with MODELFN_JOBS_BUCKET');
  const objects = new JsonObjects(s3Client(), bucket);
  const batchObjects = env.MODELFN_BATCH_BUCKET ? new S3ObjectStore(s3Client(), env.MODELFN_BATCH_BUCKET) : undefined;
  return { store: new S3JobStore(objects), queue: new SqsJobQueue(sqsClient(), queueUrl, objects), objects, ...(batchObjects && { batchObjects }) };
}
