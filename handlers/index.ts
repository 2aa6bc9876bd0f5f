/** The portable inference core: what every adapter builds on. Imports no cloud SDK, ever. */
import { createHttpApp, type HttpApp } from './http-app.ts';
import { createLogger, type Logger } from './log.ts';
import { Metrics } from './metrics.ts';
import { loadModelRepository, type ModelRepository } from './model-repository.ts';

export { defineModel } from './model-definition.ts';
export type { BatchingOptions, ModelDefinition, ModelRunner, TensorMap } from './model-definition.ts';
export { createHttpApp, DEFAULT_BODY_LIMIT_BYTES, type CoreHttpRequest, type CoreHttpResponse, type HttpApp } from './http-app.ts';
export { InputError, ModelfnError, NotFoundError, PayloadTooLargeError, UnavailableError } from './errors.ts';
export { loadModelRepository, ModelRepository, BUNDLED_MODELS_DIR } from './model-repository.ts';
export { ModelService, type StageTimings } from './model-service.ts';
export { Metrics } from './metrics.ts';
export { createLogger, type Logger } from './log.ts';

/** Settings every adapter reads the same way, from the environment. */
export interface CoreConfig {
  /** Folder of model folders; the bundled examples when unset. */
  modelsDir?: string;
  /** Load every model before serving (containers, provisioned concurrency). */
  preload: boolean;
  bodyLimitBytes?: number;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): CoreConfig {
  const limit = env.MODELFN_BODY_LIMIT_BYTES;
  if (limit !== undefined && !/^\d+$/.test(limit)) throw new Error(`MODELFN_BODY_LIMIT_BYTES must be a whole number of bytes, got "${limit}"`);
  return {
    modelsDir: env.MODELFN_MODELS_DIR || undefined,
    preload: /^(1|true|yes)$/i.test(env.MODELFN_PRELOAD ?? ''),
    bodyLimitBytes: limit === undefined ? undefined : Number(limit),
  };
}

export interface Core {
  repository: ModelRepository;
  metrics: Metrics;
  logger: Logger;
  http: HttpApp;
}

/** Discover the models and build the HTTP app once per process (outside any handler, so warm calls reuse it). */
export async function createCore(config: CoreConfig, options: { logger?: Logger; processMetrics?: boolean } = {}): Promise<Core> {
  const logger = options.logger ?? createLogger();
  const metrics = new Metrics({ processMetrics: options.processMetrics });
  const repository = await loadModelRepository({ dir: config.modelsDir, metrics });
  for (const broken of repository.broken) logger.error({ model: broken.name, error: broken.error }, 'model definition failed to load');
  if (config.preload) {
    await repository.preload();
    for (const service of repository.list()) {
      if (service.runtime.state === 'failed') logger.error({ model: service.name, error: service.runtime.loadError }, 'model not ready');
      else logger.info({ model: service.name, loadMs: service.runtime.loadMs }, 'model loaded');
    }
  }
  const http = createHttpApp({ repository, metrics, logger, bodyLimitBytes: config.bodyLimitBytes, serverVersion: process.env.npm_package_version });
  return { repository, metrics, logger, http };
}
