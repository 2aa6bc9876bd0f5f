import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileJobStore } from '../adapters/local/file-job-store.ts';
import { FileObjectStore } from '../adapters/local/file-objects.ts';
import { LocalJobQueue } from '../adapters/local/job-queue.ts';
import { startLocalServer, type LocalServer } from '../adapters/local/server.ts';
import { createCore, JobService, type Core } from '../handlers/index.ts';
import { generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';

/**
 * `POST /v1/models/{name}/batch` on the local server: a JSONL or CSV object under the batch folder scored by the
 * real anomaly model as a background job, results and bad records written beside it, the job's result saying
 * where; bad requests refused with 4xx naming the field.
 */
let core: Core;
let server: LocalServer;
let queue: LocalJobQueue;
let root: string;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'modelfn-batch-objects-'));
  queue = new LocalJobQueue(4);
  core = await createCore(
    { preload: false, metrics: false },
    { jobs: { store: new FileJobStore(mkdtempSync(path.join(tmpdir(), 'modelfn-batch-jobs-'))), queue, objects: new FileObjectStore(root) } },
  );
  queue.start(core.jobs!);
  server = await startLocalServer(core.http, { port: 0 });
});

afterAll(async () => {
  await server?.close();
  await queue?.stop();
  await core?.repository.dispose();
});

