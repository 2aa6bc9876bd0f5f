/**
 * One worker thread of `modelfn batch`: loads the model once, then turns each chunk the main thread sends
 * (raw JSONL bytes, or parsed CSV rows) into records, runs them through the core's processChunk (one tensor
 * run per chunk) and sends back the output and errors lines already encoded, so the main thread only writes bytes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorLines, processChunk, recordFromCsvRow, recordFromJsonLine, resultLines, type BatchRecord } from '../handlers/batch.ts';
import { loadModelRepository } from '../handlers/model-repository.ts';
import type { ModelService } from '../handlers/model-service.ts';
import type { ToMain, ToWorker, WorkerSettings } from './batch.ts';
import { errorMessage } from '../handlers/errors.ts';

const settings = workerData as WorkerSettings;
const port = parentPort!;
const send = (message: ToMain, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
const firstLine = (error: unknown) => errorMessage(error).split('\n')[0]!;

async function loadService(): Promise<ModelService> {
  // The model's own folder first (no other definitions to import); a full scan when it is named differently,
  // which also gives the list of available models for the error.
  let repository = await loadModelRepository({ dir: settings.modelsDir, only: [settings.model] });
  if (!repository.list().some((candidate) => candidate.name === settings.model)) repository = await loadModelRepository({ dir: settings.modelsDir });
  const service = repository.get(settings.model);
  if (!service.definition.predict && !service.definition.preprocess) {
    throw new Error(`model "${settings.model}" defines no v1 pre/post processing, which batch records go through`);
  }
  if (!(await service.ready())) throw new Error(`model "${settings.model}" could not be loaded: ${service.runtime.loadError}`);
  return service;
}

const { idField } = settings;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
let header: string[] = [];

function jsonlRecords(bytes: Uint8Array, first: number, lineCount: number): BatchRecord[] {
  const text = decoder.decode(bytes);
  const records: BatchRecord[] = [];
  let start = 0;
  for (let k = 0; k < lineCount; k++) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    const record = recordFromJsonLine(text.slice(start, end), first + k, idField);
    if (record) records.push(record);
    start = end + 1;
  }
  return records;
}

async function onChunk(service: ModelService, message: Extract<ToWorker, { type: 'chunk' }>): Promise<void> {
  const records =
    message.bytes !== undefined
      ? jsonlRecords(message.bytes, message.firstLine, message.lineCount)
      : message.rows!.map((row) => recordFromCsvRow(header, row.cells, row.line, idField));
  const { results, errors } = await processChunk(service, records);
  const out = resultLines(results);
  const err = errorLines(errors);
  const outBytes = encoder.encode(out);
  const errBytes = encoder.encode(err);
  send(
    { type: 'done', index: message.index, out: outBytes, err: errBytes, succeeded: results.length, failed: errors.length },
    [outBytes.buffer as ArrayBuffer, errBytes.buffer as ArrayBuffer],
  );
}

// A model that cannot serve ends the run: report why, and the main thread terminates the workers.
const service = await loadService().catch((error: unknown) => void send({ type: 'fatal', message: firstLine(error) }));
if (service) {
  port.on('message', (message: ToWorker) => {
    if (message.type === 'header') header = message.header;
    else onChunk(service, message).catch((error: unknown) => send({ type: 'fatal', message: firstLine(error) }));
  });
  send({ type: 'ready' });
}
