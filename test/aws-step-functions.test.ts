/**
 * The `batch` state machine (adapters/aws/state-machines/batch.yml) and its Task, batchChunk (adapters/aws/batch-chunk.ts).
 *
 * Real: every definition in adapters/aws/state-machines/ through asl-validator; the definition executed by
 * aws-local-stepfunctions (Choice routing, the per-file and per-prefix Maps, ItemSelector, the chunk loop, Retry and
 * Catch, States.Hash/States.Format) with the real batchChunk handler as every Lambda Task; onnxruntime with the
 * anomaly model; fauxqs S3 (127.0.0.1) for inputs and part files, through the AWS SDK v3.
 * Not real, because aws-local-stepfunctions has no S3 ItemReader, ItemBatcher or ResultWriter: each Distributed Map
 * gets `ItemsPath` instead, fed by a Task the test inserts in front of it that does what the real ItemReader and
 * ItemBatcher would (reads the object from fauxqs: JSONL lines, CSV rows under a header, or the ListObjectsV2 listing;
 * groups items by the definition's own MaxItemsPerBatch / MaxInputBytesPerBatch); the definition's ItemSelector and
 * BatchInput templates are evaluated by aws-local-stepfunctions itself. Everything else is the definition as
 * deployed, with sample ARNs in place of the CloudFormation references. Lambda's `lambda:invoke` integration is
 * stood in for by calling the handler as the Node.js runtime does and wrapping its answer in `{Payload}`; the
 * `states:startExecution` Task (a prefix run starting file runs) is recorded, and its inputs are run next.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { StateMachine } from 'aws-local-stepfunctions';
import { parse as parseCsv } from 'csv-parse/sync';
import { buildApp } from 'fauxqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { configFromEnv, createCore, type Core } from '../handlers/index.ts';
import { generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';
import { lambdaContext } from './support/aws-events.ts';
import { parseJsonLines, type ErrorLine, type OutputLine } from './support/batch-output.ts';

// aws-local-stepfunctions 3 uses Promise.withResolvers (Node 22); Node 20 lacks it.
const promiseStatics = Promise as unknown as { withResolvers?: <T>() => { promise: Promise<T>; resolve: (value: T) => void; reject: (reason: unknown) => void } };
promiseStatics.withResolvers ??= <T>() => {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((yes, no) => ((resolve = yes), (reject = no)));
  return { promise, resolve, reject };
};

// asl-validator ships no type declarations: its documented call, typed here.
const validator = createRequire(import.meta.url)('asl-validator') as (definition: unknown) => { isValid: boolean; errorsText: (separator?: string) => string };

const MACHINES_DIR = new URL('../adapters/aws/state-machines/', import.meta.url);
const BUCKET = 'modelfn-batch-sfn-test';
const ACCOUNT = '123456789012';
const REGION = 'us-east-1';
const SERVICE = 'modelfn';
const STAGE = 'test';
const STATE_MACHINE_ARN = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${SERVICE}-${STAGE}-batch`;
const functionArn = (name: string) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${SERVICE}-${STAGE}-${name}`;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Definition = { StartAt: string; States: Record<string, Record<string, unknown>> } & Record<string, unknown>;

// ---- the definitions as CloudFormation would see them ----

/** serverless variables and CloudFormation references -> the values they take in a deployed `test` stage. */
function resolveDeployed(value: unknown): unknown {
  if (typeof value === 'string') {
    return value
      .replaceAll('${self:custom.batchStateMachineName}', `${SERVICE}-${STAGE}-batch`)
      .replaceAll('${self:custom.batchInputPrefix}', 'input/')
      .replaceAll('${self:custom.batchOutputPrefix}', 'output/')
      .replaceAll('${self:service}', SERVICE)
      .replaceAll('${sls:stage}', STAGE)
      .replaceAll('${AWS::Partition}', 'aws')
      .replaceAll('${AWS::Region}', REGION)
      .replaceAll('${AWS::AccountId}', ACCOUNT)
      .replaceAll('#{AWS::Region}', REGION)
      .replaceAll('#{AWS::AccountId}', ACCOUNT);
  }
  if (Array.isArray(value)) return value.map(resolveDeployed);
  if (value === null || typeof value !== 'object') return value;
  const object = value as Record<string, unknown>;
  if ('Ref' in object) {
    if (object.Ref === 'BatchBucket') return BUCKET;
    throw new Error(`no sample value for Ref ${JSON.stringify(object.Ref)}: add one to the test`);
  }
  if ('Fn::GetAtt' in object) {
    const [resource, attribute] = object['Fn::GetAtt'] as [string, string];
    if (attribute !== 'Arn') throw new Error(`no sample value for Fn::GetAtt ${resource}.${attribute}`);
    return functionArn(resource);
  }
  if ('Fn::Sub' in object) {
    const sub = object['Fn::Sub'];
    if (typeof sub !== 'string') throw new Error('Fn::Sub with variables: add it to the test');
    return resolveDeployed(sub);
  }
  return Object.fromEntries(Object.entries(object).map(([key, inner]) => [key, resolveDeployed(inner)]));
}

