import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateUserDays, toFeatures } from '../scripts/anomaly-data.ts';
import { identityModel, writeModelRepository } from './support/onnx-models.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

async function waitForAll(server: ServerProcess, ids: string[], timeoutMs = 30_000): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const jobs = await Promise.all(ids.map(async (id) => (await (await fetch(`${server.url}/v1/jobs/${id}`)).json()) as Record<string, unknown>));
    if (jobs.every((job) => job.status === 'succeeded' || job.status === 'failed') || Date.now() > deadline) return jobs;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('kill -9 loses no accepted job', () => {
  it('jobs running or queued when the process is killed all complete after a restart', async () => {
    // 300 ms per job, 4 at a time, submitted at once: most of the 30 jobs are queued or running at the kill
    // (a slower machine only leaves more of them unfinished).
    const models = writeModelRepository(
      [
        {
          name: 'slow',
          onnx: identityModel([{ name: 'x', type: 'float32', dims: ['batch', 2] }]),
          source: `export default {
  name: 'slow', version: '1', file: 'model.onnx', batching: false,
  async predict(instances) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return instances.map((instance) => ({ doubled: instance.n * 2 }));
  },
};
`,
        },
      ],
      { insideProject: true },
    );
    const env = { MODELFN_MODELS_DIR: models, MODELFN_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'modelfn-data-')), MODELFN_JOB_CONCURRENCY: '4' };
    const first = await startServerProcess(env);
    const ids = await Promise.all(
      Array.from({ length: 30 }, async (_, n) => {
        const response = await fetch(`${first.url}/v1/models/slow/jobs`, { method: 'POST', body: JSON.stringify({ instances: [{ n }] }) });
        expect(response.status).toBe(202);
        return ((await response.json()) as { id: string }).id;
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 400));
    const before = await Promise.all(ids.map(async (id) => ((await (await fetch(`${first.url}/v1/jobs/${id}`)).json()) as { status: string }).status));
    expect(before.filter((status) => status !== 'succeeded').length).toBeGreaterThan(10);
    await first.stop('SIGKILL');

    const second = await startServerProcess(env);
    try {
      expect(second.logs.find((entry) => entry.msg === 'resuming jobs left unfinished by the previous process')).toMatchObject({ jobs: expect.any(Number) });
      const jobs = await waitForAll(second, ids);
      jobs.forEach((job, n) => {
        expect(job).toMatchObject({ id: ids[n], status: 'succeeded', result: { predictions: [{ doubled: n * 2 }] } });
      });
    } finally {
      await second.stop('SIGKILL');
    }
  });

  it('every submit that got its 202 survives a kill in the middle of a burst of submits', async () => {
    const env = { MODELFN_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'modelfn-data-')) };
    const first = await startServerProcess(env);
    const accepted: string[] = [];
    const days = generateUserDays(400, 77).map(toFeatures);
    let killed = false;
    const fire = async (day: (typeof days)[number]) => {
      try {
        const response = await fetch(`${first.url}/v1/models/anomaly/jobs`, { method: 'POST', body: JSON.stringify({ instances: [day] }) });
        if (response.status === 202) accepted.push(((await response.json()) as { id: string }).id);
      } catch {
        // refused or cut off by the kill: never acknowledged, so nothing is owed
      }
    };
    const burst = (async () => {
      for (let start = 0; start < days.length && !killed; start += 20) await Promise.all(days.slice(start, start + 20).map(fire));
    })();
    while (accepted.length < 60) await new Promise((resolve) => setTimeout(resolve, 5));
    await first.stop('SIGKILL');
    killed = true;
    await burst;

    const second = await startServerProcess(env);
    try {
      const jobs = await waitForAll(second, accepted);
      expect(jobs.filter((job) => job.status !== 'succeeded')).toEqual([]);
      expect(new Set(jobs.map((job) => job.id)).size).toBe(accepted.length);
    } finally {
      await second.stop('SIGKILL');
    }
  });
});
