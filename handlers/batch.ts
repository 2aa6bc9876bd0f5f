/**
 * Batch mode's core: a chunk of records -> predictions and per-record errors, in one tensor run.
 *
 * Every batch front end calls `processChunk`: the local CLI (scripts/batch.ts, one call per chunk in a worker
 * thread), and the cloud fan-outs (a Step Functions item batch, a Pub/Sub chunk). It knows nothing of files,
 * threads or object stores; the helpers below turn a JSONL line or a CSV row into a record, purely.
 */
import { InputError } from './errors.ts';
import type { ModelService } from './model-service.ts';

export type RecordId = string | number;

/** One input record; `error` set means the reader could not parse it (it is reported, never predicted). */
export interface BatchRecord {
  /** 1-based line of the input the record came from. */
  line: number;
  /** The record's id field, when it has one (readers fall back to the line number). */
  id?: RecordId;
  /** The instance handed to the model, without the id field. */
  value?: unknown;
  error?: string;
}

export interface BatchRecordResult {
  line: number;
  id?: RecordId;
  prediction: unknown;
}

export interface BatchRecordError {
  line: number;
  id?: RecordId;
  error: string;
}

export interface ChunkResult {
  /** Predictions of the records that succeeded, in input order. */
  results: BatchRecordResult[];
  /** Records that failed (unparseable, invalid, or rejected by the model), in input order. */
  errors: BatchRecordError[];
  /** predict() calls made: 1 when the chunk ran as one tensor batch, more after a one-by-one fallback. */
  predictCalls: number;
}

export interface ChunkOptions {
  /** How messages name a record; `line N` by default. */
  label?: (record: BatchRecord) => string;
}

/**
 * csv-parse settings every batch reader uses (the CLI, the cloud adapters), so a CSV reads the same everywhere.
 * relax_quotes keeps a stray quote inside a field as text (the record then fails validation on its own);
 * csv-parse's skip_records_with_error would lose the following record. Rows with the wrong number of cells
 * are reported by recordFromCsvRow.
 */
export const CSV_PARSE_OPTIONS = { bom: true, info: true, relax_quotes: true, relax_column_count: true, skip_empty_lines: true } as const;

/**
 * The batch output format, one JSON line per record: `{"id","line","prediction"}` (the id is the line number
 * when the record has none) for results, `{"line","id"?,"error"}` for the errors file.
 */
export function resultLines(results: readonly BatchRecordResult[]): string {
  let out = '';
  // By hand rather than JSON.stringify of a wrapper object: one allocation and one walk less per record.
  for (const result of results) out += `{"id":${JSON.stringify(result.id ?? result.line)},"line":${result.line},"prediction":${JSON.stringify(result.prediction)}}\n`;
  return out;
}

export function errorLines(errors: readonly BatchRecordError[]): string {
  let out = '';
  for (const error of errors) out += `${JSON.stringify(error)}\n`;
  return out;
}

const defaultLabel = (record: BatchRecord) => `line ${record.line}`;

function errorOf(record: BatchRecord, error: string): BatchRecordError {
  return record.id === undefined ? { line: record.line, error } : { line: record.line, id: record.id, error };
}

function resultOf(record: BatchRecord, prediction: unknown): BatchRecordResult {
  return record.id === undefined ? { line: record.line, prediction } : { line: record.line, id: record.id, prediction };
}

/**
 * Validate each record on its own (a bad one fails alone), then predict every valid one in ONE
 * `service.predict` call, so the chunk is one tensor batch. When that call rejects the input (an InputError
 * from a model-level check such as WAV decoding), the valid records are predicted one by one so only the
 * culprit fails. Any other error (model not ready, a bug) propagates: the caller decides, and for a batch
 * run it is fatal.
 */
