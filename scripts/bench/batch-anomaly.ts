/**
 * Batch: `modelfn batch anomaly` over 1M JSONL rows, end to end (spawned CLI, default workers), against
 *   naive: readline, JSON.parse, one session.run per row, JSONL out (goal: modelfn >= 10x its rate)
 *   floor: the same read-parse-write pipeline with no inference at all (goal: modelfn >= 0.6x its rate)
 * and modelfn's peak RSS on 1M and 4M rows (goal: < 300 MB, not growing with the input).
 * Every contender is a process of its own, timed from spawn to exit; the input is generated once (seeded)
 * into a temp folder and reused.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_DATA_DIR, ensureAnomalyJsonl } from './batch-data.ts';
import { median, REPO_ROOT } from './support.ts';

const ROOT = fileURLToPath(REPO_ROOT);
const ROWS = 1_000_000;
const rounds = Number(process.env.BENCH_BATCH_ROUNDS ?? 5);
const naiveRows = Number(process.env.BENCH_NAIVE_ROWS ?? 100_000);
const timeBinary = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

interface RunResult {
  seconds: number;
  maxRssMb: number;
  code: number | null;
  stderr: string;
}

/** Spawn `node --import tsx <entry> args`, timed from spawn to exit, its peak RSS from /usr/bin/time or the wrapper. */
function timedRun(entry: string, args: string[]): Promise<RunResult> {
  const node = [process.execPath, '--import', 'tsx'];
  const rssFile = path.join(os.tmpdir(), `modelfn-bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const command = timeBinary
    ? [timeBinary, '-f', '%M', '-o', rssFile, ...node, entry, ...args]
    : [...node, 'scripts/bench/batch-rss.ts', entry, ...args];
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command[0]!, command.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.resume();
    child.on('error', reject);
    child.on('exit', (code) => {
      const seconds = (performance.now() - started) / 1000;
      let rssKb: number;
      if (timeBinary) {
        rssKb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
        rmSync(rssFile, { force: true });
      } else {
        rssKb = Number(/maxrss_kb=(\d+)/.exec(stderr)?.[1] ?? NaN);
      }
      resolve({ seconds, maxRssMb: rssKb / 1024, code, stderr });
    });
  });
}

function check(what: string, result: RunResult, expectRecords?: number): void {
  if (result.code !== 0) throw new Error(`${what} exited with ${result.code}: ${result.stderr.slice(-500)}`);
  if (expectRecords !== undefined && !result.stderr.includes(`done: ${expectRecords} records, ${expectRecords} succeeded`)) {
    throw new Error(`${what} did not report ${expectRecords} records: ${result.stderr.slice(-500)}`);
  }
}

/** 4M rows: the 1M file four times over (the same value distribution; only peak memory is measured on it). */
function ensureFourMillion(oneMillion: string): string {
  const file = path.join(BENCH_DATA_DIR, `anomaly-${4 * ROWS}.jsonl`);
  const expected = 4 * statSync(oneMillion).size;
  if (existsSync(file) && statSync(file).size === expected) return file;
  const tmp = `${file}.tmp-${process.pid}`;
  copyFileSync(oneMillion, tmp);
  for (let i = 1; i < 4; i++) appendFileSync(tmp, readFileSync(oneMillion));
  renameSync(tmp, file);
  return file;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export async function benchBatchAnomaly(): Promise<string[]> {
  const generateStarted = performance.now();
  const data = ensureAnomalyJsonl(ROWS);
  const fourMillion = ensureFourMillion(data.file);
  const generated = data.generated ? ` (generated in ${((performance.now() - generateStarted) / 1000).toFixed(0)} s)` : ' (reused)';
  const out = mkdtempSync(path.join(os.tmpdir(), 'modelfn-bench-batch-out-'));
  const modelfn = (input: string, output: string) => timedRun('bin/modelfn.js', ['batch', 'anomaly', '--input', input, '--output', output]);
  const baseline = (mode: 'naive' | 'floor', rows?: number): Promise<RunResult> =>
    timedRun('scripts/bench/batch-baselines.ts', [mode, data.file, path.join(out, `${mode}.jsonl`), ...(rows ? [String(rows)] : [])]);

  try {
    const ours: RunResult[] = [];
    const floor: RunResult[] = [];
    const naives: RunResult[] = [];
    const contenders = [
      async () => {
        const result = await modelfn(data.file, path.join(out, 'modelfn.jsonl'));
        check('modelfn batch', result, ROWS);
        ours.push(result);
      },
      async () => {
        const result = await baseline('floor');
        check('floor', result);
        floor.push(result);
      },
      async () => {
        const result = await baseline('naive', naiveRows);
        check('naive', result);
        naives.push(result);
      },
    ];
    for (let round = 0; round < rounds; round++) {
      // Interleaved, each round starting with another contender, so drift on a shared machine hits all alike.
      for (let k = 0; k < contenders.length; k++) await contenders[(round + k) % contenders.length]!();
    }
    const big = await modelfn(fourMillion, path.join(out, 'modelfn-4m.jsonl'));
    check('modelfn batch (4M)', big, 4 * ROWS);

    const oursSeconds = median(ours.map((r) => r.seconds));
    const floorSeconds = median(floor.map((r) => r.seconds));
    const oursRate = ROWS / oursSeconds;
    const floorRate = ROWS / floorSeconds;
    const naiveSeconds = median(naives.map((r) => r.seconds));
    const naiveRate = naiveRows / naiveSeconds;
    const rss1m = Math.max(...ours.map((r) => r.maxRssMb));
    const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
    const workers = os.availableParallelism();
    return [
      `Batch: anomaly over ${fmt(ROWS)} JSONL rows (${(data.bytes / 1e6).toFixed(0)} MB)${generated}; every contender a spawned process timed spawn to exit (startup included), median of ${rounds} interleaved rounds`,
      `  modelfn batch (${workers} workers): ${oursSeconds.toFixed(2)} s, ${fmt(oursRate)} rows/s [${ours.map((r) => r.seconds.toFixed(2)).join(', ')} s]`,
      `  naive (readline, JSON.parse, session.run per row), ${fmt(naiveRows)} rows${naiveRows < ROWS ? ' (fewer rows, rates compared)' : ''}: ${naiveSeconds.toFixed(2)} s, ${fmt(naiveRate)} rows/s -> modelfn ${(oursRate / naiveRate).toFixed(1)}x (goal >= 10x: ${verdict(oursRate >= 10 * naiveRate)})`,
      `  floor (readline, JSON.parse, stringify, write; no inference): ${floorSeconds.toFixed(2)} s, ${fmt(floorRate)} rows/s -> modelfn ${(oursRate / floorRate).toFixed(2)}x (goal >= 0.6x: ${verdict(oursRate >= 0.6 * floorRate)})`,
      `  modelfn peak RSS (${timeBinary ? '/usr/bin/time' : 'resourceUsage().maxRSS'}): ${fmt(ROWS)} rows ${rss1m.toFixed(0)} MB, ${fmt(4 * ROWS)} rows ${big.maxRssMb.toFixed(0)} MB in ${big.seconds.toFixed(1)} s (${fmt((4 * ROWS) / big.seconds)} rows/s) (goal < 300 MB and flat: ${verdict(Math.max(rss1m, big.maxRssMb) < 300 && big.maxRssMb < rss1m * 1.15)})`,
    ];
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) for (const line of await benchBatchAnomaly()) console.log(line);
