import middy, { type MiddlewareObj } from '@middy/core';
import { configFromEnv, createCore, createFunctionLogger, errorMessage, type Core, type JobQueue, type JobStore, type ObjectStore, type TextWriter } from '../../handlers/index.ts';
import { batchSettings } from './batch/settings.ts';
import { Container } from './container.ts';
import type { JobPorts } from './jobs/ports.ts';
import { invocation, type InvocationContext } from './invocation.ts';
import { warmup, type WarmupResult } from './warmup.ts';

/**
 * What every Lambda entry of this adapter shares within one execution environment: the logger, the core
 * (created once, on first use) and the middleware stack (warm-up short-circuit, then the invocation record).
 * Each entry (handler.ts for HTTP, one per other trigger) is `lambdaHandler(itsOwnFunction)`.
 */

// Each line written at once: Lambda may freeze the process as soon as the handler returns.
export const logger = createFunctionLogger();

let jobPortsLoading: Promise<JobPorts> | undefined;

/**
 * The S3 job store and SQS queue (adapters/aws/jobs/), created once per environment on first use: the module
 * and the AWS SDK load then, not at init, so a cold start that serves a prediction never pays for them.
 */
export function awsJobPorts(): Promise<JobPorts> {
  jobPortsLoading ??= import('./jobs/ports.ts')
    .then((jobs) => jobs.jobPorts())
    .catch((error: unknown) => {
      jobPortsLoading = undefined; // the next call tries again
      throw error;
    });
  return jobPortsLoading;
}

/**
 * Batch jobs' objects in the batch bucket (MODELFN_BATCH_BUCKET), the SDK loaded on first use like the job ports.
 * Outputs go under the output prefix only (the functions may write nowhere else, and an output under the input
 * prefix would start batchUpload on it); inputs may be anywhere else in the bucket.
 */
function batchObjectsFromEnv(env: NodeJS.ProcessEnv = process.env): ObjectStore | undefined {
  if (!env.MODELFN_BATCH_BUCKET) return undefined;
  const { outputPrefix } = batchSettings(env);
  const store = async () => {
    const { batchObjects } = await awsJobPorts();
    if (!batchObjects) throw new Error('MODELFN_BATCH_BUCKET is set but the job ports have no batch bucket');
    return batchObjects;
  };
  return {
    read: async (key) => (await store()).read(key),
    remove: async (key) => (await store()).remove(key),
    writer: (key): TextWriter => {
      const writer = store().then((objects) => objects.writer(key));
      writer.catch(() => undefined); // reported by the first write, end or abort; never an unhandled rejection
      return { write: async (text) => (await writer).write(text), end: async () => (await writer).end(), abort: async () => (await writer).abort() };
    },
    refuse: (key, use) => {
      if (use === 'output' && !key.startsWith(outputPrefix)) return `"output" must be a key under "${outputPrefix}" in the batch bucket`;
      if (use === 'input' && key.startsWith(outputPrefix)) return `"input" must not be under the output prefix "${outputPrefix}"`;
      return undefined;
    },
  };
}

/** Async jobs for every entry of a function configured with a jobs bucket (MODELFN_JOBS_BUCKET), else none. */
function jobPortsFromEnv(env: NodeJS.ProcessEnv = process.env): { store: JobStore; queue: JobQueue; objects?: ObjectStore } | undefined {
  if (!env.MODELFN_JOBS_BUCKET) return undefined;
  // A half-configured function fails at core creation (503 "not ready", details in the log), not at the first job.
  if (!env.MODELFN_JOBS_QUEUE_URL) throw new Error('MODELFN_JOBS_QUEUE_URL must be set with MODELFN_JOBS_BUCKET');
  const store = async () => (await awsJobPorts()).store;
  return {
    store: {
      create: async (job, key) => (await store()).create(job, key),
      get: async (id) => (await store()).get(id),
      put: async (job) => (await store()).put(job),
      listUnfinished: async () => (await store()).listUnfinished(),
      addDeadLetter: async (job) => (await store()).addDeadLetter(job),
      listDeadLetters: async () => (await store()).listDeadLetters(),
      deleteExpired: async (now) => (await store()).deleteExpired(now),
    },
    queue: { send: async (job, delayMs) => (await awsJobPorts()).queue.send(job, delayMs) },
    objects: batchObjectsFromEnv(env),
  };
}

// Created once per execution environment and kept across invocations: outside the handler, on first use.
// Prometheus metrics are off unless MODELFN_METRICS=1: nothing scrapes a function, and prom-client would cost
// every cold start its load time.
export const container = new Container(async () => createCore({ metrics: false, ...configFromEnv() }, { logger, jobs: jobPortsFromEnv() }));

export function lambdaHandler<TEvent, TResult>(handle: (event: TEvent, context: InvocationContext) => Promise<TResult>) {
  type Middleware = MiddlewareObj<TEvent, TResult | WarmupResult, Error, InvocationContext>;
  return middy<TEvent, TResult | WarmupResult, Error, InvocationContext>()
    .use(warmup({ container, logger }) as Middleware)
    .use(invocation({ container, logger }) as Middleware)
    .handler(handle);
}

/** The core for a non-HTTP trigger, reporting the init time to the invocation record once. */
export async function coreFor(context: InvocationContext): Promise<Core> {
  const core = await container.get();
  context.modelfn.initMs ??= container.takeInitMs();
  return core;
}

/**
 * MODELFN_PRELOAD=1 (provisioned concurrency): create the core and load every model during init, before the
 * first request. A failure here is logged, not thrown — an init error would fail every start — and the first
 * invocation tries again. Entries call it with top-level await.
 */
export async function preloadIfAsked(): Promise<void> {
  try {
    if (configFromEnv().preload) await container.get();
  } catch (error) {
    logger.error({ error: errorMessage(error) }, 'init: creating the core failed; the first invocation will retry');
  }
}
