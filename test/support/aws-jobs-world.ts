import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Core } from '../../handlers/index.ts';
import { startFauxqs } from './sqs-events.ts';

export interface QueueRef {
  url: string;
  arn: string;
}

export type CreateQueue = (name: string, attributes?: Record<string, string>) => Promise<QueueRef>;

/** What the async-jobs tests on AWS share: fauxqs, SDK clients, the jobs queue, and the real Lambda entries. */
export interface AwsJobsWorld {
  s3: S3Client;
  sqs: SQSClient;
  queue: QueueRef;
  createQueue: CreateQueue;
  http: typeof import('../../adapters/aws/handler.ts');
  worker: typeof import('../../adapters/aws/sqs-jobs.ts');
  environment: typeof import('../../adapters/aws/environment.ts');
  core: Core;
  /** Rows and tensor runs the model's batcher has recorded (Prometheus metrics). */
  tensorRuns(model: string): Promise<{ runs: number; rows: number }>;
  stop(): Promise<void>;
}

/**
 * Start fauxqs on 127.0.0.1, point the AWS SDK and the adapter's environment at it (plus `env`), create the
 * jobs bucket and the queue `makeQueue` creates, then import the HTTP and SQS entries and create the core, as
 * a Lambda execution environment would on its first invocation.
 */
export async function startAwsJobsWorld(options: {
  bucket: string;
  env?: Record<string, string>;
  makeQueue: (createQueue: CreateQueue) => Promise<QueueRef>;
}): Promise<AwsJobsWorld> {
  const fauxqs = await startFauxqs();
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: fauxqs.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    MODELFN_S3_FORCE_PATH_STYLE: '1',
    MODELFN_METRICS: '1', // the tests count tensor runs in the Prometheus metrics (off by default on Lambda)
    MODELFN_JOBS_BUCKET: options.bucket,
    ...options.env,
  });
  delete process.env.MODELFN_PRELOAD;
  // The adapter's own clients, as configured by the environment above.
  const { s3Client, sqsClient } = await import('../../adapters/aws/clients.ts');
  const s3 = s3Client();
  const sqs = sqsClient();
  const createQueue: CreateQueue = async (name, attributes = {}) => {
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
    const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }));
    return { url: QueueUrl!, arn: Attributes!.QueueArn! };
  };
  await s3.send(new CreateBucketCommand({ Bucket: options.bucket }));
  const queue = await options.makeQueue(createQueue);
  process.env.MODELFN_JOBS_QUEUE_URL = queue.url;
  const http = await import('../../adapters/aws/handler.ts');
  const worker = await import('../../adapters/aws/sqs-jobs.ts');
  const environment = await import('../../adapters/aws/environment.ts');
  const core = await environment.container.get();
  return {
    s3,
    sqs,
    queue,
    createQueue,
    http,
    worker,
    environment,
    core,
    async tensorRuns(model) {
      const text = (await core.metrics!.text()).body;
      const read = (name: string) => Number(new RegExp(`^modelfn_batch_rows_${name}\\{model="${model}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
      return { runs: read('count'), rows: read('sum') };
    },
    async stop() {
      await core.repository.dispose();
      (await import('../../adapters/aws/clients.ts')).resetClientsForTests(); // destroys s3 and sqs too
      await fauxqs.stop();
    },
  };
}
