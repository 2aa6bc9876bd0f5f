/**
 * Cold start on Lambda, as near as this machine gets: a fresh Node process imports the BUNDLED http handler
 * (`npm run build:aws`, http.mjs) and answers one API Gateway v2 event (anomaly OIP infer), vs the same with a
 * minimal hand-written handler around onnxruntime-node (aws-cold-start/baseline-handler.mjs). Each is timed from
 * spawn to the answer, with import and first-response time apart; rounds alternate; medians and the ratio.
 * Goal (issue 4): <= 1.1x. Also the warm-up ping: median handler time < 1 ms, with the model still not loaded.
 *
 * Both run pinned to one core (Lambda at 1769 MB has one vCPU), from the same build folder: the same pruned
 * onnxruntime-node and the same model file. Not measured: Lambda's own part (downloading and unpacking the zip,
 * starting the runtime), the same for both.
 *
 * `npm run bench:aws-cold-start` (BENCH_COLD_ROUNDS, default 15 per contender).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { parse as parseYaml } from 'yaml';
import { AWS_ENTRIES, buildAws } from '../build-aws.ts';
import { median, pinned, ratio, SERVER_CPU } from './support.ts';

const rounds = Number(process.env.BENCH_COLD_ROUNDS ?? 15);
const PINGS = 1_000;
const HERE = fileURLToPath(new URL('./aws-cold-start/', import.meta.url));

interface ColdRun {
  /** Spawn to the answer, seen from the parent. */
  totalMs: number;
  importMs: number;
  firstResponseMs: number;
  pingMs: number[];
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** The README's account-takeover user-day as an OIP infer request, in the HTTP API example event. */
function inferEvent(): APIGatewayProxyEventV2 {
  const event = JSON.parse(readFileSync(new URL('../../test/fixtures/aws/http-api-v2.json', import.meta.url), 'utf8')) as APIGatewayProxyEventV2;
  const body = JSON.stringify({ id: 'cold', inputs: [{ name: 'features', datatype: 'FP32', shape: [1, 11], data: [3, 12, 2, 45, 900, 9, 4, 0.7, 150, 400, 2] }] });
  event.rawPath = '/v2/models/anomaly/infer';
  event.requestContext.http.method = 'POST';
  event.requestContext.http.path = event.rawPath;
  event.headers['content-type'] = 'application/json';
  return { ...event, body, isBase64Encoded: false };
}

/**
 * The environment serverless.yml gives every function (provider.environment), so the handler starts as deployed:
 * with the jobs store and queue configured (the core creates its JobService), their names placeholders, since
 * nothing is sent anywhere when serving a prediction.
 */
function deployedEnvironment(): Record<string, string> {
  const config = parseYaml(readFileSync(new URL('../../serverless.yml', import.meta.url), 'utf8'), { logLevel: 'error' }) as {
    provider: { environment: Record<string, string | number> };
    custom: Record<string, unknown>;
  };
  const resolve = (name: string, value: string | number): string => {
    const text = String(value);
    const custom = /^\$\{self:custom\.(\w+)\}$/.exec(text);
    if (custom && typeof config.custom[custom[1]!] !== 'object') return String(config.custom[custom[1]!]);
    return text.includes('${') ? `bench-${name.toLowerCase().replaceAll('_', '-')}` : text;
  };
  return Object.fromEntries(Object.entries(config.provider.environment).map(([name, value]) => [name, resolve(name, value)]));
}

function coldRun(handlerFile: string, eventFile: string, env: NodeJS.ProcessEnv, pings = 0): Promise<ColdRun> {
  const command = pinned([process.execPath, path.join(HERE, 'invoke-once.mjs'), handlerFile, eventFile, ...(pings ? ['--pings', String(pings)] : [])], SERVER_CPU);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // stdout: the handler's own log lines (Lambda ships them to CloudWatch); fd 3: the measurement.
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], env });
    let out = '';
    child.stdio[3]!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.endsWith('\n')) resolve({ totalMs: performance.now() - started, ...(JSON.parse(out) as Omit<ColdRun, 'totalMs'>) });
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!out.endsWith('\n')) reject(new Error(`${path.basename(handlerFile)} exited with ${code} before answering`));
    });
  });
}

