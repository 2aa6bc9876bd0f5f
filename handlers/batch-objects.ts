import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { CSV_PARSE_OPTIONS, errorLines, processChunk, recordFromCsvRow, recordFromJsonLine, resultLines, type BatchRecord } from './batch.ts';
// The rest through the core's index, as the adapters import it: in a bundle this module (loaded by a batch job's
// first run) then shares the one chunk of core code a function starts with, instead of splitting off another.
import { InputError, type BatchFormat, type ModelService, type ObjectStore, type TextWriter } from './index.ts';

/**
 * Batch over an object store: an input object read as records (JSONL line by line, CSV through csv-parse), scored
 * chunk by chunk through `processChunk`, results and errors written as they are produced — what
 * `POST /v1/models/{name}/batch` runs as a background job and the cloud adapters' batch-on-upload runs on a new
 * object. Memory stays flat whatever the file size. Adapters bring the store (handlers/object-store.ts).
 */

/** A problem with the input file as a whole (CSV that cannot be parsed further). */
export class InputFileError extends Error {
  override readonly name = 'InputFileError';
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

export interface ScoreObjectOptions {
  input: string;
  format: BatchFormat;
  /** Where the results go (JSONL, input order); bad records go to `errors`, written only if there are any. */
  output: string;
  errors: string;
  idField?: string;
  /** Records per processChunk call. */
  chunkRecords?: number;
  /** Asked before each chunk: true stops the run (a function out of time), its outputs aborted. */
  shouldStop?: () => boolean;
}

export type ScoreObjectResult =
  | { status: 'scored'; records: number; succeeded: number; failed: number; output: string; errors?: string }
  | { status: 'stopped'; lastLine: number };

/** An input object that does not exist: the caller's mistake, not a reason to try again. */
export class MissingObjectError extends InputError {}

/**
 * Score one input object into its output objects. Throws MissingObjectError when there is no input object, and
 * InputFileError when the file cannot be read as records (both with nothing written); a bad record is a line in
 * the errors object, not a failure. An errors object left by an earlier run of the same output is removed.
 */
export async function scoreObject(service: ModelService, objects: ObjectStore, options: ScoreObjectOptions): Promise<ScoreObjectResult> {
  const { chunkRecords = 256, idField = 'id' } = options;
  const body = await objects.read(options.input);
  if (!body) throw new MissingObjectError(`input object "${options.input}" does not exist`);
  await objects.remove(options.errors);
  const results = objects.writer(options.output);
  let errors: TextWriter | undefined;
  const counts = { records: 0, succeeded: 0, failed: 0 };
  let lastLine = 0;
  const flush = async (chunk: BatchRecord[]) => {
    const outcome = await processChunk(service, chunk);
    await results.write(resultLines(outcome.results));
    if (outcome.errors.length > 0) {
      errors ??= objects.writer(options.errors);
      await errors.write(errorLines(outcome.errors));
    }
    counts.records += chunk.length;
    counts.succeeded += outcome.results.length;
    counts.failed += outcome.errors.length;
    lastLine = chunk.at(-1)!.line;
  };
  const abort = () => Promise.all([results.abort(), errors?.abort()]);

  try {
    let chunk: BatchRecord[] = [];
    for await (const record of readRecords(body, options.format, idField)) {
      chunk.push(record);
      if (chunk.length < chunkRecords) continue;
      if (options.shouldStop?.()) {
        body.destroy();
        await abort();
        return { status: 'stopped', lastLine };
      }
      await flush(chunk);
      chunk = [];
    }
    if (chunk.length > 0) await flush(chunk);
    await results.end();
    await errors?.end();
  } catch (error) {
    body.destroy();
    await abort();
    throw error;
  }
  return { status: 'scored', ...counts, output: options.output, ...(errors && { errors: options.errors }) };
}
