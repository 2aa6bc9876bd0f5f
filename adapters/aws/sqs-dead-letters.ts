import type { SQSBatchItemFailure, SQSBatchResponse } from 'aws-lambda';
import { coreFor, lambdaHandler, logger } from './environment.ts';
import type { InvocationContext } from './invocation.ts';
import { jobMessageOf, maxReceivesFromEnv, sqsRecordsOf } from './jobs/index.ts';
import { errorMessage } from '../../handlers/index.ts';

/**
 * The `jobsDeadLetters` Lambda entry (`adapters/aws/sqs-dead-letters.handler`), fed by the jobs queue's DLQ.
 * A message lands there after maxReceiveCount deliveries without an answer. The worker marks a job failed
 * itself when a record fails on its last receive; it cannot when it crashed, ran out of memory or hit its
 * timeout on that delivery, and the job would stay "queued" or "running" for ever. Here each such job is
 * marked failed (its webhook sent, listed by GET /v1/dead-letter); a job already finished is left as it is.
 * The message is then deleted: the job in S3 keeps everything it carried.
 */

async function finishDeadLetteredJobs(event: unknown, context: InvocationContext): Promise<SQSBatchResponse> {
  const records = sqsRecordsOf(event);
  context.modelfn.event = 'sqs-dead-letters';
  const core = await coreFor(context);
  if (!core.jobs) throw new Error('async jobs are not configured on this function: set MODELFN_JOBS_BUCKET and MODELFN_JOBS_QUEUE_URL');
  const reason = `its message went to the dead-letter queue after ${maxReceivesFromEnv()} deliveries with no answer from the worker (it crashed, ran out of memory or timed out)`;

  const batchItemFailures: SQSBatchItemFailure[] = [];
  const counts = { failed: 0, alreadyFinished: 0, unreadable: 0 };
  for (const record of records) {
    let jobId: string;
    try {
      jobId = jobMessageOf(record).jobId;
    } catch (error) {
      // Kept, it would come back here for the queue's whole retention: there is no job to finish.
      counts.unreadable++;
      logger.error({ awsRequestId: context.awsRequestId, messageId: record.messageId, reason: errorMessage(error) }, 'dead letter names no job: dropped');
      continue;
    }
    try {
      if (await core.jobs.abandon(jobId, reason)) counts.failed++;
      else counts.alreadyFinished++;
    } catch (error) {
      // The jobs bucket did not answer: the record comes back and is tried again.
      batchItemFailures.push({ itemIdentifier: record.messageId });
      logger.warn({ awsRequestId: context.awsRequestId, messageId: record.messageId, jobId, reason: errorMessage(error) }, 'dead-lettered job not marked failed yet: it will be tried again');
    }
  }
  logger.info({ awsRequestId: context.awsRequestId, event: 'sqs-dead-letters', records: records.length, ...counts, failedRecords: batchItemFailures.length }, 'sqs dead letters');
  return { batchItemFailures };
}

export const handler = lambdaHandler<unknown, SQSBatchResponse>(finishDeadLetteredJobs);
