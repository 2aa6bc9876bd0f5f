/**
 * Batch on upload (adapters/aws/s3-batch.ts, `batchUpload`): S3 ObjectCreated records -> outputs in S3.
 *
 * Real: S3 is fauxqs (buildApp listened on 127.0.0.1) spoken to with the AWS SDK v3; onnxruntime with the bundled
 * anomaly model; the reference output comes from the local `modelfn batch` CLI run on the same files.
 * Not real: there is no Lambda runtime — the handler is called as the Node.js runtime calls it, with a Context
 * built by the test — and no S3 notification delivery: the event is built the way S3 sends it to Lambda (the
 * example in the Lambda Developer Guide, "Using AWS Lambda with Amazon S3", with this object's key, size and
 * ETag). No Step Functions endpoint the SDK can reach runs here, so StartExecution goes to a small node:http fake
 * of that one API on 127.0.0.1 (it records the request, and answers ExecutionAlreadyExists to a name it has seen).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Context } from 'aws-lambda';
import { Upload } from '@aws-sdk/lib-storage';
import { buildApp } from 'fauxqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';
import { lambdaContext } from './support/aws-events.ts';
import { REPO_ROOT } from './support/server-process.ts';

const BUCKET = 'modelfn-batch-upload-test';
const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:modelfn-test-batch';

type UploadModule = typeof import('../adapters/aws/s3-batch.ts');
let upload: UploadModule;
let fauxqs: ReturnType<typeof buildApp>;
let s3: S3Client;
let dir: string;

/** The fake StartExecution API: what it was sent, and the names it has seen. */
interface StartRequest {
  target: string | undefined;
  body: { stateMachineArn: string; name: string; input: string };
}
const startRequests: StartRequest[] = [];
let sfnFake: Server;

async function readBody(request: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of request) text += chunk;
  return text;
}

beforeAll(async () => {
  fauxqs = buildApp({ logger: false });
  await fauxqs.listen({ port: 0, host: '127.0.0.1' });
  const s3Port = (fauxqs.server.address() as AddressInfo).port;

  sfnFake = createServer(async (request, response) => {
    const body = JSON.parse(await readBody(request)) as StartRequest['body'];
    const seen = startRequests.some((earlier) => earlier.body.name === body.name);
    startRequests.push({ target: request.headers['x-amz-target'] as string | undefined, body });
    response.setHeader('content-type', 'application/x-amz-json-1.0');
    if (seen) {
      response.statusCode = 400;
      response.end(JSON.stringify({ __type: 'com.amazonaws.states#ExecutionAlreadyExists', message: `Execution Already Exists: '${body.name}'` }));
      return;
    }
    response.end(JSON.stringify({ executionArn: `${body.stateMachineArn.replace(':stateMachine:', ':execution:')}:${body.name}`, startDate: 1_764_000_000 }));
  });
  await new Promise<void>((resolve) => sfnFake.listen(0, '127.0.0.1', resolve));

  Object.assign(process.env, {
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL: `http://127.0.0.1:${s3Port}`,
    AWS_ENDPOINT_URL_SFN: `http://127.0.0.1:${(sfnFake.address() as AddressInfo).port}`,
    MODELFN_S3_FORCE_PATH_STYLE: '1',
    MODELFN_BATCH_STATE_MACHINE_ARN: STATE_MACHINE_ARN,
  });
  delete process.env.MODELFN_PRELOAD;
  s3 = new S3Client({ forcePathStyle: true, endpoint: process.env.AWS_ENDPOINT_URL });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  upload = await import('../adapters/aws/s3-batch.ts');
  dir = mkdtempSync(path.join(os.tmpdir(), 'modelfn-aws-batch-'));
});

