import { batchFormatOf, checkObjectKey, errorsKeyOf, type BatchFormat, type ObjectStore } from './object-store.ts';
import { nodeCrypto } from './builtins.ts';
import { describeError, InputError, ModelfnError, NotFoundError, UnavailableError } from './errors.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { ModelRepository } from './model-repository.ts';
import type { InstanceCheck, ModelService } from './model-service.ts';
import { deliverWebhook } from './webhook.ts';

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

/** A job as stored. Adapters persist it whole (a file, an S3 object, a blob); the core owns its meaning. */
export interface Job {
  id: string;
  model: string;
  status: JobStatus;
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** Runs started so far. */
  attempts: number;
  /** When a retried job may run again. */
  notBefore?: string;
  /**
   * The input. Stores whose queue carries no payload keep it (the local file store); a store whose queue
   * carries it in the message or a claim-check object leaves it out (the S3 store), and the worker hands it
   * to `runJobs` with the delivery.
   */
  instances?: unknown[];
  /** A batch job (`POST /v1/models/{name}/batch`): its input and outputs are objects in the ObjectStore. */
  batch?: { input: string; output: string; errors: string; format: BatchFormat };
  result?: { predictions: unknown[] } | BatchJobResult;
  error?: string;
  callbackUrl?: string;
  webhook?: { delivered: boolean; attempts: number; lastError?: string; notBefore?: string; givenUp?: boolean };
  /** Finished jobs are deleted after this. */
  expiresAt?: string;
}

/** A finished batch job: how many records, and where their results (and bad records, if any) went. */
export interface BatchJobResult {
  records: number;
  succeeded: number;
  failed: number;
  output: string;
  errors?: string;
}

/** What `GET /v1/jobs/{id}` shows: the job without its (possibly large) input. */
export type JobView = Omit<Job, 'instances'>;

/** Port: where jobs live. Must make `create` atomic per idempotency key. */
export interface JobStore {
  /** Persist a new job before it is acknowledged; with a key already used, return that job instead. */
  create(job: Job, idempotencyKey?: string): Promise<{ job: Job; created: boolean }>;
  get(id: string): Promise<Job | undefined>;
  put(job: Job): Promise<void>;
  /** Jobs that still need work: queued, running (the process died under them) or with a webhook owed. */
  listUnfinished(): Promise<Job[]>;
  addDeadLetter(job: Job): Promise<void>;
  listDeadLetters(): Promise<JobView[]>;
  /** Delete finished jobs whose expiresAt has passed; returns how many. */
  deleteExpired(now: Date): Promise<number>;
}

/**
 * Port: how jobs reach a worker. It is given the whole job, so a queue that can carry the input does (SQS
 * inline, or through a claim-check object when the message would be too large); the local queue is in memory
 * and takes only the id (the store makes it durable). Clouds bring SQS, Pub/Sub, Queue Storage.
 * A finished job is sent only when its webhook is owed: then no input is needed.
 */
export interface JobQueue {
  send(job: Job, delayMs?: number): Promise<void>;
}

/** One message's worth of work for `runJobs`. */
export interface JobDelivery {
  jobId: string;
  /** The input, when the message brought it; otherwise the stored job's. */
  instances?: unknown[];
}

/**
 * What became of one delivery. `not-found` (no such job) and `error` (the store or queue failed, or the input
 * was missing) are the adapter's to report: they should be delivered again. The rest are done with.
 */
export type DeliveryOutcome =
  | { jobId: string; outcome: 'succeeded' | 'failed' | 'retry-scheduled'; job: JobView }
  | { jobId: string; outcome: 'already-finished' | 'duplicate' }
  | { jobId: string; outcome: 'not-found' }
  | { jobId: string; outcome: 'error'; error: unknown };

export interface RunJobsOptions {
  /** Asked between chunks of a batch job: true when the worker must stop (a function near its timeout). */
  outOfTime?: () => boolean;
}

