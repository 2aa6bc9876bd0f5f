import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { InferenceSession } from 'onnxruntime-node';
import wavefile from 'wavefile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeWav } from '../handlers/codecs/wav.ts';
import { InputError } from '../handlers/errors.ts';
import type { ModelRunner } from '../handlers/model-definition.ts';
import vad, { mergeSegments, type VadInstance, type VadPrediction } from '../models/vad/model.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtureBytes = readFileSync(path.join(here, 'fixtures/speech-16k.wav'));
const fixtureBase64 = fixtureBytes.toString('base64');
// Measured from the fixture's sample amplitudes (see test/fixtures/README.md).
const SPEECH_START = 1.0;
const SPEECH_END = 2.919;
const DURATION = 3.919;
const FRAME_S = 0.032;

let session: InferenceSession;
let runner: ModelRunner;

beforeAll(async () => {
  const source = vad.file as { package: string; path: string };
  const packageJson = createRequire(import.meta.url).resolve(`${source.package}/package.json`);
  session = await InferenceSession.create(path.join(path.dirname(packageJson), source.path), vad.sessionOptions);
  runner = { session, run: (feeds) => session.run(feeds) };
});

afterAll(async () => {
  await session?.release();
});

const predict = (instances: VadInstance[]) => vad.predict!(instances, runner);

function wavBase64(channels: number, sampleRate: number, bitDepth: string, seconds = 0.5): string {
  const length = Math.round(sampleRate * seconds);
  const channel = Array.from({ length }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 220 * i) / sampleRate)));
  const wav = new wavefile.WaveFile();
  wav.fromScratch(channels, sampleRate, bitDepth, channels === 1 ? channel : Array.from({ length: channels }, () => channel));
  return Buffer.from(wav.toBuffer()).toString('base64');
}

