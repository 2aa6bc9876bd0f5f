import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import { DeleteObjectCommand, DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { ObjectStore, TextWriter } from '../../../handlers/object-store.ts';
import { isNotFound } from '../jobs/s3-objects.ts';
import type { FilePlan } from './keys.ts';

/**
 * S3 streaming for batch (handlers/batch-objects.ts reads the records and scores them): an object's body as a
 * stream, and output written as it is produced through a multipart upload, so a function's memory stays flat
 * whatever the file size.
 */

/** The object's body as a Node stream (the SDK's Node runtime gives an IncomingMessage). */
export async function openObject(s3: S3Client, bucket: string, key: string): Promise<Readable> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return response.Body as Readable;
}

export const NDJSON = 'application/x-ndjson';

/**
 * One output object written as a stream of text: a multipart upload (5 MB parts, two in flight at most) fed
 * through a PassThrough, with backpressure. Nothing is visible under the key until `end()` completes it;
 * `abort()` leaves no object and no dangling parts.
 */
export class S3TextWriter implements TextWriter {
  private readonly body = new PassThrough();
  private readonly upload: Upload;
  private readonly finished: Promise<unknown>;
  private failed: unknown;
  bytes = 0;

  constructor(s3: S3Client, bucket: string, key: string, metadata?: Record<string, string>) {
    this.upload = new Upload({ client: s3, params: { Bucket: bucket, Key: key, Body: this.body, ContentType: NDJSON, Metadata: metadata }, queueSize: 2, partSize: 5 * 1024 * 1024 });
    this.finished = this.upload.done();
    this.finished.catch((error: unknown) => (this.failed = error));
  }

  async write(text: string): Promise<void> {
    if (this.failed) throw this.failed;
    if (text === '') return;
    this.bytes += Buffer.byteLength(text);
    if (!this.body.write(text)) await Promise.race([once(this.body, 'drain'), this.finished]);
  }

  async end(): Promise<void> {
    this.body.end();
    await this.finished;
  }

  async abort(): Promise<void> {
    await this.upload.abort().catch(() => undefined);
    this.body.destroy();
    await this.finished.catch(() => undefined);
  }
}

/** The batch bucket as the core's ObjectStore; `metadataFor` tags an output object (the inline results' source ETag). */
export class S3ObjectStore implements ObjectStore {
  constructor(
    private readonly s3: S3Client,
    readonly bucket: string,
    private readonly options: { metadataFor?: (key: string) => Record<string, string> | undefined } = {},
  ) {}

  async read(key: string): Promise<Readable | undefined> {
    try {
      return await openObject(this.s3, this.bucket, key);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  writer(key: string): S3TextWriter {
    return new S3TextWriter(this.s3, this.bucket, key, this.options.metadataFor?.(key));
  }

  async remove(key: string): Promise<void> {
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }
}

/**
 * Remove what an earlier run of the same input left behind: the inline results and errors objects and every
 * part of a fan-out run. (A run overwrites its own keys; this catches a run of the other kind, or an errors file
 * that the new version of the file no longer has.)
 */
export async function clearOutputs(s3: S3Client, bucket: string, plan: FilePlan, keep: { results?: boolean; errors?: boolean } = {}): Promise<number> {
  const keys = [...(keep.results ? [] : [plan.resultsKey]), ...(keep.errors ? [] : [plan.errorsKey])];
  let continuationToken: string | undefined;
  do {
    const listing = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: plan.partsPrefix, ContinuationToken: continuationToken }));
    for (const object of listing.Contents ?? []) if (object.Key) keys.push(object.Key);
    continuationToken = listing.IsTruncated ? listing.NextContinuationToken : undefined;
  } while (continuationToken);
  for (let start = 0; start < keys.length; start += 1000) {
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(start, start + 1000).map((Key) => ({ Key })), Quiet: true } }));
  }
  return keys.length;
}
