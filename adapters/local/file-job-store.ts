import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isSettled, viewOf, type Job, type JobStore, type JobView } from '../../handlers/jobs.ts';

/**
 * Jobs as files, one JSON document each, replaced atomically (write a temp file, rename over). A rename
 * is in the kernel once it returns, so a kill -9 at any moment leaves either the old or the new job, never
 * a torn one; with `fsync` the data and directory are flushed too, surviving power loss at a cost in
 * submits per second. Layout under `dir`:
 *   jobs/<id>.json          the job
 *   pending/<id>            present while the job (or its webhook) still needs work: what recovery scans
 *   idempotency/<sha256>    the job id a key maps to, created exclusively (O_EXCL), so a key makes one job
 *   dead-letter/<id>        jobs that exhausted their retries
 */
export class FileJobStore implements JobStore {
  private readonly jobsDir: string;
  private readonly pendingDir: string;
  private readonly idempotencyDir: string;
  private readonly deadLetterDir: string;

  constructor(
    readonly dir: string,
    private readonly options: { fsync?: boolean } = {},
  ) {
    this.jobsDir = path.join(dir, 'jobs');
    this.pendingDir = path.join(dir, 'pending');
    this.idempotencyDir = path.join(dir, 'idempotency');
    this.deadLetterDir = path.join(dir, 'dead-letter');
    for (const folder of [this.jobsDir, this.pendingDir, this.idempotencyDir, this.deadLetterDir]) mkdirSync(folder, { recursive: true });
  }

  async create(job: Job, idempotencyKey?: string): Promise<{ job: Job; created: boolean }> {
    if (idempotencyKey !== undefined) {
      const keyFile = path.join(this.idempotencyDir, createHash('sha256').update(`${job.model}\0${idempotencyKey}`).digest('hex'));
      try {
        await this.writeExclusive(keyFile, job.id);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const existingId = (await readFile(keyFile, 'utf8')).trim();
        // The key file is written before the job; a crash between the two leaves a key with no job: claim it.
        const existing = existingId ? await this.waitForJob(existingId) : undefined;
        if (existing) return { job: existing, created: false };
        await this.writeAtomic(keyFile, job.id);
      }
    }
    await this.writeExclusive(path.join(this.pendingDir, job.id), '');
    await this.writeAtomic(this.jobFile(job.id), JSON.stringify(job));
    return { job, created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    try {
      return JSON.parse(await readFile(this.jobFile(id), 'utf8')) as Job;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async put(job: Job): Promise<void> {
    await this.writeAtomic(this.jobFile(job.id), JSON.stringify(job));
    if (isSettled(job)) await rm(path.join(this.pendingDir, job.id), { force: true });
  }

  async listUnfinished(): Promise<Job[]> {
    const ids = await readdir(this.pendingDir);
    const unfinished: Job[] = [];
    for (const id of ids) {
      if (id.startsWith('.')) continue;
      const job = await this.get(id);
      // A marker whose job file never landed belongs to a submit that was never acknowledged.
      if (job) unfinished.push(job);
      else await rm(path.join(this.pendingDir, id), { force: true });
    }
    return unfinished.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async addDeadLetter(job: Job): Promise<void> {
    await this.writeAtomic(path.join(this.deadLetterDir, job.id), job.finishedAt ?? new Date().toISOString());
  }

  async listDeadLetters(): Promise<JobView[]> {
    const ids = await readdir(this.deadLetterDir);
    const jobs = await Promise.all(ids.filter((id) => !id.startsWith('.')).map((id) => this.get(id)));
    return jobs.filter((job): job is Job => job !== undefined).map(viewOf);
  }

  async deleteExpired(now: Date): Promise<number> {
    let deleted = 0;
    for (const name of await readdir(this.jobsDir)) {
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -'.json'.length);
      const job = await this.get(id);
      if (!job?.expiresAt || Date.parse(job.expiresAt) > now.getTime()) continue;
      await Promise.all([rm(this.jobFile(id), { force: true }), rm(path.join(this.deadLetterDir, id), { force: true }), rm(path.join(this.pendingDir, id), { force: true })]);
      deleted++;
    }
    return deleted;
  }

  private jobFile(id: string): string {
    return path.join(this.jobsDir, `${id}.json`);
  }

  /** A key file may be a moment ahead of its job (concurrent submits with one key): wait briefly for the job. */
  private async waitForJob(id: string): Promise<Job | undefined> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const job = await this.get(id);
      if (job) return job;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return undefined;
  }

  private async writeExclusive(file: string, content: string): Promise<void> {
    const handle = await open(file, 'wx');
    try {
      await handle.writeFile(content);
      if (this.options.fsync) await handle.sync();
    } finally {
      await handle.close();
    }
  }

  private async writeAtomic(file: string, content: string): Promise<void> {
    const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    if (this.options.fsync) {
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(content);
        await handle.sync();
      } finally {
        await handle.close();
      }
    } else {
      await writeFile(temp, content);
    }
    await rename(temp, file);
  }
}