afterAll(async () => {
  const { container } = await import('../adapters/aws/environment.ts');
  await container.current?.repository.dispose();
  (await import('../adapters/aws/clients.ts')).resetClientsForTests();
  s3?.destroy();
  await fauxqs?.close();
  await new Promise((resolve) => sfnFake?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  // The defaults, unless a test says otherwise.
  process.env.MODELFN_BATCH_BUCKET = BUCKET;
  delete process.env.MODELFN_BATCH_INLINE_MAX_BYTES;
  delete process.env.MODELFN_BATCH_CHUNK_RECORDS;
  delete process.env.MODELFN_BATCH_TIME_MARGIN_MS;
});

// ---- helpers ----

/** The key as S3 writes it into an event: URL-encoded, `+` for a space (slashes left as they are). */
const encodeKey = (key: string) => encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/');

/** An S3 event record as S3 delivers it to Lambda (Lambda Developer Guide example), for an object in fauxqs. */
async function s3Record(key: string, options: { encodedKey?: string; eventName?: string; bucket?: string } = {}) {
  const bucket = options.bucket ?? BUCKET;
  let size = 0;
  let eTag = '0123456789abcdef0123456789abcdef';
  if (!options.eventName?.startsWith('ObjectRemoved')) {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
    if (head) {
      size = head.ContentLength!;
      eTag = head.ETag!.replace(/"/g, '');
    }
  }
  return {
    eventVersion: '2.0',
    eventSource: 'aws:s3',
    awsRegion: 'us-east-1',
    eventTime: '1970-01-01T00:00:00.000Z',
    eventName: options.eventName ?? 'ObjectCreated:Put',
    userIdentity: { principalId: 'EXAMPLE' },
    requestParameters: { sourceIPAddress: '127.0.0.1' },
    responseElements: { 'x-amz-request-id': 'EXAMPLE123456789', 'x-amz-id-2': 'EXAMPLE123/5678abcdefghijklambdaisawesome/mnopqrstuvwxyzABCDEFGH' },
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'testConfigRule',
      bucket: { name: bucket, ownerIdentity: { principalId: 'EXAMPLE' }, arn: `arn:aws:s3:::${bucket}` },
      object: { key: options.encodedKey ?? encodeKey(key), size, eTag, sequencer: '0A1B2C3D4E5F678901' },
    },
  };
}

const put = (key: string, body: string) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));

async function text(key: string): Promise<string | undefined> {
  try {
    const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return await object.Body!.transformToString();
  } catch (error) {
    if ((error as Error).name === 'NoSuchKey') return undefined;
    throw error;
  }
}

async function keysUnder(prefix: string): Promise<string[]> {
  const listing = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listing.Contents ?? []).map((object) => object.Key!).sort();
}

const invoke = (event: unknown, context: Context = lambdaContext({ functionName: 'modelfn-batchUpload' })) =>
  upload.handler(event, context as never) as Promise<import('../adapters/aws/s3-batch.ts').S3BatchResult>;

/** The same file through `modelfn batch` (one worker): its output and errors files, as text. */
async function cliBatch(name: string, content: string): Promise<{ output: string; errors: string }> {
  const input = path.join(dir, name);
  const output = path.join(dir, `${name}.out.jsonl`);
  writeFileSync(input, content);
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'batch', 'anomaly', '--input', input, '--output', output, '--workers', '1'], {
      cwd: REPO_ROOT,
      env: { ...process.env, VITEST: '' },
      stdio: 'ignore',
    });
    child.once('exit', resolve);
  });
  expect(code).toBe(2); // some records failed: the files carry bad lines on purpose
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  return { output: read(output), errors: read(`${output}.errors.jsonl`) };
}

const rows = (count: number, seed: number) => generateUserDays(count, seed).map((day, i) => ({ id: `u${seed}-${i + 1}`, ...toFeatures(day) }));

/** 40 records, four of them bad in the ways users get wrong, one blank line, one without an id. */
function mixedJsonl(): string {
  const lines = rows(40, 7).map((row) => JSON.stringify(row));
  lines[4] = lines[4]!.slice(0, 30); // cut off mid-record
  const { failed_logins: _missing, ...rest } = JSON.parse(lines[11]!) as Record<string, unknown>;
  lines[11] = JSON.stringify(rest);
  lines[20] = JSON.stringify({ ...(JSON.parse(lines[20]!) as object), logins: 'many' });
  lines[27] = '';
  lines[33] = JSON.stringify({ ...(JSON.parse(lines[33]!) as object), id: { nested: true } });
  const { id: _id, ...anonymous } = JSON.parse(lines[35]!) as Record<string, unknown>;
  lines[35] = JSON.stringify(anonymous);
  return `${lines.join('\n')}\n`;
}

function mixedCsv(): string {
  const data = rows(30, 8);
  const header = Object.keys(data[0]!);
  const lines = [header.join(','), ...data.map((row) => header.map((name) => row[name as keyof typeof row]).join(','))];
  lines[3] = lines[3]!.split(',').slice(0, 5).join(','); // too few fields
  lines[9] = lines[9]!.replace(/,[^,]*$/, ',lots'); // a number that is not one
  return `${lines.join('\n')}\n`;
}

// ---- tests ----

