import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { decodeBody, describeValue, encodeBody, lowerCaseHeaders, MalformedEventError, queryStringOf } from './common.ts';
import type { EventProcessor } from './types.ts';

const label = 'API Gateway REST (payload v1)';

/**
 * API Gateway REST APIs, and HTTP APIs with payload format 1.0: `httpMethod`, `path`, `headers` and
 * `multiValueHeaders`, decoded query parameters, a body that may be base64.
 *
 * `path` is used as is: API Gateway's documented example (a request to `/testStage/hello/world`) arrives
 * with `path: "/hello/world"` — the stage is not in it (only `requestContext.path` carries it).
 */
export const apiGatewayV1: EventProcessor<APIGatewayProxyEvent, APIGatewayProxyResult> = {
  kind: 'api-gateway-v1',
  label,

  createRequest(event) {
    const { httpMethod, path } = event as Partial<APIGatewayProxyEvent>;
    if (typeof httpMethod !== 'string' || httpMethod === '') {
      throw new MalformedEventError(`malformed ${label} event: httpMethod is ${describeValue(httpMethod)}; expected an HTTP method such as "GET"`);
    }
    if (typeof path !== 'string' || !path.startsWith('/')) {
      throw new MalformedEventError(`malformed ${label} event: path is ${describeValue(path)}; expected a path starting with "/"`);
    }
    const query = queryStringOf(event.queryStringParameters, event.multiValueQueryStringParameters);
    return {
      method: httpMethod,
      url: query ? `${path}?${query}` : path,
      headers: lowerCaseHeaders(event.headers, event.multiValueHeaders),
      body: decodeBody(event.body, event.isBase64Encoded, label),
    };
  },

  createResult(event, response) {
    const { body, isBase64Encoded } = encodeBody(response.body);
    // Answer in the form the request came in: a caller that sent multiValueHeaders gets them back.
    if (event.multiValueHeaders) {
      const multiValueHeaders: Record<string, string[]> = {};
      for (const [name, value] of Object.entries(response.headers)) multiValueHeaders[name] = [value];
      return { statusCode: response.status, multiValueHeaders, body, isBase64Encoded };
    }
    return { statusCode: response.status, headers: { ...response.headers }, body, isBase64Encoded };
  },
};
