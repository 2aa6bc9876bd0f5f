import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCore, type Core, type CoreHttpResponse } from '../handlers/index.ts';
import { generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';

/**
 * How the core routes a path, on the transport-neutral request every adapter builds: the v1 custom verb
 * (`/v1/models/{name}:predict`), trailing and duplicate slashes, percent-encoded names, 404 against 405.
 */
let core: Core;

beforeAll(async () => {
  core = await createCore({ preload: false, metrics: false });
});

afterAll(async () => {
  await core.repository.dispose();
});

const request = (method: string, url: string, body?: unknown): Promise<CoreHttpResponse> =>
  core.http.handle({ method, url, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
const errorOf = (response: CoreHttpResponse) => (JSON.parse(response.body) as { error: string }).error;
const instances = [toFeatures(generateUserDays(1, 7)[0]!)];

describe('core routing', () => {
  it('routes the v1 custom verb, with a trailing slash, duplicate slashes and a percent-encoded name', async () => {
    for (const url of ['/v1/models/anomaly:predict', '/v1/models/anomaly:predict/', '//v1//models/anomaly:predict', '/v1/models/an%6Fmaly:predict?x=1']) {
      const response = await request('POST', url, { instances });
      expect(response.status, url).toBe(200);
      const { predictions } = JSON.parse(response.body) as { predictions: { score: number }[] };
      expect(predictions).toHaveLength(1);
      expect(predictions[0]!.score).toBeGreaterThanOrEqual(0);
    }
  });

  it('answers 405 with Allow for the verb under the wrong method, 404 for an unknown verb', async () => {
    const wrongMethod = await request('GET', '/v1/models/anomaly:predict');
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.allow).toBe('POST');
    expect(errorOf(wrongMethod)).toBe('method GET is not allowed on /v1/models/anomaly:predict; use POST');

    const unknownVerb = await request('POST', '/v1/models/anomaly:explain', { instances });
    expect(unknownVerb.status).toBe(404);
    expect(errorOf(unknownVerb)).toBe('no route for POST /v1/models/anomaly:explain');
  });

  it('reads a colon inside a v2 model name as part of the name (no such model), not as a verb route', async () => {
    const response = await request('GET', '/v2/models/anomaly:predict');
    expect(response.status).toBe(404);
    expect(errorOf(response)).toBe('no route for GET /v2/models/anomaly:predict');
    expect((await request('GET', '/v2/models/anomaly/')).status).toBe(200);
  });

  it('matches no route for a path with a control character, however the event carried it', async () => {
    for (const url of ['/v1/models/anomaly/\0predict', '/v2/models/anom\naly', '/v2/health/live\u007f']) {
      const response = await request(url.startsWith('/v1') ? 'POST' : 'GET', url, url.startsWith('/v1') ? { instances } : undefined);
      expect(response.status, JSON.stringify(url)).toBe(404);
    }
    // Percent-encoded, the same characters are data: a model name that does not exist.
    const encoded = await request('GET', '/v2/models/anom%0Aaly');
    expect(encoded.status).toBe(404);
    expect(errorOf(encoded)).toBe('model "anom\naly" not found; available: anomaly, vad');
  });
});
