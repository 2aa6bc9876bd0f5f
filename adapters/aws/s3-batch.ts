import { ExecutionAlreadyExists, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { InputFileError, scoreObject } from '../../handlers/batch-objects.ts';
import { errorMessage, type ModelService } from '../../handlers/index.ts';
import { batchService, SOURCE_ETAG, unquoted, UnknownBatchModelError, writeFileError } from './batch/files.ts';
import { decodeEventKey, executionName, planFor, UnsafeKeyError, type FilePlan } from './batch/keys.ts';
import { clearOutputs, S3ObjectStore } from './batch/s3-io.ts';
import { batchSettings, type BatchSettings } from './batch/settings.ts';
import { s3Client, sfnClient } from './clients.ts';
import { coreFor, lambdaHandler, logger, preloadIfAsked } from './environment.ts';
import { describeEvent, isRecord } from './events.ts';
import type { InvocationContext } from './invocation.ts';

/**
 * `batchUpload`: batch on upload. Each S3 ObjectCreated record under MODELFN_BATCH_INPUT_PREFIX
 * (`input/<model>/<path>.jsonl|.csv`) is streamed through the core's scoreObject, chunk by chunk, into
 * `output/<model>/<path>.jsonl` and `.errors.jsonl` (multipart uploads: memory stays flat). A file over
 * MODELFN_BATCH_INLINE_MAX_BYTES, or one this invocation has no time left for, goes to the `batch` state machine.
 *
 * A record that can never succeed (unsafe key, unknown model, not an upload) is reported and skipped; one that
 * failed for a reason that may pass (S3, a model that did not load) makes the invocation fail after the other
 * records are done, so Lambda's retry of the event redoes it (outputs are overwritten, never appended).
 */

await preloadIfAsked();

/** The event is not an S3 notification at all: nothing to process. */
export class MalformedS3EventError extends Error {
  override readonly name = 'MalformedS3EventError';
}

/** Some records failed for a reason worth retrying; the message lists them. */
export class BatchUploadRetryError extends Error {
  override readonly name = 'BatchUploadRetryError';
}

export type FileStatus = 'scored' | 'handed-off' | 'already-started' | 'rejected' | 'ignored' | 'failed';

export interface FileOutcome {
  /** The record's key, decoded (or as sent when it could not be). */
  key?: string;
  status: FileStatus;
  reason?: string;
  records?: number;
  succeeded?: number;
  failed?: number;
  results?: string;
  errors?: string;
  execution?: string;
}

export interface S3BatchResult {
  files: FileOutcome[];
}

interface UploadRecord {
  bucket: string;
  key: string;
  size?: number;
  etag?: string;
  sequencer?: string;
}

/** One record of the event -> what to process, or why not (the message names the record and the field). */
function uploadOf(record: unknown, index: number): UploadRecord | FileOutcome {
  const where = `Records[${index}]`;
  if (!isRecord(record)) return { status: 'rejected', reason: `${where} is not an object` };
  if (record.eventSource !== 'aws:s3') return { status: 'rejected', reason: `${where}.eventSource is ${JSON.stringify(record.eventSource)}, expected "aws:s3"` };
  const s3 = record.s3;
  const object = isRecord(s3) ? s3.object : undefined;
  const bucket = isRecord(s3) && isRecord(s3.bucket) ? s3.bucket.name : undefined;
  if (!isRecord(object) || typeof object.key !== 'string' || object.key === '') return { status: 'rejected', reason: `${where}.s3.object.key is missing` };
  if (typeof bucket !== 'string' || bucket === '') return { status: 'rejected', key: object.key, reason: `${where}.s3.bucket.name is missing` };
  if (typeof record.eventName !== 'string' || !record.eventName.startsWith('ObjectCreated:')) {
    return { status: 'ignored', key: object.key, reason: `${where}.eventName is ${JSON.stringify(record.eventName)}, not an ObjectCreated event` };
  }
  return {
    bucket,
    key: object.key,
    size: typeof object.size === 'number' ? object.size : undefined,
    etag: typeof object.eTag === 'string' ? object.eTag : undefined,
    sequencer: typeof object.sequencer === 'string' ? object.sequencer : undefined,
  };
}

function recordsOf(event: unknown): unknown[] {
  if (!isRecord(event)) throw new MalformedS3EventError(`unsupported event: expected an S3 event notification ({"Records": [...]}), got ${describeEvent(event)}`);
  if (!Array.isArray(event.Records)) {
    throw new MalformedS3EventError(`unsupported event: expected an S3 event notification with a "Records" array, got ${describeEvent(event)}`);
  }
  return event.Records;
}

async function onUpload(event: unknown, context: InvocationContext): Promise<S3BatchResult> {
  context.modelfn.event = 's3';
  const settings = batchSettings();
  const records = recordsOf(event);
  const files: FileOutcome[] = [];
  const retry: string[] = [];
  for (const [index, record] of records.entries()) {
    const upload = uploadOf(record, index);
    let outcome: FileOutcome;
    if ('status' in upload) outcome = upload;
    else {
      try {
        outcome = await processUpload(upload, settings, context);
      } catch (error) {
        outcome = { key: upload.key, status: 'failed', reason: errorMessage(error) };
        retry.push(`${upload.key}: ${errorMessage(error)}`);
      }
    }
    const level = outcome.status === 'failed' ? 'error' : outcome.status === 'rejected' ? 'warn' : 'info';
    logger[level]({ awsRequestId: context.awsRequestId, ...outcome }, 'batch upload');
    files.push(outcome);
  }
  if (retry.length > 0) throw new BatchUploadRetryError(`${retry.length} of ${records.length} uploads failed and will be retried with the event: ${retry.join('; ')}`);
  return { files };
}

async function processUpload(upload: UploadRecord, settings: BatchSettings, context: InvocationContext): Promise<FileOutcome> {
  let key: string;
  let plan: FilePlan;
  try {
    key = decodeEventKey(upload.key);
    if (settings.bucket && upload.bucket !== settings.bucket) {
      throw new UnsafeKeyError(`bucket "${upload.bucket}" is not the batch bucket "${settings.bucket}" (MODELFN_BATCH_BUCKET)`);
    }
    plan = planFor(key, settings);
  } catch (error) {
    if (error instanceof UnsafeKeyError) return { key: upload.key, status: 'rejected', reason: error.message };
    throw error;
  }
  const s3 = s3Client();
  const core = await coreFor(context);
  let service: ModelService;
  try {
    service = await batchService(core, plan.model);
  } catch (error) {
    if (!(error instanceof UnknownBatchModelError)) throw error;
    await clearOutputs(s3, upload.bucket, plan);
    await writeFileError(s3, upload.bucket, plan, error.message);
    return { key, status: 'rejected', reason: error.message, errors: plan.errorsKey };
  }

  if (upload.size !== undefined && upload.size > settings.inlineMaxBytes) {
    return handOff(upload, plan, settings, `${upload.size} bytes is over MODELFN_BATCH_INLINE_MAX_BYTES (${settings.inlineMaxBytes})`);
  }
  if (context.getRemainingTimeInMillis() < settings.timeMarginMs) return handOff(upload, plan, settings, 'no time left in this invocation');
  return scoreInline(upload, plan, service, settings, context);
}

/** Stream the file through the core's scoreObject into its results and errors objects; hand it off if time runs short. */
async function scoreInline(upload: UploadRecord, plan: FilePlan, service: ModelService, settings: BatchSettings, context: InvocationContext): Promise<FileOutcome> {
  const s3 = s3Client();
  // Any fan-out parts of an earlier run go; scoreObject replaces the results and removes a stale errors object.
  await clearOutputs(s3, upload.bucket, plan, { results: true, errors: true });
  const metadata = upload.etag ? { [SOURCE_ETAG]: unquoted(upload.etag) } : undefined;
  const objects = new S3ObjectStore(s3, upload.bucket, { metadataFor: (key) => (key === plan.resultsKey ? metadata : undefined) });
  try {
    const scored = await scoreObject(service, objects, {
      input: plan.key,
      format: plan.format,
      output: plan.resultsKey,
      errors: plan.errorsKey,
      idField: settings.idField,
      chunkRecords: settings.chunkRecords,
      shouldStop: () => context.getRemainingTimeInMillis() < settings.timeMarginMs,
    });
    if (scored.status === 'stopped') return handOff(upload, plan, settings, `out of time after line ${scored.lastLine}`);
    const { records, succeeded, failed, errors } = scored;
    return { key: plan.key, status: 'scored', records, succeeded, failed, results: plan.resultsKey, ...(errors && { errors }) };
  } catch (error) {
    // A missing object is not rejected: the notification came, so it may yet be readable; the event is retried.
    if (error instanceof InputFileError) {
      await writeFileError(s3, upload.bucket, plan, `${error.message}; no results written`);
      return { key: plan.key, status: 'rejected', reason: error.message, errors: plan.errorsKey };
    }
    throw error;
  }
}

/** Start the state machine on the file, named by key and ETag so a redelivered event starts nothing new. */
async function handOff(upload: UploadRecord, plan: FilePlan, settings: BatchSettings, why: string): Promise<FileOutcome> {
  if (!settings.stateMachineArn) {
    const reason = `${why}, and MODELFN_BATCH_STATE_MACHINE_ARN is not set to hand it to the batch state machine`;
    await writeFileError(s3Client(), upload.bucket, plan, reason);
    return { key: plan.key, status: 'rejected', reason, errors: plan.errorsKey };
  }
  const name = executionName(plan.key, upload.etag ?? upload.sequencer ?? '');
  const input = { bucket: upload.bucket, key: plan.key, etag: upload.etag, model: plan.model, format: plan.format, partsPrefix: plan.partsPrefix };
  try {
    const started = await sfnClient().send(new StartExecutionCommand({ stateMachineArn: settings.stateMachineArn, name, input: JSON.stringify(input) }));
    return { key: plan.key, status: 'handed-off', reason: why, execution: started.executionArn };
  } catch (error) {
    if (error instanceof ExecutionAlreadyExists) return { key: plan.key, status: 'already-started', reason: `execution ${name} exists (a redelivered event)` };
    throw error;
  }
}

export const handler = lambdaHandler<unknown, S3BatchResult>(onUpload);
