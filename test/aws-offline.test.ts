import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONCURRENT_PING_HOLD_MS } from '../adapters/aws/warmup.ts';
import { freePort } from '../scripts/bench/support.ts';
import { OSLS_BIN, REPO_ROOT, offlineOslsEnv, oslsPackage, prepareServiceDir, type ServiceDir } from './support/aws-service.ts';

/**
 * The bundled `http` function (`.deploy/aws/build/http.mjs` from `npm run build:aws`) served by serverless-offline
 * 14.8.2 through osls 4.3.1 (`osls offline start`), on 127.0.0.1, hit with real HTTP requests. serverless-offline
 * declares `serverless ^4` as its peer (npm warns); osls, the open-source v3 line, loads it and runs its hooks as is.
 * It turns each request into an HTTP API payload 2.0 event (the `httpApi: '*'` route) and runs the handler in a
 * worker thread, as Lambda runs it in an execution environment: module scope once, then one call per request.
 * Function URLs (`url: true`) are not emulated by serverless-offline 14 (it ignores the setting); their events are
 * payload 2.0 too and are covered event by event in aws-http.test.ts.
 *
 * The warmer: the code serverless-plugin-warmup generates at `osls package` runs here, unchanged, with its AWS SDK
 * Lambda client pointed at serverless-offline's Invoke API (`AWS_ENDPOINT_URL`): its concurrent pings reach the
 * bundled handler as on AWS (payload as the event and as the client context).
 */

const FEATURES = JSON.parse(readFileSync(new URL('../models/anomaly/features.json', import.meta.url), 'utf8')) as { features: string[]; threshold: number };
// The README's account-takeover user-day, and an ordinary one.
const TAKEOVER = [3, 12, 2, 45, 900, 9, 4, 0.7, 150, 400, 2];
const ORDINARY = [3, 0, 2, 30, 5, 1, 1, 0.1, 20, 4, 0];
const asInstance = (row: number[], id: string) => ({ id, ...Object.fromEntries(FEATURES.features.map((name, i) => [name, row[i]])) });

// What CloudFormation would resolve (Refs to the stack's bucket, queue and state machine); serverless-offline
// cannot, so the values are given as osls params, as a developer would for an emulator.
const OFFLINE_PARAMS = ['--param=jobsBucket=modelfn-offline-jobs', '--param=jobsQueueUrl=http://127.0.0.1:1/queue/modelfn-offline-jobs', '--param=batchStateMachineArn=arn:aws:states:us-east-1:000000000000:stateMachine:modelfn-offline-batch'];

let service: ServiceDir;
let offline: ChildProcess;
let base: string;
let lambdaEndpoint: string;
/** The warmer function serverless-plugin-warmup generated at `osls package`. */
let warmerFile: string;
let output = '';
/** The same rows through onnxruntime directly: what the served scores must be. */
let expected: Float32Array;

