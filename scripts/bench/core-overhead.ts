/**
 * In-process: the core's pipeline vs raw `session.run` on the same inputs, per example model.
 * Goal (issue 2): overhead <= 10% on `vad`.
 */
import { readFileSync } from 'node:fs';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { decodeWav } from '../../handlers/codecs/wav.ts';
import { loadModelRepository } from '../../handlers/model-repository.ts';
import { resolveModelFile } from '../../handlers/model-runtime.ts';
import { featureVector, generateUserDays, toFeatures } from '../anomaly-data.ts';
import { median, ratio } from './support.ts';

const rounds = Number(process.env.BENCH_ROUNDS ?? 7);

/** Median time per call of each contender, measured in interleaved rounds of `calls` calls each. */
async function compare(contenders: Record<string, () => Promise<unknown>>, calls: number): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(contenders).map((name) => [name, []]));
  for (const run of Object.values(contenders)) for (let i = 0; i < Math.max(3, calls / 10); i++) await run();
  for (let round = 0; round < rounds; round++) {
    const names = Object.keys(contenders);
    if (round % 2) names.reverse();
    for (const name of names) {
      const started = performance.now();
      for (let i = 0; i < calls; i++) await contenders[name]!();
      samples[name]!.push((performance.now() - started) / calls);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]));
}

export async function benchCoreOverhead(): Promise<string[]> {
  const repository = await loadModelRepository();
  const lines = [`In-process core pipeline vs raw session.run, same inputs, median of ${rounds} interleaved rounds`];
  try {
    // vad: the fixture clip (3.9 s, 123 frames of 32 ms), recurrent state threaded frame to frame.
    const vad = repository.get('vad');
    await vad.ready();
    const wavBytes = readFileSync(new URL('../../test/fixtures/speech-16k.wav', import.meta.url));
    const audio = (await decodeWav(wavBytes, { sampleRate: 16_000 })).samples;
    const wav = wavBytes.toString('base64');
    const samples = Array.from(audio);
    const vadSession = await InferenceSession.create(resolveModelFile(vad.definition.file, vad.modelDir), vad.definition.sessionOptions);
    const sr = new Tensor('int64', BigInt64Array.of(16_000n), []);
    const rawVad = async () => {
      const input = new Float32Array(576);
      const tensor = new Tensor('float32', input, [1, 576]);
      let state: Tensor = new Tensor('float32', new Float32Array(256), [2, 1, 128]);
      for (let start = 0; start < audio.length; start += 512) {
        input.copyWithin(0, 512, 576);
        input.fill(0, 64);
        input.set(audio.subarray(start, Math.min(start + 512, audio.length)), 64);
        const outputs = await vadSession.run({ input: tensor, state, sr });
        state = outputs.stateN as Tensor;
      }
    };
    const vadTimes = await compare(
      {
        raw: rawVad,
        coreWav: () => vad.predict([{ wav }]),
        coreSamples: () => vad.predict([{ samples, sampleRate: 16_000 }]),
      },
      10,
    );
    const frames = Math.ceil(audio.length / 512);
    const perFrame = (ms: number) => `${((ms / frames) * 1000).toFixed(0)} µs/frame`;
    lines.push(
      `  vad (${frames} frames): raw ${vadTimes.raw!.toFixed(2)} ms (${perFrame(vadTimes.raw!)}) | core, base64 WAV in ${vadTimes.coreWav!.toFixed(2)} ms (${perFrame(vadTimes.coreWav!)}), overhead ${((vadTimes.coreWav! / vadTimes.raw! - 1) * 100).toFixed(1)}% | core, raw samples in ${vadTimes.coreSamples!.toFixed(2)} ms, overhead ${((vadTimes.coreSamples! / vadTimes.raw! - 1) * 100).toFixed(1)}%`,
    );
    await vadSession.release();

    // anomaly: one row, as OIP v2 tensors and as a v1 instance, vs session.run on the prepared tensor.
    const anomaly = repository.get('anomaly');
    await anomaly.ready();
    const day = generateUserDays(1, 11)[0]!;
    const row = featureVector(day);
    const anomalySession = await InferenceSession.create(resolveModelFile(anomaly.definition.file, anomaly.modelDir), anomaly.definition.sessionOptions);
    const tensor = new Tensor('float32', Float32Array.from(row), [1, row.length]);
    const oip = { inputs: [{ name: 'features', shape: [1, row.length], datatype: 'FP32', data: row }] };
    const instance = toFeatures(day);
    const anomalyTimes = await compare(
      {
        raw: () => anomalySession.run({ features: tensor }),
        v2: () => anomaly.infer(oip),
        v1: () => anomaly.predict([instance]),
      },
      2000,
    );
    const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;
    lines.push(
      `  anomaly (1 row): raw ${us(anomalyTimes.raw!)} | core v2 infer ${us(anomalyTimes.v2!)} (${ratio(anomalyTimes.v2!, anomalyTimes.raw!)}, +${us(anomalyTimes.v2! - anomalyTimes.raw!)} for decode, validation, batcher and encode) | core v1 predict ${us(anomalyTimes.v1!)} (${ratio(anomalyTimes.v1!, anomalyTimes.raw!)})`,
    );
    await anomalySession.release();
  } finally {
    await repository.dispose();
  }
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) for (const line of await benchCoreOverhead()) console.log(line);
