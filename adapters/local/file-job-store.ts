import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isSettled, viewOf, type Job, type JobStore, type JobView } from '../../handlers/jobs.ts';

/**
 * Jobs as JSON files on the local disk, written so that a kill -9 at any moment loses no acknowledged job,
 * with as few file-system metadata operations per job as that allows (on a cloud VM's disk those, not the
 * CPU, bound the submit rate):
 *
 *   active/<id>.json      written once at submit (one create), rewritten only when a retry is scheduled;
 *                         recovery scans this folder alone
 *   done/<id>.json        the finished job (result or error, webhook state); then active/<id>.json goes
 *   idempotency/<sha256>  the job id a key maps to, created exclusively (O_EXCL): a key makes one job
 *   dead-letter/<id>      jobs that exhausted their retries
 *
 * "running" is kept in memory only: a process that dies mid-run leaves the job in active/, and the next
 * start runs it again. The calls are synchronous on purpose: for files this small that is tens of
 * microseconds, while each asynchronous call is a round trip through libuv's thread pool. With `fsync`
 * every write is flushed before it returns, surviving power loss too, at a cost in submits per second.
 */
export class FileJobStore implements JobStore {
  private readonly activeDir: string;
  private readonly doneDir: string;
  private readonly idempotencyDir: string;
  private readonly deadLetterDir: string;
  /** Jobs this process is running: their latest state, which is not written to disk. */
  private readonly running = new Map<string, Job>();

  constructor(
    readonly dir: string,
    private readonly options: { fsync?: boolean } = {},
  ) {
    this.activeDir = path.join(dir, 'active');
    this.doneDir = path.join(dir, 'done');
    this.idempotencyDir = path.join(dir, 'idempotency');
    this.deadLetterDir = path.join(dir, 'dead-letter');
    for (const folder of [this.activeDir, this.doneDir, this.idempotencyDir, this.deadLetterDir]) mkdirSync(folder, { recursive: true });
  }

  async create(job: Job, idempotencyKey?: string): Promise<{ job: Job; created: boolean }> {
    if (idempotencyKey !== undefined) {
      const keyFile = path.join(this.idempotencyDir, createHash('sha256').update(`${job.model}\0${idempotencyKey}`).digest('hex'));
      try {
        this.writeFile(keyFile, job.id, 'wx');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const existing = this.read(readFileSync(keyFile, 'utf8').trim());
        if (existing) return { job: existing, created: false };
        // The key file is written before the job: a crash between the two leaves a key with no job. Claim it.
        this.writeAtomic(keyFile, job.id);
      }
    }
    // One create and one write: a file torn by a kill mid-write was never acknowledged, and recovery drops it.
    this.writeFile(this.activeFile(job.id), JSON.stringify(job), 'wx');
    return { job, created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    return this.read(id);
  }

  async put(job: Job): Promise<void> {
    switch (job.status) {
      case 'running':
        this.running.set(job.id, structuredClone(job));
        return;
      case 'queued':
        this.running.delete(job.id);
        this.writeAtomic(this.activeFile(job.id), JSON.stringify(job));
        return;
      default:
        // The first write of done/ can be a plain create: while active/ exists, a torn done/ is just redone.
        // Later rewrites (webhook progress) replace the only copy, so they go through a rename.
        if (this.running.delete(job.id)) this.writeFile(this.doneFile(job.id), JSON.stringify(job), 'w');
        else this.writeAtomic(this.doneFile(job.id), JSON.stringify(job));
        rmSync(this.activeFile(job.id), { force: true });
    }
  }

  async listUnfinished(): Promise<Job[]> {
    const unfinished: Job[] = [];
    for (const name of readdirSync(this.activeDir)) {
      if (!name.endsWith('.json')) {
        rmSync(path.join(this.activeDir, name), { force: true }); // a temp file from an interrupted rewrite
        continue;
      }
      const id = name.slice(0, -'.json'.length);
      const done = this.readFile(this.doneFile(id));
      if (done) {
        // Finished just before the process died, before active/ was cleaned.
        rmSync(this.activeFile(id), { force: true });
        continue;
      }
      const job = this.readFile(this.activeFile(id));
      if (job) unfinished.push(job);
      else rmSync(this.activeFile(id), { force: true });
    }
    // Finished jobs whose webhook is still owed.
    for (const name of readdirSync(this.doneDir)) {
      if (!name.endsWith('.json')) continue;
      const job = this.readFile(path.join(this.doneDir, name));
      if (job && job.callbackUrl && !isSettled(job)) unfinished.push(job);
    }
    return unfinished.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async addDeadLetter(job: Job): Promise<void> {
    this.writeAtomic(path.join(this.deadLetterDir, job.id), job.finishedAt ?? new Date().toISOString());
  }

  async listDeadLetters(): Promise<JobView[]> {
    return readdirSync(this.deadLetterDir)
      .filter((id) => !id.startsWith('.') && !id.endsWith('.tmp'))
      .map((id) => this.read(id))
      .filter((job): job is Job => job !== undefined)
      .map(viewOf);
  }

  async deleteExpired(now: Date): Promise<number> {
    let deleted = 0;
    for (const name of readdirSync(this.doneDir)) {
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -'.json'.length);
      const job = this.readFile(this.doneFile(id));
      if (!job?.expiresAt || Date.parse(job.expiresAt) > now.getTime()) continue;
      rmSync(this.doneFile(id), { force: true });
      rmSync(path.join(this.deadLetterDir, id), { force: true });
      deleted++;
      // A sweep over days of jobs must not hold the event loop for long stretches.
      if (deleted % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    return deleted;
  }

  private read(id: string): Job | undefined {
    return this.running.get(id) ?? this.readFile(this.activeFile(id)) ?? this.readFile(this.doneFile(id));
  }

  private readFile(file: string): Job | undefined {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    try {
      return JSON.parse(text) as Job;
    } catch {
      return undefined; // torn by a kill mid-write, before any acknowledgement
    }
  }

  private activeFile(id: string): string {
    return path.join(this.activeDir, `${id}.json`);
  }

  private doneFile(id: string): string {
    return path.join(this.doneDir, `${id}.json`);
  }

  /** Replace a file whole: readers see the old or the new content, never a mix. */
  private writeAtomic(file: string, content: string): void {
    const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    this.writeFile(temp, content, 'w');
    renameSync(temp, file);
  }

  private writeFile(file: string, content: string, flag: 'w' | 'wx'): void {
    const fd = openSync(file, flag);
    try {
      if (content.length > 0) writeFileSync(fd, content);
      if (this.options.fsync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