export async function processChunk(service: ModelService, records: readonly BatchRecord[], options: ChunkOptions = {}): Promise<ChunkResult> {
  const label = options.label ?? defaultLabel;
  // Slot per input record, so results and errors come out in input order whatever path each record took.
  const outcomes: (BatchRecordResult | BatchRecordError | undefined)[] = new Array(records.length);
  const valid: number[] = [];
  const instanceError = await service.instanceCheck();
  for (let index = 0; index < records.length; index++) {
    const record = records[index]!;
    if (record.error !== undefined) {
      outcomes[index] = errorOf(record, record.error);
      continue;
    }
    const problem = instanceError(record.value, label(record));
    if (problem) outcomes[index] = errorOf(record, problem);
    else valid.push(index);
  }

  let predictCalls = 0;
  if (valid.length > 0) {
    let predictions: unknown[] | undefined;
    try {
      predictCalls++;
      predictions = (await service.predict(valid.map((index) => records[index]!.value), { validated: true })).predictions;
    } catch (error) {
      if (!(error instanceof InputError)) throw error;
      if (valid.length === 1) {
        const record = records[valid[0]!]!;
        outcomes[valid[0]!] = errorOf(record, relabel(error.message, label(record)));
      } else {
        for (const index of valid) {
          const record = records[index]!;
          try {
            predictCalls++;
            outcomes[index] = resultOf(record, (await service.predict([record.value], { validated: true })).predictions[0]);
          } catch (single) {
            if (!(single instanceof InputError)) throw single;
            outcomes[index] = errorOf(record, relabel(single.message, label(record)));
          }
        }
      }
    }
    if (predictions) for (let k = 0; k < valid.length; k++) outcomes[valid[k]!] = resultOf(records[valid[k]!]!, predictions[k]);
  }

  const results: BatchRecordResult[] = [];
  const errors: BatchRecordError[] = [];
  for (const outcome of outcomes) {
    if ('error' in outcome!) errors.push(outcome);
    else results.push(outcome!);
  }
  return { results, errors, predictCalls };
}

/** A model names the one instance it was given `instances[0]`; in a batch the record's own label says more. */
function relabel(message: string, label: string): string {
  return message.startsWith('instances[0]') ? label + message.slice('instances[0]'.length) : `${label}: ${message}`;
}

// ---- readers: one JSONL line or CSV row -> one record (pure; the caller owns the I/O) ----

function idOf(value: unknown, idField: string, line: number): { id: RecordId } | { error: string } {
  if (typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value))) return { id: value };
  return { error: `line ${line}: id field "${idField}" must be a string or a number, got ${JSON.stringify(value) ?? typeof value}` };
}

/**
 * One JSONL line -> a record; undefined for a blank line (not a record). The id is the `idField` property
 * (taken out of the instance: it names the record, it is not a model input), or the line number when absent.
 */
export function recordFromJsonLine(text: string, line: number, idField = 'id'): BatchRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    if (text.trim() === '') return undefined;
    return { line, error: `line ${line} is not valid JSON: ${(error as Error).message}` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, idField)) return { line, id: line, value };
  const object = value as Record<string, unknown>;
  const id = idOf(object[idField], idField, line);
  return 'id' in id ? { line, id: id.id, value: without(object, idField) } : { line, error: id.error };
}

/** A copy of `object` without `key` (a for-in copy: cheaper than rest-spread with a computed key, on the hot path). */
function without(object: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const name in object) {
    if (name === key) continue;
    // "__proto__" from JSON is an own data property; plain assignment would set the copy's prototype instead.
    if (name === '__proto__') Object.defineProperty(copy, name, { value: object[name], enumerable: true, writable: true, configurable: true });
    else copy[name] = object[name];
  }
  return copy;
}

const NUMERIC = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A CSV cell as a JSON value: numeric-looking text becomes a number, empty means missing (undefined). */
export function csvCell(cell: string): string | number | undefined {
  if (cell === '') return undefined;
  const trimmed = cell.trim();
  return NUMERIC.test(trimmed) ? Number(trimmed) : cell;
}

/**
 * One CSV data row -> a record, the header row giving the field names. Numeric-looking cells become
 * numbers, empty cells are left out (so a required feature reads as missing). The id cell stays text unless
 * it is a number written canonically ("00123" keeps its zeros); without an id column the line number is the id.
 */
export function recordFromCsvRow(header: readonly string[], cells: readonly string[], line: number, idField = 'id'): BatchRecord {
  if (cells.length !== header.length) {
    return { line, error: `line ${line} has ${cells.length} fields, the header has ${header.length}` };
  }
  const instance: Record<string, unknown> = {};
  let id: RecordId = line;
  for (let i = 0; i < header.length; i++) {
    const cell = cells[i]!;
    const name = header[i]!;
    if (name === idField) {
      if (cell !== '') id = NUMERIC.test(cell) && String(Number(cell)) === cell ? Number(cell) : cell;
      continue;
    }
    const value = csvCell(cell);
    if (value !== undefined) instance[name] = value;
  }
  return { line, id, value: instance };
}
