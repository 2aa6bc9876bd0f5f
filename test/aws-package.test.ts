import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AWS_ENTRIES, buildAws } from '../scripts/build-aws.ts';
import { oslsPackage, prepareServiceDir, type ServiceDir } from './support/aws-service.ts';

/**
 * `npm run build:aws` then `osls package` with no AWS credentials, and the CloudFormation template it writes:
 * what serverless.yml promises (runtimes, triggers, redrive, lifecycle, state machine, warmer, least-privilege IAM)
 * is checked in what AWS would be given.
 */

interface Resource {
  Type: string;
  Properties: Record<string, any>;
}

const LAMBDA_UNZIPPED_LIMIT = 262_144_000;
const LAMBDA_ZIPPED_LIMIT = 50 * 1024 * 1024;

let service: ServiceDir;
let out: string;
let resources: Record<string, Resource>;

const ofType = (type: string) => Object.entries(resources).filter(([, resource]) => resource.Type === type);
const functionNamed = (logicalId: string) => resources[logicalId]!;

beforeAll(async () => {
  service = await prepareServiceDir();
  out = await oslsPackage(service);
  resources = JSON.parse(readFileSync(path.join(out, 'cloudformation-template-update-stack.json'), 'utf8')).Resources;
}, 90_000);

afterAll(() => service?.remove());