const post = async (url: string, body: unknown) => {
  const response = await fetch(`${server.url}${url}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: response.status, location: response.headers.get('location'), body: (await response.json()) as Record<string, unknown> };
};

async function settled(id: string): Promise<Record<string, unknown>> {
  for (let waited = 0; waited < 20_000; waited += 25) {
    const job = (await (await fetch(`${server.url}/v1/jobs/${id}`)).json()) as Record<string, unknown>;
    if (job.status === 'succeeded' || job.status === 'failed') return job;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`job ${id} did not settle`);
}

function put(key: string, text: string): void {
  const file = path.join(root, ...key.split('/'));
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
}

const read = (key: string) => readFileSync(path.join(root, ...key.split('/')), 'utf8');
const jsonLines = (text: string) => text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
const days = generateUserDays(3, 31).map(toFeatures);

describe('POST /v1/models/{name}/batch on the local server', () => {
  it('scores a JSONL object as a background job: results in input order, the bad record in the errors object', async () => {
    const lines = [{ id: 'a', ...days[0] }, { id: 'b', ...days[1] }, { id: 'c', logins: 1 }, { id: 'd', ...days[2] }].map((record) => JSON.stringify(record));
    put('in/day.jsonl', `${lines.join('\n')}\n`);
    const accepted = await post('/v1/models/anomaly/batch', { input: 'in/day.jsonl', output: 'out/day.jsonl' });
    expect(accepted.status).toBe(202);
    expect(accepted.body).toEqual({ id: expect.any(String), status: 'queued' });
    expect(accepted.location).toBe(`/v1/jobs/${accepted.body.id}`);

    const job = await settled(accepted.body.id as string);
    expect(job).toMatchObject({ status: 'succeeded', result: { records: 4, succeeded: 3, failed: 1, output: 'out/day.jsonl', errors: 'out/day.jsonl.errors.jsonl' } });

    // The same predictions the synchronous v1 route gives for those rows.
    const direct = await post('/v1/models/anomaly:predict', { instances: [days[0], days[1], days[2]] });
    const expected = direct.body.predictions as { score: number; anomaly: boolean }[];
    const results = jsonLines(read('out/day.jsonl'));
    expect(results.map((result) => [result.id, result.line])).toEqual([['a', 1], ['b', 2], ['d', 4]]);
    results.forEach((result, i) => {
      const prediction = result.prediction as { score: number; anomaly: boolean };
      expect(prediction.score).toBeCloseTo(expected[i]!.score, 6);
      expect(prediction.anomaly).toBe(expected[i]!.anomaly);
    });
    expect(jsonLines(read('out/day.jsonl.errors.jsonl'))).toEqual([{ line: 3, id: 'c', error: 'line 3 is missing required property "failed_logins"' }]);
    // Written whole: no temporary file left beside the outputs.
    expect(readdirSync(path.join(root, 'out')).sort()).toEqual(['day.jsonl', 'day.jsonl.errors.jsonl']);
  });

  it('scores a CSV object; a later run with no bad records removes the old errors object', async () => {
    const header = Object.keys(days[0]!);
    put('in/day.csv', `${['id', ...header].join(',')}\n${days.map((day, i) => [`r${i}`, ...header.map((name) => day[name as keyof typeof day])].join(',')).join('\n')}\n`);
    put('out/csv.jsonl.errors.jsonl', '{"stale":true}\n');
    const accepted = await post('/v1/models/anomaly/batch', { input: 'in/day.csv', output: 'out/csv.jsonl' });
    expect(accepted.status).toBe(202);
    expect(await settled(accepted.body.id as string)).toMatchObject({ status: 'succeeded', result: { records: 3, succeeded: 3, failed: 0, output: 'out/csv.jsonl' } });
    expect(jsonLines(read('out/csv.jsonl')).map((result) => [result.id, result.line])).toEqual([['r0', 2], ['r1', 3], ['r2', 4]]);
    expect(existsSync(path.join(root, 'out', 'csv.jsonl.errors.jsonl'))).toBe(false);
  });

  it('fails the job at once, naming it, when the input object does not exist or is not CSV it can read', async () => {
    const missing = await post('/v1/models/anomaly/batch', { input: 'in/nope.jsonl', output: 'out/nope.jsonl' });
    expect(missing.status).toBe(202);
    expect(await settled(missing.body.id as string)).toMatchObject({ status: 'failed', attempts: 1, error: 'input object "in/nope.jsonl" does not exist' });

    put('in/broken.csv', 'id,logins\n"unterminated,1\n');
    const broken = await post('/v1/models/anomaly/batch', { input: 'in/broken.csv', output: 'out/broken.jsonl' });
    const job = await settled(broken.body.id as string);
    expect(job).toMatchObject({ status: 'failed', attempts: 1, error: expect.stringMatching(/^input object "in\/broken\.csv": CSV: /) });
    expect(existsSync(path.join(root, 'out', 'broken.jsonl'))).toBe(false);
  });

  it('a worker out of time stops the job between chunks: failed at once, naming where, nothing written', async () => {
    const jobs = new JobService(core.repository, new FileJobStore(mkdtempSync(path.join(tmpdir(), 'modelfn-batch-stop-'))), { send: async () => {} }, {}, undefined, undefined, new FileObjectStore(root));
    put('in/long.jsonl', `${generateUserDays(600, 32).map((day, i) => JSON.stringify({ id: i, ...toFeatures(day) })).join('\n')}\n`);
    const { job } = await jobs.submitBatch('anomaly', { input: 'in/long.jsonl', output: 'out/long.jsonl' });
    let checks = 0;
    const { outcomes } = await jobs.runJobs([{ jobId: job.id }], { outOfTime: () => ++checks > 1 }); // time runs out after the first chunk
    expect(outcomes[0]).toMatchObject({
      outcome: 'failed',
      job: { status: 'failed', attempts: 1, error: 'input object "in/long.jsonl" takes longer than one run of this worker allows (stopped at line 256; nothing written): split it into smaller objects' },
    });
    expect(existsSync(path.join(root, 'out', 'long.jsonl'))).toBe(false);
    expect(readdirSync(path.join(root, 'out')).filter((name) => name.startsWith('long'))).toEqual([]);
  });

  it.each<[string, unknown, number, string]>([
    ['no body object', '[1]', 400, 'request body must be an object {"input": "<key>", "output": "<key>"}'],
    ['no input', { output: 'out/x.jsonl' }, 400, '"input" must be a non-empty object key'],
    ['an escaping input', { input: '../secret.jsonl', output: 'out/x.jsonl' }, 400, '"input" "../secret.jsonl" has a ".." path segment'],
    ['an absolute output', { input: 'in/day.jsonl', output: '/etc/x.jsonl' }, 400, '"output" "/etc/x.jsonl" has an empty path segment (a leading, doubled or trailing "/")'],
    ['a backslash', { input: 'in\\day.jsonl', output: 'out/x.jsonl' }, 400, '"input" "in\\\\day.jsonl" contains a backslash'],
    ['an input that is not records', { input: 'in/day.txt', output: 'out/x.jsonl' }, 400, '"input" "in/day.txt" must be a .jsonl, .ndjson or .csv object'],
    ['the output over the input', { input: 'in/day.jsonl', output: 'in/day.jsonl' }, 400, '"output" "in/day.jsonl" would overwrite the input'],
  ])('%s: %d naming the problem', async (_case, body, status, error) => {
    const response = await post('/v1/models/anomaly/batch', body);
    expect([response.status, response.body]).toEqual([status, { error }]);
  });

  it('404 for an unknown model, and on a server without an object store', async () => {
    expect(await post('/v1/models/nope/batch', { input: 'in/day.jsonl', output: 'out/x.jsonl' })).toMatchObject({ status: 404, body: { error: 'model "nope" not found; available: anomaly, vad' } });
    const bare = await createCore({ preload: false, metrics: false }, { jobs: { store: new FileJobStore(mkdtempSync(path.join(tmpdir(), 'modelfn-batch-bare-'))), queue: new LocalJobQueue(1) } });
    const response = await bare.http.handle({ method: 'POST', url: '/v1/models/anomaly/batch', headers: {}, body: JSON.stringify({ input: 'in/day.jsonl', output: 'out/x.jsonl' }) });
    expect([response.status, JSON.parse(response.body)]).toEqual([404, { error: 'batch jobs are not enabled on this server: it has no object store' }]);
    await bare.repository.dispose();
  });
});
