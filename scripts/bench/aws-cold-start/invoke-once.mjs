// One fresh process of the cold-start benchmark: import a Lambda handler module, answer one event, report the
// times on fd 3 (stdout belongs to the handler's logs). `--pings N` first sends N warm-up pings and times them.
import { readFileSync, writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [handlerFile, eventFile, ...rest] = process.argv.slice(2);
const pings = rest[0] === '--pings' ? Number(rest[1]) : 0;
const event = JSON.parse(readFileSync(eventFile, 'utf8'));
const context = (id) => ({
  awsRequestId: `bench-${id}`,
  functionName: 'modelfn-bench-http',
  getRemainingTimeInMillis: () => 29_000,
});

const importStarted = performance.now();
const { handler } = await import(pathToFileURL(handlerFile).href);
const imported = performance.now();

const pingMs = [];
for (let i = 0; i < pings; i++) {
  const started = performance.now();
  const answer = await handler({ source: 'serverless-plugin-warmup' }, context(`ping-${i}`));
  pingMs.push(performance.now() - started);
  if (answer?.warm !== true) throw new Error(`ping ${i} was not answered as a warm-up: ${JSON.stringify(answer)}`);
}

const callStarted = performance.now();
const result = await handler(event, context('first'));
const answered = performance.now();
writeSync(
  3,
  `${JSON.stringify({
    // performance.now() counts from this process's start (timeOrigin).
    importMs: imported - importStarted,
    firstResponseMs: answered - callStarted,
    sinceProcessStartMs: answered,
    pingMs,
    statusCode: result.statusCode,
    headers: result.headers,
    body: result.body,
  })}\n`,
);
process.exit(0);