describe('build:aws', () => {
  it('bundles every entry as ESM and fits Lambda with room to spare', () => {
    expect(service.build.entries.sort()).toEqual(['batch-chunk.mjs', 'http.mjs', 's3-batch.mjs', 'sqs-dead-letters.mjs', 'sqs-jobs.mjs']);
    expect(service.build.models).toEqual(['anomaly', 'vad']);
    expect(service.build.bytes.total).toBeLessThan(LAMBDA_UNZIPPED_LIMIT);
    const zip = statSync(path.join(out, 'modelfn.zip')).size;
    expect(zip).toBeLessThan(LAMBDA_ZIPPED_LIMIT);
    console.log(`aws package: ${(service.build.bytes.total / 1e6).toFixed(1)} MB unzipped, ${(zip / 1e6).toFixed(1)} MB zipped`);
  });

  it('packages the bundles, linux-x64 onnxruntime and the model files, nothing else', () => {
    const listing = execFileSync('unzip', ['-Z1', path.join(out, 'modelfn.zip')], { encoding: 'utf8' }).trim().split('\n');
    expect(listing.every((file) => file.startsWith('.deploy/aws/build/'))).toBe(true);
    const files = listing.map((file) => file.slice('.deploy/aws/build/'.length));
    expect(files).toEqual(expect.arrayContaining([
      'http.mjs',
      'models/anomaly/anomaly.onnx',
      'models/anomaly/features.json',
      'node_modules/@ricky0123/vad-web/dist/silero_vad_v5.onnx',
      'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node',
      'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1',
    ]));
    expect(files.filter((file) => /\/(darwin|win32|arm64)\//.test(file))).toEqual([]);
    expect(files.filter((file) => file.endsWith('.ts'))).toEqual([]);
  });

  it('fails naming a missing entry', async () => {
    await expect(buildAws({ outDir: path.join(service.dir, 'never'), entries: { ...AWS_ENTRIES, extra: 'adapters/aws/no-such-entry.ts' } })).rejects.toThrow(
      'build:aws: missing Lambda entry: adapters/aws/no-such-entry.ts',
    );
  });
});

describe('osls package: the CloudFormation template', () => {
  it('has the five functions on nodejs22.x, x86_64, with the bundled handlers and the contract environment', () => {
    const handlers = {
      HttpLambdaFunction: '.deploy/aws/build/http.handler',
      JobsWorkerLambdaFunction: '.deploy/aws/build/sqs-jobs.handler',
      JobsDeadLettersLambdaFunction: '.deploy/aws/build/sqs-dead-letters.handler',
      BatchUploadLambdaFunction: '.deploy/aws/build/s3-batch.handler',
      BatchChunkLambdaFunction: '.deploy/aws/build/batch-chunk.handler',
    };
    for (const [logicalId, handler] of Object.entries(handlers)) {
      const fn = functionNamed(logicalId).Properties;
      expect({ logicalId, handler: fn.Handler, runtime: fn.Runtime, architectures: fn.Architectures }).toEqual({
        logicalId,
        handler,
        runtime: 'nodejs22.x',
        architectures: ['x86_64'],
      });
      expect(Object.keys(fn.Environment.Variables)).toEqual(
        expect.arrayContaining([
          'MODELFN_JOBS_BUCKET',
          'MODELFN_JOBS_QUEUE_URL',
          'MODELFN_JOBS_MAX_RECEIVES',
          'MODELFN_BATCH_BUCKET',
          'MODELFN_BATCH_INPUT_PREFIX',
          'MODELFN_BATCH_OUTPUT_PREFIX',
          'MODELFN_BATCH_STATE_MACHINE_ARN',
          'MODELFN_BATCH_INLINE_MAX_BYTES',
        ]),
      );
      expect(fn.Environment.Variables.MODELFN_JOBS_BUCKET).toEqual({ Ref: 'JobsBucket' });
      expect(fn.Environment.Variables.MODELFN_JOBS_QUEUE_URL).toEqual({ Ref: 'JobsQueue' });
    }
    // API Gateway stops waiting at 29-30 s: the HTTP function must not outlive it.
    expect(functionNamed('HttpLambdaFunction').Properties.Timeout).toBeLessThanOrEqual(29);
  });

  it('serves HTTP through an HTTP API catch-all route and a Function URL', () => {
    const routes = ofType('AWS::ApiGatewayV2::Route').map(([, route]) => route.Properties.RouteKey);
    expect(routes).toEqual(['$default']);
    const [[, url]] = ofType('AWS::Lambda::Url') as [[string, Resource]];
    expect(url.Properties.TargetFunctionArn).toEqual({ 'Fn::GetAtt': ['HttpLambdaFunction', 'Arn'] });
  });

  it('feeds the worker from the jobs queue in batches of 100, and jobsDeadLetters from its DLQ, with partial batch failures', () => {
    const mappings = ofType('AWS::Lambda::EventSourceMapping').map(([, mapping]) => mapping as Resource);
    expect(mappings).toHaveLength(2);
    const mapping = mappings.find((candidate) => JSON.stringify(candidate.Properties.FunctionName).includes('JobsWorker'))!;
    const deadLetters = mappings.find((candidate) => candidate !== mapping)!;
    expect(deadLetters.Properties).toMatchObject({
      EventSourceArn: { 'Fn::GetAtt': ['JobsDeadLetterQueue', 'Arn'] },
      FunctionName: { 'Fn::GetAtt': ['JobsDeadLettersLambdaFunction', 'Arn'] },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    expect(mapping.Properties).toMatchObject({
      EventSourceArn: { 'Fn::GetAtt': ['JobsQueue', 'Arn'] },
      FunctionName: { 'Fn::GetAtt': ['JobsWorkerLambdaFunction', 'Arn'] },
      BatchSize: 100,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    // Lambda rejects a batch size above 10 without a batching window.
    expect(mapping.Properties.MaximumBatchingWindowInSeconds).toBeGreaterThan(0);
  });

  it('redrives the jobs queue to its dead-letter queue after MODELFN_JOBS_MAX_RECEIVES receives', () => {
    const queue = resources.JobsQueue!.Properties;
    const receives = Number(functionNamed('JobsWorkerLambdaFunction').Properties.Environment.Variables.MODELFN_JOBS_MAX_RECEIVES);
    expect(queue.RedrivePolicy).toEqual({ deadLetterTargetArn: { 'Fn::GetAtt': ['JobsDeadLetterQueue', 'Arn'] }, maxReceiveCount: 5 });
    expect(receives).toBe(queue.RedrivePolicy.maxReceiveCount);
    expect(resources.JobsDeadLetterQueue!.Type).toBe('AWS::SQS::Queue');
    // AWS: the visibility timeout at least 6x the worker's timeout, or a slow batch is received twice.
    const worker = functionNamed('JobsWorkerLambdaFunction').Properties;
    expect(queue.VisibilityTimeout).toBeGreaterThanOrEqual(6 * worker.Timeout);
  });

  it('expires job state after the retention the core is told', () => {
    const bucket = resources.JobsBucket!;
    expect(bucket.Type).toBe('AWS::S3::Bucket');
    const [rule] = bucket.Properties.LifecycleConfiguration.Rules;
    expect(rule).toMatchObject({ Status: 'Enabled', ExpirationInDays: 7 });
    const retention = Number(functionNamed('HttpLambdaFunction').Properties.Environment.Variables.MODELFN_JOB_RETENTION_SECONDS);
    expect(retention).toBe(rule.ExpirationInDays * 86_400);
  });

  it('runs batchUpload on .jsonl, .ndjson and .csv objects created under the input prefix of the batch bucket', () => {
    const [[, bucket]] = ofType('AWS::S3::Bucket').filter(([, resource]) => resource.Properties.NotificationConfiguration) as [[string, Resource]];
    const env = functionNamed('BatchUploadLambdaFunction').Properties.Environment.Variables;
    expect(bucket.Properties.BucketName).toBe(env.MODELFN_BATCH_BUCKET);
    const configurations = bucket.Properties.NotificationConfiguration.LambdaConfigurations;
    expect(configurations.map((c: any) => ({ event: c.Event, fn: c.Function, rules: c.Filter.S3Key.Rules }))).toEqual(
      ['.jsonl', '.ndjson', '.csv'].map((suffix) => ({
        event: 's3:ObjectCreated:*',
        fn: { 'Fn::GetAtt': ['BatchUploadLambdaFunction', 'Arn'] },
        rules: [
          { Name: 'prefix', Value: env.MODELFN_BATCH_INPUT_PREFIX },
          { Name: 'suffix', Value: suffix },
        ],
      })),
    );
    // S3 may invoke the function, from this bucket only.
    const permissions = ofType('AWS::Lambda::Permission').filter(([, permission]) => permission.Properties.Principal === 's3.amazonaws.com');
    expect(permissions.map(([, permission]) => permission.Properties)).toEqual([
      expect.objectContaining({ FunctionName: { 'Fn::GetAtt': ['BatchUploadLambdaFunction', 'Arn'] }, SourceArn: `arn:aws:s3:::${env.MODELFN_BATCH_BUCKET}` }),
    ]);
  });

  it('has the batch state machine, started by a schedule, running batchChunk', () => {
    const machines = ofType('AWS::StepFunctions::StateMachine');
    expect(machines).toHaveLength(1);
    const [[machineId, machine]] = machines as [[string, Resource]];
    expect(JSON.stringify(machine.Properties.DefinitionString)).toContain('BatchChunkLambdaFunction');
    const env = functionNamed('BatchUploadLambdaFunction').Properties.Environment.Variables;
    expect(env.MODELFN_BATCH_STATE_MACHINE_ARN['Fn::Sub']).toMatch(new RegExp(`:stateMachine:${machine.Properties.StateMachineName}$`));
    const schedules = ofType('AWS::Events::Rule').filter(([, rule]) => rule.Properties.Targets.some((target: any) => target.Arn?.Ref === machineId));
    expect(schedules).toHaveLength(1);
    expect(schedules[0]![1].Properties.ScheduleExpression).toMatch(/^(cron|rate)\(/);
  });

  it('warms the http function every 5 minutes with concurrent pings that carry the concurrency', () => {
    const [[warmerId]] = ofType('AWS::Lambda::Function').filter(([, fn]) => fn.Properties.Handler.startsWith('.warmup/')) as [[string, Resource]];
    const schedule = ofType('AWS::Events::Rule').find(([, rule]) => rule.Properties.Targets[0].Arn?.['Fn::GetAtt']?.[0] === warmerId);
    expect(schedule?.[1].Properties.ScheduleExpression).toBe('rate(5 minutes)');
    const code = execFileSync('unzip', ['-p', path.join(out, 'warmUpPluginDefault.zip'), '.warmup/default/index.mjs'], { encoding: 'utf8' });
    const functions = JSON.parse(/const functions = (\[[\s\S]*?\n\]);/.exec(code)![1]!) as { name: string; config: { payload: string; concurrency: number } }[];
    expect(functions.map((fn) => fn.name)).toEqual(['modelfn-test-http']);
    const [http] = functions;
    expect(http!.config.concurrency).toBeGreaterThan(1);
    expect(JSON.parse(http!.config.payload)).toEqual({ source: 'serverless-plugin-warmup', concurrency: http!.config.concurrency });
  });

  it('grants nothing on S3, SQS or Step Functions with a "*" resource', () => {
    const statements = Object.entries(resources).flatMap(([id, resource]) => {
      const policies = resource.Type === 'AWS::IAM::Role' ? (resource.Properties.Policies ?? []) : resource.Type === 'AWS::IAM::Policy' ? [resource.Properties] : [];
      return policies.flatMap((policy: any) => policy.PolicyDocument.Statement.map((statement: any) => ({ id, ...statement })));
    });
    const scoped = statements.filter((statement) => [statement.Action].flat().some((action: string) => /^(s3|sqs|states):/.test(action)));
    expect(scoped.length).toBeGreaterThan(5);
    const wide = scoped.filter((statement) => {
      const resourcesOf = [statement.Resource].flat();
      return resourcesOf.some((resource) => resource === '*' || resource === 'arn:aws:s3:::*') || [statement.Action].flat().some((action: string) => /:\*$/.test(action));
    });
    expect(wide).toEqual([]);
    // The dead-letter queue is only drained (osls grants jobsDeadLetters' event source mapping), never sent to.
    const onDeadLetters = scoped.filter((statement) => JSON.stringify(statement.Resource).includes('JobsDeadLetterQueue'));
    expect([...new Set(onDeadLetters.flatMap((statement) => [statement.Action].flat()))].sort()).toEqual(['sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:ReceiveMessage']);
    // The Distributed Map's own needs: child executions of itself and the chunk function.
    const [[, machine]] = ofType('AWS::StepFunctions::StateMachine') as [[string, Resource]];
    const machineRoleId = machine.Properties.RoleArn['Fn::GetAtt'][0];
    const actions = statements.filter((statement) => statement.id === machineRoleId).flatMap((statement) => [statement.Action].flat());
    expect(actions).toEqual(expect.arrayContaining(['states:StartExecution', 'lambda:InvokeFunction', 's3:GetObject', 's3:PutObject']));
  });
});
