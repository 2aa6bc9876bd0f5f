import { describe, expect, it } from 'vitest';
import { createFunctionLogger } from '../handlers/function-logger.ts';

/** The functions' logger: one JSON line per call, shaped as the server's pino lines. */
function capture(level?: string) {
  const lines: string[] = [];
  const logger = createFunctionLogger({ level, write: (line) => lines.push(line) });
  return { logger, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>), lines };
}

describe('function logger', () => {
  it('writes one JSON line per call: pino level number, epoch time, service, the fields, then msg', () => {
    const { logger, records, lines } = capture('info');
    const before = Date.now();
    logger.info({ awsRequestId: 'r-1', cold: true, ms: 12.5 }, 'invocation');
    logger.warn({ event: 'api-gateway-v2' }, 'malformed event');
    expect(lines.every((line) => line.endsWith('\n') && !line.slice(0, -1).includes('\n'))).toBe(true);
    const [info, warn] = records();
    expect(Object.keys(info!)).toEqual(['level', 'time', 'service', 'awsRequestId', 'cold', 'ms', 'msg']);
    expect(info).toMatchObject({ level: 30, service: 'modelfn', awsRequestId: 'r-1', cold: true, ms: 12.5, msg: 'invocation' });
    expect(info!.time).toBeGreaterThanOrEqual(before);
    expect(warn).toMatchObject({ level: 40, event: 'api-gateway-v2', msg: 'malformed event' });
  });

  it('drops lines below the level; silent drops all', () => {
    const warnOnly = capture('warn');
    warnOnly.logger.info({}, 'quiet');
    warnOnly.logger.error({ error: 'boom' }, 'loud');
    expect(warnOnly.records()).toEqual([expect.objectContaining({ level: 50, error: 'boom', msg: 'loud' })]);
    const silent = capture('silent');
    silent.logger.error({}, 'nothing');
    expect(silent.lines).toEqual([]);
  });

  it('keeps an error field readable, bigints as strings, its own level and time; survives a circular field', () => {
    const { logger, records } = capture('info');
    logger.error({ err: new TypeError('bad shape') }, 'request failed');
    logger.info({ rows: 2n ** 64n }, 'counted');
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    logger.info({ circular }, 'still logged');
    logger.info({ level: 'fake', time: 0, detail: 'x' }, 'own keys');
    const [failed, counted, looped, ownKeys] = records();
    expect(ownKeys).toMatchObject({ level: 30, detail: 'x' });
    expect(ownKeys!.time).not.toBe(0);
    expect(failed!.err).toMatchObject({ type: 'TypeError', message: 'bad shape', stack: expect.stringContaining('TypeError: bad shape') });
    expect(counted!.rows).toBe('18446744073709551616');
    expect(looped).toMatchObject({ level: 30, service: 'modelfn', msg: 'still logged', logError: expect.stringMatching(/circular/i) });
  });

  it('logs at info, saying so, when the level is unknown', () => {
    const { logger, records } = capture('verbose');
    logger.info({}, 'kept');
    expect(records()).toEqual([
      expect.objectContaining({ level: 40, requestedLevel: 'verbose', msg: 'unknown log level "verbose"; logging at info' }),
      expect.objectContaining({ level: 30, msg: 'kept' }),
    ]);
  });
});
