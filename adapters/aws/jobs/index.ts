export { jobPorts, type JobPorts } from './ports.ts';
export { S3JobStore, jobKey } from './s3-job-store.ts';
export { JsonObjects, isNotFound } from './s3-objects.ts';
export { SqsJobQueue, inputKey, SQS_INLINE_MAX_BYTES, SQS_MAX_DELAY_SECONDS, type JobMessage } from './sqs-job-queue.ts';
export { decodeRecord, jobMessageOf, sqsRecordsOf, MalformedSqsEventError, RecordError, type DecodedRecord } from './sqs-records.ts';

/** The queue's redrive maxReceiveCount, when serverless.yml does not say. */
export const DEFAULT_MAX_RECEIVES = 5;

/** MODELFN_JOBS_MAX_RECEIVES: the jobs queue's maxReceiveCount, which serverless.yml sets from the same value. */
export function maxReceivesFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.MODELFN_JOBS_MAX_RECEIVES;
  if (value === undefined || value === '') return DEFAULT_MAX_RECEIVES;
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`MODELFN_JOBS_MAX_RECEIVES must be a whole number of at least 1 (the queue's maxReceiveCount), got "${value}"`);
  return Number(value);
}
