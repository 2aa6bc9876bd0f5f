import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import wavefile from 'wavefile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileJobStore } from '../adapters/local/file-job-store.ts';
import { LocalJobQueue } from '../adapters/local/job-queue.ts';
import { startLocalServer, type LocalServer } from '../adapters/local/server.ts';
import { createCore, type Core } from '../handlers/index.ts';
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, verifyWebhook } from '../handlers/webhook.ts';
import { generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';
import { identityModel, writeModelRepository } from './support/onnx-models.ts';

const SECRET = 'test-webhook-secret';

interface Harness {
  core: Core;
  server: LocalServer;
  queue: LocalJobQueue;
  store: FileJobStore;
}

async function startHarness(modelsDir?: string, settings: Record<string, number> = {}): Promise<Harness> {
  const store = new FileJobStore(mkdtempSync(path.join(tmpdir(), 'modelfn-jobs-')));
  const queue = new LocalJobQueue(16);
  const core = await createCore(
    { preload: false, modelsDir, jobs: { webhookSecret: SECRET, retryBaseMs: 20, retryMaxMs: 100, webhookRetryBaseMs: 20, maxAttempts: 3, webhookMaxAttempts: 4, ...settings } },
    { jobs: { store, queue } },
  );
  queue.start(core.jobs!);
  const server = await startLocalServer(core.http, { port: 0 });
  return { core, server, queue, store };
}

async function stopHarness(harness: Harness): Promise<void> {
  await harness.server.close();
  await harness.queue.stop();
  await Promise.all(harness.core.jobs!.pendingWebhooks);
  await harness.core.repository.dispose();
}

async function submit(harness: Harness, model: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${harness.server.url}/v1/models/${model}/jobs`, { method: 'POST', body: JSON.stringify(body), headers });
  return { status: response.status, headers: response.headers, body: (await response.json()) as { id: string; status: string; error?: string } };
}

async function waitForJob(harness: Harness, id: string, until: (job: Record<string, unknown>) => boolean = (job) => job.status === 'succeeded' || job.status === 'failed') {
  for (let waited = 0; waited < 20_000; waited += 20) {
    const job = (await (await fetch(`${harness.server.url}/v1/jobs/${id}`)).json()) as Record<string, unknown>;
    if (until(job)) return job;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`job ${id} did not settle`);
}

describe('asynchronous jobs on the local server', () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness();
  });
  afterAll(() => stopHarness(harness));

  it('accepts a job with 202 and Location, then serves the same predictions :predict gives', async () => {
    const instances = generateUserDays(5, 21).map((day, i) => ({ id: `u${i}`, ...toFeatures(day) }));
    const accepted = await submit(harness, 'anomaly', { instances });
    expect(accepted.status).toBe(202);
    expect(accepted.body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), status: 'queued' });
    expect(accepted.headers.get('location')).toBe(`/v1/jobs/${accepted.body.id}`);

    const job = await waitForJob(harness, accepted.body.id);
    const direct = (await (await fetch(`${harness.server.url}/v1/models/anomaly:predict`, { method: 'POST', body: JSON.stringify({ instances }) })).json()) as {
      predictions: { id: string; score: number }[];
    };
    expect(job).toMatchObject({ id: accepted.body.id, model: 'anomaly', status: 'succeeded', attempts: 1 });
    expect(job.instances).toBeUndefined();
    const predictions = (job.result as { predictions: { id: string; score: number }[] }).predictions;
    expect(predictions.map((p) => p.id)).toEqual(['u0', 'u1', 'u2', 'u3', 'u4']);
    predictions.forEach((p, i) => expect(p.score).toBeCloseTo(direct.predictions[i]!.score, 5));
    for (const field of ['createdAt', 'startedAt', 'finishedAt', 'expiresAt']) expect(Date.parse(job[field] as string)).not.toBeNaN();
    // Retention defaults to 7 days.
    expect(Date.parse(job.expiresAt as string) - Date.parse(job.finishedAt as string)).toBe(7 * 24 * 3600 * 1000);
  });

  it('drains a backlog of jobs for one model in shared tensor runs', async () => {
    // Jobs accepted while no worker runs (a restart, a burst) are the backlog.
    const store = new FileJobStore(mkdtempSync(path.join(tmpdir(), 'modelfn-jobs-')));
    const queue = new LocalJobQueue(32);
    const core = await createCore({ preload: true }, { jobs: { store, queue } });
    try {
      const submitted = await Promise.all(generateUserDays(60, 3).map((day) => core.jobs!.submit('anomaly', { instances: [toFeatures(day)] })));
      queue.start(core.jobs!);
      for (let waited = 0; queue.depth > 0 && waited < 20_000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
      const jobs = await Promise.all(submitted.map(({ job }) => core.jobs!.get(job.id)));
      expect(jobs.every((job) => job.status === 'succeeded')).toBe(true);
      const metrics = await core.metrics!.text();
      const runs = Number(/^modelfn_batch_requests_count\{model="anomaly"\} (\d+)/m.exec(metrics.body)![1]);
      const stacked = Number(/^modelfn_batch_requests_sum\{model="anomaly"\} (\d+)/m.exec(metrics.body)![1]);
      expect(stacked).toBe(60);
      expect(runs).toBeLessThan(30);
    } finally {
      await queue.stop();
      await core.repository.dispose();
    }
  });

  it('the same Idempotency-Key returns the same job and never runs a second one', async () => {
    const body = { instances: [toFeatures(generateUserDays(1, 5)[0]!)] };
    const results = await Promise.all(Array.from({ length: 8 }, () => submit(harness, 'anomaly', body, { 'idempotency-key': 'order-1234' })));
    const ids = new Set(results.map((result) => result.body.id));
    expect(ids.size).toBe(1);
    expect(results.filter((result) => result.headers.get('idempotent-replayed') === 'true')).toHaveLength(7);
    const again = await submit(harness, 'anomaly', body, { 'idempotency-key': 'order-1234' });
    expect(again.body.id).toBe([...ids][0]);
    const job = await waitForJob(harness, again.body.id);
    expect(job.attempts).toBe(1);
    // Another key is another job.
    expect((await submit(harness, 'anomaly', body, { 'idempotency-key': 'order-1235' })).body.id).not.toBe(again.body.id);
  });

  it.each<[string, string, unknown, number, string | RegExp]>([
    ['no instances', 'anomaly', { callbackUrl: 'http://127.0.0.1:1/x' }, 400, 'request body must be an object with a non-empty "instances" array'],
    ['an invalid instance', 'anomaly', { instances: [{ logins: 1 }] }, 400, 'instances[0] is missing required property "failed_logins"'],
    ['a callbackUrl that is not a URL', 'anomaly', { instances: [toFeatures(generateUserDays(1, 1)[0]!)], callbackUrl: 'not a url' }, 400, '"callbackUrl" is not a valid URL: not a url'],
    ['a non-http callbackUrl', 'anomaly', { instances: [toFeatures(generateUserDays(1, 1)[0]!)], callbackUrl: 'file:///etc/passwd' }, 400, '"callbackUrl" must be an http or https URL'],
    ['an unknown model', 'nope', { instances: [1] }, 404, /^model "nope" not found/],
  ])('refuses %s at submit', async (_case, model, body, status, message) => {
    const result = await submit(harness, model, body);
    expect(result.status).toBe(status);
    expect(result.body.error).toMatch(typeof message === 'string' ? new RegExp(`^${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : message);
  });

  it('404 for an unknown job id', async () => {
    const response = await fetch(`${harness.server.url}/v1/jobs/00000000-0000-0000-0000-000000000000`);
    expect([response.status, await response.json()]).toEqual([404, { error: 'job "00000000-0000-0000-0000-000000000000" not found' }]);
    expect((await fetch(`${harness.server.url}/v1/jobs/..%2F..%2Fetc%2Fpasswd`)).status).toBe(404);
  });

  it('a job whose input the model rejects fails at once with the reason and is not retried', async () => {
    const wav = new wavefile.WaveFile();
    wav.fromScratch(1, 44_100, '16', new Int16Array(44_100));
    const accepted = await submit(harness, 'vad', { instances: [{ wav: Buffer.from(wav.toBuffer()).toString('base64') }] });
    expect(accepted.status).toBe(202);
    const job = await waitForJob(harness, accepted.body.id);
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: 'instances[0].wav: sample rate 44100 Hz, expected 16000 Hz mono' });
    const deadLetters = (await (await fetch(`${harness.server.url}/v1/dead-letter`)).json()) as { jobs: { id: string }[] };
    expect(deadLetters.jobs.map((dead) => dead.id)).not.toContain(accepted.body.id);
  });

  it('POSTs the finished job to callbackUrl, signed, retrying until the receiver takes it', async () => {
    const deliveries: { status: number; verified: boolean; body: { id: string; status: string } }[] = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => {
        const verified = verifyWebhook(SECRET, { signature: req.headers[SIGNATURE_HEADER] as string, timestamp: req.headers[TIMESTAMP_HEADER] as string }, body);
        const status = deliveries.length < 2 ? 500 : 204;
        deliveries.push({ status, verified, body: JSON.parse(body) });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const callbackUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/modelfn`;
    try {
      const accepted = await submit(harness, 'anomaly', { instances: [toFeatures(generateUserDays(1, 8)[0]!)], callbackUrl });
      const job = await waitForJob(harness, accepted.body.id, (j) => (j.webhook as { delivered?: boolean } | undefined)?.delivered === true);
      expect(job.status).toBe('succeeded');
      expect(deliveries.map((d) => d.status)).toEqual([500, 500, 204]);
      expect(deliveries.every((d) => d.verified)).toBe(true);
      expect(deliveries[2]!.body).toMatchObject({ id: accepted.body.id, status: 'succeeded', result: { predictions: [expect.objectContaining({ score: expect.any(Number) })] } });
      // A tampered body does not verify.
      expect(verifyWebhook(SECRET, { signature: 'sha256=00', timestamp: String(Math.floor(Date.now() / 1000)) }, '{}')).toBe(false);
    } finally {
      receiver.close();
    }
  });

  it('a receiver that never answers 2xx does not change the job: it stays succeeded, webhook given up', async () => {
    const accepted = await submit(harness, 'anomaly', { instances: [toFeatures(generateUserDays(1, 9)[0]!)], callbackUrl: 'http://127.0.0.1:9/unreachable' });
    const job = await waitForJob(harness, accepted.body.id, (j) => (j.webhook as { givenUp?: boolean } | undefined)?.givenUp === true);
    expect(job).toMatchObject({ status: 'succeeded', webhook: { delivered: false, attempts: 4, givenUp: true } });
  });
});

describe('retries, dead letters and retention', () => {
  // A model that fails with an internal error a set number of times per process, then works.
  const flaky = (name: string, failures: number) => ({
    name,
    onnx: identityModel([{ name: 'x', type: 'float32', dims: ['batch', 2] }]),
    source: `let calls = 0;
export default {
  name: '${name}', version: '1', file: 'model.onnx',
  async predict(instances) {
    calls++;
    if (calls <= ${failures}) throw new Error('transient failure ' + calls);
    return instances.map((instance) => ({ echo: instance, calls }));
  },
};
`,
  });
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness(writeModelRepository([flaky('flaky', 2), flaky('broken', 1e9)]), { retentionMs: 300 });
  });
  afterAll(() => stopHarness(harness));

  it('retries a failing job with backoff and records it succeeded once', async () => {
    const accepted = await submit(harness, 'flaky', { instances: [{ a: 1 }] });
    const job = await waitForJob(harness, accepted.body.id);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 3, result: { predictions: [{ echo: { a: 1 }, calls: 3 }] } });
    expect(job.error).toBeUndefined();
  });

  it('gives up after maxAttempts: failed with the reason, kept in the dead-letter list', async () => {
    const accepted = await submit(harness, 'broken', { instances: [{ a: 1 }] });
    const job = await waitForJob(harness, accepted.body.id);
    expect(job).toMatchObject({ status: 'failed', attempts: 3, error: 'gave up after 3 attempts: internal error while running the model' });
    const deadLetters = (await (await fetch(`${harness.server.url}/v1/dead-letter`)).json()) as { jobs: { id: string; status: string }[] };
    expect(deadLetters.jobs).toEqual([expect.objectContaining({ id: accepted.body.id, status: 'failed' })]);
  });

  it('deletes finished jobs once their retention has passed', async () => {
    const accepted = await submit(harness, 'flaky', { instances: [{ b: 2 }] });
    await waitForJob(harness, accepted.body.id);
    expect(await harness.core.jobs!.deleteExpired()).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(await harness.core.jobs!.deleteExpired()).toBeGreaterThanOrEqual(1);
    expect((await fetch(`${harness.server.url}/v1/jobs/${accepted.body.id}`)).status).toBe(404);
  });
});

describe('the job store file layout', () => {
  it('keeps a job readable as JSON and drops it from recovery once settled', async () => {
    const store = new FileJobStore(mkdtempSync(path.join(tmpdir(), 'modelfn-store-')));
    const now = new Date().toISOString();
    const job = { id: '11111111-1111-1111-1111-111111111111', model: 'm', status: 'queued' as const, createdAt: now, updatedAt: now, attempts: 0, instances: [1] };
    await store.create(job);
    expect(JSON.parse(readFileSync(path.join(store.dir, 'active', `${job.id}.json`), 'utf8'))).toEqual(job);
    expect((await store.listUnfinished()).map((j) => j.id)).toEqual([job.id]);
    await store.put({ ...job, status: 'running', attempts: 1 });
    expect(await store.get(job.id)).toMatchObject({ status: 'running', attempts: 1 });
    await store.put({ ...job, status: 'succeeded', attempts: 1, result: { predictions: [1] } });
    expect(await store.listUnfinished()).toEqual([]);
    expect(JSON.parse(readFileSync(path.join(store.dir, 'done', `${job.id}.json`), 'utf8'))).toMatchObject({ status: 'succeeded' });
  });
});
