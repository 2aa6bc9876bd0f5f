import { pino, type Logger } from 'pino';

export type { Logger };

/** One JSON object per line on stdout; `LOG_LEVEL` sets the level (info by default, silent in tests). */
export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');
  return pino(
    { level, base: { service: 'modelfn' }, timestamp: pino.stdTimeFunctions.isoTime },
    options.destination ?? pino.destination({ sync: false }),
  );
}