async function waitForServer(url: string, child: ChildProcess, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`osls offline exited with ${child.exitCode}:\n${output}`);
    try {
      // Only a running handler answers with this header: the emulator's own 404s do not carry it.
      const response = await fetch(url);
      if (response.headers.has('x-modelfn-cold')) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`osls offline did not serve ${url} in time:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

beforeAll(async () => {
  service = await prepareServiceDir();
  const packaged = await oslsPackage(service);
  const warmerDir = path.join(service.dir, 'warmer');
  mkdirSync(path.join(warmerDir, 'node_modules', '@aws-sdk'), { recursive: true });
  warmerFile = path.join(warmerDir, 'index.mjs');
  writeFileSync(warmerFile, execFileSync('unzip', ['-p', path.join(packaged, 'warmUpPluginDefault.zip'), '.warmup/default/index.mjs']));
  // The Lambda runtime provides the SDK v3 the warmer imports.
  symlinkSync(realpathSync(path.join(REPO_ROOT, 'node_modules/@aws-sdk/client-lambda')), path.join(warmerDir, 'node_modules/@aws-sdk/client-lambda'), 'dir');

  const [httpPort, lambdaPort] = [await freePort(), await freePort()];
  lambdaEndpoint = `http://127.0.0.1:${lambdaPort}`;
  offline = spawn(
    process.execPath,
    [OSLS_BIN, 'offline', 'start', '--host', '127.0.0.1', ...OFFLINE_PARAMS, '--httpPort', String(httpPort), '--lambdaPort', String(lambdaPort), '--stage', 'test', '--region', 'us-east-1'],
    { cwd: service.dir, env: offlineOslsEnv({ LOG_LEVEL: 'info' }), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  offline.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  offline.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  base = `http://127.0.0.1:${httpPort}`;

  const session = await InferenceSession.create(new URL('../models/anomaly/anomaly.onnx', import.meta.url).pathname, { intraOpNumThreads: 1 });
  const result = await session.run({ features: new Tensor('float32', Float32Array.from([...TAKEOVER, ...ORDINARY]), [2, 11]) });
  expected = result.score!.data as Float32Array;
  await session.release();

  await waitForServer(`${base}/v2/health/live`, offline, 45_000);
}, 60_000);

afterAll(async () => {
  if (offline && offline.exitCode === null) {
    const exited = new Promise((resolve) => offline.once('exit', resolve));
    offline.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    if (offline.exitCode === null) offline.kill('SIGKILL');
  }
  service?.remove();
});

const post = (path: string, body: string | Uint8Array<ArrayBuffer>, contentType = 'application/json') =>
  fetch(base + path, { method: 'POST', headers: { 'content-type': contentType }, body: typeof body === 'string' ? body : new Blob([body]) });

describe('serverless-offline serving the bundled http function', () => {
  it('answers health probes and readiness of both models (the vad file resolved inside the bundle)', async () => {
    const live = await fetch(`${base}/v2/health/live`);
    expect(live.status).toBe(200);
    expect(live.headers.get('x-modelfn-cold')).toMatch(/^(true|false)$/);
    const ready = await fetch(`${base}/v2/health/ready`);
    expect([ready.status, await ready.json()]).toEqual([200, { ready: true }]);
    for (const model of ['anomaly', 'vad']) {
      const response = await fetch(`${base}/v2/models/${model}/ready`);
      expect([response.status, await response.json()]).toEqual([200, { name: model, ready: true }]);
    }
  });

  it('scores OIP infer requests as onnxruntime does', async () => {
    const body = JSON.stringify({ id: 'r1', inputs: [{ name: 'features', datatype: 'FP32', shape: [2, 11], data: [...TAKEOVER, ...ORDINARY] }] });
    const response = await post('/v2/models/anomaly/infer', body);
    expect(response.status).toBe(200);
    expect(response.headers.get('x-modelfn-cold')).toBe('false');
    expect(response.headers.get('server-timing')).toMatch(/run;dur=/);
    const answer = (await response.json()) as { model_name: string; id: string; outputs: { name: string; shape: number[]; data: number[] }[] };
    expect(answer).toMatchObject({ model_name: 'anomaly', id: 'r1' });
    const score = answer.outputs.find((output) => output.name === 'score')!;
    expect(score.shape).toEqual([2, 1]);
    expect(score.data[0]).toBeCloseTo(expected[0]!, 6);
    expect(score.data[1]).toBeCloseTo(expected[1]!, 6);
    expect(score.data[0]).toBeGreaterThan(FEATURES.threshold);
    expect(score.data[1]).toBeLessThan(FEATURES.threshold);
  });

  it('answers v1 predict with the model’s own post-processing', async () => {
    const response = await post('/v1/models/anomaly:predict', JSON.stringify({ instances: [asInstance(TAKEOVER, 'u1'), asInstance(ORDINARY, 'u2')] }));
    expect(response.status).toBe(200);
    const { predictions } = (await response.json()) as { predictions: { id: string; score: number; anomaly: boolean }[] };
    expect(predictions.map(({ id, anomaly }) => ({ id, anomaly }))).toEqual([
      { id: 'u1', anomaly: true },
      { id: 'u2', anomaly: false },
    ]);
    expect(predictions[0]!.score).toBeCloseTo(expected[0]!, 6);
  });

  it('answers an unknown model with 404 naming the models it has', async () => {
    const response = await post('/v2/models/nope/infer', JSON.stringify({ inputs: [] }));
    expect([response.status, await response.json()]).toEqual([404, { error: 'model "nope" not found; available: anomaly, vad' }]);
  });

  it('answers malformed JSON with 400 saying so, and keeps serving', async () => {
    const response = await post('/v1/models/anomaly:predict', '{"instances": [');
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: string }).error).toMatch(/^request body is not valid JSON: /);
    const after = await post('/v1/models/anomaly:predict', JSON.stringify({ instances: [asInstance(ORDINARY, 'u3')] }));
    expect(after.status).toBe(200);
  });

  it('takes a binary (application/octet-stream) body, which arrives base64-encoded, and rejects bytes that are not JSON', async () => {
    // serverless-offline sends octet-stream bodies as base64 with isBase64Encoded: true, as API Gateway does for
    // binary media types; the adapter decodes them to bytes for the core.
    const bytes = new TextEncoder().encode(JSON.stringify({ instances: [asInstance(TAKEOVER, 'b1')] }));
    const response = await post('/v1/models/anomaly:predict', bytes, 'application/octet-stream');
    expect(response.status).toBe(200);
    const { predictions } = (await response.json()) as { predictions: { id: string; score: number }[] };
    expect(predictions[0]!.id).toBe('b1');
    expect(predictions[0]!.score).toBeCloseTo(expected[0]!, 6);

    const garbage = await post('/v1/models/anomaly:predict', Uint8Array.from([0xff, 0xfe, 0x00, 0x89, 0x50]), 'application/octet-stream');
    expect(garbage.status).toBe(400);
    expect(((await garbage.json()) as { error: string }).error).toMatch(/^request body is not valid JSON/);
  });

  it('answers a wrong method on a known route with 405', async () => {
    const response = await fetch(`${base}/v2/models/anomaly/infer`);
    expect(response.status).toBe(405);
  });

  it('is kept warm by the plugin’s own warmer: its concurrent pings reach the handler and load nothing', async () => {
    Object.assign(process.env, { AWS_ENDPOINT_URL: lambdaEndpoint, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' });
    const warmer = (await import(pathToFileURL(warmerFile).href)) as { warmUp: (event: unknown, context: unknown) => Promise<void> };
    const before = output.length;
    const logged = console.log;
    const warmerLines: string[] = [];
    console.log = (...args: unknown[]) => void warmerLines.push(args.join(' '));
    try {
      await warmer.warmUp({}, {});
    } finally {
      console.log = logged;
    }
    expect(warmerLines).toContain('Warm Up Invoke Success: modelfn-test-http');
    // The handler's invocation log lines, printed by serverless-offline's worker.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const pings = output
      .slice(before)
      .split('\n')
      .filter((line) => line.includes('"event":"warmup"'))
      .map((line) => JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>);
    expect(pings.map(({ source, concurrency, heldMs }) => ({ source, concurrency, heldMs }))).toEqual([
      { source: 'serverless-plugin-warmup', concurrency: 2, heldMs: CONCURRENT_PING_HOLD_MS },
      { source: 'serverless-plugin-warmup', concurrency: 2, heldMs: CONCURRENT_PING_HOLD_MS },
    ]);
    expect(output.slice(before)).not.toMatch(/"msg":"model loaded"|"msg":"request"/);
  });
});
