import { UnavailableError } from './errors.ts';
import type { BatchingOptions, TensorMap } from './model-definition.ts';
import { sliceRows, stackingKey, stackTensors } from './tensors.ts';

export interface BatchRunInfo {
  /** Rows in the tensor run this request was part of. */
  batchRows: number;
  /** Requests stacked into that run. */
  batchRequests: number;
  queueMs: number;
  runMs: number;
}

export interface BatchResult {
  outputs: TensorMap;
  info: BatchRunInfo;
}

interface Pending {
  feeds: TensorMap;
  rows: number;
  key: string;
  enqueuedAt: number;
  resolve(result: BatchResult): void;
  reject(error: unknown): void;
}

export type RunFeeds = (feeds: TensorMap) => Promise<TensorMap>;

/**
 * Stacks concurrent requests for one model into one tensor run.
 *
 * When the model is idle a request runs at once: no timer, so a lone request pays nothing for batching.
 * While a run is in flight, arrivals queue; when it ends, the queue is stacked (up to maxBatchSize rows,
 * same trailing dims) into the next run. With maxDelayMs > 0 an idle model instead waits up to that long
 * for a fuller batch, the Triton/BentoML trade of latency for throughput.
 */
export class MicroBatcher {
  private readonly queue: Pending[] = [];
  private queuedRows = 0;
  private running = false;
  private delayTimer: NodeJS.Timeout | undefined;
  private readonly maxDelayMs: number;
  private readonly maxQueueRows: number;

  constructor(
    private readonly runFeeds: RunFeeds,
    private readonly options: BatchingOptions,
    private readonly onBatch?: (rows: number, requests: number) => void,
  ) {
    this.maxDelayMs = options.maxDelayMs ?? 0;
    this.maxQueueRows = options.maxQueueRows ?? options.maxBatchSize * 64;
  }

  get pendingRows(): number {
    return this.queuedRows;
  }

  submit(feeds: TensorMap, rows: number): Promise<BatchResult> {
    if (!this.running && this.queue.length === 0 && this.maxDelayMs === 0) return this.runAlone(feeds, rows);
    if (this.queuedRows + rows > this.maxQueueRows) {
      return Promise.reject(new UnavailableError(`model is overloaded: ${this.queuedRows} rows already queued`));
    }
    return new Promise<BatchResult>((resolve, reject) => {
      this.queue.push({ feeds, rows, key: stackingKey(feeds), enqueuedAt: performance.now(), resolve, reject });
      this.queuedRows += rows;
      this.schedule();
    });
  }

  /** The idle fast path: no queue, no stacking, no slicing; whatever arrives meanwhile forms the next batch. */
  private async runAlone(feeds: TensorMap, rows: number): Promise<BatchResult> {
    this.running = true;
    const started = performance.now();
    try {
      const outputs = await this.runFeeds(feeds);
      const runMs = performance.now() - started;
      this.onBatch?.(rows, 1);
      return { outputs, info: { batchRows: rows, batchRequests: 1, queueMs: 0, runMs } };
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.flush();
    }
  }

  private schedule(): void {
    if (this.running) return;
    if (this.maxDelayMs > 0 && this.queuedRows < this.options.maxBatchSize) {
      this.delayTimer ??= setTimeout(() => {
        this.delayTimer = undefined;
        this.flush();
      }, this.maxDelayMs);
      return;
    }
    this.flush();
  }

  private flush(): void {
    if (this.delayTimer) {
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
    }
    const batch = this.takeBatch();
    if (batch.length === 0) return;
    this.running = true;
    void this.runBatch(batch).finally(() => {
      this.running = false;
      if (this.queue.length > 0) this.flush();
    });
  }

  /** The oldest request plus every queued request that stacks with it, up to maxBatchSize rows. */
  private takeBatch(): Pending[] {
    const first = this.queue[0];
    if (!first) return [];
    const batch: Pending[] = [];
    let rows = 0;
    for (let index = 0; index < this.queue.length; ) {
      const pending = this.queue[index]!;
      const fits = batch.length === 0 || (pending.key === first.key && rows + pending.rows <= this.options.maxBatchSize);
      if (fits) {
        batch.push(pending);
        rows += pending.rows;
        this.queue.splice(index, 1);
        if (rows >= this.options.maxBatchSize) break;
      } else {
        index++;
      }
    }
    this.queuedRows -= rows;
    return batch;
  }

  private async runBatch(batch: Pending[]): Promise<void> {
    const started = performance.now();
    const totalRows = batch.reduce((sum, pending) => sum + pending.rows, 0);
    let outputs: TensorMap;
    try {
      const feeds = batch.length === 1 ? batch[0]!.feeds : stackFeeds(batch);
      outputs = await this.runFeeds(feeds);
    } catch (error) {
      if (batch.length === 1) batch[0]!.reject(error);
      // One request's bad tensors must not fail the others stacked with it: run each on its own.
      else for (const pending of batch) await this.runBatch([pending]);
      return;
    }
    const runMs = performance.now() - started;
    this.onBatch?.(totalRows, batch.length);
    let offset = 0;
    for (const pending of batch) {
      const slice: TensorMap = {};
      for (const [name, tensor] of Object.entries(outputs)) slice[name] = sliceRows(tensor, offset, pending.rows, totalRows);
      offset += pending.rows;
      pending.resolve({
        outputs: slice,
        info: { batchRows: totalRows, batchRequests: batch.length, queueMs: started - pending.enqueuedAt, runMs },
      });
    }
  }
}

function stackFeeds(batch: Pending[]): TensorMap {
  const stacked: TensorMap = {};
  for (const name of Object.keys(batch[0]!.feeds)) stacked[name] = stackTensors(batch.map((pending) => pending.feeds[name]!));
  return stacked;
}
