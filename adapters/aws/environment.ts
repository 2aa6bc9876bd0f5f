import middy, { type MiddlewareObj } from '@middy/core';
import { configFromEnv, createCore, createLogger, type Core, type JobQueue, type JobStore } from '../../handlers/index.ts';
import { Container } from './container.ts';
import { invocation, type InvocationContext } from './invocation.ts';
import { warmup, type WarmupResult } from './warmup.ts';

/**
 * What every Lambda entry of this adapter shares within one execution environment: the logger, the core
 * (created once, on first use) and the middleware stack (warm-up short-circuit, then the invocation record).
 * Each entry (handler.ts for HTTP, one per other trigger) is `lambdaHandler(itsOwnFunction)`.
 */

// Unbuffered: Lambda may freeze the process as soon as the handler returns, with buffered lines still in it.
export const logger = createLogger();

/** The job ports for this environment, when the function is configured for async jobs; set by the jobs module. */
let jobPorts: (() => { store: JobStore; queue: JobQueue } | undefined) | undefined;

export function provideJobPorts(factory: () => { store: JobStore; queue: JobQueue } | undefined): void {
  jobPorts = factory;
}

// Created once per execution environment and kept across invocations: outside the handler, on first use.
export const container = new Container(() => createCore(configFromEnv(), { logger, jobs: jobPorts?.() }));

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
 * invocation tries again. Entries call it with top-level await after registering their ports.
 */
export async function preloadIfAsked(): Promise<void> {
  try {
    if (configFromEnv().preload) await container.get();
  } catch (error) {
    logger.error({ error: error instanceof Error ? error.message : String(error) }, 'init: creating the core failed; the first invocation will retry');
  }
}
