/** The batch benchmark's input: seeded synthetic user-days for the `anomaly` model as JSONL, made once and reused. */
import { closeSync, existsSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateUserDays, toFeatures } from '../anomaly-data.ts';

export const BENCH_DATA_DIR = path.join(os.tmpdir(), 'modelfn-bench-batch');

const BLOCK = 50_000;

/**
 * `rows` JSONL lines `{"id":"u1", <11 features>}`, deterministic in `seed` (blocks of 50k rows, seed + block
 * index). Written to a temp name and renamed, so an interrupted generation is never mistaken for a finished one.
 */
export function writeAnomalyJsonl(file: string, rows: number, seed = 2024): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (let start = 0, block = 0; start < rows; start += BLOCK, block++) {
      const days = generateUserDays(Math.min(BLOCK, rows - start), seed + block);
      let text = '';
      for (let i = 0; i < days.length; i++) text += JSON.stringify({ id: `u${start + i + 1}`, ...toFeatures(days[i]!) }) + '\n';
      writeSync(fd, text);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

/** The path of the `rows`-row benchmark file in BENCH_DATA_DIR, generating it the first time. */
export function ensureAnomalyJsonl(rows: number, dir = BENCH_DATA_DIR): { file: string; bytes: number; generated: boolean } {
  const file = path.join(dir, `anomaly-${rows}.jsonl`);
  let generated = false;
  if (!existsSync(file)) {
    writeAnomalyJsonl(file, rows);
    generated = true;
  }
  return { file, bytes: statSync(file).size, generated };
}
