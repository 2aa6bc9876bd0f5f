/**
 * Concurrency warming through the real Lambda entry (adapters/aws/handler.ts, MODELFN_PRELOAD unset): what
 * serverless-plugin-warmup sends with `concurrency: N` (serverless.yml puts N into its payload too) — N
 * RequestResponse invocations at once, each with the payload as the event and as `clientContext.custom`.
 * On Lambda the N land on N environments only if each stays busy while the others arrive; in this one process
 * they share one environment, so the tests check what the handler controls: each ping holds for its time without
 * blocking the others, reports warm, and creates neither the core nor a session. The end-to-end run of the
 * plugin's own warmer code against serverless-offline is in aws-offline.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONCURRENT_PING_HOLD_MS, warmupPing } from '../adapters/aws/warmup.ts';
import { httpApiV2Event, lambdaContext, readResult } from './support/aws-events.ts';

type AwsModule = typeof import('../adapters/aws/handler.ts');
let aws: AwsModule;

beforeAll(async () => {
  delete process.env.MODELFN_PRELOAD;
  aws = await import('../adapters/aws/handler.ts');
});

afterAll(async () => {
  await aws.coreForTests()?.repository.dispose();
});

const invoke = (event: unknown, context = lambdaContext()) => aws.handler(event, context as never) as Promise<unknown>;
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

describe('concurrent warm-up pings', () => {
  const N = 4;
  const payload = { source: 'serverless-plugin-warmup', concurrency: N };

  it('each of N parallel pings holds its environment, in parallel, and reports warm; the first is the cold one', async () => {
    const started = performance.now();
    const pings = await Promise.all(
      Array.from({ length: N }, async () => {
        const sent = performance.now();
        const result = await invoke(payload);
        return { result, ms: performance.now() - sent };
      }),
    );
    const elapsed = performance.now() - started;
    expect(pings.map((ping) => ping.result)).toEqual([
      { warm: true, cold: true, concurrency: N, heldMs: CONCURRENT_PING_HOLD_MS },
      ...Array.from({ length: N - 1 }, () => ({ warm: true, cold: false, concurrency: N, heldMs: CONCURRENT_PING_HOLD_MS })),
    ]);
    // Held: no ping returned before its time (timers may fire a millisecond early).
    for (const ping of pings) expect(ping.ms).toBeGreaterThanOrEqual(CONCURRENT_PING_HOLD_MS - 2);
    // In parallel: a timer, not a busy wait — N holds take about one hold, not N.
    expect(elapsed).toBeLessThan(CONCURRENT_PING_HOLD_MS * 2);
    expect(aws.coreForTests()).toBeUndefined();
  });

  it('recognises the concurrency in the client context alone, as the plugin also sends it', async () => {
    const context = lambdaContext({ clientContext: { custom: payload } as never });
    const results = await Promise.all(Array.from({ length: N }, () => invoke({}, context)));
    expect(results).toEqual(Array.from({ length: N }, () => ({ warm: true, cold: false, concurrency: N, heldMs: CONCURRENT_PING_HOLD_MS })));
    expect(aws.coreForTests()).toBeUndefined();
  });

  it('answers a lone ping at once, without holding', async () => {
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const sent = performance.now();
      expect(await invoke({ source: 'serverless-plugin-warmup' })).toEqual({ warm: true, cold: false });
      times.push(performance.now() - sent);
    }
    expect(median(times)).toBeLessThan(1);
    expect(aws.coreForTests()).toBeUndefined();
  });

  it('takes a hold time from the payload, within 0..1000 ms, and ignores a concurrency that is not a whole number above 1', () => {
    const ping = (custom: Record<string, unknown>) => warmupPing({ source: 'serverless-plugin-warmup', ...custom }, undefined);
    expect(ping({ concurrency: 3, holdMs: 20 })).toEqual({ source: 'serverless-plugin-warmup', concurrency: 3, holdMs: 20 });
    expect(ping({ concurrency: 3, holdMs: 60_000 })?.holdMs).toBe(1_000);
    expect(ping({ concurrency: 3, holdMs: -5 })?.holdMs).toBe(0);
    expect(ping({ concurrency: 3, holdMs: 'long' })?.holdMs).toBe(CONCURRENT_PING_HOLD_MS);
    for (const concurrency of [1, 0, -2, 2.5, '4', null]) {
      expect(ping({ concurrency, holdMs: 50 })).toEqual({ source: 'serverless-plugin-warmup', concurrency: 1, holdMs: 0 });
    }
  });

  it('leaves the first real request to create the core, on an environment that is no longer cold', async () => {
    const result = readResult((await invoke(httpApiV2Event({ method: 'GET', path: '/v2/health/live' }))) as never);
    expect(result.status).toBe(200);
    expect(result.headers['x-modelfn-cold']).toBe('false');
    expect(aws.coreForTests()).toBeDefined();
    // Creating the core discovers the models; loading a session waits for a request that needs one.
    expect(aws.coreForTests()!.repository.list().map((service) => service.runtime.state)).toEqual(['unloaded', 'unloaded']);
  });
});
