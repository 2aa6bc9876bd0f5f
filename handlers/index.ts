/** The portable inference core: what every adapter builds on. Imports no cloud SDK, ever. */
import { createHttpApp, type HttpApp } from './http-app.ts';
import { JobService, type JobQueue, type JobSettings, type JobStore } from './jobs.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { ObjectStore } from './object-store.ts';
import { loadModelRepository, type ModelRepository } from './model-repository.ts';

export { defineModel } from './model-definition.ts';
export type { BatchingOptions, ModelDefinition, ModelRunner, TensorMap } from './model-definition.ts';
export { createHttpApp, DEFAULT_BODY_LIMIT_BYTES, type CoreHttpRequest, type CoreHttpResponse, type HttpApp } from './http-app.ts';
export { errorMessage, InputError, ModelfnError, NotFoundError, PayloadTooLargeError, UnavailableError } from './errors.ts';
export { loadModelRepository, ModelRepository, BUNDLED_MODELS_DIR } from './model-repository.ts';
export { ModelService, type StageTimings } from './model-service.ts';
export { processChunk, resultLines, errorLines, CSV_PARSE_OPTIONS, recordFromJsonLine, recordFromCsvRow, csvCell, type BatchRecord, type BatchRecordError, type BatchRecordResult, type ChunkOptions, type ChunkResult, type RecordId } from './batch.ts';
export type { Metrics } from './metrics.ts';
export { batchFormatOf, checkObjectKey, errorsKeyOf, type BatchFormat, type ObjectStore, type TextWriter } from './object-store.ts';
// Scoring an object (batch-objects.ts) is imported from its module: its classes would keep it, and batch.ts with
// node:readline, in every function's start-up code if re-exported here.
// The server's logger is imported from './log.ts' itself: re-exported here, its pino build would load in every
// function bundle (a CommonJS import is a side effect esbuild keeps), which has its own (function-logger.ts).
export type { Logger } from './log.ts';
export { createFunctionLogger } from './function-logger.ts';
export { JobService, DEFAULT_JOB_SETTINGS, isSettled, viewOf, type BatchJobResult, type DeliveryOutcome, type Job, type JobDelivery, type JobQueue, type JobSettings, type JobStatus, type JobStore, type JobView, type RunJobsOptions, type RunJobsReport } from './jobs.ts';
export { signWebhook, verifyWebhook, SIGNATURE_HEADER, TIMESTAMP_HEADER } from './webhook.ts';

/** Settings every adapter reads the same way, from the environment. */
export interface CoreConfig {
  /** Folder of model folders; the bundled examples when unset. */
  modelsDir?: string;
  /** Load every model before serving (containers, provisioned concurrency). */
  preload: boolean;
  bodyLimitBytes?: number;
  jobs?: Partial<JobSettings>;
  /**
   * Prometheus metrics (`GET /metrics`); default on. Off, prom-client is never loaded: a function that nothing
   * scrapes (Lambda) starts faster. `MODELFN_METRICS=0|1` sets it.
   */
  metrics?: boolean;
}

function wholeNumber(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new Error(`${name} must be a whole number, got "${value}"`);
  return Number(value);
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): CoreConfig {
  const retentionSeconds = wholeNumber(env, 'MODELFN_JOB_RETENTION_SECONDS');
  const jobs: Partial<JobSettings> = {
    maxAttempts: wholeNumber(env, 'MODELFN_JOB_MAX_ATTEMPTS'),
    retryBaseMs: wholeNumber(env, 'MODELFN_JOB_RETRY_BASE_MS'),
    webhookRetryBaseMs: wholeNumber(env, 'MODELFN_WEBHOOK_RETRY_BASE_MS'),
    webhookSecret: env.MODELFN_WEBHOOK_SECRET || undefined,
    retentionMs: retentionSeconds === undefined ? undefined : retentionSeconds * 1000,
  };
  for (const key of Object.keys(jobs) as (keyof JobSettings)[]) if (jobs[key] === undefined) delete jobs[key];
  return {
    modelsDir: env.MODELFN_MODELS_DIR || undefined,
    preload: /^(1|true|yes)$/i.test(env.MODELFN_PRELOAD ?? ''),
    bodyLimitBytes: wholeNumber(env, 'MODELFN_BODY_LIMIT_BYTES'),
    jobs,
    ...(env.MODELFN_METRICS && { metrics: /^(1|true|yes)$/i.test(env.MODELFN_METRICS) }),
  };
}

export interface Core {
  repository: ModelRepository;
  /** Absent when the config turned metrics off. */
  metrics?: Metrics;
  logger: Logger;
  http: HttpApp;
  jobs?: JobService;
}

/** Discover the models and build the HTTP app once per process (outside any handler, so warm calls reuse it). */
export async function createCore(
  config: CoreConfig,
  options: { logger?: Logger; processMetrics?: boolean; jobs?: { store: JobStore; queue: JobQueue; objects?: ObjectStore } } = {},
): Promise<Core> {
  // Imported only when no logger is given: a function's bundle then never loads the server's pino build.
  const logger = options.logger ?? (await import('./log.ts')).createLogger();
  const metrics = config.metrics === false ? undefined : new (await import('./metrics.ts')).Metrics({ processMetrics: options.processMetrics });
  const repository = await loadModelRepository({ dir: config.modelsDir, metrics });
  for (const broken of repository.broken) logger.error({ model: broken.name, error: broken.error }, 'model definition failed to load');
  if (config.preload) {
    await repository.preload();
    for (const service of repository.list()) {
      if (service.runtime.state === 'failed') logger.error({ model: service.name, error: service.runtime.loadError }, 'model not ready');
      else logger.info({ model: service.name, loadMs: service.runtime.loadMs }, 'model loaded');
    }
  }
  const jobs = options.jobs && new JobService(repository, options.jobs.store, options.jobs.queue, config.jobs, logger, metrics, options.jobs.objects);
  const http = createHttpApp({ repository, metrics, logger, jobs, bodyLimitBytes: config.bodyLimitBytes, serverVersion: process.env.npm_package_version });
  return { repository, metrics, logger, http, jobs };
}
