import type { JobQueue, JobStore } from '../../../handlers/index.ts';
import { S3ObjectStore } from '../batch/s3-io.ts';
import { s3Client, sqsClient } from '../clients.ts';
import { S3JobStore } from './s3-job-store.ts';
import { JsonObjects } from './s3-objects.ts';
import { SqsJobQueue } from './sqs-job-queue.ts';

/**
 * What an HTTP function loads on its first job call (environment.ts imports this module, not the jobs index): the
 * store, the queue and the batch bucket, without the SQS record decoding only the workers need.
 */

export interface JobPorts {
  store: JobStore;
  queue: JobQueue;
  objects: JsonObjects;
  /** The batch bucket (MODELFN_BATCH_BUCKET), where `POST /v1/models/{name}/batch` jobs read and write. */
  batchObjects?: S3ObjectStore;
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
