import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';

/**
 * The AWS SDK v3 clients, one of each per execution environment, created on first use (a warm-up ping or an
 * HTTP request that never touches S3 pays nothing for them). Region, credentials and endpoint come from the
 * standard environment (`AWS_REGION`, `AWS_ENDPOINT_URL` for an emulator such as fauxqs);
 * `MODELFN_S3_FORCE_PATH_STYLE=1` for emulators that do not serve virtual-hosted bucket names.
 */
let s3: S3Client | undefined;
let sqs: SQSClient | undefined;
let sfn: SFNClient | undefined;

export function s3Client(): S3Client {
  return (s3 ??= new S3Client({ forcePathStyle: process.env.MODELFN_S3_FORCE_PATH_STYLE === '1' }));
}

export function sqsClient(): SQSClient {
  // With an endpoint set (an emulator), every call goes there; by default the SDK sends to the queue URL's host
  // and warns on each call that the two differ.
  const endpointSet = Boolean(process.env.AWS_ENDPOINT_URL_SQS || process.env.AWS_ENDPOINT_URL);
  return (sqs ??= new SQSClient({ useQueueUrlAsEndpoint: !endpointSet }));
}

export function sfnClient(): SFNClient {
  return (sfn ??= new SFNClient({}));
}

/** Tests: drop the clients so the next use reads the environment again. */
export function resetClientsForTests(): void {
  s3?.destroy();
  sqs?.destroy();
  sfn?.destroy();
  s3 = sqs = sfn = undefined;
}
