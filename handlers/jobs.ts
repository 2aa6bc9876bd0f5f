import { randomUUID } from 'node:crypto';
import { describeError, InputError, ModelfnError, NotFoundError, UnavailableError } from './errors.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { ModelRepository } from './model-repository.ts';
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
  instances: unknown[];
  result?: { predictions: unknown[] };
  error?: string;
  callbackUrl?: string;
  webhook?: { delivered: boolean; attempts: number; lastError?: string; notBefore?: string; givenUp?: boolean };
  /** Finished jobs are deleted after this. */
  expiresAt?: string;
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

/** Port: how job ids reach a worker. The local queue is in memory (the store makes it durable); clouds bring SQS, Pub/Sub, Queue Storage. */
export interface JobQueue {
  send(message: { jobId: string; model: string }, delayMs?: number): Promise<void>;
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

/**
 * Asynchronous jobs, provider-neutral: accept (validate, persist, enqueue), run with retries, record the
 * outcome once, then tell the caller's webhook. Adapters bring the store and the queue and call `runJob`
 * for each message they receive (the local worker loop, an SQS handler, a Pub/Sub push).
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
    for (let index = 0; index < instances.length; index++) {
      const problem = service.instanceError(instances[index], `instances[${index}]`);
      if (problem) throw new InputError(problem);
    }
    if (idempotencyKey !== undefined && (idempotencyKey.length === 0 || idempotencyKey.length > 255)) {
      throw new InputError('Idempotency-Key must be 1 to 255 characters');
    }
    const now = new Date().toISOString();
    const job: Job = {
      id: randomUUID(),
      model: service.name,
      status: 'queued',
      createdAt: now,
      updatedAt: now,
      attempts: 0,
      instances,
      ...(body.callbackUrl !== undefined && { callbackUrl: checkCallbackUrl(body.callbackUrl) }),
    };
    const stored = await this.store.create(job, idempotencyKey);
    if (stored.created) {
      await this.queue.send({ jobId: job.id, model: job.model });
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
   * job is left alone. Bad input fails at once; other errors retry with backoff up to maxAttempts.
   */
  async runJob(jobId: string): Promise<void> {
    const job = await this.store.get(jobId);
    if (!job) return;
    if (job.status === 'succeeded' || job.status === 'failed') {
      if (job.callbackUrl && !job.webhook?.delivered) this.notifyInBackground(job);
      return;
    }
    const now = new Date();
    job.status = 'running';
    job.attempts += 1;
    job.startedAt = now.toISOString();
    job.updatedAt = job.startedAt;
    delete job.notBefore;
    await this.store.put(job);

    try {
      const service = this.repository.get(job.model);
      const { predictions } = await service.predict(job.instances);
      this.finish(job, 'succeeded', { result: { predictions } });
    } catch (error) {
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
        await this.queue.send({ jobId: job.id, model: job.model }, delay);
        this.metrics?.jobs.inc({ model: job.model, event: 'retried' });
        return;
      }
      const reason = error instanceof ModelfnError ? message : describeInternal(error);
      if (retryable) this.logger?.error({ jobId: job.id, model: job.model, attempts: job.attempts, err: error }, 'job gave up');
      this.finish(job, 'failed', { error: retryable ? `gave up after ${job.attempts} attempts: ${reason}` : reason });
      if (retryable) await this.store.addDeadLetter(job);
    }
    await this.store.put(job);
    this.metrics?.jobs.inc({ model: job.model, event: job.status });
    this.logger?.info({ jobId: job.id, model: job.model, status: job.status, attempts: job.attempts }, 'job finished');
    if (job.callbackUrl) this.notifyInBackground(job);
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
    const body = JSON.stringify(viewOf(job));
    while (!webhook.delivered && webhook.attempts < this.settings.webhookMaxAttempts) {
      const wait = webhook.notBefore ? Date.parse(webhook.notBefore) - Date.now() : 0;
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      webhook.attempts += 1;
      const delivery = await deliverWebhook(job.callbackUrl!, body, this.settings.webhookSecret);
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
  }

  /** Jobs a previous process left unfinished go back on the queue, waiting out any backoff they had. */
  async recover(): Promise<number> {
    const unfinished = await this.store.listUnfinished();
    for (const job of unfinished) {
      const delay = job.notBefore ? Math.max(0, Date.parse(job.notBefore) - Date.now()) : 0;
      await this.queue.send({ jobId: job.id, model: job.model }, delay);
    }
    return unfinished.length;
  }

  deleteExpired(): Promise<number> {
    return this.store.deleteExpired(new Date());
  }
}

/** Our own faults get a generic reason in the job (as HTTP 500s do); the log has the detail. */
function describeInternal(error: unknown): string {
  if (error instanceof UnavailableError) return error.message;
  return 'internal error while running the model';
}