interface MachineFile {
  file: string;
  block: Record<string, unknown>;
  definition: Definition;
}

function machineFiles(): MachineFile[] {
  return readdirSync(MACHINES_DIR)
    .filter((file) => /\.ya?ml$/.test(file))
    .map((file) => {
      const block = parseYaml(readFileSync(new URL(file, MACHINES_DIR), 'utf8'), { merge: true }) as Record<string, unknown>;
      return { file, block, definition: resolveDeployed(block.definition) as Definition };
    });
}

const batchMachine = () => machineFiles().find((machine) => machine.file === 'batch.yml')!;

// ---- the definition made runnable by aws-local-stepfunctions ----

/** Every state of a definition, nested Map processors included, with the States object holding it. */
function* allStates(definition: { States: Record<string, Record<string, unknown>> }): Generator<[string, Record<string, unknown>, Record<string, Record<string, unknown>>]> {
  for (const [name, state] of Object.entries(definition.States)) {
    yield [name, state, definition.States];
    const processor = (state.ItemProcessor ?? state.Iterator) as Definition | undefined;
    if (processor) yield* allStates(processor);
  }
}

const feederName = (mapName: string) => `${mapName}ReadItems`;

/**
 * The definition with each Distributed Map fed through ItemsPath by a Task in front of it (see the file comment).
 * Returns it and, per Map, the real reader settings the feeder acts out.
 */
function runnable(definition: Definition): { definition: Definition; maps: Map<string, Record<string, unknown>> } {
  const copy = structuredClone(definition);
  const maps = new Map<string, Record<string, unknown>>();
  for (const [name, state, states] of [...allStates(copy)]) {
    if (state.Type !== 'Map' || !state.ItemReader) continue;
    maps.set(name, structuredClone(state));
    const feeder = feederName(name);
    for (const [, other] of allStates(copy)) {
      if (other.Next === name) other.Next = feeder;
      if (other.Default === name) other.Default = feeder;
      for (const choice of (other.Choices as { Next: string }[] | undefined) ?? []) if (choice.Next === name) choice.Next = feeder;
      for (const catcher of (other.Catch as { Next: string }[] | undefined) ?? []) if (catcher.Next === name) catcher.Next = feeder;
    }
    states[feeder] = { Type: 'Task', Resource: functionArn('local-item-reader'), ResultPath: '$.localItems', Next: name };
    state.ItemsPath = '$.localItems';
    // Batches arrive already shaped {Items, BatchInput}; an unbatched Map keeps its real ItemSelector.
    if (state.ItemBatcher) delete state.ItemSelector;
    // A Distributed Map with a ResultWriter outputs {MapRunArn, ResultWriterDetails}; here it outputs the array.
    delete state.ResultSelector;
    for (const field of ['ItemReader', 'ItemBatcher', 'ResultWriter', 'ToleratedFailurePercentage']) delete state[field];
  }
  return { definition: copy, maps };
}

/** A payload template evaluated by aws-local-stepfunctions itself (a Pass state's Parameters). */
async function evaluate(template: unknown, input: unknown): Promise<Json> {
  const machine = new StateMachine({ StartAt: 'Evaluate', States: { Evaluate: { Type: 'Pass', Parameters: template, End: true } } } as never);
  return (await machine.run(input as never).result) as Json;
}

/** The Map's ItemSelector applied to raw items by aws-local-stepfunctions (an inline Map over them). */
async function selectItems(itemSelector: unknown, mapInput: Record<string, unknown>, raw: Json[]): Promise<Json[]> {
  const machine = new StateMachine({
    StartAt: 'Select',
    States: { Select: { Type: 'Map', ItemsPath: '$.__items', ItemSelector: itemSelector, ItemProcessor: { StartAt: 'Keep', States: { Keep: { Type: 'Pass', End: true } } }, End: true } },
  } as never);
  return (await machine.run({ ...mapInput, __items: raw } as never).result) as Json[];
}

const valueAt = (input: Record<string, unknown>, path: string) => path.slice(2).split('.').reduce<unknown>((at, key) => (at as Record<string, unknown>)[key], input);

