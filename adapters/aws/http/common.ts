/** Pieces every HTTP event processor shares: headers, query strings and bodies. */
import { isRecord } from '../events.ts';

export { isRecord };

/** An event of a known kind with a field the translation cannot use; answered 400 in the event's own result shape. */
export class MalformedEventError extends Error {
  override readonly name = 'MalformedEventError';
}

/** How a value looks, for error messages: `null`, `a number`, `"GET"`. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** Join repeated headers the way Node's http module does: cookies with "; ", everything else with ", ". */
function addHeader(headers: Record<string, string>, name: string, value: string): void {
  const key = name.toLowerCase();
  const existing = headers[key];
  headers[key] = existing === undefined ? value : `${existing}${key === 'cookie' ? '; ' : ', '}${value}`;
}

/**
 * Lower-case header names for the core. `multiValueHeaders` (payload v1) wins over `headers` for a name
 * found in both, as API Gateway itself merges them.
 */
export function lowerCaseHeaders(single: unknown, multi?: unknown): Record<string, string> {
  const headers: Record<string, string> = {};
  const fromMulti = new Set<string>();
  if (isRecord(multi)) {
    for (const [name, values] of Object.entries(multi)) {
      if (!Array.isArray(values)) continue;
      for (const value of values) if (value !== null && value !== undefined) addHeader(headers, name, String(value));
      fromMulti.add(name.toLowerCase());
    }
  }
  if (isRecord(single)) {
    for (const [name, value] of Object.entries(single)) {
      if (value === null || value === undefined || fromMulti.has(name.toLowerCase())) continue;
      addHeader(headers, name, String(value));
    }
  }
  return headers;
}

/** Payload v1 hands over decoded query parameters; put them back into a query string. */
export function queryStringOf(single: unknown, multi: unknown): string {
  const parts: string[] = [];
  const source = isRecord(multi) ? multi : isRecord(single) ? single : {};
  for (const [name, value] of Object.entries(source)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === null || item === undefined) continue;
      parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(item))}`);
    }
  }
  return parts.join('&');
}

// A plain character class, not nested groups: linear on a 6 MB body, no backtracking.
const BASE64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;

/** Standard base64 (what API Gateway and Function URLs send), padded or not. */
export function isBase64(text: string): boolean {
  if (!BASE64_CHARS.test(text)) return false;
  return text.includes('=') ? text.length % 4 === 0 : text.length % 4 !== 1;
}

/** The event's body for the core: bytes when API Gateway base64-encoded it, the text otherwise. */
export function decodeBody(body: unknown, isBase64Encoded: unknown, label: string): Uint8Array | string | undefined {
  if (body === null || body === undefined) return undefined;
  if (typeof body !== 'string') throw new MalformedEventError(`malformed ${label} event: body is ${describeValue(body)}; expected a string or null`);
  if (isBase64Encoded !== true) return body;
  if (!isBase64(body)) {
    throw new MalformedEventError('request body is marked base64-encoded (isBase64Encoded: true) but is not valid base64');
  }
  return Buffer.from(body, 'base64');
}

/** The result's body: text as is, bytes base64-encoded (API Gateway and Function URLs decode them for the client). */
export function encodeBody(body: string | Uint8Array): { body: string; isBase64Encoded: boolean } {
  if (typeof body === 'string') return { body, isBase64Encoded: false };
  return { body: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64'), isBase64Encoded: true };
}
