import path from 'node:path';
import { configFromEnv, createCore } from '../../handlers/index.ts';
import { createLogger } from '../../handlers/log.ts';
import { FileJobStore } from './file-job-store.ts';
import { FileObjectStore } from './file-objects.ts';
import { LocalJobQueue } from './job-queue.ts';
import { startLocalServer } from './server.ts';

/**
 * `npm start`: every model in the models folder on 127.0.0.1:8080 (PORT and HOST override), with
 * asynchronous jobs kept under MODELFN_DATA_DIR (default .modelfn/ in the working directory) and batch jobs'
 * objects under MODELFN_BATCH_DIR (default <MODELFN_DATA_DIR>/objects).
 */
const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? '127.0.0.1';
const dataDir = path.resolve(process.env.MODELFN_DATA_DIR ?? '.modelfn');
const logger = createLogger({ buffered: true });
const queue = new LocalJobQueue(Number(process.env.MODELFN_JOB_CONCURRENCY ?? 64), logger);
const store = new FileJobStore(dataDir, { fsync: /^(1|true|yes)$/i.test(process.env.MODELFN_FSYNC ?? '') });
const objects = new FileObjectStore(path.resolve(process.env.MODELFN_BATCH_DIR ?? path.join(dataDir, 'objects')));
const core = await createCore(configFromEnv(), { processMetrics: true, logger, jobs: { store, queue, objects } });
const jobs = core.jobs!;

const recovered = await jobs.recover();
if (recovered > 0) logger.info({ jobs: recovered }, 'resuming jobs left unfinished by the previous process');
queue.start(jobs);
const sweepExpired = () =>
  jobs.deleteExpired().then(
    (deleted) => deleted > 0 && logger.info({ deleted }, 'expired jobs deleted'),
    (error: unknown) => logger.error({ err: error }, 'deleting expired jobs failed'),
  );
void sweepExpired();
setInterval(sweepExpired, 3600_000).unref();

const server = await startLocalServer(core.http, { port, host });
logger.info({ url: server.url, models: core.repository.list().map((service) => service.name), dataDir, batchDir: objects.root }, 'listening');

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining in-flight requests');
    const drainTimeoutMs = Number(process.env.MODELFN_DRAIN_TIMEOUT_MS ?? 10_000);
    void server
      .close(drainTimeoutMs)
      // Running jobs finish; queued ones stay on disk for the next start.
      .then(() => Promise.race([queue.stop(), new Promise((resolve) => setTimeout(resolve, drainTimeoutMs).unref())]))
      .then(() => core.repository.dispose())
      .finally(() => {
        logger.info('stopped');
        logger.flush(() => process.exit(0));
      });
  });
}