/** What the real ItemReader (and ItemBatcher) of `map` would hand the Map, for this input. */
async function readItems(map: Record<string, unknown>, input: Record<string, unknown>): Promise<Json[]> {
  const reader = map.ItemReader as { Resource: string; ReaderConfig?: { InputType: string; CSVHeaderLocation?: string }; Parameters: Record<string, string> };
  const bucket = reader.Parameters.Bucket ?? (valueAt(input, reader.Parameters['Bucket.$']!) as string);
  let raw: Json[];
  if (reader.Resource === 'arn:aws:states:::s3:listObjectsV2') {
    const prefix = reader.Parameters.Prefix ?? (valueAt(input, reader.Parameters['Prefix.$']!) as string);
    const listing = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    // Step Functions' listing items: the ETag in quotes, as S3's ListObjectsV2 gives it (fauxqs 1.9 lists it
    // without them; HeadObject has them), field name "Etag".
    raw = (listing.Contents ?? []).map((object) => ({ Etag: `"${object.ETag!.replace(/"/g, '')}"`, Key: object.Key!, LastModified: Math.floor(object.LastModified!.getTime() / 1000), Size: object.Size!, StorageClass: 'STANDARD' }));
  } else {
    expect(reader.Resource).toBe('arn:aws:states:::s3:getObject');
    const key = reader.Parameters.Key ?? (valueAt(input, reader.Parameters['Key.$']!) as string);
    const text = await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString();
    if (reader.ReaderConfig!.InputType === 'JSONL') raw = text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Json);
    else {
      expect(reader.ReaderConfig).toEqual({ InputType: 'CSV', CSVHeaderLocation: 'FIRST_ROW' });
      raw = parseCsv(text, { columns: true }) as Json[];
    }
  }
  const batcher = map.ItemBatcher as { MaxItemsPerBatch: number; MaxInputBytesPerBatch: number; BatchInput: unknown } | undefined;
  if (!batcher) return raw;
  const items = await selectItems(map.ItemSelector, input, raw);
  const batchInput = await evaluate(batcher.BatchInput, input);
  const batches: Json[] = [];
  let current: Json[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = Buffer.byteLength(JSON.stringify(item));
    if (current.length > 0 && (current.length >= batcher.MaxItemsPerBatch || bytes + size > batcher.MaxInputBytesPerBatch)) {
      batches.push({ Items: current, BatchInput: batchInput });
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) batches.push({ Items: current, BatchInput: batchInput });
  return batches;
}

// ---- the run ----

type ChunkModule = typeof import('../adapters/aws/batch-chunk.ts');
let chunk: ChunkModule;
let fauxqs: ReturnType<typeof buildApp>;
let s3: S3Client;
let reference: Core;

interface RunLog {
  /** Every batchChunk invocation: the state that made it and the event. */
  invocations: { state: string; event: Record<string, unknown> }[];
  /** Every StartExecution a prefix run made. */
  started: { StateMachineArn: string; Name: string; Input: Record<string, unknown> }[];
}

interface RunOptions {
  /** What batchChunk's context says is left of its invocation (default 60 s). */
  remainingMs?: number;
  /** Execution names already taken (StartExecution answers ExecutionAlreadyExists). */
  taken?: Set<string>;
}