/** A silent 16 kHz mono 16-bit WAV, written directly: wavefile packs sample by sample, too slow for minutes. */
function silentWavBase64(seconds: number): string {
  const dataBytes = seconds * 16000 * 2;
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + dataBytes, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(16000, 24);
  header.writeUInt32LE(32000, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(dataBytes, 40);
  return Buffer.concat([header, Buffer.alloc(dataBytes)]).toString('base64');
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('vad model on the espeak fixture', () => {
  let fromWav: VadPrediction;

  beforeAll(async () => {
    [fromWav] = (await predict([{ id: 'fixture', wav: fixtureBase64 }])) as [VadPrediction];
  });

  it('returns one probability per 32 ms frame', () => {
    expect(fromWav.id).toBe('fixture');
    expect(fromWav.frameMs).toBe(32);
    expect(fromWav.probabilities).toHaveLength(Math.ceil((DURATION * 16000) / 512));
    for (const p of fromWav.probabilities) {
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThanOrEqual(1);
      expect(Math.round(p * 10_000) / 10_000).toBe(p);
    }
  });

  it('finds the spoken sentence as one segment covering the speech', () => {
    expect(fromWav.segments).toHaveLength(1);
    const [segment] = fromWav.segments as [{ start: number; end: number }];
    expect(Math.abs(segment.start - SPEECH_START)).toBeLessThanOrEqual(0.2);
    expect(Math.abs(segment.end - SPEECH_END)).toBeLessThanOrEqual(0.2);
    expect(segment.start).toBeLessThan(segment.end);
  });

  it('puts no segment inside the leading or trailing silence', () => {
    for (const { start, end } of fromWav.segments) {
      expect(end).toBeGreaterThan(SPEECH_START);
      expect(start).toBeLessThan(SPEECH_END);
    }
  });

  it('gives low probabilities in the silent parts and high ones in the speech', () => {
    const frameStart = (i: number) => i * FRAME_S;
    const leading = fromWav.probabilities.filter((_, i) => frameStart(i) + FRAME_S <= SPEECH_START - 0.05);
    const trailing = fromWav.probabilities.filter((_, i) => frameStart(i) >= SPEECH_END + 0.1);
    expect(leading.length).toBeGreaterThan(20);
    expect(trailing.length).toBeGreaterThan(20);
    expect(Math.max(...leading)).toBeLessThan(0.1);
    expect(Math.max(...trailing)).toBeLessThan(0.1);

    const speech = fromWav.probabilities.filter((_, i) => frameStart(i) >= SPEECH_START + 0.1 && frameStart(i) + FRAME_S <= SPEECH_END - 0.1);
    const median = [...speech].sort((a, b) => a - b)[Math.floor(speech.length / 2)]!;
    expect(median).toBeGreaterThan(0.9);
  });

  it('gives the same result for raw samples as for the WAV', async () => {
    const { samples } = await decodeWav(fixtureBytes, { sampleRate: 16000 });
    const [fromSamples] = await predict([{ samples: Array.from(samples), sampleRate: 16000 }]);
    expect(fromSamples).toEqual({ ...fromWav, id: undefined } satisfies VadPrediction);
    expect(fromSamples).not.toHaveProperty('id');
  });

  it('starts every instance from a fresh state', async () => {
    const [first, second] = await predict([{ wav: fixtureBase64 }, { wav: fixtureBase64 }]);
    expect(first).toEqual(second);
    expect(first!.probabilities).toEqual(fromWav.probabilities);
  });

  it('merges with hysteresis: a higher threshold never widens the speech', async () => {
    const [strict] = await predict([{ wav: fixtureBase64, threshold: 0.9, speechPadMs: 0 }]);
    expect(strict!.segments.length).toBeGreaterThan(0);
    for (const { start, end } of strict!.segments) {
      expect(start).toBeGreaterThanOrEqual(SPEECH_START - 0.1);
      expect(end).toBeLessThanOrEqual(SPEECH_END + 0.1);
    }
  });
});

describe('vad input errors', () => {
  it('rejects a 44.1 kHz WAV naming the rate', async () => {
    const error = await rejection(predict([{ wav: wavBase64(1, 44100, '16') }]));
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).status).toBe(400);
    expect(error.message).toMatch(/wav: sample rate 44100 Hz, expected 16000 Hz mono/);
  });

  it('rejects a stereo WAV naming the channel count', async () => {
    const error = await rejection(predict([{ wav: wavBase64(2, 16000, '16') }]));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toMatch(/wav: 2 channels, expected 16000 Hz mono/);
  });

  it('rejects an unsupported bit depth', async () => {
    const error = await rejection(predict([{ wav: wavBase64(1, 16000, '24') }]));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toMatch(/24-bit PCM, expected 16-bit PCM or 32-bit float/);
  });

  it('accepts a 32-bit float WAV', async () => {
    const { samples } = await decodeWav(fixtureBytes);
    const wav = new wavefile.WaveFile();
    wav.fromScratch(1, 16000, '32f', samples);
    const [prediction] = await predict([{ wav: Buffer.from(wav.toBuffer()).toString('base64') }]);
    const [reference] = await predict([{ wav: fixtureBase64 }]);
    expect(prediction).toEqual(reference);
  });

  it('rejects bad base64 and non-WAV bytes', async () => {
    const bad = await rejection(predict([{ wav: 'this is not base64!' }]));
    expect(bad).toBeInstanceOf(InputError);
    expect(bad.message).toMatch(/not valid base64/);

    const notWav = await rejection(predict([{ wav: Buffer.from('hello, definitely not audio').toString('base64') }]));
    expect(notWav).toBeInstanceOf(InputError);
    expect(notWav.message).toMatch(/not a RIFF WAVE file/);
  });

  it('rejects empty audio, the wrong raw sample rate and over-long audio', async () => {
    const empty = await rejection(predict([{ wav: wavBase64(1, 16000, '16', 0) }]));
    expect(empty).toBeInstanceOf(InputError);
    expect(empty.message).toMatch(/no audio samples/);

    const rate = await rejection(predict([{ samples: [0, 0.1], sampleRate: 8000 }]));
    expect(rate).toBeInstanceOf(InputError);
    expect(rate.message).toMatch(/sample rate 8000 Hz, expected 16000 Hz/);

    const long = await rejection(predict([{ wav: silentWavBase64(601) }]));
    expect(long).toBeInstanceOf(InputError);
    expect(long.message).toMatch(/601\.0 s of audio, at most 600 s/);
  });

  it('names the failing instance and runs nothing when one instance is bad', async () => {
    let runs = 0;
    const counting: ModelRunner = { session, run: (feeds) => (runs++, session.run(feeds)) };
    const error = await rejection(vad.predict!([{ wav: fixtureBase64 }, { wav: wavBase64(1, 44100, '16') }], counting));
    expect(error.message).toMatch(/^instances\[1\]\.wav:/);
    expect(runs).toBe(0);
  });
});