describe('batchUpload: scoring an uploaded file', () => {
  it('streams a JSONL file into output/<model>/<path>.jsonl and its bad lines into .errors.jsonl, exactly as `modelfn batch` does', async () => {
    const content = mixedJsonl();
    const key = 'input/anomaly/2026/11/activity.jsonl';
    await put(key, content);
    const result = await invoke({ Records: [await s3Record(key)] });

    expect(result.files).toEqual([
      { key, status: 'scored', records: 39, succeeded: 35, failed: 4, results: 'output/anomaly/2026/11/activity.jsonl', errors: 'output/anomaly/2026/11/activity.errors.jsonl' },
    ]);
    const reference = await cliBatch('activity.jsonl', content);
    expect(await text('output/anomaly/2026/11/activity.jsonl')).toBe(reference.output);
    expect(await text('output/anomaly/2026/11/activity.errors.jsonl')).toBe(reference.errors);
    // What the errors say, line by line (so the comparison above is not two empty files agreeing).
    const errors = reference.errors.trim().split('\n').map((line) => JSON.parse(line) as { line: number; error: string });
    expect(errors.map((error) => error.line)).toEqual([5, 12, 21, 34]);
    expect(errors[0]!.error).toMatch(/^line 5 is not valid JSON: /);
    expect(errors[1]!.error).toBe('line 12 is missing required property "failed_logins"');
    expect(errors[2]!.error).toBe('line 21.logins must be number');
    expect(errors[3]!.error).toBe('line 34: id field "id" must be a string or a number, got {"nested":true}');
    const output = (await text('output/anomaly/2026/11/activity.jsonl'))!.trim().split('\n').map((line) => JSON.parse(line) as { id: unknown; line: number; prediction: { score: number } });
    expect(output).toHaveLength(35);
    expect(output.find((record) => record.line === 36)?.id).toBe(36); // no id field: named by its line
    expect(output.every((record) => typeof record.prediction.score === 'number')).toBe(true);
    // The results object names the input version it came from (the state machine's PlanFile reads it).
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'output/anomaly/2026/11/activity.jsonl' }));
    expect(head.Metadata?.['source-etag']).toBe((await s3Record(key)).s3.object.eTag);
  });

  it('reads a CSV file with a header the same way, and decodes the key as S3 encodes it (+ for a space)', async () => {
    const content = mixedCsv();
    const key = 'input/anomaly/daily runs/day 1.csv';
    await put(key, content);
    const record = await s3Record(key);
    expect(record.s3.object.key).toBe('input/anomaly/daily+runs/day+1.csv');
    const result = await invoke({ Records: [record] });

    expect(result.files).toEqual([
      { key, status: 'scored', records: 30, succeeded: 28, failed: 2, results: 'output/anomaly/daily runs/day 1.jsonl', errors: 'output/anomaly/daily runs/day 1.errors.jsonl' },
    ]);
    const reference = await cliBatch('day1.csv', content);
    expect(await text('output/anomaly/daily runs/day 1.jsonl')).toBe(reference.output);
    expect(await text('output/anomaly/daily runs/day 1.errors.jsonl')).toBe(reference.errors);
    expect(reference.errors).toContain('"line":4,');
    expect(reference.errors).toContain('line 4 has 5 fields, the header has 12');
  });

  it('writes outputs bigger than one multipart part as a multipart upload, every record in order', async () => {
    process.env.MODELFN_BATCH_CHUNK_RECORDS = '1024';
    // ~70,000 records: about 6 MB of results, more than one 5 MB part.
    const records = rows(7000, 11);
    const lines: string[] = [];
    for (let copy = 0; copy < 10; copy++) for (const record of records) lines.push(JSON.stringify({ ...record, id: `${record.id}-${copy}` }));
    const key = 'input/anomaly/large.jsonl';
    // ~20 MB: over fauxqs's single PUT body limit, so uploaded in parts as the AWS CLI would.
    await new Upload({ client: s3, params: { Bucket: BUCKET, Key: key, Body: `${lines.join('\n')}\n` } }).done();
    const result = await invoke({ Records: [await s3Record(key)] });
    expect(result.files[0]).toMatchObject({ status: 'scored', records: 70_000, succeeded: 70_000, failed: 0 });
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'output/anomaly/large.jsonl' }));
    expect(head.ContentLength).toBeGreaterThan(5 * 1024 * 1024);
    expect(head.ETag).toMatch(/-2"$/); // S3's mark of an object assembled from 2 parts
    const output = (await text('output/anomaly/large.jsonl'))!.trimEnd().split('\n');
    expect(output).toHaveLength(70_000);
    expect(output.map((line) => (JSON.parse(line) as { line: number }).line)).toEqual(lines.map((_, index) => index + 1));
  });

  it('leaves no errors object when every record is good, and removes the one an earlier version of the file left', async () => {
    const key = 'input/anomaly/rerun.jsonl';
    await put(key, mixedJsonl());
    await invoke({ Records: [await s3Record(key)] });
    expect(await text('output/anomaly/rerun.errors.jsonl')).toBeDefined();

    await put(key, `${rows(5, 9).map((row) => JSON.stringify(row)).join('\n')}\n`);
    const result = await invoke({ Records: [await s3Record(key)] });
    expect(result.files[0]).toMatchObject({ status: 'scored', records: 5, succeeded: 5, failed: 0 });
    expect(result.files[0]!.errors).toBeUndefined();
    expect(await text('output/anomaly/rerun.errors.jsonl')).toBeUndefined();
    expect((await text('output/anomaly/rerun.jsonl'))!.trim().split('\n')).toHaveLength(5);
  });
});

