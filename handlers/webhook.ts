import { nodeCrypto } from './builtins.ts';
import { errorMessage } from './errors.ts';

export const SIGNATURE_HEADER = 'x-modelfn-signature';
export const TIMESTAMP_HEADER = 'x-modelfn-timestamp';

/**
 * HMAC-SHA256 over `${timestamp}.${body}` (the timestamp in the signed text stops replays of old
 * deliveries), as `sha256=<hex>`, the shape GitHub and Stripe receivers already know.
 */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${nodeCrypto().createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** For receivers: true when the signature matches and the timestamp is within `toleranceSeconds` of now. */
export function verifyWebhook(
  secret: string,
  headers: { signature?: string | null; timestamp?: string | null },
  body: string,
  toleranceSeconds = 300,
  nowSeconds = Date.now() / 1000,
): boolean {
  const { signature, timestamp } = headers;
  if (!signature || !timestamp || !/^\d+$/.test(timestamp)) return false;
  if (Math.abs(nowSeconds - Number(timestamp)) > toleranceSeconds) return false;
  const expected = Buffer.from(signWebhook(secret, timestamp, body));
  const given = Buffer.from(signature);
  return expected.length === given.length && nodeCrypto().timingSafeEqual(expected, given);
}

export interface WebhookDelivery {
  ok: boolean;
  /** HTTP status, or the network error. */
  detail: string;
}

/** One signed POST; a 2xx is delivered, anything else (or no answer within the timeout) is not. */
export async function deliverWebhook(url: string, body: string, secret: string | undefined, timeoutMs = 10_000): Promise<WebhookDelivery> {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const headers: Record<string, string> = { 'content-type': 'application/json', [TIMESTAMP_HEADER]: timestamp };
  if (secret) headers[SIGNATURE_HEADER] = signWebhook(secret, timestamp, body);
  try {
    const response = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    await response.body?.cancel();
    return { ok: response.status >= 200 && response.status < 300, detail: `HTTP ${response.status}` };
  } catch (error) {
    return { ok: false, detail: errorMessage(error) };
  }
}
