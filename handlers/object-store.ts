import type { Readable } from 'node:stream';
import { InputError } from './errors.ts';

/**
 * The object store batch jobs read and write (a local folder, S3, …) and the keys clients may name in it. What
 * scores an object (handlers/batch-objects.ts) loads only when a batch job runs.
 */

export type BatchFormat = 'jsonl' | 'csv';

/** One output object written as a stream of text: nothing is visible under its key until `end()`; `abort()` leaves none. */
export interface TextWriter {
  write(text: string): Promise<void>;
  end(): Promise<void>;
  abort(): Promise<void>;
}

/** Port: the objects batch jobs read and write, by key. */
export interface ObjectStore {
  /** The object's bytes, or undefined when there is no such object. */
  read(key: string): Promise<Readable | undefined>;
  writer(key: string): TextWriter;
  /** Remove the object if there is one (an errors file an earlier run left). */
  remove(key: string): Promise<void>;
  /** Why this store will not use `key` as a batch input or output (outside what it may read or write), or undefined. */
  refuse?(key: string, use: 'input' | 'output'): string | undefined;
}

const EXTENSIONS: Record<string, BatchFormat> = { '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.csv': 'csv' };

/** The record format a key's extension names (.jsonl, .ndjson, .csv), or undefined. */
export function batchFormatOf(key: string): BatchFormat | undefined {
  const dot = key.lastIndexOf('.');
  return dot > key.lastIndexOf('/') ? EXTENSIONS[key.slice(dot).toLowerCase()] : undefined;
}

/** Where a batch's bad records go: beside its output, as `modelfn batch` writes them. */
export const errorsKeyOf = (output: string) => `${output}.errors.jsonl`;

/** S3 keys are at most 1024 bytes of UTF-8; every store here takes what S3 takes, no more. */
export const MAX_KEY_BYTES = 1024;

/** C0 and C1 control characters: never in a key or a path a client may name. */
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/;

/** A key a client gave: relative, "/"-separated, no "." or ".." or empty segments, no backslash or control character. */
export function checkObjectKey(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw new InputError(`"${field}" must be a non-empty object key`);
  const shown = JSON.stringify(value);
  if (Buffer.byteLength(value) > MAX_KEY_BYTES) throw new InputError(`"${field}" is longer than ${MAX_KEY_BYTES} bytes`);
  if (value.includes('\\')) throw new InputError(`"${field}" ${shown} contains a backslash`);
  if (CONTROL_CHARACTER.test(value)) throw new InputError(`"${field}" ${shown} contains a control character`);
  for (const segment of value.split('/')) {
    if (segment === '') throw new InputError(`"${field}" ${shown} has an empty path segment (a leading, doubled or trailing "/")`);
    if (segment === '.' || segment === '..') throw new InputError(`"${field}" ${shown} has a "${segment}" path segment`);
  }
  return value;
}
