import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { PassThrough, type Readable } from 'node:stream';
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { CSV_PARSE_OPTIONS, recordFromCsvRow, recordFromJsonLine, type BatchRecord } from '../../../handlers/index.ts';
import type { BatchFormat, FilePlan } from './keys.ts';

/**
 * S3 streaming for batch: an object read as records (JSONL line by line, CSV through csv-parse), and output
 * written as it is produced through a multipart upload, so a function's memory stays flat whatever the file size.
 */

/** A problem with the input file as a whole (CSV that cannot be parsed further); reported in its errors file. */
export class InputFileError extends Error {
  override readonly name = 'InputFileError';
}

/** The object's body as a Node stream (the SDK's Node runtime gives an IncomingMessage). */
export async function openObject(s3: S3Client, bucket: string, key: string): Promise<Readable> {
  const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return response.Body as Readable;
}

/** JSONL: one record per line, blank lines skipped but counted, so `line` is the line in the file. */
async function* jsonlRecords(body: Readable, idField: string): AsyncGenerator<BatchRecord> {
  let line = 0;
  for await (const text of createInterface({ input: body, crlfDelay: Infinity })) {
    const record = recordFromJsonLine(text, ++line, idField);
    if (record) yield record;
  }
}

/** CSV with a header row, parsed as `modelfn batch` parses it. */
async function* csvRecords(body: Readable, idField: string): AsyncGenerator<BatchRecord> {
  const { parse } = await import('csv-parse');
  const parser = parse(CSV_PARSE_OPTIONS);
  body.on('error', (error) => parser.destroy(error));
  let header: string[] | undefined;
  try {
    for await (const { record, info } of body.pipe(parser) as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (!header) header = record.map((name) => name.trim());
      else yield recordFromCsvRow(header, record, info.lines, idField);
    }
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith('CSV_')) throw new InputFileError(`CSV: ${(error as Error).message}`);
    throw error;
  }
}

export function readRecords(body: Readable, format: BatchFormat, idField: string): AsyncGenerator<BatchRecord> {
  return format === 'jsonl' ? jsonlRecords(body, idField) : csvRecords(body, idField);
}

export const NDJSON = 'application/x-ndjson';

/**
 * One output object written as a stream of text: a multipart upload (5 MB parts, two in flight at most) fed
 * through a PassThrough, with backpressure. Nothing is visible under the key until `end()` completes it;
 * `abort()` leaves no object and no dangling parts.
 */
export class S3TextWriter {
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

/**
 * Remove what an earlier run of the same input left behind: the inline results and errors objects and every
 * part of a fan-out run. (A run overwrites its own keys; this catches a run of the other kind, or an errors file
 * that the new version of the file no longer has.)
 */
export async function clearOutputs(s3: S3Client, bucket: string, plan: FilePlan, keep: { results?: boolean } = {}): Promise<number> {
  const keys = keep.results ? [plan.errorsKey] : [plan.resultsKey, plan.errorsKey];
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
