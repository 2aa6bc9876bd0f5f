/**
 * `modelfn batch <model> --input F --output F`: a JSONL or CSV file through a model, streaming.
 *
 * The main thread only reads and writes bytes: JSONL is cut into chunks of --batch-size lines at newline
 * boundaries without decoding a character (CSV goes through csv-parse here, since quoted fields may span
 * lines), each chunk goes to a worker thread that parses, validates and predicts it with the core's
 * processChunk (one tensor run per chunk) and hands back encoded output and error lines. Results are written
 * in input order through a reorder buffer. Reading pauses while 2 chunks per worker are being worked on (or
 * 4 per worker are unwritten), so memory stays flat whatever the file size. After in-order writes (at most
 * every 0.5 s) a checkpoint (input position, output sizes, input size and mtime) replaces the previous one
 * atomically; --resume truncates the outputs to it and continues from its input position.
 */
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
  accessSync,
  constants,
  createReadStream,
  type Stats,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { SingleBar } from 'cli-progress';
import { CSV_PARSE_OPTIONS } from '../handlers/batch.ts';
import { errorsKeyOf } from '../handlers/object-store.ts';

export type BatchFormat = 'jsonl' | 'csv';

export interface BatchOptions {
  input: string;
  output: string;
  /** Default: from the input's extension (.jsonl, .ndjson, .json -> jsonl; .csv -> csv). */
  format?: BatchFormat;
  /** Records per chunk (one tensor run each). Default 256. */
  batchSize?: number;
  /** Worker threads, each with its own session. Default: the number of cores. */
  workers?: number;
  /** The field holding a record's id. Default "id"; records without one are named by their line number. */
  idField?: string;
  /** Folder of model folders. Default: the bundled examples. */
  models?: string;
  /** Continue an interrupted run from its checkpoint. */
  resume?: boolean;
  /** 'auto' (default): a bar on a terminal, a line every ~2 s otherwise. */
  progress?: 'auto' | 'bar' | 'lines';
}

/** What each worker is started with. */
export interface WorkerSettings {
  model: string;
  modelsDir?: string;
  idField: string;
}

export interface CsvRow {
  line: number;
  cells: string[];
}

export type ToWorker =
  | { type: 'header'; header: string[] }
  | { type: 'chunk'; index: number; firstLine: number; lineCount: number; bytes?: Uint8Array; rows?: CsvRow[] };

export type ToMain =
  | { type: 'ready' }
  | { type: 'fatal'; message: string }
  | { type: 'done'; index: number; out: Uint8Array; err: Uint8Array; succeeded: number; failed: number };

/** `<output>.checkpoint.json`: everything up to `inputLines` is in the output and errors files, nothing after. */
export interface Checkpoint {
  version: 1;
  model: string;
  format: BatchFormat;
  idField: string;
  input: { path: string; size: number; mtimeMs: number };
  /** Input lines finished (their results or errors are written). */
  inputLines: number;
  /** JSONL: byte offset just after line `inputLines`, where reading resumes. */
  inputBytes: number;
  outputBytes: number;
  errorsBytes: number;
  records: number;
  succeeded: number;
  failed: number;
  updatedAt: string;
}

export const EXIT_OK = 0;
export const EXIT_FATAL = 1;
export const EXIT_SOME_FAILED = 2;

/** A problem that ends the run before or during it: printed as one line, exit 1. */
class BatchFatal extends Error {}

export const checkpointPath = (output: string) => `${output}.checkpoint.json`;

const CHECKPOINT_INTERVAL_MS = 500;
const PROGRESS_LINE_INTERVAL_MS = 2000;

export function formatOf(file: string, explicit?: string): BatchFormat {
  if (explicit !== undefined) {
    if (explicit === 'jsonl' || explicit === 'csv') return explicit;
    throw new BatchFatal(`unknown --format "${explicit}"; use jsonl or csv`);
  }
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson' || ext === '.json') return 'jsonl';
  if (ext === '.csv') return 'csv';
  throw new BatchFatal(`cannot tell the format of ${file} from its extension; pass --format jsonl or --format csv`);
}

// ---- the worker pool ----

