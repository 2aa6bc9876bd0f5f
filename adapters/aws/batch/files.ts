import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { NotFoundError, type Core, type ModelService } from '../../../handlers/index.ts';
import type { FilePlan } from './keys.ts';
import { NDJSON } from './s3-io.ts';

/** The model a batch file names cannot score it (unknown, or no v1 processing): permanent, reported, not retried. */
export class UnknownBatchModelError extends Error {
  override readonly name = 'UnknownBatchModelError';
}

/** The model exists but cannot serve now (its file failed to load): worth retrying. */
export class BatchModelUnavailableError extends Error {
  override readonly name = 'BatchModelUnavailableError';
}

/** The model service for a batch file, loaded; the same checks `modelfn batch` makes before it starts. */
export async function batchService(core: Core, model: string): Promise<ModelService> {
  let service: ModelService;
  try {
    service = core.repository.get(model);
  } catch (error) {
    if (error instanceof NotFoundError) throw new UnknownBatchModelError(error.message);
    throw error;
  }
  if (!service.definition.predict && !service.definition.preprocess) {
    throw new UnknownBatchModelError(`model "${model}" defines no v1 pre/post processing, which batch records go through`);
  }
  if (!(await service.ready())) throw new BatchModelUnavailableError(`model "${model}" could not be loaded: ${service.runtime.loadError}`);
  return service;
}

/** A problem with a whole file, written where its bad records would go: `{"error": "..."}` as the errors file. */
export async function writeFileError(s3: S3Client, bucket: string, plan: FilePlan, message: string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: plan.errorsKey, Body: `${JSON.stringify({ error: `${plan.key}: ${message}` })}\n`, ContentType: NDJSON }));
}

/** Metadata on an inline results object naming the input version it came from (`x-amz-meta-source-etag`). */
export const SOURCE_ETAG = 'source-etag';

export const unquoted = (etag: string) => etag.replace(/^"|"$/g, '');

/**
 * Whether this version of the input (by ETag) has its inline results already. S3 answers a HEAD of a missing key
 * with 403 instead of 404 to a role without s3:ListBucket on the bucket: either way there is nothing to skip for.
 */
export async function scoredInline(s3: S3Client, bucket: string, plan: FilePlan, etag: string): Promise<boolean> {
  try {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: plan.resultsKey }));
    return head.Metadata?.[SOURCE_ETAG] === unquoted(etag);
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (status === 404 || status === 403) return false;
    throw error;
  }
}
