/**
 * HTTP on loopback, `anomaly` over OIP v2: the local server vs a minimal node:http + onnxruntime-node server
 * (one await session.run per request), at concurrency 1 and 64. Goals (issue 2): >= 0.95x throughput at 1,
 * >= 1.5x at 64 with p99 no worse.
 */
import { fileURLToPath } from 'node:url';
import { generateUserDays, featureVector } from '../anomaly-data.ts';
import { load, machineLine, ratio, spawnServer, type LoadResult } from './support.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 8);
const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const modelFile = fileURLToPath(new URL('../../models/anomaly/anomaly.onnx', import.meta.url));

const row = featureVector(generateUserDays(1, 7)[0]!);
const body = JSON.stringify({ inputs: [{ name: 'features', shape: [1, row.length], datatype: 'FP32', data: row }] });

export async function benchHttpAnomaly(): Promise<string[]> {
  const ours = await spawnServer('adapters/local/main.ts', [], { readyPath: '/v2/health/ready' });
  const baseline = await spawnServer('scripts/bench/baseline-server.ts', [modelFile, '{port}']);
  const lines = [`HTTP anomaly, OIP v2 infer, 1 row per request, ${seconds}s per run, best of ${rounds} rounds (${machineLine()})`];
  try {
    for (const connections of [1, 64]) {
      const best = { ours: undefined as LoadResult | undefined, baseline: undefined as LoadResult | undefined };
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first so drift on a shared machine does not favour one side.
        const order = round % 2 === 0 ? (['ours', 'baseline'] as const) : (['baseline', 'ours'] as const);
        for (const who of order) {
          const url = `${who === 'ours' ? ours.url : baseline.url}/v2/models/anomaly/infer`;
          await load(url, { connections, seconds: 1, body }); // warm-up
          const result = await load(url, { connections, seconds, body });
          if (result.errors || result.non2xx) throw new Error(`${who}: ${result.errors} errors, ${result.non2xx} non-2xx`);
          if (!best[who] || result.requestsPerSecond > best[who]!.requestsPerSecond) best[who] = result;
        }
      }
      const o = best.ours!;
      const b = best.baseline!;
      lines.push(
        `  c=${connections}: modelfn ${o.requestsPerSecond.toFixed(0)} req/s (p50 ${o.p50Ms} ms, p99 ${o.p99Ms} ms) | baseline ${b.requestsPerSecond.toFixed(0)} req/s (p50 ${b.p50Ms} ms, p99 ${b.p99Ms} ms) | throughput ${ratio(o.requestsPerSecond, b.requestsPerSecond)}, p99 ${ratio(o.p99Ms, b.p99Ms)} of baseline`,
      );
    }
  } finally {
    await Promise.all([ours.stop(), baseline.stop()]);
  }
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) for (const line of await benchHttpAnomaly()) console.log(line);
