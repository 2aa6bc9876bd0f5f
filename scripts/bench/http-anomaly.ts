/**
 * HTTP on loopback, `anomaly` over OIP v2: the local server vs a minimal node:http + onnxruntime-node server
 * (one await session.run per request, the same session options as the model definition), at concurrency 1
 * and 64. Goals (issue 2): >= 0.95x throughput at 1, >= 1.5x at 64 with p99 no worse.
 */
import { fileURLToPath } from 'node:url';
import anomaly from '../../models/anomaly/model.ts';
import { featureVector, generateUserDays } from '../anomaly-data.ts';
import { load, loadClient, median, pinning, ratio, spawnServer, type LoadResult } from './support.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 4);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const modelFile = fileURLToPath(new URL('../../models/anomaly/anomaly.onnx', import.meta.url));

const row = featureVector(generateUserDays(1, 7)[0]!);
const body = JSON.stringify({ inputs: [{ name: 'features', shape: [1, row.length], datatype: 'FP32', data: row }] });

export async function benchHttpAnomaly(): Promise<string[]> {
  const ours = await spawnServer('adapters/local/main.ts', [], { readyPath: '/v2/models/anomaly/ready' });
  const baseline = await spawnServer('scripts/bench/baseline-server.ts', [modelFile, '{port}', JSON.stringify(anomaly.sessionOptions ?? {})]);
  const lines = [`HTTP anomaly, OIP v2 infer, 1 row per request; ${loadClient}, ${pinning}, ${seconds} s runs, median of ${rounds} interleaved rounds`];
  try {
    for (const connections of [1, 64]) {
      const runs: Record<'ours' | 'baseline', LoadResult[]> = { ours: [], baseline: [] };
      for (let round = 0; round < rounds; round++) {
        // Alternate who goes first so drift on a shared machine favours neither side.
        const order = round % 2 === 0 ? (['ours', 'baseline'] as const) : (['baseline', 'ours'] as const);
        for (const who of order) {
          const url = `${who === 'ours' ? ours.url : baseline.url}/v2/models/anomaly/infer`;
          if (round === 0) await load(url, { connections, seconds: 1, body }); // warm-up
          const result = await load(url, { connections, seconds, body });
          if (result.errors || result.non2xx) throw new Error(`${who}: ${result.errors} errors, ${result.non2xx} non-2xx`);
          runs[who].push(result);
        }
      }
      const summary = (who: 'ours' | 'baseline') => ({
        rps: median(runs[who].map((r) => r.requestsPerSecond)),
        p50: median(runs[who].map((r) => r.p50Ms)),
        p99: median(runs[who].map((r) => r.p99Ms)),
      });
      const o = summary('ours');
      const b = summary('baseline');
      const perRound = runs.ours.map((r, i) => (r.requestsPerSecond / runs.baseline[i]!.requestsPerSecond).toFixed(2)).join(' ');
      lines.push(
        `  c=${connections}: modelfn ${o.rps.toFixed(0)} req/s (p50 ${o.p50.toFixed(2)} ms, p99 ${o.p99.toFixed(2)} ms) | baseline ${b.rps.toFixed(0)} req/s (p50 ${b.p50.toFixed(2)} ms, p99 ${b.p99.toFixed(2)} ms) | throughput ${ratio(o.rps, b.rps)}, p99 ${ratio(o.p99, b.p99)} of baseline (per round: ${perRound})`,
      );
    }
  } finally {
    await Promise.all([ours.stop(), baseline.stop()]);
  }
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) for (const line of await benchHttpAnomaly()) console.log(line);