const scoreOf = (run: ColdRun) => (JSON.parse(run.body) as { outputs: { name: string; data: number[] }[] }).outputs.find((output) => output.name === 'score')!.data[0]!;
const ms = (value: number) => `${value.toFixed(1)} ms`;

export async function benchAwsColdStart(): Promise<string[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'modelfn-cold-start-'));
  try {
    const build = await buildAws({ outDir: path.join(dir, 'build'), entries: { http: AWS_ENTRIES.http! } });
    const ours = path.join(build.outDir, 'http.mjs');
    const baseline = path.join(build.outDir, 'baseline-handler.mjs');
    copyFileSync(path.join(HERE, 'baseline-handler.mjs'), baseline);
    const eventFile = path.join(dir, 'event.json');
    writeFileSync(eventFile, JSON.stringify(inferEvent()));
    // Read once, before any timing starts: every process gets the same environment.
    const env = { ...process.env, ...deployedEnvironment() };

    // One of each first (page cache, and both must agree on the answer).
    const [first, reference] = [await coldRun(ours, eventFile, env), await coldRun(baseline, eventFile, env)];
    if (first.statusCode !== 200 || Math.abs(scoreOf(first) - scoreOf(reference)) > 1e-6) {
      throw new Error(`the bundled handler answered ${first.statusCode} ${first.body}, the baseline ${reference.body}`);
    }

    const samples: Record<'ours' | 'baseline', ColdRun[]> = { ours: [], baseline: [] };
    for (let round = 0; round < rounds; round++) {
      const order: ('ours' | 'baseline')[] = round % 2 ? ['baseline', 'ours'] : ['ours', 'baseline'];
      for (const name of order) samples[name].push(await coldRun(name === 'ours' ? ours : baseline, eventFile, env));
    }
    const stat = (name: 'ours' | 'baseline', field: 'totalMs' | 'importMs' | 'firstResponseMs') => median(samples[name].map((run) => run[field]));
    // Each round runs the two back to back: the median of the rounds' own ratios is less moved by this machine's
    // drift than the ratio of the two medians.
    const pairedRatio = median(samples.ours.map((run, round) => run.totalMs / samples.baseline[round]!.totalMs));

    // Warm-up pings in a fresh process: each answered without the core, and the first real request after them
    // is still the one that loads the model (Server-Timing `load;…;desc="cold"`).
    const pinged = await coldRun(ours, eventFile, env, PINGS);
    const pingMedian = median(pinged.pingMs);
    const loadedByRequest = /load;dur=[\d.]+;desc="cold"/.test(pinged.headers['server-timing'] ?? '');

    const bundleKb = (build.startupBytes['http.mjs']! / 1024).toFixed(0);
    return [
      `AWS Lambda cold start (fresh Node process, one core, anomaly OIP infer via an HTTP API v2 event), median of ${rounds} alternated rounds`,
      `  spawn -> answer: bundled modelfn http.mjs ${ms(stat('ours', 'totalMs'))} vs hand-written onnxruntime handler ${ms(stat('baseline', 'totalMs'))}: ${ratio(stat('ours', 'totalMs'), stat('baseline', 'totalMs'))} (goal <= 1.10x); median of the rounds' own ratios ${pairedRatio.toFixed(2)}x`,
      `  import: ${ms(stat('ours', 'importMs'))} vs ${ms(stat('baseline', 'importMs'))} (baseline creates its session at import); first response: ${ms(stat('ours', 'firstResponseMs'))} vs ${ms(stat('baseline', 'firstResponseMs'))}`,
      `  import + first response: ${ms(stat('ours', 'importMs') + stat('ours', 'firstResponseMs'))} vs ${ms(stat('baseline', 'importMs') + stat('baseline', 'firstResponseMs'))}: ${ratio(stat('ours', 'importMs') + stat('ours', 'firstResponseMs'), stat('baseline', 'importMs') + stat('baseline', 'firstResponseMs'))}; http.mjs and its static chunks ${bundleKb} KB, package ${(build.bytes.total / 1e6).toFixed(1)} MB unzipped`,
      `  warm-up ping (serverless-plugin-warmup payload), handler time: median ${(pingMedian * 1000).toFixed(1)} µs over ${PINGS} pings (goal < 1 ms); model loaded by the first request after them: ${loadedByRequest ? 'yes (not by the pings)' : 'NO'}`,
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (const line of await benchAwsColdStart()) console.log(line);
}
