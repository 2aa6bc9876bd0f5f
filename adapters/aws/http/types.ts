import type { CoreHttpRequest, CoreHttpResponse } from '../../../handlers/index.ts';

/** A response on its way back to the provider: the core's, or (for later routes) one with a binary body. */
export interface HttpResponse extends Omit<CoreHttpResponse, 'body'> {
  /** Text goes out as is; bytes go out base64-encoded with `isBase64Encoded: true`. */
  body: string | Uint8Array;
}

export type HttpEventKind = 'api-gateway-v1' | 'api-gateway-v2' | 'function-url';

/**
 * One kind of HTTP event, translated both ways (Hono's `src/adapter/aws-lambda` processors):
 * the provider's event to the core's request, and the core's response to the provider's result.
 */
export interface EventProcessor<Event, Result> {
  readonly kind: HttpEventKind;
  /** For people: names the event kind in errors and logs. */
  readonly label: string;
  /** Throws MalformedEventError when a field the translation needs is missing or unusable. */
  createRequest(event: Event): CoreHttpRequest;
  createResult(event: Event, response: HttpResponse): Result;
}