describe('vad instance schema', () => {
  // As the service compiles it (first error only, non-strict).
  const validate = new Ajv({ allErrors: false, strict: false }).compile(vad.instanceSchema!);
  const firstError = (instance: unknown) => (validate(instance) ? undefined : validate.errors![0]);

  it('compiles in Ajv strict mode, so no keyword is silently ignored', () => {
    expect(() => new Ajv({ strictSchema: true, strictTypes: false }).compile(vad.instanceSchema!)).not.toThrow();
  });

  it('accepts either shape', () => {
    expect(validate({ wav: 'UklGRg==' })).toBe(true);
    expect(validate({ samples: [0, 0.5], sampleRate: 16000, threshold: 0.6, id: 3 })).toBe(true);
  });

  it('explains wrong shapes', () => {
    expect(firstError({})).toMatchObject({ keyword: 'required', params: { missingProperty: 'wav' } });
    expect(firstError({ samples: [0] })).toMatchObject({ keyword: 'required', params: { missingProperty: 'sampleRate' } });
    expect(firstError({ wav: 'UklGRg==', sampleRate: 16000 })).toMatchObject({ keyword: 'required', params: { missingProperty: 'samples' } });
    expect(firstError({ wav: 'UklGRg==', samples: [0], sampleRate: 16000 })).toMatchObject({ keyword: 'oneOf' });
    expect(firstError({ samples: [1200], sampleRate: 16000 })).toMatchObject({ instancePath: '/samples/0', keyword: 'maximum' });
    expect(firstError({ wav: 'UklGRg==', audio: 'x' })).toMatchObject({ keyword: 'additionalProperties' });
    expect(firstError({ wav: 'UklGRg==', threshold: 1.5 })).toMatchObject({ instancePath: '/threshold' });
  });
});

describe('mergeSegments', () => {
  const frames = (...ps: number[]) => ps;

  it('bridges short dips and splits at long silences', () => {
    // 0.1 s min silence = 1600 samples, a little over 3 frames.
    const dip = frames(0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0, 0, 0, 0, 0);
    expect(mergeSegments(dip, dip.length * 512, { speechPadMs: 0 })).toEqual([{ start: 512, end: 19 * 512 }]);

    const gap = frames(0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0, 0, 0, 0, 0, 0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0, 0, 0, 0, 0);
    expect(mergeSegments(gap, gap.length * 512, { speechPadMs: 0 })).toEqual([
      { start: 0, end: 8 * 512 },
      { start: 14 * 512, end: 22 * 512 },
    ]);
  });

  it('drops speech shorter than minSpeechMs and keeps values between the thresholds as speech', () => {
    const blip = frames(0, 0.9, 0.9, 0, 0, 0, 0, 0, 0);
    expect(mergeSegments(blip, blip.length * 512)).toEqual([]);
    const hover = frames(0.9, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0, 0, 0, 0, 0);
    expect(mergeSegments(hover, hover.length * 512, { speechPadMs: 0 })).toEqual([{ start: 0, end: 10 * 512 }]);
  });
});