describe('batchUpload: keys and models it will not score', () => {
  it('refuses keys that could escape the output prefix or collide with outputs, naming the reason, writing nothing', async () => {
    const cases: [string, RegExp][] = [
      ['input/anomaly/../../etc/x.jsonl', /has a "\.\." path segment/],
      ['input/anomaly/./x.jsonl', /has a "\." path segment/],
      ['input/anomaly//x.jsonl', /has an empty path segment/],
      ['input//x.jsonl', /has an empty path segment/],
      ['input/anomaly/a\\b.jsonl', /contains a backslash/],
      ['input/anomaly/bell\u0007.jsonl', /contains a control character/],
      ['input/anomaly/new\nline.jsonl', /contains a control character/],
      ['input/x.jsonl', /has no model folder/],
      ['input/anomaly/notes.txt', /is not a \.jsonl, \.ndjson or \.csv file/],
      ['input/anomaly/day.parts/x.jsonl', /reserved for the part files/],
      ['input/anomaly/day.errors.jsonl', /reserved for errors files/],
      ['elsewhere/anomaly/x.jsonl', /is not under the input prefix "input\/"/],
    ];
    const before = await keysUnder('output/');
    const records = await Promise.all(cases.map(([key]) => s3Record(key)));
    const result = await invoke({ Records: records });
    expect(result.files).toHaveLength(cases.length);
    for (const [index, [key, reason]] of cases.entries()) {
      expect(result.files[index]!.status, key).toBe('rejected');
      expect(result.files[index]!.reason, key).toMatch(reason);
    }
    expect(await keysUnder('output/')).toEqual(before);
  });

  it('refuses a %-encoded key that does not decode, and a record from another bucket than MODELFN_BATCH_BUCKET', async () => {
    const bad = await s3Record('input/anomaly/x.jsonl', { encodedKey: 'input/anomaly/%E0%A4%A.jsonl' });
    const otherBucket = await s3Record('input/anomaly/x.jsonl', { bucket: 'someone-elses-bucket' });
    const result = await invoke({ Records: [bad, otherBucket] });
    expect(result.files).toEqual([
      { key: 'input/anomaly/%E0%A4%A.jsonl', status: 'rejected', reason: 'object key "input/anomaly/%E0%A4%A.jsonl" is not valid URL encoding' },
      { key: 'input/anomaly/x.jsonl', status: 'rejected', reason: 'bucket "someone-elses-bucket" is not the batch bucket "modelfn-batch-upload-test" (MODELFN_BATCH_BUCKET)' },
    ]);
  });

  it('writes an unknown model as an error object in the errors file, and goes on with the other records', async () => {
    await put('input/nosuchmodel/a.jsonl', mixedJsonl());
    await put('input/anomaly/after-unknown.jsonl', `${JSON.stringify(rows(1, 3)[0])}\n`);
    const result = await invoke({ Records: [await s3Record('input/nosuchmodel/a.jsonl'), await s3Record('input/anomaly/after-unknown.jsonl')] });
    expect(result.files[0]).toEqual({
      key: 'input/nosuchmodel/a.jsonl',
      status: 'rejected',
      reason: 'model "nosuchmodel" not found; available: anomaly, vad',
      errors: 'output/nosuchmodel/a.errors.jsonl',
    });
    expect(await text('output/nosuchmodel/a.errors.jsonl')).toBe('{"error":"input/nosuchmodel/a.jsonl: model \\"nosuchmodel\\" not found; available: anomaly, vad"}\n');
    expect(await text('output/nosuchmodel/a.jsonl')).toBeUndefined();
    expect(result.files[1]).toMatchObject({ status: 'scored', succeeded: 1 });
  });
});