export interface RunJobsReport {
  /** One per delivery, in delivery order. */
  outcomes: DeliveryOutcome[];
  /** `predict` calls made: one per model (per maxBatchSize rows) when nothing fell back to per-job runs. */
  predictCalls: number;
}

export interface JobSettings {
  /** Runs before a failing job is given up (failed + dead letter). */
  maxAttempts: number;
  /** First retry delay; doubles each attempt up to retryMaxMs, with jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  webhookMaxAttempts: number;
  webhookRetryBaseMs: number;
  webhookSecret?: string;
  retentionMs: number;
}

export const DEFAULT_JOB_SETTINGS: JobSettings = {
  maxAttempts: 5,
  retryBaseMs: 1_000,
  retryMaxMs: 60_000,
  webhookMaxAttempts: 8,
  webhookRetryBaseMs: 2_000,
  retentionMs: 7 * 24 * 3600 * 1000,
};

/** Exponential backoff with full jitter in [half, whole] of the step, capped. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const step = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + (Math.random() * step) / 2);
}

/** Nothing left to do for this job: finished, and its webhook (if any) delivered or given up. Stores use it to drop the job from recovery. */
export function isSettled(job: Job): boolean {
  if (job.status !== 'succeeded' && job.status !== 'failed') return false;
  return !job.callbackUrl || !!job.webhook?.delivered || !!job.webhook?.givenUp;
}

export function viewOf(job: Job): JobView {
  const { instances: _input, ...view } = job;
  return view;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkCallbackUrl(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new InputError('"callbackUrl" must be a string URL');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InputError(`"callbackUrl" is not a valid URL: ${value}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InputError('"callbackUrl" must be an http or https URL');
  return url.href;
}

/** What running a job gave: its predictions or batch summary, or why not. */
type RunResult = { predictions: unknown[] } | { batch: BatchJobResult } | { error: unknown };

/** Webhooks after a run: retried in this process in the background (a long-lived worker), or one attempt awaited with retries sent through the queue (a function that may be frozen once it returns). */
type WebhookMode = 'background' | 'awaited';

/**
 * Asynchronous jobs, provider-neutral: accept (validate, persist, enqueue), run with retries, record the
 * outcome once, then tell the caller's webhook. Adapters bring the store and the queue. A long-lived worker
 * calls `runJob` for each message (the local queue); a serverless trigger calls `runJobs` with its whole
 * batch (an SQS batch, a Pub/Sub push), which runs the jobs of one model as one tensor run.
 */
export class JobService {
  readonly settings: JobSettings;

  constructor(
    private readonly repository: ModelRepository,
    private readonly store: JobStore,
    private readonly queue: JobQueue,
    settings: Partial<JobSettings> = {},
    private readonly logger?: Logger,
    private readonly metrics?: Metrics,
    /** Where batch jobs read and write; without it `submitBatch` answers 404. */
    private readonly objects?: ObjectStore,
  ) {
    this.settings = { ...DEFAULT_JOB_SETTINGS, ...settings };
  }

  /** Validate and persist a job before anyone is told it was accepted; the same idempotency key returns the same job. */
  async submit(modelName: string, body: unknown, idempotencyKey?: string): Promise<{ job: Job; created: boolean }> {
    const service = this.repository.get(modelName);
    if (!isPlainObject(body)) throw new InputError('request body must be an object with a non-empty "instances" array');
    const { instances } = body;
    if (!Array.isArray(instances) || instances.length === 0) {
      throw new InputError('request body must be an object with a non-empty "instances" array');
    }
    const problem = firstInstanceError(await service.instanceCheck(), instances);
    if (problem) throw new InputError(problem);
    return this.enqueue(newJob(service.name, body, { instances }), idempotencyKey);
  }

  /**
   * A batch over the object store (`{"input": "<key>", "output": "<key>"}`, .jsonl/.ndjson/.csv in, JSONL out,
   * bad records to `<output>.errors.jsonl`) as a background job; its result says how many records went where.
   */
  async submitBatch(modelName: string, body: unknown, idempotencyKey?: string): Promise<{ job: Job; created: boolean }> {
    if (!this.objects) throw new NotFoundError('batch jobs are not enabled on this server: it has no object store');
    const service = this.repository.get(modelName);
    if (!service.definition.predict && !service.definition.preprocess) {
      throw new NotFoundError(`model "${service.name}" defines no v1 pre/post processing, which batch records go through`);
    }
    if (!isPlainObject(body)) throw new InputError('request body must be an object {"input": "<key>", "output": "<key>"}');
    const input = checkObjectKey(body.input, 'input');
    const output = checkObjectKey(body.output, 'output');
    const format = batchFormatOf(input);
    if (!format) throw new InputError(`"input" ${JSON.stringify(input)} must be a .jsonl, .ndjson or .csv object`);
    const errors = errorsKeyOf(output);
    if (output === input || errors === input) throw new InputError(`"output" ${JSON.stringify(output)} would overwrite the input`);
    const refused = this.objects.refuse?.(input, 'input') ?? this.objects.refuse?.(output, 'output');
    if (refused) throw new InputError(refused);
    return this.enqueue(newJob(service.name, body, { batch: { input, output, errors, format } }), idempotencyKey);
  }

  /** Persist a new job before anyone is told it was accepted, then queue it. */
  private async enqueue(job: Job, idempotencyKey: string | undefined): Promise<{ job: Job; created: boolean }> {
    if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > 255)) {
      throw new InputError('Idempotency-Key must be 1 to 255 characters');
    }
    const stored = await this.store.create(job, idempotencyKey);
    if (stored.created) {
      try {
        await this.queue.send(job);
      } catch (error) {
        // Stored but never queued, nothing would run it: record that rather than leave it "queued" for ever.
        this.logger?.error({ jobId: job.id, model: job.model, err: error }, 'job stored but not queued');
        await this.failUnqueued(job);
        throw new UnavailableError('the job queue is unavailable; submit the job again (with a new Idempotency-Key if you sent one)');
      }
      this.metrics?.jobs.inc({ model: job.model, event: 'accepted' });
    }
    return stored;
  }

  async get(id: string): Promise<JobView> {
    const job = /^[0-9a-f-]{36}$/.test(id) ? await this.store.get(id) : undefined;
    if (!job) throw new NotFoundError(`job "${id}" not found`);
    return viewOf(job);
  }

  listDeadLetters(): Promise<JobView[]> {
    return this.store.listDeadLetters();
  }

  /**
   * Run one delivery of a job id. Safe to call twice for the same id (a redelivered message): a finished
   * job is left alone. Bad input fails at once; other errors retry with backoff up to maxAttempts. Throws
   * when the store or the queue fails; webhooks go on in the background.
   */
  async runJob(jobId: string): Promise<void> {
    const [delivered] = (await this.run([{ jobId }], 'background')).outcomes;
    if (delivered?.outcome === 'error') throw delivered.error;
  }

  /**
   * Run a batch of deliveries together (a serverless trigger's batch): the jobs of one model go through ONE
   * `predict` over their concatenated instances (split at the model's maxBatchSize rows, never inside a job),
   * and the predictions are split back per job. When a joint run fails on input, each job runs alone, so a
   * poison job fails with its own reason and the others succeed. Redelivery is idempotent: finished jobs are
   * skipped (an owed webhook is still sent). Failures follow `runJob`'s rules (bad input fails at once;
   * others retry through the queue with backoff up to maxAttempts, then dead-letter).
   *
   * Returns only when all it started is done, webhooks included (one attempt each; further attempts are sent
   * through the queue with their backoff as the delay), so a function may be frozen right after. Never
   * throws for one delivery: the outcomes say which failed outside the model and should be delivered again.
   */
  runJobs(deliveries: readonly JobDelivery[], options: RunJobsOptions = {}): Promise<RunJobsReport> {
    return this.run(deliveries, 'awaited', options);
  }

  /**
   * Give up on a delivery that kept failing outside the model (its last receive before the queue's own
   * dead-letter queue takes it): the job is marked failed with the reason and listed as a dead letter, so its
   * status never stays queued or running. Does nothing to an unknown or finished job; true when it marked one.
   */
  async abandon(jobId: string, reason: string): Promise<boolean> {
    const job = await this.store.get(jobId);
    if (!job || job.status === 'succeeded' || job.status === 'failed') return false;
    this.finish(job, 'failed', { error: reason });
    await this.store.addDeadLetter(job);
    await this.store.put(job);
    this.metrics?.jobs.inc({ model: job.model, event: 'failed' });
    this.logger?.error({ jobId: job.id, model: job.model, attempts: job.attempts, reason }, 'job abandoned');
    if (job.callbackUrl) await this.notifyOnce(job);
    return true;
  }

  private async run(deliveries: readonly JobDelivery[], webhooks: WebhookMode, options: RunJobsOptions = {}): Promise<RunJobsReport> {
    const outcomes: DeliveryOutcome[] = new Array(deliveries.length);
    const report: RunJobsReport = { outcomes, predictCalls: 0 };
    const owedWebhooks: Promise<void>[] = [];

    // Every job read at once: one store round trip of latency for the batch, not one per message.
    const loaded = await Promise.allSettled(deliveries.map((delivery) => this.store.get(delivery.jobId)));
    const claimed: { index: number; job: Job }[] = [];
    const seen = new Set<string>();
    deliveries.forEach(({ jobId, instances }, index) => {
      const read = loaded[index]!;
      if (seen.has(jobId)) outcomes[index] = { jobId, outcome: 'duplicate' };
      else if (read.status === 'rejected') outcomes[index] = { jobId, outcome: 'error', error: read.reason };
      else if (!read.value) outcomes[index] = { jobId, outcome: 'not-found' };
      else if (read.value.status === 'succeeded' || read.value.status === 'failed') {
        outcomes[index] = { jobId, outcome: 'already-finished' };
        if (!isSettled(read.value)) owedWebhooks.push(this.webhook(read.value, webhooks));
      } else {
        const job = read.value;
        const input = instances ?? job.instances;
        if (job.batch) claimed.push({ index, job });
        else if (!Array.isArray(input) || input.length === 0) {
          outcomes[index] = { jobId, outcome: 'error', error: new Error(`job ${jobId}: its input is neither in the message nor in the store`) };
        } else {
          job.instances = input; // kept on the job in memory: a retry sends it again
          claimed.push({ index, job });
        }
      }
      seen.add(jobId);
    });

    const startedAt = new Date().toISOString();
    const marked = await Promise.allSettled(
      claimed.map(({ job }) => {
        job.status = 'running';
        job.attempts += 1;
        job.startedAt = startedAt;
        job.updatedAt = startedAt;
        delete job.notBefore;
        return this.store.put(job);
      }),
    );
    const running = claimed.filter(({ index, job }, k) => {
      const mark = marked[k]!;
      if (mark.status === 'fulfilled') return true;
      outcomes[index] = { jobId: job.id, outcome: 'error', error: mark.reason };
      return false;
    });

    const results = await this.predictJobs(
      running.filter(({ job }) => !job.batch).map(({ job }) => job),
      report,
    );
    for (const { job } of running) if (job.batch) results.set(job, await this.scoreBatch(job, options.outOfTime));
    await Promise.all(
      running.map(async ({ index, job }) => {
        try {
          outcomes[index] = await this.settle(job, results.get(job)!, webhooks);
        } catch (error) {
          outcomes[index] = { jobId: job.id, outcome: 'error', error };
        }
      }),
    );
    const webhookResults = await Promise.allSettled(owedWebhooks);
    // An owed webhook whose bookkeeping failed: deliver the message again, the next try sends it.
    webhookResults.forEach((result) => {
      if (result.status === 'rejected') this.logger?.error({ err: result.reason }, 'webhook bookkeeping failed');
    });
    return report;
  }

  /** Group by model, pack whole jobs into runs of at most maxBatchSize rows, predict each run once. */
  private async predictJobs(jobs: Job[], report: RunJobsReport): Promise<Map<Job, RunResult>> {
    const results = new Map<Job, RunResult>();
    const byModel = new Map<string, Job[]>();
    for (const job of jobs) {
      const group = byModel.get(job.model);
      if (group) group.push(job);
      else byModel.set(job.model, [job]);
    }
    await Promise.all(
      [...byModel].map(async ([model, group]) => {
        let service: ModelService;
        let instanceError: InstanceCheck;
        try {
          service = this.repository.get(model);
          instanceError = await service.instanceCheck();
        } catch (error) {
          for (const job of group) results.set(job, { error });
          return;
        }
        // Instances the schema refuses fail their own job here, cheaply, instead of failing a joint run.
        const valid = group.filter((job) => {
          const problem = firstInstanceError(instanceError, job.instances!);
          if (problem) results.set(job, { error: new InputError(problem) });
          return !problem;
        });
        const { batching } = service.definition;
        for (const run of packRuns(valid, batching ? batching.maxBatchSize : Infinity)) await this.predictRun(service, run, results, report);
      }),
    );
    return results;
  }

  private async predictRun(service: ModelService, run: Job[], results: Map<Job, RunResult>, report: RunJobsReport): Promise<void> {
    const instances = run.length === 1 ? run[0]!.instances! : run.flatMap((job) => job.instances!);
    try {
      report.predictCalls++;
      const { predictions } = await service.predict(instances, { validated: true });
      let offset = 0;
      for (const job of run) {
        const rows = job.instances!.length;
        results.set(job, { predictions: run.length === 1 ? predictions : predictions.slice(offset, offset + rows) });
        offset += rows;
      }
    } catch (error) {
      // Not ready or overloaded is the model's state, not a job's input: every job takes it (and retries).
      if (run.length === 1 || error instanceof UnavailableError) {
        for (const job of run) results.set(job, { error });
        return;
      }
      // One job's input must not fail the others it was stacked with: run each alone, for its own reason.
      this.logger?.warn({ model: service.name, jobs: run.length, err: error }, 'joint run failed; running its jobs one by one');
      for (const job of run) await this.predictRun(service, [job], results, report);
    }
  }

  /** A batch job's run: its input object scored into its outputs. A missing or unreadable input fails it at once. */
  private async scoreBatch(job: Job, outOfTime?: () => boolean): Promise<RunResult> {
    if (!this.objects) return { error: new UnavailableError('batch jobs need an object store, and this worker has none') };
    // Loaded by the first batch job: record readers and CSV parsing are no part of a function's cold start.
    const { InputFileError, scoreObject } = await import('./batch-objects.ts');
    try {
      const { input, output, errors, format } = job.batch!;
      const scored = await scoreObject(this.repository.get(job.model), this.objects, { input, output, errors, format, shouldStop: outOfTime });
      // Run again, it would stop at the same place: failed at once, saying why and where.
      if (scored.status === 'stopped') {
        const where = scored.lastLine > 0 ? `at line ${scored.lastLine}` : 'within its first chunk';
        return { error: new InputError(`input object "${input}" takes longer than one run of this worker allows (stopped ${where}; nothing written): split it into smaller objects`) };
      }
      const { status: _scored, ...summary } = scored;
      return { batch: summary };
    } catch (error) {
      return { error: error instanceof InputFileError ? new InputError(`input object "${job.batch!.input}": ${error.message}`) : error };
    }
  }

  /** Record a run's outcome: finished, or queued again with backoff; then the webhook. */
  private async settle(job: Job, result: RunResult, webhooks: WebhookMode): Promise<DeliveryOutcome> {
    if ('predictions' in result) {
      this.finish(job, 'succeeded', { result: { predictions: result.predictions } });
    } else if ('batch' in result) {
      this.finish(job, 'succeeded', { result: result.batch });
    } else {
      const { error } = result;
      const { message } = describeError(error);
      const retryable = !(error instanceof ModelfnError) || error instanceof UnavailableError;
      if (retryable && job.attempts < this.settings.maxAttempts) {
        const delay = backoffMs(job.attempts, this.settings.retryBaseMs, this.settings.retryMaxMs);
        job.status = 'queued';
        job.error = `attempt ${job.attempts} failed: ${error instanceof ModelfnError ? message : describeInternal(error)}`;
        job.notBefore = new Date(Date.now() + delay).toISOString();
        job.updatedAt = new Date().toISOString();
        await this.store.put(job);
        this.logger?.warn({ jobId: job.id, model: job.model, attempt: job.attempts, retryInMs: delay, err: error }, 'job attempt failed');
        await this.queue.send(job, delay);
        this.metrics?.jobs.inc({ model: job.model, event: 'retried' });
        return { jobId: job.id, outcome: 'retry-scheduled', job: viewOf(job) };
      }
      const reason = error instanceof ModelfnError ? message : describeInternal(error);
      if (retryable) this.logger?.error({ jobId: job.id, model: job.model, attempts: job.attempts, err: error }, 'job gave up');
      this.finish(job, 'failed', { error: retryable ? `gave up after ${job.attempts} attempts: ${reason}` : reason });
      if (retryable) await this.store.addDeadLetter(job);
    }
    await this.store.put(job);
    this.metrics?.jobs.inc({ model: job.model, event: job.status });
    this.logger?.info({ jobId: job.id, model: job.model, status: job.status, attempts: job.attempts }, 'job finished');
    if (job.callbackUrl) await this.webhook(job, webhooks);
    return { jobId: job.id, outcome: job.status as 'succeeded' | 'failed', job: viewOf(job) };
  }

  private async webhook(job: Job, mode: WebhookMode): Promise<void> {
    if (mode === 'awaited') await this.notifyOnce(job);
    else this.notifyInBackground(job);
  }

  /** A job stored but not queued: failed, its webhook not sent (the caller was told the submit failed). */
  private async failUnqueued(job: Job): Promise<void> {
    this.finish(job, 'failed', { error: 'the job could not be queued' });
    if (job.webhook) job.webhook = { delivered: false, attempts: 0, givenUp: true, lastError: 'not sent: the job was never queued' };
    await this.store.put(job).catch((error: unknown) => this.logger?.error({ jobId: job.id, err: error }, 'recording an unqueued job failed'));
  }

  /** Webhook retries wait minutes; they must not hold a worker slot. Their state is in the job, so a restart resumes them. */
  private notifyInBackground(job: Job): void {
    const delivery = this.notify(job).catch((error: unknown) => this.logger?.error({ jobId: job.id, err: error }, 'webhook bookkeeping failed'));
    this.pendingWebhooks.add(delivery);
    void delivery.finally(() => this.pendingWebhooks.delete(delivery));
  }

  /** Webhook deliveries under way (tests and graceful shutdown wait on them). */
  readonly pendingWebhooks = new Set<Promise<unknown>>();

  private finish(job: Job, status: 'succeeded' | 'failed', outcome: { result?: Job['result']; error?: string }): void {
    const now = new Date();
    job.status = status;
    job.finishedAt = now.toISOString();
    job.updatedAt = job.finishedAt;
    job.expiresAt = new Date(now.getTime() + this.settings.retentionMs).toISOString();
    if (outcome.result) {
      job.result = outcome.result;
      delete job.error;
    }
    if (outcome.error) job.error = outcome.error;
    if (job.callbackUrl) job.webhook = { delivered: false, attempts: 0 };
  }

  /** POST the finished job to its callbackUrl, retrying with backoff; the job's own status never depends on it. */
  async notify(job: Job): Promise<void> {
    const webhook = (job.webhook ??= { delivered: false, attempts: 0 });
    while (!webhook.delivered && webhook.attempts < this.settings.webhookMaxAttempts) {
      const wait = webhook.notBefore ? Date.parse(webhook.notBefore) - Date.now() : 0;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      await this.attemptWebhook(job);
    }
  }

  /** One webhook attempt now; when it fails and attempts remain, the next goes through the queue, delayed by its backoff. */
  private async notifyOnce(job: Job): Promise<void> {
    const webhook = (job.webhook ??= { delivered: false, attempts: 0 });
    if (webhook.delivered || webhook.givenUp) return;
    await this.attemptWebhook(job);
    if (!webhook.delivered && !webhook.givenUp) await this.queue.send(job, Math.max(0, Date.parse(webhook.notBefore!) - Date.now()));
  }

  private async attemptWebhook(job: Job): Promise<void> {
    const webhook = job.webhook!;
    webhook.attempts += 1;
    const delivery = await deliverWebhook(job.callbackUrl!, JSON.stringify(viewOf(job)), this.settings.webhookSecret);
    webhook.delivered = delivery.ok;
    if (delivery.ok) {
      delete webhook.lastError;
      delete webhook.notBefore;
    } else {
      webhook.lastError = delivery.detail;
      webhook.notBefore = new Date(Date.now() + backoffMs(webhook.attempts, this.settings.webhookRetryBaseMs, 10 * 60_000)).toISOString();
      this.logger?.warn({ jobId: job.id, attempt: webhook.attempts, error: delivery.detail }, 'webhook delivery failed');
      if (webhook.attempts >= this.settings.webhookMaxAttempts) {
        webhook.givenUp = true;
        delete webhook.notBefore;
      }
    }
    await this.store.put(job);
  }

  /** Jobs a previous process left unfinished go back on the queue, waiting out any backoff they had. */
  async recover(): Promise<number> {
    const unfinished = await this.store.listUnfinished();
    for (const job of unfinished) {
      const delay = job.notBefore ? Math.max(0, Date.parse(job.notBefore) - Date.now()) : 0;
      await this.queue.send(job, delay);
    }
    return unfinished.length;
  }

  deleteExpired(): Promise<number> {
    return this.store.deleteExpired(new Date());
  }
}

/** A job as submitted: queued, with its input (instances, or a batch's objects) and optional callbackUrl. */
function newJob(model: string, body: Record<string, unknown>, input: Pick<Job, 'instances' | 'batch'>): Job {
  const now = new Date().toISOString();
  return {
    id: nodeCrypto().randomUUID(),
    model,
    status: 'queued',
    createdAt: now,
    updatedAt: now,
    attempts: 0,
    ...input,
    ...(body.callbackUrl !== undefined && { callbackUrl: checkCallbackUrl(body.callbackUrl) }),
  };
}

function firstInstanceError(instanceError: InstanceCheck, instances: unknown[]): string | undefined {
  for (let index = 0; index < instances.length; index++) {
    const problem = instanceError(instances[index], `instances[${index}]`);
    if (problem) return problem;
  }
  return undefined;
}

/** Whole jobs in order, into runs of at most maxRows rows (a job larger than that runs alone, as a direct predict would). */
function packRuns(jobs: Job[], maxRows: number): Job[][] {
  const runs: Job[][] = [];
  let current: Job[] = [];
  let rows = 0;
  for (const job of jobs) {
    const size = job.instances!.length;
    if (current.length > 0 && rows + size > maxRows) {
      runs.push(current);
      current = [];
      rows = 0;
    }
    current.push(job);
    rows += size;
  }
  if (current.length > 0) runs.push(current);
  return runs;
}

/** Our own faults get a generic reason in the job (as HTTP 500s do); the log has the detail. */
function describeInternal(error: unknown): string {
  if (error instanceof UnavailableError) return error.message;
  return 'internal error while running the model';
}
