import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { decodeBody, describeValue, encodeBody, isRecord, lowerCaseHeaders, MalformedEventError } from './common.ts';
import type { EventProcessor, HttpEventKind } from './types.ts';

/** The default invoke domain of an API, `{api-id}.execute-api.{region}.amazonaws.com` (`.com.cn` in China). */
const EXECUTE_API_DOMAIN = /\.execute-api\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;

/**
 * Payload format 2.0, shared by HTTP APIs and Function URLs: `rawPath`, `rawQueryString`,
 * `requestContext.http.method`, headers already comma-joined, `cookies` apart, a body that may be base64.
 */
export function createV2Processor(
  kind: Extract<HttpEventKind, 'api-gateway-v2' | 'function-url'>,
  label: string,
): EventProcessor<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2> {
  return {
    kind,
    label,

    createRequest(event) {
      const context = isRecord(event.requestContext) ? event.requestContext : undefined;
      const method = isRecord(context?.http) ? context.http.method : undefined;
      if (typeof method !== 'string' || method === '') {
        throw new MalformedEventError(`malformed ${label} event: requestContext.http.method is ${describeValue(method)}; expected an HTTP method such as "GET"`);
      }
      const { rawPath } = event as Partial<APIGatewayProxyEventV2>;
      if (typeof rawPath !== 'string' || !rawPath.startsWith('/')) {
        throw new MalformedEventError(`malformed ${label} event: rawPath is ${describeValue(rawPath)}; expected a path starting with "/"`);
      }
      const path = kind === 'api-gateway-v2' ? withoutStage(rawPath, context?.stage, context?.domainName) : rawPath;
      // The Function URL guide's parameter table shows rawQueryString with a leading "?"; tolerate it.
      const query = typeof event.rawQueryString === 'string' ? event.rawQueryString.replace(/^\?/, '') : '';
      const headers = lowerCaseHeaders(event.headers);
      if (Array.isArray(event.cookies) && event.cookies.length > 0) {
        headers.cookie = [headers.cookie, ...event.cookies].filter(Boolean).join('; ');
      }
      return { method, url: query ? `${path}?${query}` : path, headers, body: decodeBody(event.body, event.isBase64Encoded, label) };
    },

    createResult(_event, response) {
      const { body, isBase64Encoded } = encodeBody(response.body);
      return { statusCode: response.status, headers: { ...response.headers }, body, isBase64Encoded };
    },
  };
}

/**
 * On an HTTP API's own domain, a named stage is the first segment of `rawPath` (`/prod/v2/health/ready`);
 * the `$default` stage and custom domains (API mappings) leave it out. Strip it only where it is there.
 */
function withoutStage(rawPath: string, stage: unknown, domainName: unknown): string {
  if (typeof stage !== 'string' || stage === '' || stage === '$default') return rawPath;
  if (typeof domainName !== 'string' || !EXECUTE_API_DOMAIN.test(domainName)) return rawPath;
  const prefix = `/${stage}`;
  if (rawPath === prefix) return '/';
  return rawPath.startsWith(`${prefix}/`) ? rawPath.slice(prefix.length) : rawPath;
}

/** HTTP APIs (API Gateway v2) with payload format 2.0. */
export const apiGatewayV2 = createV2Processor('api-gateway-v2', 'API Gateway HTTP API (payload v2)');