describe('batchUpload: a file that cannot be read to the end', () => {
  it('reports CSV it cannot parse further as a file error, with no partial results left behind', async () => {
    const data = rows(3, 12);
    const header = Object.keys(data[0]!);
    const body = `${header.join(',')}\n${data.map((row) => header.map((name) => row[name as keyof typeof row]).join(',')).join('\n')}\n"u9,1,2\n`;
    await put('input/anomaly/broken.csv', body);
    const result = await invoke({ Records: [await s3Record('input/anomaly/broken.csv')] });
    expect(result.files[0]).toMatchObject({ status: 'rejected', reason: expect.stringMatching(/^CSV: Quote Not Closed/), errors: 'output/anomaly/broken.errors.jsonl' });
    const [error] = (await text('output/anomaly/broken.errors.jsonl'))!.trim().split('\n').map((line) => JSON.parse(line) as { error: string });
    expect(error!.error).toBe('input/anomaly/broken.csv: CSV: Quote Not Closed: the parsing is finished with an opening quote at line 5; no results written');
    expect(await text('output/anomaly/broken.jsonl')).toBeUndefined();
  });
});

describe('batchUpload: files too big for one invocation go to the state machine', () => {
  it('starts the batch state machine with the file, named by key and ETag; a redelivered event starts nothing', async () => {
    process.env.MODELFN_BATCH_INLINE_MAX_BYTES = '1000';
    const key = 'input/anomaly/big day.jsonl';
    await put(key, mixedJsonl());
    const record = await s3Record(key);
    startRequests.length = 0;
    const { executionName } = await import('../adapters/aws/batch/keys.ts');
    const name = executionName(key, record.s3.object.eTag);

    const first = await invoke({ Records: [record] });
    expect(first.files).toEqual([
      {
        key,
        status: 'handed-off',
        reason: `${record.s3.object.size} bytes is over MODELFN_BATCH_INLINE_MAX_BYTES (1000)`,
        execution: `arn:aws:states:us-east-1:123456789012:execution:modelfn-test-batch:${name}`,
      },
    ]);
    expect(startRequests).toHaveLength(1);
    expect(startRequests[0]!.target).toBe('AWSStepFunctions.StartExecution');
    expect(startRequests[0]!.body.stateMachineArn).toBe(STATE_MACHINE_ARN);
    expect(startRequests[0]!.body.name).toMatch(/^[0-9a-f]{64}$/);
    expect(startRequests[0]!.body.name).toBe(name);
    expect(JSON.parse(startRequests[0]!.body.input)).toEqual({
      bucket: BUCKET,
      key,
      etag: record.s3.object.eTag,
      model: 'anomaly',
      format: 'jsonl',
      partsPrefix: 'output/anomaly/big day.parts/',
    });
    expect(await text('output/anomaly/big day.jsonl')).toBeUndefined();

    const again = await invoke({ Records: [record] });
    expect(again.files[0]).toEqual({ key, status: 'already-started', reason: `execution ${name} exists (a redelivered event)` });
    expect(startRequests).toHaveLength(2); // asked, and told it exists
  });

  it('stops before the invocation runs out of time: aborts the half-written outputs and hands the file off', async () => {
    process.env.MODELFN_BATCH_CHUNK_RECORDS = '10';
    process.env.MODELFN_BATCH_TIME_MARGIN_MS = '5000';
    const key = 'input/anomaly/slow.jsonl';
    await put(key, mixedJsonl());
    startRequests.length = 0;
    // Plenty of time until the first chunk's results are on their way, then less than the margin.
    let scoredSome = false;
    const context = lambdaContext({ getRemainingTimeInMillis: () => (scoredSome ? 4_000 : 60_000) });
    const { S3TextWriter } = await import('../adapters/aws/batch/s3-io.ts');
    const write = S3TextWriter.prototype.write;
    S3TextWriter.prototype.write = function (this: InstanceType<typeof S3TextWriter>, text: string) {
      scoredSome = true;
      return write.call(this, text);
    };
    let result;
    try {
      result = await invoke({ Records: [await s3Record(key)] }, context);
    } finally {
      S3TextWriter.prototype.write = write;
    }
    expect(result.files[0]).toMatchObject({ key, status: 'handed-off', reason: 'out of time after line 10' });
    expect(startRequests.map((request) => JSON.parse(request.body.input).key)).toEqual([key]);
    // Nothing half-done is left: the multipart uploads were aborted.
    expect(await text('output/anomaly/slow.jsonl')).toBeUndefined();
    expect(await text('output/anomaly/slow.errors.jsonl')).toBeUndefined();
  });

  it('without MODELFN_BATCH_STATE_MACHINE_ARN, says so in the errors file instead', async () => {
    process.env.MODELFN_BATCH_INLINE_MAX_BYTES = '10';
    const saved = process.env.MODELFN_BATCH_STATE_MACHINE_ARN;
    delete process.env.MODELFN_BATCH_STATE_MACHINE_ARN;
    try {
      await put('input/anomaly/nowhere.jsonl', mixedJsonl());
      const result = await invoke({ Records: [await s3Record('input/anomaly/nowhere.jsonl')] });
      expect(result.files[0]!.status).toBe('rejected');
      expect(await text('output/anomaly/nowhere.errors.jsonl')).toMatch(/over MODELFN_BATCH_INLINE_MAX_BYTES \(10\), and MODELFN_BATCH_STATE_MACHINE_ARN is not set/);
    } finally {
      process.env.MODELFN_BATCH_STATE_MACHINE_ARN = saved;
    }
  });
});

