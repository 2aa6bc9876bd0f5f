import { createV2Processor } from './api-gateway-v2.ts';
import { isRecord } from './common.ts';

/** `https://<url-id>.lambda-url.<region>.on.aws`, the only domain a Function URL event comes from. */
const FUNCTION_URL_DOMAIN = /\.lambda-url\.[a-z0-9-]+\.on\.aws$/;

/** Lambda Function URLs: the payload 2.0 shape, always the `$default` stage, so `rawPath` is the path. */
export const functionUrl = createV2Processor('function-url', 'Lambda Function URL');

export function isFunctionUrlEvent(event: Record<string, unknown>): boolean {
  const context = event.requestContext;
  return isRecord(context) && typeof context.domainName === 'string' && FUNCTION_URL_DOMAIN.test(context.domainName);
}
