import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Job, JobQueue } from '../../../handlers/index.ts';
import type { JsonObjects } from './s3-objects.ts';

/**
 * The body of a job message: the job's id and model, and its input — inline while the message stays within
 * the SQS limit, otherwise as the key of a claim-check object in the jobs bucket. A finished job is sent only
 * for an owed webhook: then it carries no input.
 */
export interface JobMessage {
  jobId: string;
  model: string;
  instances?: unknown[];
  inputKey?: string;
}

/**
 * 256 KiB. SQS now accepts up to 1 MiB per message, but a Lambda invocation carries at most 6 MB: ten messages
 * of 256 KiB fit in one batch, ten of 1 MiB do not. Larger inputs go through S3.
 */
export const SQS_INLINE_MAX_BYTES = 262_144;
/** SQS's longest per-message delay (15 minutes). */
export const SQS_MAX_DELAY_SECONDS = 900;

export function inputKey(jobId: string): string {
  return `inputs/${jobId}.json`;
}

/** Jobs to SQS: one message each, the input inline or through S3, a scheduled retry as the message's DelaySeconds. */
export class SqsJobQueue implements JobQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly objects: JsonObjects,
    private readonly inlineMaxBytes = SQS_INLINE_MAX_BYTES,
  ) {}

  async send(job: Job, delayMs = 0): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: await this.bodyFor(job),
        // Backoffs longer than SQS allows (retryMaxMs above 15 min) are cut to 15 minutes.
        DelaySeconds: Math.min(SQS_MAX_DELAY_SECONDS, Math.max(0, Math.ceil(delayMs / 1000))),
      }),
    );
  }

  private async bodyFor(job: Job): Promise<string> {
    const head: JobMessage = { jobId: job.id, model: job.model };
    // A finished job (a webhook owed) or a batch job (its input is an object the job names) carries no input.
    if (job.status === 'succeeded' || job.status === 'failed' || job.batch) return JSON.stringify(head);
    if (!job.instances) throw new Error(`job ${job.id} has no input to send`);
    const inline = JSON.stringify({ ...head, instances: job.instances } satisfies JobMessage);
    if (Buffer.byteLength(inline) <= this.inlineMaxBytes) return inline;
    // Claim check: the input to S3, its key in the message. A retry writes it again (same content).
    const key = inputKey(job.id);
    await this.objects.putText(key, JSON.stringify(job.instances));
    return JSON.stringify({ ...head, inputKey: key } satisfies JobMessage);
  }
}
