/**
 * `modelfn batch` as users run it: the CLI in a child process, the real anomaly model, files in a temp folder.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FEATURE_NAMES, generateUserDays, toFeatures, type UserDayFeatures } from '../scripts/anomaly-data.ts';
import { REPO_ROOT } from './support/server-process.ts';
import { parseJsonLines, type ErrorLine, type OutputLine } from './support/batch-output.ts';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'modelfn-batch-test-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

function startBatch(args: string[]): { child: ChildProcess; done: Promise<Outcome> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/cli.ts', 'batch', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, VITEST: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<Outcome>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr })));
  return { child, done };
}

const batch = (...args: string[]) => startBatch(args).done;
const file = (name: string) => path.join(dir, name);
const jsonLines = <T>(name: string): T[] => (existsSync(name) ? parseJsonLines<T>(readFileSync(name, 'utf8')) : []);

const rowsOf = (count: number, seed: number) => generateUserDays(count, seed).map((day, i) => ({ id: `u${i + 1}`, ...toFeatures(day) }));

describe('modelfn batch', () => {
  it('puts exactly the malformed lines in the errors file with their reasons, the rest in input order; exit 2', async () => {
    const rows = rowsOf(5000, 1);
    const lines = rows.map((row) => JSON.stringify(row));
    const bad = new Map<number, RegExp>(); // line number -> expected reason
    for (let k = 0; k < 50; k++) {
      const index = 37 + k * 97 + (k % 5); // 1% of the lines, spread across chunks
      const row = rows[index]!;
      const line = index + 1;
      if (k % 3 === 0) {
        lines[index] = JSON.stringify(row).slice(0, 40); // cut off mid-record
        bad.set(line, new RegExp(`^line ${line} is not valid JSON: `));
      } else if (k % 3 === 1) {
        const { failed_logins: _missing, ...rest } = row;
        lines[index] = JSON.stringify(rest);
        bad.set(line, new RegExp(`^line ${line} is missing required property "failed_logins"$`));
      } else {
        lines[index] = JSON.stringify({ ...row, logins: String(row.logins) });
        bad.set(line, new RegExp(`^line ${line}\\.logins must be number$`));
      }
    }
    writeFileSync(file('mixed.jsonl'), `${lines.join('\n')}\n`);

    const result = await batch('anomaly', '--input', file('mixed.jsonl'), '--output', file('mixed.out.jsonl'), '--batch-size', '64');
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('done: 5000 records, 4950 succeeded, 50 failed');

    const errors = jsonLines<ErrorLine>(file('mixed.out.jsonl.errors.jsonl'));
    expect(errors.map((e) => e.line)).toEqual([...bad.keys()]);
    for (const error of errors) {
      expect(error.error).toMatch(bad.get(error.line)!);
      // The id of a record that parsed is kept; a line that is not JSON has none.
      if (/not valid JSON/.test(error.error)) expect(error.id).toBeUndefined();
      else expect(error.id).toBe(rows[error.line - 1]!.id);
    }

    const output = jsonLines<OutputLine>(file('mixed.out.jsonl'));
    const goodLines = rows.map((_, i) => i + 1).filter((line) => !bad.has(line));
    expect(output.map((o) => o.line)).toEqual(goodLines);
    expect(output.map((o) => o.id)).toEqual(goodLines.map((line) => rows[line - 1]!.id));
    for (const o of output) expect(o.prediction.score).toBeGreaterThanOrEqual(0);
    expect(existsSync(file('mixed.out.jsonl.checkpoint.json'))).toBe(false);
  });

  it('exits 0 when every record succeeds, naming records without an id by their line, with no errors file', async () => {
    const rows = rowsOf(2000, 2);
    const lines = rows.map((row, i) => (i % 2 ? JSON.stringify(row) : JSON.stringify({ ...row, id: undefined })));
    writeFileSync(file('good.jsonl'), `${lines.join('\n')}\n\n`); // a trailing blank line is not a record
    const result = await batch('anomaly', '--input', file('good.jsonl'), '--output', file('good.out.jsonl'));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/done: 2000 records, 2000 succeeded, 0 failed in [\d.]+ s \(\d+ records\/s\)/);
    const output = jsonLines<OutputLine>(file('good.out.jsonl'));
    expect(output.map((o) => o.id)).toEqual(rows.map((row, i) => (i % 2 ? row.id : i + 1)));
    expect(existsSync(file('good.out.jsonl.errors.jsonl'))).toBe(false);
  });

  it('gives a CSV with a header the same predictions as the JSONL of the same rows', async () => {
    const rows = rowsOf(1000, 3);
    writeFileSync(file('same.jsonl'), rows.map((row) => JSON.stringify(row)).join('\n'));
    const header = ['id', ...FEATURE_NAMES];
    const csv = [header.join(','), ...rows.map((row) => header.map((name) => String(row[name as keyof typeof row])).join(','))];
    writeFileSync(file('same.csv'), `${csv.join('\r\n')}\r\n`);

    const [fromJson, fromCsv] = await Promise.all([
      batch('anomaly', '--input', file('same.jsonl'), '--output', file('same.json.out.jsonl'), '--workers', '1'),
      batch('anomaly', '--input', file('same.csv'), '--output', file('same.csv.out.jsonl'), '--workers', '1'),
    ]);
    expect(fromJson.code, fromJson.stderr).toBe(0);
    expect(fromCsv.code, fromCsv.stderr).toBe(0);
    const a = jsonLines<OutputLine>(file('same.json.out.jsonl'));
    const b = jsonLines<OutputLine>(file('same.csv.out.jsonl'));
    expect(b).toHaveLength(1000);
    expect(b.map((o) => o.id)).toEqual(a.map((o) => o.id));
    expect(b.map((o) => o.line)).toEqual(a.map((o) => o.line + 1)); // the header is line 1
    for (let i = 0; i < a.length; i++) {
      expect(Math.abs(b[i]!.prediction.score - a[i]!.prediction.score)).toBeLessThanOrEqual(1e-6);
      expect(b[i]!.prediction.anomaly).toBe(a[i]!.prediction.anomaly);
    }
  });

  describe('interrupted runs', () => {
    const TOTAL = 200_000;
    let input: string;
    const badLines = new Set<number>();

    beforeAll(() => {
      // 200k lines (~45 MB): 20k generated user-days cycled with unique ids, every 1000th line broken.
      const days: UserDayFeatures[] = generateUserDays(20_000, 4).map(toFeatures);
      const parts: string[] = [];
      for (let i = 0; i < TOTAL; i++) {
        if (i % 1000 === 999) {
          parts.push('{"id":"broken",');
          badLines.add(i + 1);
        } else parts.push(JSON.stringify({ id: `r${i + 1}`, ...days[i % days.length]! }));
      }
      input = file('big.jsonl');
      writeFileSync(input, `${parts.join('\n')}\n`);
    });

    /** Start a run and stop it with `signal` as soon as its first checkpoint exists. */
    async function interrupt(output: string, signal: NodeJS.Signals): Promise<Outcome> {
      const run = startBatch(['anomaly', '--input', input, '--output', output]);
      const checkpoint = `${output}.checkpoint.json`;
      while (!existsSync(checkpoint)) {
        if (run.child.exitCode !== null) throw new Error(`batch ended before its first checkpoint: ${(await run.done).stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      run.child.kill(signal);
      return run.done;
    }

    /** Every input line exactly once across output and errors, each file in input order. */
    function expectEveryLineOnce(output: string): void {
      const done = jsonLines<OutputLine>(output).map((o) => o.line);
      const failed = jsonLines<ErrorLine>(`${output}.errors.jsonl`).map((e) => e.line);
      expect(failed).toEqual([...badLines]);
      expect(done).toHaveLength(TOTAL - badLines.size);
      for (let i = 1; i < done.length; i++) if (done[i]! <= done[i - 1]!) throw new Error(`output out of order or duplicated at ${done[i]}`);
      expect(new Set([...done, ...failed]).size).toBe(TOTAL);
    }

    it('--resume after kill -9 finishes with every input line exactly once', async () => {
      const output = file('killed.out.jsonl');
      const killed = await interrupt(output, 'SIGKILL');
      expect(killed.signal).toBe('SIGKILL');
      const checkpoint = JSON.parse(readFileSync(`${output}.checkpoint.json`, 'utf8')) as { inputLines: number; outputBytes: number };
      expect(checkpoint.inputLines).toBeGreaterThan(0);
      expect(checkpoint.inputLines).toBeLessThan(TOTAL);

      const resumed = await batch('anomaly', '--input', input, '--output', output, '--resume');
      expect(resumed.code, resumed.stderr).toBe(2); // the broken lines, from both runs
      expect(resumed.stderr).toContain(`done: ${TOTAL} records, ${TOTAL - badLines.size} succeeded, ${badLines.size} failed`);
      expect(resumed.stderr).toMatch(/resumed after line \d+/);
      expectEveryLineOnce(output);
      expect(existsSync(`${output}.checkpoint.json`)).toBe(false);
    });

    it('stops on SIGTERM with exit 143 after flushing, then resumes; refuses to resume over a changed input', async () => {
      const output = file('stopped.out.jsonl');
      const stopped = await interrupt(output, 'SIGTERM');
      expect(stopped.code, stopped.stderr).toBe(143);
      expect(stopped.stderr).toMatch(/stopped by SIGTERM: .*run again with --resume to continue/);
      const checkpoint = JSON.parse(readFileSync(`${output}.checkpoint.json`, 'utf8')) as { outputBytes: number; errorsBytes: number; inputLines: number };
      // The in-flight chunks were written and the checkpoint vouches for all of it.
      expect(statSync(output).size).toBe(checkpoint.outputBytes);
      expect(statSync(`${output}.errors.jsonl`).size).toBe(checkpoint.errorsBytes);
      expect(checkpoint.inputLines).toBeLessThan(TOTAL);

      // The same checkpoint against an input of another size: refused, nothing touched.
      const other = file('other.jsonl');
      writeFileSync(other, readFileSync(input).subarray(0, 1000));
      writeFileSync(`${file('other.out.jsonl')}.checkpoint.json`, readFileSync(`${output}.checkpoint.json`));
      const refused = await batch('anomaly', '--input', other, '--output', file('other.out.jsonl'), '--resume');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^modelfn batch: cannot resume: input .*other\.jsonl changed since the checkpoint/);

      const resumed = await batch('anomaly', '--input', input, '--output', output, '--resume');
      expect(resumed.code, resumed.stderr).toBe(2);
      expectEveryLineOnce(output);
    });
  });

  it('fails with exit 1 and one clear line for an unknown model or a missing input file', async () => {
    writeFileSync(file('tiny.jsonl'), `${JSON.stringify(rowsOf(1, 5)[0])}\n`);
    const [unknown, missing] = await Promise.all([
      batch('nope', '--input', file('tiny.jsonl'), '--output', file('tiny.out.jsonl')),
      batch('anomaly', '--input', file('absent.jsonl'), '--output', file('absent.out.jsonl')),
    ]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('modelfn batch: model "nope" not found; available: anomaly, vad\n');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`modelfn batch: input file ${file('absent.jsonl')} does not exist\n`);
    expect(existsSync(file('tiny.out.jsonl'))).toBe(false);
  });
});
