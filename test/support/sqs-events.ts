import { ChangeMessageVisibilityBatchCommand, DeleteMessageBatchCommand, ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { buildApp, interceptLocalhostDns } from 'fauxqs';
import type { AddressInfo } from 'node:net';

/**
 * fauxqs (S3 + SQS) in this process, on 127.0.0.1 and a free port (its startFauxqs binds every interface).
 * Its queue URLs are `http://sqs.<region>.localhost:<port>/…`, and the SQS client sends to the queue URL's
 * host: fauxqs's own interceptLocalhostDns resolves `*.localhost` to 127.0.0.1 in this process until stop().
 */
export async function startFauxqs(): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const app = buildApp({ logger: false });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const restoreDns = interceptLocalhostDns();
  const { port } = app.server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      restoreDns();
      await app.close();
    },
  };
}

/** An SQS record as Lambda's event source mapping hands it over (the documented example's shape, test/fixtures/aws/sqs.json). */
export function lambdaSqsRecord(message: Message, queueArn: string): SQSRecord {
  const attributes = message.Attributes ?? {};
  return {
    messageId: message.MessageId!,
    receiptHandle: message.ReceiptHandle!,
    body: message.Body!,
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount!,
      SentTimestamp: attributes.SentTimestamp!,
      SenderId: attributes.SenderId!,
      ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp!,
    },
    messageAttributes: {},
    md5OfBody: message.MD5OfBody!,
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: queueArn.split(':')[3]!,
  };
}

/** Receive up to `max` messages (in calls of 10, SQS's most per receive), with their system attributes. */
export async function receive(sqs: SQSClient, queueUrl: string, max = 10): Promise<Message[]> {
  const messages: Message[] = [];
  while (messages.length < max) {
    const { Messages = [] } = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: Math.min(10, max - messages.length), MessageSystemAttributeNames: ['All'], WaitTimeSeconds: 0 }),
    );
    if (Messages.length === 0) break;
    messages.push(...Messages);
  }
  return messages;
}

/**
 * What the event source mapping does with a batch: receive, invoke the function with the SQS event, delete the
 * records that did not fail (ReportBatchItemFailures). Failed records are made visible again at once — Lambda
 * would wait out the visibility timeout; the test does not.
 */
export async function pollOnce(
  sqs: SQSClient,
  queue: { url: string; arn: string },
  invoke: (event: SQSEvent) => Promise<SQSBatchResponse>,
  max = 10,
): Promise<{ messages: Message[]; event: SQSEvent; response: SQSBatchResponse }> {
  const messages = await receive(sqs, queue.url, max);
  const event: SQSEvent = { Records: messages.map((message) => lambdaSqsRecord(message, queue.arn)) };
  if (messages.length === 0) return { messages, event, response: { batchItemFailures: [] } };
  const response = await invoke(event);
  const failed = new Set(response.batchItemFailures.map((failure) => failure.itemIdentifier));
  const done = messages.filter((message) => !failed.has(message.MessageId!));
  const again = messages.filter((message) => failed.has(message.MessageId!));
  for (let i = 0; i < done.length; i += 10) {
    const entries = done.slice(i, i + 10).map((message, k) => ({ Id: String(k), ReceiptHandle: message.ReceiptHandle! }));
    await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queue.url, Entries: entries }));
  }
  for (let i = 0; i < again.length; i += 10) {
    const entries = again.slice(i, i + 10).map((message, k) => ({ Id: String(k), ReceiptHandle: message.ReceiptHandle!, VisibilityTimeout: 0 }));
    await sqs.send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: queue.url, Entries: entries }));
  }
  return { messages, event, response };
}
