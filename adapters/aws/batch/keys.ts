import { createHash } from 'node:crypto';
import { batchFormatOf, CONTROL_CHARACTER, MAX_KEY_BYTES, type BatchFormat } from '../../../handlers/object-store.ts';
import type { BatchSettings } from './settings.ts';

export type { BatchFormat };

/** Where one input file's outputs go; every key derives from the input key and stays under the output prefix. */
export interface FilePlan {
  /** The input key, as stored. */
  key: string;
  model: string;
  format: BatchFormat;
  /** Inline run: `output/<model>/<path>.jsonl`, records in input order. */
  resultsKey: string;
  /** Inline run: `output/<model>/<path>.errors.jsonl`, bad records (line + reason), or one file-level error. */
  errorsKey: string;
  /** Fan-out run: `output/<model>/<path>.parts/`, a `part-<first line>.jsonl` (and `.errors.jsonl`) per item batch. */
  partsPrefix: string;
}

/** An input key batch will not map to outputs; the message says why. */
export class UnsafeKeyError extends Error {
  override readonly name = 'UnsafeKeyError';
}

const PARTS_SUFFIX = '.parts';
const ERRORS_SUFFIX = '.errors';

/** S3 event notifications URL-encode the key, with `+` for a space. */
export function decodeEventKey(encoded: string): string {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, ' '));
  } catch {
    throw new UnsafeKeyError(`object key "${encoded}" is not valid URL encoding`);
  }
}

/**
 * `input/<model>/<path>.<ext>` -> the model and every output key, or UnsafeKeyError. Refused: keys outside the
 * input prefix, empty, "." or ".." segments (so no output can leave the output prefix), backslashes, control
 * characters, unknown extensions, and names that would collide with another file's outputs (a `.parts` folder,
 * a `.errors` file).
 */
export function planFor(key: string, settings: Pick<BatchSettings, 'inputPrefix' | 'outputPrefix'>): FilePlan {
  const shown = JSON.stringify(key);
  if (!key.startsWith(settings.inputPrefix)) throw new UnsafeKeyError(`object key ${shown} is not under the input prefix "${settings.inputPrefix}"`);
  if (key.includes('\\')) throw new UnsafeKeyError(`object key ${shown} contains a backslash`);
  if (CONTROL_CHARACTER.test(key)) throw new UnsafeKeyError(`object key ${shown} contains a control character`);
  const segments = key.slice(settings.inputPrefix.length).split('/');
  if (segments.length < 2) throw new UnsafeKeyError(`object key ${shown} has no model folder: expected ${settings.inputPrefix}<model>/<path>.jsonl or .csv`);
  for (const segment of segments) {
    if (segment === '') throw new UnsafeKeyError(`object key ${shown} has an empty path segment (a leading, doubled or trailing "/")`);
    if (segment === '.' || segment === '..') throw new UnsafeKeyError(`object key ${shown} has a "${segment}" path segment`);
  }
  const [model, ...rest] = segments as [string, ...string[]];
  const file = rest.at(-1)!;
  const dot = file.lastIndexOf('.');
  const format = dot > 0 ? batchFormatOf(file) : undefined;
  if (!format) throw new UnsafeKeyError(`object key ${shown} is not a .jsonl, .ndjson or .csv file`);
  const path = [...rest.slice(0, -1), file.slice(0, dot)].join('/');
  if (rest.slice(0, -1).some((folder) => folder.endsWith(PARTS_SUFFIX))) {
    throw new UnsafeKeyError(`object key ${shown} has a folder ending in "${PARTS_SUFFIX}", reserved for the part files of a fan-out run`);
  }
  if (path.endsWith(ERRORS_SUFFIX)) throw new UnsafeKeyError(`object key ${shown} ends in "${ERRORS_SUFFIX}${file.slice(dot)}", reserved for errors files`);
  const base = `${settings.outputPrefix}${model}/${path}`;
  const plan: FilePlan = { key, model, format, resultsKey: `${base}.jsonl`, errorsKey: `${base}${ERRORS_SUFFIX}.jsonl`, partsPrefix: `${base}${PARTS_SUFFIX}/` };
  if (Buffer.byteLength(plan.errorsKey) > MAX_KEY_BYTES || Buffer.byteLength(plan.partsPrefix) + 'part-0000000000.errors.jsonl'.length > MAX_KEY_BYTES) {
    throw new UnsafeKeyError(`object key ${shown} is too long: its output keys would exceed S3's ${MAX_KEY_BYTES} bytes`);
  }
  return plan;
}

/** A fan-out run's part file for the item batch (or sub-chunk) starting at `firstLine`: the same batch always writes the same keys. */
export function partKeys(partsPrefix: string, firstLine: number): { results: string; errors: string } {
  const name = `${partsPrefix}part-${String(firstLine).padStart(10, '0')}`;
  return { results: `${name}.jsonl`, errors: `${name}.errors.jsonl` };
}

/**
 * The Step Functions execution name for one version of one file: SHA-256 hex of `<key>|<ETag in quotes>`, the
 * same value the state machine computes for a listed object (`States.Hash(States.Format('{}|{}', key, Etag))`;
 * ListObjectsV2 gives the ETag quoted, S3 events without quotes). A redelivered event or the nightly listing
 * finds the name taken and starts nothing.
 */
export function executionName(key: string, etag: string): string {
  const quoted = etag.startsWith('"') ? etag : `"${etag}"`;
  return createHash('sha256').update(`${key}|${quoted}`).digest('hex');
}
