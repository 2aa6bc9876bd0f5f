/** An error whose message is safe to show the caller, with the HTTP status it maps to. */
export class ModelfnError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** 400: the caller's input is wrong; the message names the field and what was expected. */
export class InputError extends ModelfnError {
  constructor(message: string) {
    super(message, 400);
  }
}

/** 404: unknown model, job or route. */
export class NotFoundError extends ModelfnError {
  constructor(message: string) {
    super(message, 404);
  }
}

/** 405: the path exists, the method does not. */
export class MethodNotAllowedError extends ModelfnError {
  constructor(
    message: string,
    readonly allow: string[],
  ) {
    super(message, 405);
  }
}

/** 413: a body over the configured limit. */
export class PayloadTooLargeError extends ModelfnError {
  constructor(limitBytes: number) {
    super(`request body exceeds the limit of ${limitBytes} bytes`, 413);
  }
}

/** 503: the model cannot serve now (failed to load, or its queue is full). */
export class UnavailableError extends ModelfnError {
  constructor(message: string) {
    super(message, 503);
  }
}

/** The status and message for any thrown value: our own errors keep theirs, anything else is a 500 with no internals. */
export function describeError(error: unknown): { status: number; message: string } {
  if (error instanceof ModelfnError) return { status: error.status, message: error.message };
  return { status: 500, message: 'internal error' };
}

/** The message of anything thrown (an Error's message, or the value as text), for logs and error texts. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