describe('batchUpload: malformed events', () => {
  it('fails an event that is not an S3 notification with a message naming what came', async () => {
    await expect(invoke({ httpMethod: 'GET', path: '/' })).rejects.toThrow('unsupported event: expected an S3 event notification with a "Records" array, got keys [httpMethod,path]');
    await expect(invoke({})).rejects.toThrow('unsupported event: expected an S3 event notification with a "Records" array, got keys []');
    await expect(invoke(null)).rejects.toThrow('unsupported event: expected an S3 event notification ({"Records": [...]}), got null');
    await expect(invoke({ Records: 'all of them' })).rejects.toMatchObject({ name: 'MalformedS3EventError' });
  });

  it('reports a record without a key, one not from S3 and a deletion, and still scores the good record beside them', async () => {
    await put('input/anomaly/beside-bad.jsonl', `${JSON.stringify(rows(1, 4)[0])}\n`);
    const good = await s3Record('input/anomaly/beside-bad.jsonl');
    const noKey = structuredClone(good) as { s3: { object: Record<string, unknown> } };
    delete noKey.s3.object.key;
    const sqsRecord = { eventSource: 'aws:sqs', body: '{}' };
    const removed = await s3Record('input/anomaly/gone.jsonl', { eventName: 'ObjectRemoved:Delete' });
    const result = await invoke({ Records: [noKey, 'not a record', sqsRecord, removed, good] });
    expect(result.files).toEqual([
      { status: 'rejected', reason: 'Records[0].s3.object.key is missing' },
      { status: 'rejected', reason: 'Records[1] is not an object' },
      { status: 'rejected', reason: 'Records[2].eventSource is "aws:sqs", expected "aws:s3"' },
      { key: 'input/anomaly/gone.jsonl', status: 'ignored', reason: 'Records[3].eventName is "ObjectRemoved:Delete", not an ObjectCreated event' },
      expect.objectContaining({ key: 'input/anomaly/beside-bad.jsonl', status: 'scored', succeeded: 1 }),
    ]);
  });

  it('fails the invocation (so Lambda retries the event) when a record fails for a reason that may pass, after scoring the others', async () => {
    await put('input/anomaly/fine.jsonl', `${JSON.stringify(rows(1, 5)[0])}\n`);
    const fine = await s3Record('input/anomaly/fine.jsonl');
    const missing = await s3Record('input/anomaly/not-there-yet.jsonl');
    await expect(invoke({ Records: [missing, fine] })).rejects.toMatchObject({
      name: 'BatchUploadRetryError',
      message: expect.stringMatching(/^1 of 2 uploads failed and will be retried with the event: input\/anomaly\/not-there-yet\.jsonl: /),
    });
    expect(await text('output/anomaly/fine.jsonl')).toMatch(/^\{"id":"u5-1","line":1,"prediction":\{/);
  });

  it('answers a warm-up ping without touching S3', async () => {
    expect(await invoke({ source: 'serverless-plugin-warmup' })).toEqual({ warm: true, cold: false });
  });
});
