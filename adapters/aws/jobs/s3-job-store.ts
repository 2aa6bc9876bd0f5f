import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { viewOf, type Job, type JobStore, type JobView } from '../../../handlers/index.ts';
import { isConditionFailed, type JsonObjects } from './s3-objects.ts';

/**
 * Jobs as JSON objects in the jobs bucket:
 *
 *   jobs/<id>.json               the job's state without its input (the SQS message or inputs/<id>.json carries
 *                                that), rewritten on each change: running, finished, webhook progress
 *   idempotency/<sha256 hex>     the job id an Idempotency-Key (scoped to the model) made, created with a
 *                                conditional write (`If-None-Match: *`) so one key makes one job
 *   dead-letter/<id>.json        the job as it was when given up
 *   inputs/<id>.json             claim-check inputs, written by the queue (sqs-job-queue.ts)
 *
 * Pending work lives in SQS, not here: `listUnfinished` is empty (nothing to recover on Lambda), and old objects
 * are removed by an S3 lifecycle rule (expire after the retention), not by `deleteExpired`.
 */
export class S3JobStore implements JobStore {
  constructor(private readonly objects: JsonObjects) {}

  async create(job: Job, idempotencyKey?: string): Promise<{ job: Job; created: boolean }> {
    if (idempotencyKey === undefined) {
      await this.put(job);
      return { job, created: true };
    }
    const keyObject = `idempotency/${createHash('sha256').update(`${job.model}\0${idempotencyKey}`).digest('hex')}`;
    const known = await this.jobForKey(keyObject);
    if (known.job) return { job: known.job, created: false };
    // The job first, then the key: whoever holds the key has its job stored already, so a loser finds it.
    await this.put(job);
    try {
      // A key whose job has expired (lifecycle) is taken over; otherwise only a new key may be written.
      await this.objects.putText(keyObject, job.id, known.id === undefined ? { IfNoneMatch: '*', ContentType: 'text/plain' } : { ContentType: 'text/plain' });
    } catch (error) {
      if (!isConditionFailed(error)) throw error;
      // A concurrent submit with the same key won; our job object is left for the lifecycle rule (no message refers to it).
      const winner = await this.jobForKey(keyObject);
      if (winner.job) return { job: winner.job, created: false };
      throw error;
    }
    return { job, created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    return this.objects.getJson<Job>(jobKey(id));
  }

  async put(job: Job): Promise<void> {
    await this.objects.putText(jobKey(job.id), JSON.stringify(viewOf(job)));
  }

  /** SQS holds the pending work (and its dead-letter queue what failed delivery): nothing to recover from here. */
  async listUnfinished(): Promise<Job[]> {
    return [];
  }

  async addDeadLetter(job: Job): Promise<void> {
    await this.objects.putText(`dead-letter/${job.id}.json`, JSON.stringify(viewOf(job)));
  }

  /** The first 1000 dead letters (one listing page), oldest key order. */
  async listDeadLetters(): Promise<JobView[]> {
    const listing = await this.objects.s3.send(new ListObjectsV2Command({ Bucket: this.objects.bucket, Prefix: 'dead-letter/', MaxKeys: 1000 }));
    const keys = (listing.Contents ?? []).map((object) => object.Key!).filter((key) => key.endsWith('.json'));
    const views = await Promise.all(keys.map((key) => this.objects.getJson<JobView>(key)));
    return views.filter((view): view is JobView => view !== undefined);
  }

  /** An S3 lifecycle rule expires old objects (see adapters/aws/README.md); nothing to sweep from a function. */
  async deleteExpired(): Promise<number> {
    return 0;
  }

  private async jobForKey(keyObject: string): Promise<{ id?: string; job?: Job }> {
    const id = (await this.objects.getText(keyObject))?.trim();
    if (id === undefined) return {};
    return { id, job: await this.get(id) };
  }
}

export function jobKey(id: string): string {
  return `jobs/${id}.json`;
}
