import type { SQSBatchItemFailure, SQSBatchResponse, SQSRecord } from 'aws-lambda';
import { batchSettings } from './batch/settings.ts';
import { awsJobPorts, coreFor, lambdaHandler, logger, preloadIfAsked } from './environment.ts';
import type { InvocationContext } from './invocation.ts';
import { decodeRecord, maxReceivesFromEnv, RecordError, sqsRecordsOf, type DecodedRecord } from './jobs/index.ts';
import { errorMessage, type Core } from '../../handlers/index.ts';

/**
 * The `jobsWorker` Lambda entry (`adapters/aws/sqs-jobs.handler`): a batch of SQS job messages, run through
 * `JobService.runJobs` — the jobs of one model as one tensor run — with their results written to S3. It
 * answers with `batchItemFailures` (the event source mapping needs `ReportBatchItemFailures`), so only the
 * records that failed outside the model come back; after the queue's maxReceiveCount they go to its DLQ, and
 * on that last receive their job is marked failed (a worker that crashes or times out cannot: sqs-dead-letters.ts
 * finishes those jobs from the DLQ). A job the model rejects or that exhausted its retries is
 * finished, not a failed record.
 */

await preloadIfAsked();

interface FailedRecord {
  messageId: string;
  receiveCount: number;
  jobId?: string;
  reason: string;
  error?: unknown;
}

async function runJobBatch(event: unknown, context: InvocationContext): Promise<SQSBatchResponse> {
  const records = sqsRecordsOf(event);
  context.modelfn.event = 'sqs';
  const core = await coreFor(context);
  if (!core.jobs) throw new Error('async jobs are not configured on this function: set MODELFN_JOBS_BUCKET and MODELFN_JOBS_QUEUE_URL');
  const maxReceives = maxReceivesFromEnv();
  const { objects } = await awsJobPorts();

  const failed: FailedRecord[] = [];
  const decoded = await Promise.all(
    records.map(async (record) => {
      try {
        return await decodeRecord(record, { objects, modelProblem: (name) => modelProblem(core, name) });
      } catch (error) {
        failed.push({ ...identify(record), ...(error instanceof RecordError && error.jobId && { jobId: error.jobId }), reason: (error as Error).message, error });
        return undefined;
      }
    }),
  );
  const deliveries = decoded.filter((record): record is DecodedRecord => record !== undefined);
  // A batch job stops, failed and saying why, MODELFN_BATCH_TIME_MARGIN_MS (10 s) before the function's timeout.
  const { timeMarginMs } = batchSettings();
  const report = await core.jobs.runJobs(deliveries, { outOfTime: () => context.getRemainingTimeInMillis() < timeMarginMs });
  report.outcomes.forEach((outcome, index) => {
    const { messageId, receiveCount, jobId } = deliveries[index]!;
    if (outcome.outcome === 'not-found') failed.push({ messageId, receiveCount, jobId, reason: `job ${jobId} is not in the jobs bucket` });
    if (outcome.outcome === 'error') failed.push({ messageId, receiveCount, jobId, reason: `job ${jobId}: ${errorMessage(outcome.error)}`, error: outcome.error });
  });

  for (const failure of failed) {
    const last = failure.receiveCount >= maxReceives;
    logger.warn(
      { awsRequestId: context.awsRequestId, messageId: failure.messageId, jobId: failure.jobId, receiveCount: failure.receiveCount, lastReceive: last, reason: failure.reason, bucket: objects.bucket },
      last ? 'job record failed on its last receive: it goes to the dead-letter queue' : 'job record failed: it will be delivered again',
    );
    // The queue moves the message to its DLQ after this; its job must not stay queued or running for ever.
    if (last && failure.jobId) {
      await core.jobs.abandon(failure.jobId, `gave up after ${failure.receiveCount} deliveries: ${failure.reason}`).catch((error: unknown) =>
        logger.error({ awsRequestId: context.awsRequestId, jobId: failure.jobId, err: error }, 'marking an abandoned job failed did not work'),
      );
    }
  }

  const counts: Record<string, number> = {};
  for (const outcome of report.outcomes) counts[outcome.outcome] = (counts[outcome.outcome] ?? 0) + 1;
  logger.info(
    {
      awsRequestId: context.awsRequestId,
      event: 'sqs',
      // Init and model load times are on the invocation line, as for every trigger.
      cold: context.modelfn.cold,
      records: records.length,
      // predict calls; one tensor run each for models that stack their input (all but custom-predict models).
      tensorRuns: report.predictCalls,
      outcomes: counts,
      failedRecords: failed.length,
    },
    'sqs job batch',
  );
  const batchItemFailures: SQSBatchItemFailure[] = failed.map((failure) => ({ itemIdentifier: failure.messageId }));
  return { batchItemFailures };
}

function identify(record: SQSRecord): { messageId: string; receiveCount: number } {
  return { messageId: record.messageId, receiveCount: Number(record.attributes?.ApproximateReceiveCount) || 1 };
}

function modelProblem(core: Core, name: string): string | undefined {
  try {
    core.repository.get(name);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}


export const handler = lambdaHandler<unknown, SQSBatchResponse>(runJobBatch);