async function runMachine(input: unknown, options: RunOptions = {}): Promise<{ output: Json; log: RunLog }> {
  const { definition, maps } = runnable(batchMachine().definition);
  const log: RunLog = { invocations: [], started: [] };
  const handlers: Record<string, (input: never) => Promise<unknown>> = {};
  for (const [name, state] of allStates(definition)) {
    if (state.Type !== 'Task') continue;
    if (state.Resource === functionArn('local-item-reader')) {
      const mapName = name.slice(0, -'ReadItems'.length);
      handlers[name] = (stateInput) => readItems(maps.get(mapName)!, stateInput as Record<string, unknown>);
    } else if (state.Resource === 'arn:aws:states:::lambda:invoke') {
      expect((state.Parameters as { FunctionName: string }).FunctionName).toBe(functionArn('batchChunk'));
      handlers[name] = async (parameters) => {
        const { Payload } = parameters as { Payload: Record<string, unknown> };
        log.invocations.push({ state: name, event: Payload });
        const context = lambdaContext({ functionName: `${SERVICE}-${STAGE}-batchChunk`, getRemainingTimeInMillis: () => options.remainingMs ?? 60_000 });
        // lambda:invoke hands back the function's answer as Payload (a function error fails the Task with its errorType).
        return { ExecutedVersion: '$LATEST', Payload: await chunk.handler(JSON.parse(JSON.stringify(Payload)), context as never), StatusCode: 200 };
      };
    } else if (state.Resource === 'arn:aws:states:::states:startExecution') {
      handlers[name] = async (parameters) => {
        const request = parameters as RunLog['started'][number];
        log.started.push(request);
        if (options.taken?.has(request.Name)) {
          const error = new Error(`Execution Already Exists: '${request.Name}'`);
          error.name = 'StepFunctions.ExecutionAlreadyExistsException';
          throw error;
        }
        options.taken?.add(request.Name);
        return { ExecutionArn: `${request.StateMachineArn.replace(':stateMachine:', ':execution:')}:${request.Name}`, StartDate: '2026-11-26T02:00:00Z' };
      };
    } else throw new Error(`Task ${name} has a resource the test does not stand in for: ${String(state.Resource)}`);
  }
  const machine = new StateMachine(definition as never, { validationOptions: { checkArn: false } });
  const execution = machine.run(input as never, {
    overrides: { taskResourceLocalHandlers: handlers as never, retryIntervalOverrides: Object.fromEntries(Object.keys(handlers).map((name) => [name, 0])) },
    context: { Execution: { Id: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:run-1`, Input: input, StartTime: '2026-11-26T02:00:00Z' } } as never,
  });
  return { output: (await execution.result) as Json, log };
}

/** How the execution failed: the Fail state's (or uncaught Task's) error name and cause. */
async function runFailure(input: unknown, options: RunOptions = {}): Promise<{ error: string; cause: string }> {
  try {
    await runMachine(input, options);
  } catch (error) {
    const cause = (error as { cause?: Error }).cause;
    return { error: cause?.name ?? (error as Error).name, cause: cause?.message ?? (error as Error).message };
  }
  throw new Error('the execution succeeded');
}

// ---- S3 ----

const put = (key: string, body: string) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
const etagOf = async (key: string) => (await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }))).ETag!;

async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const listing = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(listing.Contents ?? []).map((object) => object.Key!));
    token = listing.IsTruncated ? listing.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

async function jsonLinesOf<T>(key: string): Promise<T[]> {
  const text = await (await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
  return parseJsonLines<T>(text);
}


/** Every result and error line of a fan-out run, from its part files. */
async function partsOf(partsPrefix: string): Promise<{ results: OutputLine[]; errors: ErrorLine[]; keys: string[] }> {
  const keys = await keysUnder(partsPrefix);
  const results: OutputLine[] = [];
  const errors: ErrorLine[] = [];
  for (const key of keys) {
    if (key.endsWith('.errors.jsonl')) errors.push(...(await jsonLinesOf<ErrorLine>(key)));
    else results.push(...(await jsonLinesOf<OutputLine>(key)));
  }
  return { results, errors, keys };
}

const rows = (count: number, seed: number) => generateUserDays(count, seed).map((day, i) => ({ id: `u${seed}-${i + 1}`, ...toFeatures(day) }));

/** A JSONL file of `count` records where every 97th fails validation (the JSONL reader parses each line itself). */
function jsonlWithBadRecords(count: number, seed: number): { text: string; bad: Map<number, string> } {
  const records: Record<string, unknown>[] = rows(count, seed);
  const bad = new Map<number, string>();
  for (let index = 13; index < count; index += 97) {
    const line = index + 1;
    if (bad.size % 2 === 0) {
      delete records[index]!.sessions;
      bad.set(line, `line ${line} is missing required property "sessions"`);
    } else {
      records[index]!.countries = 'several';
      bad.set(line, `line ${line}.countries must be number`);
    }
  }
  return { text: `${records.map((record) => JSON.stringify(record)).join('\n')}\n`, bad };
}

/** Each line of the input exactly once, in the results or the errors; predictions as the core makes them. */
async function expectEveryRecordOnce(partsPrefix: string, records: Record<string, unknown>[], bad: Map<number, string>, firstLine = 1): Promise<void> {
  const { results, errors } = await partsOf(partsPrefix);
  const seen = [...results.map((result) => result.line), ...errors.map((error) => error.line)].sort((a, b) => a - b);
  expect(seen).toEqual(records.map((_, index) => index + firstLine));
  expect(new Map(errors.map((error) => [error.line, error.error]))).toEqual(bad);
  const good = records.filter((_, index) => !bad.has(index + firstLine));
  const { predictions } = await reference.repository.get('anomaly').predict(good.map(({ id: _id, ...features }) => features));
  const byLine = new Map(results.map((result) => [result.line, result]));
  let k = 0;
  for (const [index, record] of records.entries()) {
    const line = index + firstLine;
    if (bad.has(line)) continue;
    const result = byLine.get(line)!;
    const expected = predictions[k++] as OutputLine['prediction'];
    expect(result.id).toBe(record.id);
    expect(result.prediction.anomaly).toBe(expected.anomaly);
    expect(result.prediction.score).toBeCloseTo(expected.score, 5);
  }
}

beforeAll(async () => {
  fauxqs = buildApp({ logger: false });
  await fauxqs.listen({ port: 0, host: '127.0.0.1' });
  Object.assign(process.env, {
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_ENDPOINT_URL: `http://127.0.0.1:${(fauxqs.server.address() as AddressInfo).port}`,
    MODELFN_S3_FORCE_PATH_STYLE: '1',
    MODELFN_BATCH_BUCKET: BUCKET,
  });
  delete process.env.MODELFN_PRELOAD;
  s3 = new S3Client({ forcePathStyle: true, endpoint: process.env.AWS_ENDPOINT_URL });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  chunk = await import('../adapters/aws/batch-chunk.ts');
  reference = await createCore(configFromEnv());
});

afterAll(async () => {
  const { container } = await import('../adapters/aws/environment.ts');
  await container.current?.repository.dispose();
  await reference?.repository.dispose();
  (await import('../adapters/aws/clients.ts')).resetClientsForTests();
  s3?.destroy();
  await fauxqs?.close();
});

beforeEach(() => {
  delete process.env.MODELFN_BATCH_CHUNK_RECORDS;
  delete process.env.MODELFN_BATCH_TIME_MARGIN_MS;
});

// ---- tests ----

describe('state machine definitions', () => {
  it('every definition in adapters/aws/state-machines/ passes asl-validator', () => {
    const files = machineFiles();
    expect(files.map((machine) => machine.file)).toContain('batch.yml');
    for (const { file, definition } of files) {
      expect(JSON.stringify(definition), `${file}: a variable the test does not resolve`).not.toMatch(/[$#]\{/);
      const { isValid, errorsText } = validator(definition);
      expect(isValid, `${file}: ${errorsText('\n')}`).toBe(true);
    }
  });

  it('batch.yml: Distributed Maps reading JSONL and CSV from S3 in item batches, a Lambda Task with retries, results written to S3', () => {
    const { block, definition } = batchMachine();
    for (const name of ['ScoreJsonl', 'ScoreCsv']) {
      const map = definition.States[name]! as Record<string, any>;
      expect(map.Type).toBe('Map');
      expect(map.ItemReader.Resource).toBe('arn:aws:states:::s3:getObject');
      expect(map.ItemReader.Parameters).toEqual({ Bucket: BUCKET, 'Key.$': '$.key' });
      expect(map.ItemSelector).toEqual({ 'index.$': '$$.Map.Item.Index', 'value.$': '$$.Map.Item.Value' });
      expect(map.ItemBatcher.MaxInputBytesPerBatch).toBeLessThanOrEqual(256 * 1024);
      expect(map.ItemBatcher.MaxItemsPerBatch).toBeGreaterThan(0);
      expect(map.ItemBatcher.BatchInput).toEqual({ 'model.$': '$.model', 'format.$': '$.format', 'source.$': '$.key', 'partsPrefix.$': '$.partsPrefix' });
      expect(map.ItemProcessor.ProcessorConfig.Mode).toBe('DISTRIBUTED');
      expect(map.MaxConcurrency).toBeGreaterThan(0);
      expect(map.ToleratedFailurePercentage).toBeTypeOf('number');
      expect(map.ResultWriter).toEqual({ Resource: 'arn:aws:states:::s3:putObject', Parameters: { Bucket: BUCKET, Prefix: 'output/_map-runs' } });
      const task = Object.values(map.ItemProcessor.States as Record<string, any>).find((state) => state.Type === 'Task');
      expect(task.Parameters.FunctionName).toBe(functionArn('batchChunk'));
      expect(task.Retry[0].ErrorEquals).toEqual(expect.arrayContaining(['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException']));
    }
    expect((definition.States.ScoreJsonl as any).ItemReader.ReaderConfig).toEqual({ InputType: 'JSONL' });
    expect((definition.States.ScoreCsv as any).ItemReader.ReaderConfig).toEqual({ InputType: 'CSV', CSVHeaderLocation: 'FIRST_ROW' });
    expect((definition.States.ListFiles as any).ItemReader).toEqual({ Resource: 'arn:aws:states:::s3:listObjectsV2', Parameters: { Bucket: BUCKET, 'Prefix.$': '$.prefix' } });
    // Every Distributed Map writes its children's outputs to S3 (an inline array of them would outgrow 256 KB).
    for (const [name, state] of allStates(definition)) {
      if ((state.ItemProcessor as any)?.ProcessorConfig?.Mode === 'DISTRIBUTED') expect(state.ResultWriter, name).toEqual({ Resource: 'arn:aws:states:::s3:putObject', Parameters: { Bucket: BUCKET, Prefix: 'output/_map-runs' } });
    }
    // serverless-step-functions: the Lambda by Fn::GetAtt of the function's name in serverless.yml; the nightly schedule.
    expect(JSON.stringify(block.definition)).toContain('{"Fn::GetAtt":["batchChunk","Arn"]}');
    expect(resolveDeployed(block.events)).toEqual([{ schedule: expect.objectContaining({ rate: expect.stringMatching(/^cron\(/), enabled: true, input: { prefix: 'input/' } }) }]);
  });
});

describe('a file through the state machine (aws-local-stepfunctions, real batchChunk)', () => {
  it('scores every record of a JSONL file exactly once across item batches, bad records in the errors parts', async () => {
    process.env.MODELFN_BATCH_CHUNK_RECORDS = '128';
    const { text, bad } = jsonlWithBadRecords(2500, 21);
    const key = 'input/anomaly/fanout/day-1.jsonl';
    await put(key, text);
    // The input batchUpload hands off (test/aws-batch-upload.test.ts checks that it sends this).
    const input = { bucket: BUCKET, key, etag: await etagOf(key), model: 'anomaly', format: 'jsonl', partsPrefix: 'output/anomaly/fanout/day-1.parts/' };
    const { log } = await runMachine(input);

    const chunkCalls = log.invocations.filter((call) => call.state === 'ScoreJsonlChunk');
    expect(chunkCalls.length).toBeGreaterThanOrEqual(3); // 2500 items of ~260 bytes: more than one batch by count and by bytes
    for (const call of chunkCalls) expect(Buffer.byteLength(JSON.stringify(call.event))).toBeLessThanOrEqual(256 * 1024);
    await expectEveryRecordOnce(input.partsPrefix, text.trim().split('\n').map((line) => JSON.parse(line)), bad);
    const { keys } = await partsOf(input.partsPrefix);
    expect(keys).toContain('output/anomaly/fanout/day-1.parts/part-0000000001.jsonl');
    expect(keys.every((part) => /\.parts\/part-\d{10}(\.errors)?\.jsonl$/.test(part))).toBe(true);
  });

  it('with little time left in each invocation, hands unfinished items back and loops until every record is scored once', async () => {
    process.env.MODELFN_BATCH_CHUNK_RECORDS = '50';
    process.env.MODELFN_BATCH_TIME_MARGIN_MS = '10000';
    const { text, bad } = jsonlWithBadRecords(1200, 22);
    const key = 'input/anomaly/fanout/short-on-time.jsonl';
    await put(key, text);
    const { log } = await runMachine({ key }, { remainingMs: 2000 });

    const calls = log.invocations.filter((call) => call.state === 'ScoreJsonlChunk');
    const batches = calls.filter((call) => call.event.Progress === undefined);
    const sizes = batches.map((call) => (call.event.Items as unknown[]).length);
    expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(1200);
    expect(batches.length).toBeGreaterThanOrEqual(2);
    // One sub-chunk of 50 per invocation; each continuation carries the rest of its batch, 50 fewer each time.
    expect(calls).toHaveLength(sizes.reduce((sum, size) => sum + Math.ceil(size / 50), 0));
    // Batches run concurrently: find each continuation's caller by the items it handed back.
    type Items = { index: number }[];
    for (const call of calls) {
      if (call.event.Progress === undefined) continue;
      const items = call.event.Items as Items;
      const caller = calls.find((other) => (other.event.Items as Items)[50]?.index === items[0]!.index);
      expect((caller!.event.Items as Items).length - 50).toBe(items.length);
    }
    await expectEveryRecordOnce('output/anomaly/fanout/short-on-time.parts/', text.trim().split('\n').map((line) => JSON.parse(line)), bad);
  });

  it('scores a CSV file (rows under a header; line numbers count the header)', async () => {
    const data = rows(300, 23);
    const header = Object.keys(data[0]!);
    const lines = data.map((row) => header.map((name) => row[name as keyof typeof row]).join(','));
    lines[41] = lines[41]!.replace(/^([^,]*),[^,]*,/, '$1,oops,');
    const key = 'input/anomaly/fanout/table.csv';
    await put(key, `${header.join(',')}\n${lines.join('\n')}\n`);
    await runMachine({ key });
    const bad = new Map([[43, `line 43.logins must be number`]]);
    await expectEveryRecordOnce('output/anomaly/fanout/table.parts/', data, bad, 2);
  });

  it('a second run of the same file replaces the first run\'s parts instead of adding to them', async () => {
    const key = 'input/anomaly/fanout/twice.jsonl';
    const { text, bad } = jsonlWithBadRecords(300, 24);
    await put(key, text);
    await runMachine({ key });
    const first = await partsOf('output/anomaly/fanout/twice.parts/');
    process.env.MODELFN_BATCH_CHUNK_RECORDS = '64'; // different part boundaries this time
    await runMachine({ key });
    const second = await partsOf('output/anomaly/fanout/twice.parts/');
    expect(second.keys).not.toEqual(first.keys);
    expect(second.results).toHaveLength(first.results.length);
    await expectEveryRecordOnce('output/anomaly/fanout/twice.parts/', text.trim().split('\n').map((line) => JSON.parse(line)), bad);
  });

  it('skips a file whose inline results already came from this version (batchUpload scored it)', async () => {
    const key = 'input/anomaly/fanout/inline-done.jsonl';
    await put(key, `${JSON.stringify(rows(1, 25)[0])}\n`);
    const etag = await etagOf(key);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'output/anomaly/fanout/inline-done.jsonl', Body: '{}\n', Metadata: { 'source-etag': etag.replace(/"/g, '') } }));
    const { output, log } = await runMachine({ key, etag });
    expect(output).toEqual({ key, skip: `already scored inline from this version (ETag ${etag}) into output/anomaly/fanout/inline-done.jsonl` });
    expect(log.invocations.map((call) => call.state)).toEqual(['PlanFile']);
    expect(await keysUnder('output/anomaly/fanout/inline-done.parts/')).toEqual([]);
  });

  it('fails with BatchChunkInputError, naming the reason, for an unknown model or an unsafe key; writes the model error where the file\'s errors go', async () => {
    expect(await runFailure({ key: 'input/nosuchmodel/x.jsonl' })).toEqual({
      error: 'BatchChunkInputError',
      cause: 'input/nosuchmodel/x.jsonl: model "nosuchmodel" not found; available: anomaly, vad',
    });
    expect(await jsonLinesOf('output/nosuchmodel/x.errors.jsonl')).toEqual([{ error: 'input/nosuchmodel/x.jsonl: model "nosuchmodel" not found; available: anomaly, vad' }]);
    expect(await runFailure({ key: 'input/anomaly/../../x.jsonl' })).toEqual({ error: 'BatchChunkInputError', cause: 'object key "input/anomaly/../../x.jsonl" has a ".." path segment' });
  });

  it('fails an execution input that is neither a file nor a prefix', async () => {
    expect(await runFailure({ bucket: BUCKET })).toEqual({ error: 'BatchInputError', cause: expect.stringContaining('expected the execution input {"key"') });
  });
});

describe('a prefix through the state machine (the nightly schedule)', () => {
  it('starts one file run per object, named as batchUpload names it, and each run scores its file', async () => {
    const files = ['input/anomaly/nightly/a.jsonl', 'input/anomaly/nightly/b.jsonl'];
    const contents = [jsonlWithBadRecords(150, 31), jsonlWithBadRecords(90, 32)];
    for (const [index, key] of files.entries()) await put(key, contents[index]!.text);
    await put('input/anomaly/nightly/readme.txt', 'not a batch file');
    const taken = new Set<string>();
    const { log } = await runMachine({ prefix: 'input/anomaly/nightly/' }, { taken });

    const { executionName } = await import('../adapters/aws/batch/keys.ts');
    const expected = await Promise.all([...files, 'input/anomaly/nightly/readme.txt'].sort().map(async (key) => ({ key, etag: await etagOf(key) })));
    expect(log.started.map((start) => start.Input.key).sort()).toEqual(expected.map((file) => file.key));
    // The name: States.Hash(<string>, 'SHA-256') in the definition. aws-local-stepfunctions 3.0.0 hashes only one
    // SHA-256 block right (inputs under 56 bytes), so the string is evaluated by it and hashed by node:crypto here.
    const startFileRun = (batchMachine().definition.States.ListFiles as any).ItemProcessor.States.StartFileRun;
    const hashed = /^States\.Hash\((.*), 'SHA-256'\)$/.exec(startFileRun.Parameters['Name.$'])![1]!;
    for (const start of log.started) {
      const file = expected.find((candidate) => candidate.key === start.Input.key)!;
      expect(start.StateMachineArn).toBe(STATE_MACHINE_ARN);
      const { text: nameSource } = (await evaluate({ 'text.$': hashed }, { key: file.key, etag: file.etag })) as { text: string };
      expect(createHash('sha256').update(nameSource).digest('hex')).toBe(executionName(file.key, file.etag));
      expect(start.Name).toMatch(/^[0-9a-f]{64}$/);
      expect(start.Input).toEqual({ key: file.key, etag: file.etag, AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID: `${STATE_MACHINE_ARN.replace(':stateMachine:', ':execution:')}:run-1` });
    }

    // The started executions, run: two files scored, the text file refused by name.
    for (const start of log.started) {
      if (start.Input.key === 'input/anomaly/nightly/readme.txt') {
        expect(await runFailure(start.Input)).toEqual({ error: 'BatchChunkInputError', cause: 'object key "input/anomaly/nightly/readme.txt" is not a .jsonl, .ndjson or .csv file' });
      } else await runMachine(start.Input);
    }
    for (const [index, key] of files.entries()) {
      const { text, bad } = contents[index]!;
      await expectEveryRecordOnce(`output/anomaly/nightly/${key.split('/').at(-1)!.replace('.jsonl', '')}.parts/`, text.trim().split('\n').map((line) => JSON.parse(line)), bad);
    }

    // The next night: the same files, same ETags -> the names are taken, nothing is started again.
    const again = await runMachine({ prefix: 'input/anomaly/nightly/' }, { taken });
    expect(again.log.started).toHaveLength(3);
    expect(again.output).toMatchObject({ prefix: 'input/anomaly/nightly/' });
  });
});

describe('batchChunk: malformed requests fail with BatchChunkInputError, naming the problem', () => {
  const invoke = (event: unknown) => chunk.handler(event as never, lambdaContext({ functionName: 'modelfn-test-batchChunk' }) as never);
  const batchInput = { source: 'input/anomaly/x.jsonl', model: 'anomaly', format: 'jsonl', partsPrefix: 'output/anomaly/x.parts/' };
  const item = { index: 0, value: rows(1, 40)[0] };

  it.each([
    ['not an object', 'just text', 'malformed item batch: expected an object {"Items", "BatchInput"}, got string'],
    ['no Items', { BatchInput: batchInput }, 'malformed item batch: no "Items" (expected {"Items": [{"index", "value"}…], "BatchInput": {…}} or {"Plan": {"key"}}), got keys [BatchInput]'],
    ['Items not an array', { Items: { 0: item }, BatchInput: batchInput }, 'malformed item batch: "Items" must be an array, got object'],
    ['no BatchInput', { Items: [item] }, 'malformed item batch: "BatchInput" must be an object, got undefined'],
    ['no BatchInput.model', { Items: [item], BatchInput: { ...batchInput, model: undefined } }, 'malformed item batch: BatchInput.model must be a non-empty string, got nothing'],
    ['a model the key does not name', { Items: [item], BatchInput: { ...batchInput, model: 'vad' } }, 'BatchInput.model is "vad", but the source key gives "anomaly"'],
    ['a parts prefix elsewhere', { Items: [item], BatchInput: { ...batchInput, partsPrefix: 'output/anomaly/' } }, 'BatchInput.partsPrefix is "output/anomaly/", but the source key gives "output/anomaly/x.parts/"'],
    ['an unsafe source key', { Items: [item], BatchInput: { ...batchInput, source: 'input/anomaly/../x.jsonl' } }, 'BatchInput.source: object key "input/anomaly/../x.jsonl" has a ".." path segment'],
    ['an item without an index', { Items: [{ value: 1 }], BatchInput: batchInput }, 'malformed item batch: Items[0] must be {"index": <whole number>, "value": …}, got {"value":1}'],
    ['a Progress it did not write', { Items: [item], BatchInput: batchInput, Progress: { succeeded: 'some' } }, 'malformed item batch: "Progress" must be {succeeded, failed, resultParts, errorParts, firstLine} as batchChunk returned it, got {"succeeded":"some"}'],
    ['an unknown model', { Items: [item], BatchInput: { source: 'input/nosuch/x.jsonl', model: 'nosuch', format: 'jsonl', partsPrefix: 'output/nosuch/x.parts/' } }, 'model "nosuch" not found; available: anomaly, vad'],
    ['a plan without a key', { Plan: { prefix: 'input/' } }, 'malformed plan request: expected {"Plan": {"key": "input/<model>/<path>.jsonl|.csv"}}, got {"prefix":"input/"}'],
  ])('%s', async (_name, event, message) => {
    await expect(invoke(event)).rejects.toMatchObject({ name: 'BatchChunkInputError', message });
  });

  it('an empty batch is a summary of nothing, and the function keeps serving', async () => {
    expect(await invoke({ Items: [], BatchInput: batchInput })).toEqual({ source: 'input/anomaly/x.jsonl', firstLine: 0, lastLine: 0, succeeded: 0, failed: 0, resultParts: 0, errorParts: 0, partsPrefix: 'output/anomaly/x.parts/' });
    expect(await invoke({ Items: [item], BatchInput: batchInput })).toMatchObject({ firstLine: 1, lastLine: 1, succeeded: 1, failed: 0 });
  });
});
