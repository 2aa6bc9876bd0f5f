import type { SQSRecord } from 'aws-lambda';
import { describeEvent, isRecord } from '../events.ts';
import type { JsonObjects } from './s3-objects.ts';
import { inputKey, type JobMessage } from './sqs-job-queue.ts';

/** The event is not an SQS event, or is one no Lambda would send: the whole invocation fails with this. */
export class MalformedSqsEventError extends Error {
  override readonly name = 'MalformedSqsEventError';
}

/** One record that cannot be turned into a delivery; reported as a batch item failure, the others go on. */
export class RecordError extends Error {
  override readonly name = 'RecordError';
  constructor(
    message: string,
    /** The job the record names, when it names one: on its last receive that job is marked failed. */
    readonly jobId?: string,
  ) {
    super(message);
  }
}

/** A record decoded into what `JobService.runJobs` takes, plus what the worker needs to report on it. */
export interface DecodedRecord {
  messageId: string;
  /** ApproximateReceiveCount: 1 on the first delivery. */
  receiveCount: number;
  jobId: string;
  model: string;
  instances?: unknown[];
}

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The records of an SQS event (shape: Lambda developer guide, "Using Lambda with Amazon SQS"); throws naming the problem otherwise. */
export function sqsRecordsOf(event: unknown): SQSRecord[] {
  if (!isRecord(event) || !Array.isArray(event.Records)) {
    throw new MalformedSqsEventError(`unsupported event: expected an SQS event {"Records": [...]}, got ${describeEvent(event)}`);
  }
  if (event.Records.length === 0) throw new MalformedSqsEventError('malformed SQS event: "Records" is empty');
  event.Records.forEach((record: unknown, index) => {
    if (!isRecord(record)) throw new MalformedSqsEventError(`malformed SQS event: Records[${index}] is not an object`);
    if (record.eventSource !== 'aws:sqs') {
      throw new MalformedSqsEventError(`unsupported event: Records[${index}].eventSource is ${JSON.stringify(record.eventSource) ?? 'missing'}, expected "aws:sqs"`);
    }
    // Without its messageId a record cannot be reported back; failing the invocation redelivers the batch.
    if (typeof record.messageId !== 'string' || record.messageId === '') throw new MalformedSqsEventError(`malformed SQS event: Records[${index}] has no messageId`);
  });
  return event.Records as SQSRecord[];
}

/** A record's body as a job message, as far as it names its job; a RecordError says why it does not. */
export function jobMessageOf(record: SQSRecord): Partial<JobMessage> & { jobId: string } {
  if (typeof record.body !== 'string') throw new RecordError('the record has no body');
  let message: unknown;
  try {
    message = JSON.parse(record.body);
  } catch (error) {
    throw new RecordError(`the record body is not JSON: ${(error as Error).message}`);
  }
  if (!isRecord(message) || typeof message.jobId !== 'string' || !JOB_ID.test(message.jobId)) {
    throw new RecordError(`the record body is not a job message: expected {"jobId": "<job id>", "model": "<name>", …}, got ${truncate(record.body)}`);
  }
  return message as Partial<JobMessage> & { jobId: string };
}

/**
 * A record's body as a delivery: a job message (sqs-job-queue.ts), its claim-check input fetched from S3.
 * `modelProblem` says why a model cannot run here (unknown, or its definition broken), or undefined.
 */
export async function decodeRecord(record: SQSRecord, options: { objects: JsonObjects; modelProblem(name: string): string | undefined }): Promise<DecodedRecord> {
  const { messageId } = record;
  const receiveCount = Number(record.attributes?.ApproximateReceiveCount) || 1;
  const { jobId, model, instances, inputKey: key } = jobMessageOf(record);
  if (typeof model !== 'string' || model === '') throw new RecordError(`job ${jobId}: "model" must be a model name`, jobId);
  const problem = options.modelProblem(model);
  if (problem) throw new RecordError(`job ${jobId}: ${problem}`, jobId);
  if (instances !== undefined && key !== undefined) throw new RecordError(`job ${jobId}: the message has both "instances" and "inputKey"`, jobId);
  if (instances !== undefined && (!Array.isArray(instances) || instances.length === 0)) throw new RecordError(`job ${jobId}: "instances" must be a non-empty array`, jobId);
  const decoded: DecodedRecord = { messageId, receiveCount, jobId, model, ...(instances !== undefined && { instances }) };
  if (key === undefined) return decoded;

  // Claim check: only the job's own input object, never a key the message makes up.
  if (key !== inputKey(jobId)) throw new RecordError(`job ${jobId}: "inputKey" must be "${inputKey(jobId)}", got ${JSON.stringify(key)}`, jobId);
  let input: unknown;
  try {
    input = await options.objects.getJson(key);
  } catch (error) {
    if (error instanceof SyntaxError) throw new RecordError(`job ${jobId}: the claim-check object ${key} is not JSON`, jobId);
    // S3 unreachable or access denied: the record fails and comes back.
    throw new RecordError(`job ${jobId}: reading the claim-check object ${key} failed: ${(error as Error).message}`, jobId);
  }
  if (input === undefined) throw new RecordError(`job ${jobId}: the claim-check object ${key} does not exist`, jobId);
  if (!Array.isArray(input) || input.length === 0) throw new RecordError(`job ${jobId}: the claim-check object ${key} is not a non-empty array of instances`, jobId);
  return { ...decoded, instances: input };
}

function truncate(text: string, max = 120): string {
  return text.length > max ? `${JSON.stringify(text.slice(0, max))}…` : JSON.stringify(text);
}
