import { writeSync } from 'node:fs';
import type { Logger } from './log.ts';

/** pino's level numbers, so a function's lines read like the server's. */
const LEVEL_VALUES: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

export interface FunctionLoggerOptions {
  /** trace, debug, info (default), warn, error, fatal or silent; `LOG_LEVEL` when not given (silent under vitest). */
  level?: string;
  /** Where each line goes (default: stdout, written at once). */
  write?: (line: string) => void;
}

/**
 * The logger of a function (Lambda and the other clouds' functions): the server's JSON line (pino's `level`, `time`,
 * `service`, the fields, `msg`), written synchronously, because the platform may freeze the process as soon as the
 * handler returns. Not pino itself: its Node build costs a cold start ~10 ms (sonic-boom, thread-stream and the
 * built-ins they load), its browser build 14 KB and ~2 ms for the first line, for the three calls the core makes.
 */
export function createFunctionLogger(options: FunctionLoggerOptions = {}): Logger {
  const requested = options.level ?? process.env.LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');
  const threshold = LEVEL_VALUES[requested] ?? LEVEL_VALUES.info!;
  const write = options.write ?? writeStdout;
  const line = (level: number) => (fields: object, message?: string) => {
    if (level < threshold) return;
    const time = Date.now();
    const record: Record<string, unknown> = { level, time, service: 'modelfn', ...fields, ...(message !== undefined && { msg: message }) };
    // A field cannot stand in for the line's own level or time (their keys keep their place in front).
    record.level = level;
    record.time = time;
    write(`${stringifyLine(record)}\n`);
  };
  const logger: Logger = { error: line(50), warn: line(40), info: line(30) };
  if (!(requested in LEVEL_VALUES)) logger.warn({ requestedLevel: requested }, `unknown log level "${requested}"; logging at info`);
  return logger;
}

function writeStdout(line: string): void {
  try {
    writeSync(1, line);
  } catch (error) {
    // A non-blocking pipe that is full: hand the line to Node's stream, which queues it.
    if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
    process.stdout.write(line);
  }
}

function stringifyLine(record: Record<string, unknown>): string {
  try {
    return JSON.stringify(record, serializeValue);
  } catch (error) {
    // A circular field: the line still goes out, saying so.
    const { level, time, service, msg } = record;
    return JSON.stringify({ level, time, service, msg, logError: error instanceof Error ? error.message : String(error) });
  }
}

/** Errors keep their type, message and stack (as pino's `err` serializer); bigints become strings. */
function serializeValue(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { type: value.name, message: value.message, stack: value.stack };
  return typeof value === 'bigint' ? value.toString() : value;
}
