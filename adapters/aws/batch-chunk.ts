import { PutObjectCommand } from '@aws-sdk/client-s3';
import { errorLines, processChunk, recordFromCsvRow, recordFromJsonLine, resultLines, type BatchRecord } from '../../handlers/index.ts';
import { batchService, scoredInline, UnknownBatchModelError, writeFileError } from './batch/files.ts';
import { partKeys, planFor, UnsafeKeyError, type BatchFormat, type FilePlan } from './batch/keys.ts';
import { clearOutputs, NDJSON } from './batch/s3-io.ts';
import { batchSettings, type BatchSettings } from './batch/settings.ts';
import { s3Client } from './clients.ts';
import { coreFor, lambdaHandler, logger, preloadIfAsked } from './environment.ts';
import { describeEvent, isRecord } from './events.ts';
import type { InvocationContext } from './invocation.ts';

/**
 * `batchChunk`: the Task of the `batch` state machine (adapters/aws/state-machines/batch.yml). Two requests:
 *
 * - `{"Plan": {"key", "etag"?}}` (state PlanFile): the input key -> model, format and part prefix, by the same
 *   safe mapping batchUpload uses; clears what an earlier run of that file left; `{"skip": why}` when this
 *   version of the file was already scored inline.
 * - `{"Items": [{"index", "value"}…], "BatchInput": {"source", "model", "format", "partsPrefix"}}` (one
 *   Distributed Map item batch): the records through processChunk in sub-chunks of MODELFN_BATCH_CHUNK_RECORDS,
 *   each sub-chunk's results and errors written to `part-<first line>.jsonl` / `.errors.jsonl` (deterministic
 *   keys: a retried batch overwrites, never duplicates). When less than MODELFN_BATCH_TIME_MARGIN_MS is left it
 *   returns the items it did not reach, `{"Items", "BatchInput", "Progress"}`, and the state machine calls it
 *   again with them; otherwise a small summary.
 *
 * A request that can never succeed fails with BatchChunkInputError (the state machine catches it by name);
 * a model that failed to load, with BatchModelUnavailableError (retried).
 */

await preloadIfAsked();

/** The request is malformed or names something that cannot be scored; retrying will not help. */
export class BatchChunkInputError extends Error {
  override readonly name = 'BatchChunkInputError';
}

export interface ChunkProgress {
  succeeded: number;
  failed: number;
  resultParts: number;
  errorParts: number;
}

export interface ChunkSummary extends ChunkProgress {
  source: string;
  firstLine: number;
  lastLine: number;
  partsPrefix: string;
}

export interface BatchInput {
  source: string;
  model: string;
  format: BatchFormat;
  partsPrefix: string;
}

export interface ItemBatch {
  Items: { index: number; value: unknown }[];
  BatchInput: BatchInput;
  Progress?: ChunkProgress & { firstLine: number };
}

export type PlanResult = { key: string; model: string; format: BatchFormat; partsPrefix: string } | { key: string; skip: string };

const describe = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value);

/** The batch request, checked field by field; BatchChunkInputError names the first problem. */
function itemBatchOf(event: Record<string, unknown>, settings: BatchSettings): { batch: ItemBatch; plan: FilePlan } {
  const { Items: items, BatchInput: input } = event;
  if (items === undefined) throw new BatchChunkInputError(`malformed item batch: no "Items" (expected {"Items": [{"index", "value"}…], "BatchInput": {…}} or {"Plan": {"key"}}), got ${describeEvent(event)}`);
  if (!Array.isArray(items)) throw new BatchChunkInputError(`malformed item batch: "Items" must be an array, got ${describe(items)}`);
  if (!isRecord(input)) throw new BatchChunkInputError(`malformed item batch: "BatchInput" must be an object, got ${describe(input)}`);
  for (const field of ['source', 'model', 'format', 'partsPrefix'] as const) {
    if (typeof input[field] !== 'string' || input[field] === '') throw new BatchChunkInputError(`malformed item batch: BatchInput.${field} must be a non-empty string, got ${JSON.stringify(input[field]) ?? 'nothing'}`);
  }
  let plan: FilePlan;
  try {
    plan = planFor(input.source as string, settings);
  } catch (error) {
    if (error instanceof UnsafeKeyError) throw new BatchChunkInputError(`BatchInput.source: ${error.message}`);
    throw error;
  }
  // The outputs follow from the source key alone; a BatchInput that says otherwise was not made by PlanFile.
  for (const field of ['model', 'format', 'partsPrefix'] as const) {
    if (input[field] !== plan[field]) throw new BatchChunkInputError(`BatchInput.${field} is ${JSON.stringify(input[field])}, but the source key gives ${JSON.stringify(plan[field])}`);
  }
  for (const [position, item] of items.entries()) {
    if (!isRecord(item) || !Number.isSafeInteger(item.index) || (item.index as number) < 0 || !('value' in item)) {
      throw new BatchChunkInputError(`malformed item batch: Items[${position}] must be {"index": <whole number>, "value": …}, got ${JSON.stringify(item)?.slice(0, 200) ?? describe(item)}`);
    }
  }
  const progress = event.Progress;
  if (progress !== undefined) {
    const fields = ['succeeded', 'failed', 'resultParts', 'errorParts', 'firstLine'] as const;
    if (!isRecord(progress) || fields.some((field) => !Number.isSafeInteger(progress[field]))) {
      throw new BatchChunkInputError(`malformed item batch: "Progress" must be {${fields.join(', ')}} as batchChunk returned it, got ${JSON.stringify(progress)?.slice(0, 200)}`);
    }
  }
  return { batch: event as unknown as ItemBatch, plan };
}

