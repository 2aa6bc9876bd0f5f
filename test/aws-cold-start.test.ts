/**
 * Cold starts of the AWS Lambda entry: each test imports adapters/aws/handler.ts afresh (vi.resetModules), which is
 * what a new execution environment does — the module's init code runs, then the first invocation arrives.
 * Real onnxruntime and the bundled models; no Lambda runtime (the handler is called as the Node.js runtime calls it,
 * with a test-built Context), so the init phase here is the module import rather than Lambda's INIT.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { functionUrlEvent, lambdaContext, readResult } from './support/aws-events.ts';

type AwsModule = typeof import('../adapters/aws/handler.ts');
let loaded: AwsModule | undefined;

/** A new execution environment: init with the given environment variables. */
async function newEnvironment(env: Record<string, string | undefined>): Promise<AwsModule> {
  for (const name of ['MODELFN_PRELOAD', 'MODELFN_MODELS_DIR']) delete process.env[name];
  Object.assign(process.env, env);
  vi.resetModules();
  loaded = await import('../adapters/aws/handler.ts');
  return loaded;
}

afterEach(async () => {
  for (const name of ['MODELFN_PRELOAD', 'MODELFN_MODELS_DIR']) delete process.env[name];
  await loaded?.coreForTests()?.repository.dispose();
  loaded = undefined;
});

const body = JSON.stringify({ inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 11], data: [1, 0, 1, 30, 20, 1, 1, 0.1, 10, 12, 0] }] });
const infer = async (aws: AwsModule) => readResult((await aws.handler(functionUrlEvent({ method: 'POST', path: '/v2/models/anomaly/infer', body }), lambdaContext() as never)) as never);

describe('cold starts', () => {
  it('lazily: the first invocation is cold and pays for the core and the model, in Server-Timing', async () => {
    const aws = await newEnvironment({});
    expect(aws.coreForTests()).toBeUndefined(); // nothing created at init without MODELFN_PRELOAD

    const first = await infer(aws);
    expect(first.status).toBe(200);
    expect(first.headers['x-modelfn-cold']).toBe('true');
    expect(first.headers['server-timing']).toMatch(/^init;dur=[\d.]+;desc="container", load;dur=[\d.]+;desc="cold", validate;dur=/);

    const second = await infer(aws);
    expect(second.headers['x-modelfn-cold']).toBe('false');
    expect(second.headers['server-timing']).toMatch(/^warm;dur=0, validate;dur=/);
  });

  it('the invocation log line says cold, the init time and the model load time, on the invocation that paid them', async () => {
    const aws = await newEnvironment({});
    const info = vi.spyOn(aws.loggerForTests, 'info');
    try {
      await infer(aws);
      await infer(aws);
      const lines = info.mock.calls.filter((args) => args[1] === 'invocation').map((args) => args[0] as Record<string, unknown>);
      expect(lines).toEqual([
        expect.objectContaining({ event: 'function-url', cold: true, initMs: expect.any(Number), modelLoadMs: { anomaly: expect.any(Number) }, status: 200 }),
        expect.objectContaining({ event: 'function-url', cold: false, status: 200 }),
      ]);
      expect(lines[1]).not.toHaveProperty('modelLoadMs');
      expect(lines[1]).not.toHaveProperty('initMs');
      expect((lines[0]!.modelLoadMs as { anomaly: number }).anomaly).toBeGreaterThan(0);
    } finally {
      info.mockRestore();
    }
  });

  it('concurrent first invocations share one core and one model load', async () => {
    const aws = await newEnvironment({});
    const answers = await Promise.all(Array.from({ length: 8 }, () => infer(aws)));
    expect(answers.map((answer) => answer.status)).toEqual(Array(8).fill(200));
    expect(answers.filter((answer) => answer.headers['x-modelfn-cold'] === 'true')).toHaveLength(1);
    expect(answers.filter((answer) => answer.headers['server-timing']!.startsWith('init;'))).toHaveLength(1);
    expect(aws.coreForTests()!.repository.get('anomaly').runtime.state).toBe('ready');
  });

  it('MODELFN_PRELOAD=1: the core and every model load at init; the first request runs warm', async () => {
    const aws = await newEnvironment({ MODELFN_PRELOAD: '1' });
    const core = aws.coreForTests();
    expect(core).toBeDefined();
    expect(core!.repository.list().map((service) => [service.name, service.runtime.state])).toEqual([
      ['anomaly', 'ready'],
      ['vad', 'ready'],
    ]);

    const first = await infer(aws);
    expect(first.status).toBe(200);
    expect(first.headers['x-modelfn-cold']).toBe('true');
    // Init (done before the request) is reported once; the model was loaded then, so the run itself is warm.
    expect(first.headers['server-timing']).toMatch(/^init;dur=[\d.]+;desc="container", warm;dur=0, /);
    expect((await infer(aws)).headers['server-timing']).toMatch(/^warm;dur=0, /);
  });

  it('a core that fails to start answers 503 and is retried by the next invocation; the environment lives on', async () => {
    const aws = await newEnvironment({ MODELFN_MODELS_DIR: '/nonexistent/modelfn-models' });
    const failed = await infer(aws);
    expect([failed.status, failed.headers['x-modelfn-cold']]).toEqual([503, 'true']);
    expect(JSON.parse(failed.body).error).toMatch(/^not ready: the model server failed to start/);
    expect(failed.body).not.toContain('/nonexistent'); // details go to the log, not to the caller

    delete process.env.MODELFN_MODELS_DIR; // the operator fixes the configuration
    const served = await infer(aws);
    expect([served.status, served.headers['x-modelfn-cold']]).toEqual([200, 'false']);
    expect(served.headers['server-timing']).toMatch(/^init;dur=[\d.]+;desc="container", load;dur=/);
  });

  it('MODELFN_PRELOAD=1 with a broken models folder: init does not throw, the first invocation retries', async () => {
    const aws = await newEnvironment({ MODELFN_PRELOAD: '1', MODELFN_MODELS_DIR: '/nonexistent/modelfn-models' });
    expect(aws.coreForTests()).toBeUndefined();
    expect((await infer(aws)).status).toBe(503);
    delete process.env.MODELFN_MODELS_DIR;
    const served = await infer(aws);
    expect(served.status).toBe(200);
    expect(served.headers['server-timing']).toMatch(/^init;dur=[\d.]+;desc="container", warm;dur=0, /); // preloaded by the retry
  });
});