/**
 * Heap limits of each worker. Left to themselves, workers on a machine with plenty of RAM size their heaps
 * for it (a 4 GB old generation) and let garbage pile up: ~350 MB RSS for 1M anomaly rows. A 1 GB
 * old-generation cap keeps the whole process under 300 MB; 1 GB still holds two chunks of 256 records of up to
 * ~1 MB each (lower --batch-size for bigger records). The young generation stays at V8's 16 MB semi-spaces:
 * records die young, and 8 MB made scavenges frequent enough to cost ~10% of the run (1M rows: 5.8 s vs
 * 5.2 s) for ~20 MB less RSS.
 */
const WORKER_HEAP_LIMITS = { maxYoungGenerationSizeMb: 16, maxOldGenerationSizeMb: 1024 };

function describeWorkerError(error: Error): string {
  if ((error as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY') {
    return `a worker thread ran out of memory (heap limit ${WORKER_HEAP_LIMITS.maxOldGenerationSizeMb} MB); lower --batch-size`;
  }
  return `worker thread failed: ${error.message.split('\n')[0]}`;
}

interface PoolWorker {
  worker: Worker;
  outstanding: number;
}

class WorkerPool {
  private readonly workers: PoolWorker[] = [];
  private terminating = false;

  constructor(
    count: number,
    settings: WorkerSettings,
    private readonly onDone: (message: Extract<ToMain, { type: 'done' }>) => void,
    private readonly onFatal: (message: string) => void,
  ) {
    const entry = new URL('./batch-worker.js', import.meta.url);
    for (let i = 0; i < count; i++) {
      const worker = new Worker(entry, { workerData: settings, resourceLimits: WORKER_HEAP_LIMITS });
      const slot: PoolWorker = { worker, outstanding: 0 };
      worker.on('message', (message: ToMain) => {
        if (message.type === 'done') {
          slot.outstanding--;
          this.onDone(message);
        } else if (message.type === 'fatal') this.onFatal(message.message);
      });
      worker.on('error', (error) => this.onFatal(describeWorkerError(error)));
      worker.on('exit', (code) => {
        if (!this.terminating) this.onFatal(`worker thread exited unexpectedly (code ${code})`);
      });
      this.workers.push(slot);
    }
  }

  /** Resolves when every worker has its model loaded; rejects with the first worker's fatal message. */
  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      let waiting = this.workers.length;
      for (const { worker } of this.workers) {
        const listener = (message: ToMain) => {
          if (message.type === 'ready') {
            worker.off('message', listener);
            if (--waiting === 0) resolve();
          } else if (message.type === 'fatal') reject(new BatchFatal(message.message));
        };
        worker.on('message', listener);
        worker.once('error', (error) => reject(new BatchFatal(`worker thread failed to start: ${error.message.split('\n')[0]}`)));
      }
    });
  }

  /** Chunks sent to workers and not finished yet. */
  get outstanding(): number {
    let total = 0;
    for (const slot of this.workers) total += slot.outstanding;
    return total;
  }

  broadcast(message: ToWorker): void {
    for (const { worker } of this.workers) worker.postMessage(message);
  }

  /** To the worker with the fewest chunks outstanding; the chunk's bytes are moved, not copied. */
  send(message: Extract<ToWorker, { type: 'chunk' }>): void {
    let best = this.workers[0]!;
    for (const slot of this.workers) if (slot.outstanding < best.outstanding) best = slot;
    best.outstanding++;
    best.worker.postMessage(message, message.bytes ? [message.bytes.buffer as ArrayBuffer] : []);
  }

  async terminate(): Promise<void> {
    this.terminating = true;
    await Promise.all(this.workers.map(({ worker }) => worker.terminate()));
  }
}

// ---- readers: the input as chunks ----

interface Chunk {
  firstLine: number;
  /** Lines of the input the chunk covers (JSONL: including blank ones). */
  lineCount: number;
  lastLine: number;
  /** JSONL: byte offset just after the chunk. */
  endByte: number;
  bytes?: Uint8Array;
  rows?: CsvRow[];
}