/** The file line of item `index`: JSONL item 0 is line 1; a CSV file has its header on line 1. */
const lineOf = (index: number, format: BatchFormat) => index + (format === 'csv' ? 2 : 1);

/** Item -> record, through the same readers `modelfn batch` uses. */
function recordOf(item: { index: number; value: unknown }, format: BatchFormat, idField: string): BatchRecord {
  const line = lineOf(item.index, format);
  if (format === 'jsonl') return recordFromJsonLine(JSON.stringify(item.value), line, idField) ?? { line, error: `line ${line} is empty` };
  // Step Functions' CSV reader gives each row as {column: text}, in header order.
  if (!isRecord(item.value)) return { line, error: `line ${line}: expected a CSV row as an object of column values, got ${describe(item.value)}` };
  return recordFromCsvRow(Object.keys(item.value), Object.values(item.value).map(String), line, idField);
}

async function scoreItems(event: Record<string, unknown>, settings: BatchSettings, context: InvocationContext): Promise<ChunkSummary | ItemBatch> {
  const { batch, plan } = itemBatchOf(event, settings);
  const bucket = settings.bucket;
  if (!bucket) throw new BatchChunkInputError('MODELFN_BATCH_BUCKET is not set: the chunk function does not know where to write');
  let service;
  try {
    service = await batchService(await coreFor(context), plan.model);
  } catch (error) {
    if (error instanceof UnknownBatchModelError) throw new BatchChunkInputError(error.message);
    throw error;
  }
  const s3 = s3Client();
  const progress: ChunkProgress & { firstLine?: number } = { succeeded: 0, failed: 0, resultParts: 0, errorParts: 0, ...batch.Progress };
  const items = batch.Items;
  let done = 0;
  while (done < items.length) {
    // At least one sub-chunk per invocation, so the loop always moves on.
    if (done > 0 && context.getRemainingTimeInMillis() < settings.timeMarginMs) break;
    const slice = items.slice(done, done + settings.chunkRecords);
    const records = slice.map((item) => recordOf(item, plan.format, settings.idField));
    const outcome = await processChunk(service, records);
    const keys = partKeys(plan.partsPrefix, records[0]!.line);
    const writes: Promise<unknown>[] = [];
    if (outcome.results.length > 0) writes.push(s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.results, Body: resultLines(outcome.results), ContentType: NDJSON })));
    if (outcome.errors.length > 0) writes.push(s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.errors, Body: errorLines(outcome.errors), ContentType: NDJSON })));
    await Promise.all(writes);
    progress.firstLine ??= records[0]!.line;
    progress.succeeded += outcome.results.length;
    progress.failed += outcome.errors.length;
    progress.resultParts += outcome.results.length > 0 ? 1 : 0;
    progress.errorParts += outcome.errors.length > 0 ? 1 : 0;
    done += slice.length;
  }
  const { firstLine, ...counts } = progress;
  if (done < items.length) {
    logger.info({ awsRequestId: context.awsRequestId, source: plan.key, done, left: items.length - done }, 'batch chunk: out of time, handing back the rest');
    return { Items: items.slice(done), BatchInput: batch.BatchInput, Progress: { ...counts, firstLine: firstLine! } };
  }
  const last = items.at(-1);
  const summary: ChunkSummary = {
    source: plan.key,
    firstLine: firstLine ?? 0,
    lastLine: last ? lineOf(last.index, plan.format) : 0,
    ...counts,
    partsPrefix: plan.partsPrefix,
  };
  logger.info({ awsRequestId: context.awsRequestId, ...summary }, 'batch chunk');
  return summary;
}

async function planFile(request: unknown, settings: BatchSettings, context: InvocationContext): Promise<PlanResult> {
  if (!isRecord(request) || typeof request.key !== 'string' || request.key === '') {
    throw new BatchChunkInputError(`malformed plan request: expected {"Plan": {"key": "${settings.inputPrefix}<model>/<path>.jsonl|.csv"}}, got ${JSON.stringify(request)?.slice(0, 200)}`);
  }
  const bucket = settings.bucket;
  if (!bucket) throw new BatchChunkInputError('MODELFN_BATCH_BUCKET is not set: the chunk function does not know which bucket to plan for');
  let plan: FilePlan;
  try {
    plan = planFor(request.key, settings);
  } catch (error) {
    if (error instanceof UnsafeKeyError) throw new BatchChunkInputError(error.message);
    throw error;
  }
  const s3 = s3Client();
  try {
    await batchService(await coreFor(context), plan.model);
  } catch (error) {
    if (!(error instanceof UnknownBatchModelError)) throw error;
    await clearOutputs(s3, bucket, plan);
    await writeFileError(s3, bucket, plan, error.message);
    throw new BatchChunkInputError(`${plan.key}: ${error.message}`);
  }
  if (typeof request.etag === 'string' && (await scoredInline(s3, bucket, plan, request.etag))) {
    return { key: plan.key, skip: `already scored inline from this version (ETag ${request.etag}) into ${plan.resultsKey}` };
  }
  await clearOutputs(s3, bucket, plan);
  return { key: plan.key, model: plan.model, format: plan.format, partsPrefix: plan.partsPrefix };
}

async function onRequest(event: unknown, context: InvocationContext): Promise<PlanResult | ChunkSummary | ItemBatch> {
  if (!isRecord(event)) throw new BatchChunkInputError(`malformed item batch: expected an object {"Items", "BatchInput"}, got ${describe(event)}`);
  const settings = batchSettings();
  if ('Plan' in event) {
    context.modelfn.event = 'batch-plan';
    return planFile(event.Plan, settings, context);
  }
  context.modelfn.event = 'batch-chunk';
  return scoreItems(event, settings, context);
}

export const handler = lambdaHandler<unknown, PlanResult | ChunkSummary | ItemBatch>(onRequest);
