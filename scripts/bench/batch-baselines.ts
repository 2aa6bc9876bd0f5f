/**
 * The batch benchmark's hand-written baselines, each run as its own process:
 *
 *   naive: readline, JSON.parse, one `session.run` per row, one JSONL line written per row
 *   floor: the same read-parse-write pipeline with no inference at all (a constant prediction)
 *
 * Usage: tsx scripts/bench/batch-baselines.ts naive|floor <input.jsonl> <output.jsonl> [rows]
 * Stops after `rows` rows when given. Prints `{"rows":N,"seconds":S}` on stdout.
 */
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { InferenceSession, Tensor } from 'onnxruntime-node';

const [mode, input, output, limitArg] = process.argv.slice(2);
if ((mode !== 'naive' && mode !== 'floor') || !input || !output) {
  console.error('usage: batch-baselines.ts naive|floor <input.jsonl> <output.jsonl> [rows]');
  process.exit(1);
}
const limit = limitArg ? Number(limitArg) : Infinity;
const modelDir = new URL('../../models/anomaly/', import.meta.url);
const { features, threshold } = JSON.parse(readFileSync(new URL('features.json', modelDir), 'utf8')) as { features: string[]; threshold: number };
// Same session options as the model definition (one intra-op thread: an 11-16-1 MLP gains nothing from more).
const session = mode === 'naive' ? await InferenceSession.create(new URL('anomaly.onnx', modelDir).pathname, { intraOpNumThreads: 1, interOpNumThreads: 1 }) : undefined;

const started = performance.now();
const out = createWriteStream(output);
let rows = 0;
let pending = '';
for await (const line of createInterface({ input: createReadStream(input), crlfDelay: Infinity })) {
  if (line === '') continue;
  const record = JSON.parse(line) as Record<string, number | string>;
  let prediction: { score: number; anomaly: boolean };
  if (session) {
    const data = new Float32Array(features.length);
    for (let f = 0; f < features.length; f++) data[f] = record[features[f]!] as number;
    const result = await session.run({ features: new Tensor('float32', data, [1, features.length]) });
    const score = (result.score!.data as Float32Array)[0]!;
    prediction = { score, anomaly: score >= threshold };
  } else {
    prediction = { score: 0, anomaly: false };
  }
  pending += `${JSON.stringify({ id: record.id, line: rows + 1, prediction })}\n`;
  // Writes in ~64 KB pieces, waiting for the stream to drain: a reasonable hand-written writer, not a strawman.
  if (pending.length > 65_536) {
    if (!out.write(pending)) await once(out, 'drain');
    pending = '';
  }
  if (++rows >= limit) break;
}
out.end(pending);
await once(out, 'finish');
console.log(JSON.stringify({ rows, seconds: (performance.now() - started) / 1000 }));
