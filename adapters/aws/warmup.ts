import type { MiddlewareObj } from '@middy/core';
import type { Context, ScheduledEvent } from 'aws-lambda';
import type { Logger } from '../../handlers/index.ts';
import type { Container } from './container.ts';
import { isRecord } from './events.ts';

/** The payload serverless-plugin-warmup sends by default, as the event and as `clientContext.custom`. */
export const WARMUP_PLUGIN_SOURCE = 'serverless-plugin-warmup';

export type WarmupSource = 'serverless-plugin-warmup' | 'eventbridge-schedule';

export interface WarmupResult {
  warm: true;
  /** Whether this ping was the first invocation of its execution environment. */
  cold: boolean;
  /** For one of N concurrent pings: N, and how long this ping held its environment. */
  concurrency?: number;
  heldMs?: number;
}

/**
 * How long one of N concurrent pings holds its environment by default. Lambda gives a new environment to an
 * invocation only when every existing one is busy: pings answered in microseconds would all be served, one after
 * another, by the same environment. Held for longer than the warmer takes to send all N (its N Invoke calls go out
 * together from one process), each lands on an environment of its own. lambda-warmer uses the same 75 ms.
 */
export const CONCURRENT_PING_HOLD_MS = 75;
const MAX_HOLD_MS = 1_000;

export interface WarmupPing {
  source: WarmupSource;
  /** N when the warmer sends N pings at once (`concurrency` in the payload); 1 otherwise. */
  concurrency: number;
  /** How long to hold the environment: 0 for a lone ping. */
  holdMs: number;
}

/** Which warm-up this invocation is, if any. */
export function warmupSource(event: unknown, context: Context | undefined): WarmupSource | undefined {
  return warmupPing(event, context)?.source;
}

/**
 * The warm-up ping this invocation is, if any: serverless-plugin-warmup's payload (as the event, or as the client
 * context it also sends) or an EventBridge schedule. A plugin payload may carry `concurrency` (the warmer's setting,
 * put there in serverless.yml) and `holdMs` (default CONCURRENT_PING_HOLD_MS, at most 1 s).
 */
export function warmupPing(event: unknown, context: Context | undefined): WarmupPing | undefined {
  if (isRecord(event)) {
    if (event.source === WARMUP_PLUGIN_SOURCE) return pluginPing(event);
    const scheduled = event as Partial<ScheduledEvent>;
    if (scheduled.source === 'aws.events' && scheduled['detail-type'] === 'Scheduled Event') return { source: 'eventbridge-schedule', concurrency: 1, holdMs: 0 };
  }
  // The plugin also sends its payload as the client context (`{"custom": …}`), which the Node.js runtime parses.
  const custom: unknown = context?.clientContext?.custom;
  if (isRecord(custom) && custom.source === WARMUP_PLUGIN_SOURCE) return pluginPing(custom);
  return undefined;
}

function pluginPing(payload: Record<string, unknown>): WarmupPing {
  const concurrency = typeof payload.concurrency === 'number' && Number.isInteger(payload.concurrency) && payload.concurrency > 1 ? payload.concurrency : 1;
  if (concurrency === 1) return { source: 'serverless-plugin-warmup', concurrency, holdMs: 0 };
  const asked = typeof payload.holdMs === 'number' && Number.isFinite(payload.holdMs) ? payload.holdMs : CONCURRENT_PING_HOLD_MS;
  return { source: 'serverless-plugin-warmup', concurrency, holdMs: Math.min(Math.max(asked, 0), MAX_HOLD_MS) };
}

/**
 * Answer warm-up pings at once (@middy/warmup's idea): no core, no model, no handler — the ping exists only
 * to keep the execution environment alive. One of N concurrent pings waits `holdMs` first (a timer: the event
 * loop stays free), so that the N land on N environments. Use it first, before anything else.
 */
export function warmup(options: { container: Container; logger: Logger }): MiddlewareObj<unknown, WarmupResult> {
  const { container, logger } = options;
  return {
    name: 'modelfn-warmup',
    async before(request) {
      const ping = warmupPing(request.event, request.context);
      if (!ping) return undefined;
      const cold = container.beginInvocation();
      if (ping.holdMs > 0) await new Promise((resolve) => setTimeout(resolve, ping.holdMs));
      const held = ping.concurrency > 1 ? { concurrency: ping.concurrency, heldMs: ping.holdMs } : {};
      logger.info({ awsRequestId: request.context?.awsRequestId, event: 'warmup', source: ping.source, cold, ...held }, 'invocation');
      return { warm: true, cold, ...held } satisfies WarmupResult;
    },
  };
}
