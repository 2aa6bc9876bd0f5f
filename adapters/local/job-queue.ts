import type { Job, JobQueue, JobService } from '../../handlers/jobs.ts';
import type { Logger } from '../../handlers/log.ts';

/**
 * The embedded queue: job ids in memory, run by a worker loop with bounded concurrency. It needs no
 * durability of its own: every job is in the store before it is queued, and `JobService.recover` re-queues
 * what a killed process left behind. Concurrent jobs for one model meet in its micro-batcher, so a backlog
 * drains in tensor batches.
 */
export class LocalJobQueue implements JobQueue {
  private readonly ready: string[] = [];
  private readonly delayed = new Set<NodeJS.Timeout>();
  private inFlight = 0;
  private stopped = false;
  private service: JobService | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly concurrency = 64,
    private readonly logger?: Logger,
  ) {}

  /** Start running queued jobs through `service`. */
  start(service: JobService): void {
    this.service = service;
    this.pump();
  }

  /** Only the id travels: the job and its input are in the store already. */
  async send(job: Pick<Job, 'id'>, delayMs = 0): Promise<void> {
    if (delayMs <= 0) {
      this.ready.push(job.id);
      this.pump();
      return;
    }
    const timer = setTimeout(() => {
      this.delayed.delete(timer);
      this.ready.push(job.id);
      this.pump();
    }, delayMs);
    timer.unref();
    this.delayed.add(timer);
  }

  get depth(): number {
    return this.ready.length + this.delayed.size + this.inFlight;
  }

  private pump(): void {
    const service = this.service;
    if (!service) return;
    while (!this.stopped && this.inFlight < this.concurrency && this.ready.length > 0) {
      const jobId = this.ready.shift()!;
      this.inFlight++;
      service
        .runJob(jobId)
        .catch((error: unknown) => this.logger?.error({ jobId, err: error }, 'job run failed outside the model (store or queue)'))
        .finally(() => {
          this.inFlight--;
          if (this.inFlight === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
          this.pump();
        });
    }
  }

  /** Stop starting jobs and wait for those running; queued ones stay in the store for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.delayed) clearTimeout(timer);
    this.delayed.clear();
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }
}
