import type { MiddlewareObj } from '@middy/core';
import type { Context, ScheduledEvent } from 'aws-lambda';
import type { Logger } from '../../handlers/index.ts';
import type { Container } from './container.ts';
import { isRecord } from './http/index.ts';

/** The payload serverless-plugin-warmup sends by default, as the event and as `clientContext.custom`. */
export const WARMUP_PLUGIN_SOURCE = 'serverless-plugin-warmup';

export type WarmupSource = 'serverless-plugin-warmup' | 'eventbridge-schedule';

export interface WarmupResult {
  warm: true;
  /** Whether this ping was the first invocation of its execution environment. */
  cold: boolean;
}

/** Which warm-up this invocation is, if any. */
export function warmupSource(event: unknown, context: Context | undefined): WarmupSource | undefined {
  if (isRecord(event)) {
    if (event.source === WARMUP_PLUGIN_SOURCE) return 'serverless-plugin-warmup';
    const scheduled = event as Partial<ScheduledEvent>;
    if (scheduled.source === 'aws.events' && scheduled['detail-type'] === 'Scheduled Event') return 'eventbridge-schedule';
  }
  // The plugin also sends its payload as the client context (`{"custom": …}`), which the Node.js runtime parses.
  const custom: unknown = context?.clientContext?.custom;
  if (isRecord(custom) && custom.source === WARMUP_PLUGIN_SOURCE) return 'serverless-plugin-warmup';
  return undefined;
}

/**
 * Answer warm-up pings at once (@middy/warmup's idea): no core, no model, no handler — the ping exists only
 * to keep the execution environment alive. Use it first, before anything else.
 */
export function warmup(options: { container: Container; logger: Logger }): MiddlewareObj<unknown, WarmupResult> {
  const { container, logger } = options;
  return {
    name: 'modelfn-warmup',
    before(request) {
      const source = warmupSource(request.event, request.context);
      if (!source) return undefined;
      const cold = container.beginInvocation();
      logger.info({ awsRequestId: request.context?.awsRequestId, event: 'warmup', source, cold }, 'invocation');
      return { warm: true, cold } satisfies WarmupResult;
    },
  };
}