/** A fresh buffer of its own (so it can be transferred) holding `parts` then `last` back to back. */
function joined(parts: Buffer[], partBytes: number, last?: Buffer): Uint8Array {
  const out = new Uint8Array(partBytes + (last?.length ?? 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  if (last) out.set(last, offset);
  return out;
}

/**
 * JSONL in chunks of `batchSize` lines, cut at newlines with Buffer.indexOf: no decoding and no string per
 * line on the main thread (readline's per-line strings cost ~4x the time here, time the workers need on 2
 * cores), and exact byte offsets for the checkpoint, so --resume seeks instead of re-reading.
 */
async function* jsonlChunks(file: string, startByte: number, startLine: number, batchSize: number): AsyncGenerator<Chunk> {
  let parts: Buffer[] = []; // the chunk being formed: pieces of earlier read buffers
  let partBytes = 0;
  let lines = 0;
  let firstLine = startLine + 1;
  let chunkStart = startByte;
  for await (const buffer of createReadStream(file, { start: startByte, highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let from = 0; // start of the part of `buffer` not yet in a chunk
    let scan = 0;
    let newline: number;
    while ((newline = buffer.indexOf(10, scan)) !== -1) {
      scan = newline + 1;
      if (++lines < batchSize) continue;
      const bytes = joined(parts, partBytes, buffer.subarray(from, scan));
      const endByte = chunkStart + bytes.length;
      yield { firstLine, lineCount: lines, lastLine: firstLine + lines - 1, endByte, bytes };
      firstLine += lines;
      chunkStart = endByte;
      lines = 0;
      parts = [];
      partBytes = 0;
      from = scan;
    }
    if (from < buffer.length) {
      parts.push(buffer.subarray(from));
      partBytes += buffer.length - from;
    }
  }
  if (partBytes > 0) {
    // The last line may have no newline; a blank leftover still counts as a line (the worker skips it).
    const bytes = joined(parts, partBytes);
    const lineCount = lines + (bytes[bytes.length - 1] === 10 ? 0 : 1);
    yield { firstLine, lineCount, lastLine: firstLine + lineCount - 1, endByte: chunkStart + bytes.length, bytes };
  }
}

type CsvItem = { header: string[] } | Chunk;

/** CSV through csv-parse: the header row first, then chunks of rows (rows ending at or before `skipThrough` are skipped). */
async function* csvChunks(file: string, batchSize: number, skipThrough: number, bytesRead: (n: number) => void): AsyncGenerator<CsvItem> {
  const stream = createReadStream(file, { highWaterMark: 1 << 20 });
  const { parse: parseCsv } = await import('csv-parse'); // loaded only for CSV: the workers start sooner
  const parser = parseCsv(CSV_PARSE_OPTIONS);
  stream.on('error', (error) => parser.destroy(error));
  stream.on('data', () => bytesRead(stream.bytesRead));
  let header: string[] | undefined;
  let rows: CsvRow[] = [];
  let firstLine = 0;
  let lastLine = 0;
  try {
    for await (const { record, info } of stream.pipe(parser) as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (!header) {
        header = record.map((name) => name.trim());
        yield { header };
        lastLine = info.lines;
        continue;
      }
      if (info.lines <= skipThrough) {
        lastLine = info.lines;
        continue;
      }
      if (rows.length === 0) firstLine = lastLine + 1;
      rows.push({ line: info.lines, cells: record });
      lastLine = info.lines;
      if (rows.length >= batchSize) {
        yield { firstLine, lineCount: lastLine - firstLine + 1, lastLine, endByte: 0, rows };
        rows = [];
      }
    }
  } catch (error) {
    throw new BatchFatal(`${file}: ${(error as Error).message}`);
  }
  if (rows.length > 0) yield { firstLine, lineCount: lastLine - firstLine + 1, lastLine, endByte: 0, rows };
}

// ---- progress ----

class Progress {
  private readonly bar: SingleBar | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();
  private records = 0;
  private errors = 0;
  private stopped = false;

  /** `cliProgress` given: a bar (a terminal); otherwise a plain line every ~2 s. */
  constructor(
    cliProgress: typeof import('cli-progress') | undefined,
    totalBytes: number,
    startBytes: number,
    private readonly sessionStartRecords: number,
  ) {
    if (cliProgress) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          format: ' {bar} {percentage}% | {records} records | {rate}/s | {errors} errors | ETA {eta_formatted}',
          hideCursor: true,
          etaBuffer: 50,
          fps: 5,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(Math.max(totalBytes, 1), startBytes, { records: 0, rate: 0, errors: 0 });
    } else {
      this.timer = setInterval(() => {
        process.stderr.write(`processed ${this.records} records (${this.rate()}/s), ${this.errors} errors\n`);
      }, PROGRESS_LINE_INTERVAL_MS);
      this.timer.unref();
    }
  }

  private rate(): number {
    const seconds = (performance.now() - this.started) / 1000;
    return seconds > 0 ? Math.round((this.records - this.sessionStartRecords) / seconds) : 0;
  }

  update(bytesDone: number, records: number, errors: number): void {
    this.records = records;
    this.errors = errors;
    this.bar?.update(bytesDone, { records, rate: this.rate(), errors });
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.bar?.stop();
    if (this.timer) clearInterval(this.timer);
  }
}

// ---- the run ----

function writeAll(fd: number, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += writeSync(fd, bytes, offset, bytes.length - offset);
}

function readCheckpoint(file: string): Checkpoint | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const checkpoint = JSON.parse(readFileSync(file, 'utf8')) as Checkpoint;
    if (checkpoint.version !== 1) throw new Error('not a version 1 modelfn batch checkpoint');
    return checkpoint;
  } catch (error) {
    throw new BatchFatal(`cannot resume: checkpoint ${file} is unreadable (${(error as Error).message})`);
  }
}

function checkPaths(options: BatchOptions): { inputStat: Stats } {
  const { input, output } = options;
  if (!existsSync(input)) throw new BatchFatal(`input file ${input} does not exist`);
  const inputStat = statSync(input);
  if (!inputStat.isFile()) throw new BatchFatal(`input ${input} is not a file`);
  try {
    accessSync(input, constants.R_OK);
  } catch {
    throw new BatchFatal(`input file ${input} is not readable`);
  }
  if (path.resolve(input) === path.resolve(output)) throw new BatchFatal(`the output ${output} would overwrite the input`);
  const dir = path.dirname(path.resolve(output));
  if (!existsSync(dir)) throw new BatchFatal(`output directory ${path.dirname(output)} does not exist`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new BatchFatal(`output directory ${path.dirname(output)} is not writable`);
  }
  if (existsSync(output) && statSync(output).isDirectory()) throw new BatchFatal(`output ${output} is a directory`);
  if (options.models !== undefined && !existsSync(options.models)) throw new BatchFatal(`models folder ${options.models} does not exist`);
  return { inputStat };
}

/** Run a batch; resolves to the exit code (0 all succeeded, 2 some records failed, 1 fatal, 130/143 interrupted). */
export async function runBatch(model: string, options: BatchOptions): Promise<number> {
  try {
    return await run(model, options);
  } catch (error) {
    if (error instanceof BatchFatal) {
      process.stderr.write(`modelfn batch: ${error.message}\n`);
      return EXIT_FATAL;
    }
    throw error;
  }
}

async function run(model: string, options: BatchOptions): Promise<number> {
  const started = performance.now();
  const { inputStat } = checkPaths(options);
  const format = formatOf(options.input, options.format);
  const batchSize = options.batchSize ?? 256;
  const workerCount = options.workers ?? os.availableParallelism();
  const idField = options.idField ?? 'id';
  const inputIdentity = { path: path.resolve(options.input), size: inputStat.size, mtimeMs: inputStat.mtimeMs };
  const outputFile = options.output;
  const errorsFile = errorsKeyOf(outputFile);
  const checkpointFile = checkpointPath(outputFile);

  let resumeFrom: Checkpoint | undefined;
  if (options.resume) {
    resumeFrom = readCheckpoint(checkpointFile);
    if (resumeFrom) {
      const was = resumeFrom.input;
      if (was.size !== inputIdentity.size || was.mtimeMs !== inputIdentity.mtimeMs) {
        throw new BatchFatal(
          `cannot resume: input ${options.input} changed since the checkpoint (size ${was.size} -> ${inputIdentity.size}, modified ${new Date(was.mtimeMs).toISOString()} -> ${new Date(inputIdentity.mtimeMs).toISOString()}); run without --resume to start over`,
        );
      }
      for (const [what, then, now] of [
        ['model', resumeFrom.model, model],
        ['format', resumeFrom.format, format],
        ['--id-field', resumeFrom.idField, idField],
      ] as const) {
        if (then !== now) throw new BatchFatal(`cannot resume: the checkpoint was written with ${what} "${then}", this run uses "${now}"`);
      }
      const outputSize = existsSync(outputFile) ? statSync(outputFile).size : -1;
      const errorsSize = existsSync(errorsFile) ? statSync(errorsFile).size : 0;
      if (outputSize < resumeFrom.outputBytes || errorsSize < resumeFrom.errorsBytes) {
        throw new BatchFatal(`cannot resume: ${outputFile} or ${errorsFile} is shorter than the checkpoint records; run without --resume to start over`);
      }
    } else {
      process.stderr.write(`modelfn batch: no checkpoint ${checkpointFile}; starting from the beginning\n`);
    }
  }

  // ---- state of the run ----
  const state = {
    inputLines: resumeFrom?.inputLines ?? 0,
    inputBytes: resumeFrom?.inputBytes ?? 0,
    outputBytes: resumeFrom?.outputBytes ?? 0,
    errorsBytes: resumeFrom?.errorsBytes ?? 0,
    records: resumeFrom?.records ?? 0,
    succeeded: resumeFrom?.succeeded ?? 0,
    failed: resumeFrom?.failed ?? 0,
  };
  const sessionStartRecords = state.records;
  let fatal: string | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  let dispatched = 0;
  let flushed = 0;
  // Backpressure: reading pauses while 2 chunks per worker are being worked on (one running, one queued behind
  // it), or while 4 per worker are unwritten (finished ones waiting behind a slower chunk for their turn).
  // Bounding only the unwritten total would idle a fast worker whenever its neighbour runs behind.
  const maxAtWorkers = 2 * workerCount;
  const maxUnwritten = 4 * workerCount;
  const chunkInfo = new Map<number, Chunk>();
  const finishedChunks = new Map<number, Extract<ToMain, { type: 'done' }>>();
  let wake: (() => void) | undefined;
  const wakeUp = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  let outFd = -1;
  let errFd = -1;
  let lastCheckpointAt = 0;
  let progress: Progress | undefined;
  let csvBytesRead = 0;

  const writeCheckpoint = () => {
    // Data first, then the checkpoint that vouches for it (atomic rename), so a crash never leaves a checkpoint ahead of its data.
    fdatasyncSync(outFd);
    fdatasyncSync(errFd);
    const checkpoint: Checkpoint = { version: 1, model, format, idField, input: inputIdentity, ...state, updatedAt: new Date().toISOString() };
    const tmp = `${checkpointFile}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(checkpoint, null, 2)}\n`);
    renameSync(tmp, checkpointFile);
    lastCheckpointAt = performance.now();
  };

  const onDone = (message: Extract<ToMain, { type: 'done' }>) => {
    if (fatal !== undefined) return;
    finishedChunks.set(message.index, message);
    if (message.index !== flushed) {
      wakeUp(); // a worker has room for another chunk
      return;
    }
    // In-order flush of every chunk that is now next in line.
    for (let next = finishedChunks.get(flushed); next; next = finishedChunks.get(flushed)) {
      finishedChunks.delete(flushed);
      const chunk = chunkInfo.get(flushed)!;
      chunkInfo.delete(flushed);
      writeAll(outFd, next.out);
      writeAll(errFd, next.err);
      state.outputBytes += next.out.length;
      state.errorsBytes += next.err.length;
      state.succeeded += next.succeeded;
      state.failed += next.failed;
      state.records += next.succeeded + next.failed;
      state.inputLines = chunk.lastLine;
      state.inputBytes = chunk.endByte;
      flushed++;
    }
    if (performance.now() - lastCheckpointAt >= CHECKPOINT_INTERVAL_MS) writeCheckpoint();
    progress?.update(format === 'jsonl' ? state.inputBytes : csvBytesRead, state.records, state.failed);
    wakeUp();
  };

  const onFatal = (message: string) => {
    fatal ??= message;
    wakeUp();
  };

  const pool = new WorkerPool(workerCount, { model, modelsDir: options.models, idField }, onDone, onFatal);
  let loaded = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (!loaded) {
      // Still loading the model: nothing is written yet, nothing to wait for.
      process.stderr.write(`modelfn batch: ${signal} while loading the model; nothing written\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    if (stopSignal) {
      // A second signal: leave now; the last checkpoint written is still consistent with the files.
      progress?.stop();
      process.stderr.write(`modelfn batch: ${signal} again, exiting without waiting for in-flight chunks\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    stopSignal = signal;
    wakeUp();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await pool.ready();
    loaded = true;

    // Files: truncated to the checkpoint when resuming, created (or overwritten) otherwise.
    try {
      if (resumeFrom) {
        truncateSync(outputFile, resumeFrom.outputBytes);
        if (existsSync(errorsFile)) truncateSync(errorsFile, resumeFrom.errorsBytes);
        outFd = openSync(outputFile, 'a');
        errFd = openSync(errorsFile, 'a');
      } else {
        rmSync(checkpointFile, { force: true });
        outFd = openSync(outputFile, 'w');
        errFd = openSync(errorsFile, 'w');
      }
    } catch (error) {
      throw new BatchFatal(`cannot write ${outputFile}: ${(error as Error).message}`);
    }

    const mode = options.progress === 'bar' || options.progress === 'lines' ? options.progress : process.stderr.isTTY ? 'bar' : 'lines';
    const cliProgress = mode === 'bar' ? (await import('cli-progress')).default : undefined;
    progress = new Progress(cliProgress, inputIdentity.size, format === 'jsonl' ? state.inputBytes : 0, sessionStartRecords);

    /** Wait for room among the in-flight chunks; false when the run must stop reading. */
    const room = async (): Promise<boolean> => {
      while (fatal === undefined && !stopSignal && (pool.outstanding >= maxAtWorkers || dispatched - flushed >= maxUnwritten)) {
        await new Promise<void>((resolve) => (wake = resolve));
      }
      return fatal === undefined && !stopSignal;
    };
    const dispatch = (chunk: Chunk) => {
      const index = dispatched++;
      chunkInfo.set(index, chunk);
      pool.send({ type: 'chunk', index, firstLine: chunk.firstLine, lineCount: chunk.lineCount, bytes: chunk.bytes, rows: chunk.rows });
    };

    // False when reading stopped early (a signal, a fatal error); a run that read everything completes even
    // if a signal arrives while its last chunks finish.
    let readAll = true;
    if (format === 'jsonl') {
      for await (const chunk of jsonlChunks(options.input, state.inputBytes, state.inputLines, batchSize)) {
        if (!(await room())) {
          readAll = false;
          break;
        }
        dispatch(chunk);
      }
    } else {
      for await (const item of csvChunks(options.input, batchSize, state.inputLines, (n) => (csvBytesRead = n))) {
        if (!(await room())) {
          readAll = false;
          break;
        }
        if ('header' in item) pool.broadcast({ type: 'header', header: item.header });
        else dispatch(item);
      }
    }

    // Let in-flight chunks finish and flush (on a signal too); a fatal error stops at once.
    while (fatal === undefined && flushed < dispatched) await new Promise<void>((resolve) => (wake = resolve));
    progress.stop();
    const seconds = (performance.now() - started) / 1000;
    const rate = Math.round((state.records - sessionStartRecords) / seconds);
    const resumed = resumeFrom ? ` (resumed after line ${resumeFrom.inputLines})` : '';

    if (fatal !== undefined) {
      writeCheckpoint();
      throw new BatchFatal(`${fatal} (stopped after line ${state.inputLines}; the checkpoint allows --resume)`);
    }
    if (!readAll) {
      writeCheckpoint();
      process.stderr.write(
        `stopped by ${stopSignal}: ${state.records} records, ${state.succeeded} succeeded, ${state.failed} failed in ${seconds.toFixed(1)} s (${rate} records/s)${resumed}; through line ${state.inputLines}, checkpoint ${checkpointFile}; run again with --resume to continue\n`,
      );
      return stopSignal === 'SIGINT' ? 130 : 143;
    }

    closeSync(outFd);
    closeSync(errFd);
    outFd = errFd = -1;
    rmSync(checkpointFile, { force: true });
    if (state.errorsBytes === 0) rmSync(errorsFile, { force: true });
    process.stderr.write(`done: ${state.records} records, ${state.succeeded} succeeded, ${state.failed} failed in ${seconds.toFixed(1)} s (${rate} records/s)${resumed}\n`);
    if (state.failed > 0) process.stderr.write(`failed records: ${errorsFile}\n`);
    return state.failed > 0 ? EXIT_SOME_FAILED : EXIT_OK;
  } finally {
    progress?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (outFd >= 0) closeSync(outFd);
    if (errFd >= 0) closeSync(errFd);
    await pool.terminate();
  }
}
