/**
 * Asynchronous jobs on the local server, `anomaly`: durable submits per second (each 202 means the job is
 * on disk) and end-to-end jobs per second (submit -> succeeded). Goal (issue 3): >= 1,000 submits/s.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateUserDays, toFeatures } from '../anomaly-data.ts';
import { load, loadClient, pinning, spawnServer, type SpawnedServer } from './support.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 4);
const endToEndJobs = Number(process.env.BENCH_JOBS ?? 5000);
const body = JSON.stringify({ instances: [toFeatures(generateUserDays(1, 7)[0]!)] });

async function jobCounts(server: SpawnedServer): Promise<{ accepted: number; finished: number }> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const count = (event: string) => Number(new RegExp(`^modelfn_jobs_total\\{model="anomaly",event="${event}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { accepted: count('accepted'), finished: count('succeeded') + count('failed') };
}

async function drained(server: SpawnedServer, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { accepted, finished } = await jobCounts(server);
    if (finished >= accepted) return;
    if (Date.now() > deadline) throw new Error(`jobs did not drain: ${finished}/${accepted}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function measure(fsync: boolean): Promise<string[]> {
  const server = await spawnServer('adapters/local/main.ts', [], {
    readyPath: '/v2/models/anomaly/ready',
    env: { MODELFN_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'modelfn-bench-jobs-')), MODELFN_FSYNC: fsync ? '1' : '' },
  });
  try {
    const url = `${server.url}/v1/models/anomaly/jobs`;
    await load(url, { connections: 8, seconds: 1, body });
    await drained(server);
    const submits = await load(url, { connections: 32, seconds, body });
    if (submits.errors || submits.non2xx) throw new Error(`submits: ${submits.errors} errors, ${submits.non2xx} non-2xx`);
    await drained(server);

    const started = performance.now();
    const before = await jobCounts(server);
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < endToEndJobs) {
          next++;
          const response = await fetch(url, { method: 'POST', body });
          if (response.status !== 202) throw new Error(`submit answered ${response.status}`);
          await response.arrayBuffer();
        }
      }),
    );
    for (;;) {
      const { finished } = await jobCounts(server);
      if (finished - before.finished >= endToEndJobs) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const endToEnd = endToEndJobs / ((performance.now() - started) / 1000);
    return [
      `  ${fsync ? 'fsync on ' : 'fsync off'}: durable submits ${submits.requestsPerSecond.toFixed(0)}/s (p50 ${submits.p50Ms.toFixed(2)} ms, p99 ${submits.p99Ms.toFixed(2)} ms, 32 connections) — goal >= 1,000/s ${submits.requestsPerSecond >= 1000 ? 'met' : 'MISSED'} | end to end ${endToEnd.toFixed(0)} jobs/s (${endToEndJobs} jobs submitted by 32 clients until all succeeded)`,
    ];
  } finally {
    await server.stop();
  }
}

export async function benchJobsAnomaly(): Promise<string[]> {
  return [
    `Async jobs, anomaly, 1 instance per job, local file store; ${loadClient}, ${pinning}, ${seconds} s submit runs`,
    ...(await measure(false)),
    ...(await measure(true)),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) for (const line of await benchJobsAnomaly()) console.log(line);
