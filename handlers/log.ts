import { pino, type Logger as PinoLogger } from 'pino';

/**
 * What the core and the adapters log through: pino's calling convention (the fields, then the message), one JSON
 * line each. The server's logger is pino (createLogger below); a function's is function-logger.ts.
 */
export interface Logger {
  error(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
}

export interface LoggerOptions {
  level?: string;
  /**
   * Buffer lines and write them in 4 KB chunks, flushed at least every `flushIntervalMs`: one write per
   * request costs more than the rest of a small model's request path. Long-lived servers want this;
   * functions that may be frozen between invocations (Lambda) do not.
   */
  buffered?: boolean;
  flushIntervalMs?: number;
  destination?: NodeJS.WritableStream;
}

/** One JSON object per line on stdout; `LOG_LEVEL` sets the level (info by default, silent under vitest). */
export function createLogger(options: LoggerOptions = {}): PinoLogger {
  const level = options.level ?? process.env.LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');
  const destination = options.destination ?? pino.destination({ sync: !options.buffered, minLength: options.buffered ? 4096 : 0 });
  const logger = pino({ level, base: { service: 'modelfn' } }, destination);
  if (options.buffered && !options.destination) {
    let flushing = false;
    setInterval(() => {
      // A flush still waiting on a slow write must not stack another one (each adds listeners).
      if (flushing) return;
      flushing = true;
      logger.flush(() => (flushing = false));
    }, options.flushIntervalMs ?? 250).unref();
    process.once('beforeExit', () => logger.flush());
  }
  return logger;
}
