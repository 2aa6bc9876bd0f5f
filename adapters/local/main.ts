import { configFromEnv, createCore, createLogger } from '../../handlers/index.ts';
import { startLocalServer } from './server.ts';

/** `npm start`: every model in the models folder on 127.0.0.1:8080 (PORT and HOST override). */
const port = Number(process.env.PORT ?? 8080);
const host = process.env.HOST ?? '127.0.0.1';
const core = await createCore(configFromEnv(), { processMetrics: true, logger: createLogger({ buffered: true }) });
const server = await startLocalServer(core.http, { port, host });
core.logger.info({ url: server.url, models: core.repository.list().map((service) => service.name) }, 'listening');

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    core.logger.info({ signal }, 'draining in-flight requests');
    void server
      .close(Number(process.env.MODELFN_DRAIN_TIMEOUT_MS ?? 10_000))
      .then(() => core.repository.dispose())
      .finally(() => {
        core.logger.info('stopped');
        core.logger.flush(() => process.exit(0));
      });
  });
}
