import { Tensor } from 'onnxruntime-node';
import { decodeWavBase64 } from '../../handlers/codecs/wav.ts';
import { InputError } from '../../handlers/errors.ts';
import { defineModel, type ModelRunner } from '../../handlers/model-definition.ts';

const SAMPLE_RATE = 16_000;
/** Silero v5 at 16 kHz: 512 new samples a step (32 ms), preceded by the last 64 samples of the previous step. */
const FRAME_SAMPLES = 512;
const CONTEXT_SAMPLES = 64;
const FRAME_MS = (FRAME_SAMPLES / SAMPLE_RATE) * 1000;
const MAX_SECONDS = 600;
const MAX_SAMPLES = MAX_SECONDS * SAMPLE_RATE;

interface MergeOptions {
  threshold?: number;
  minSpeechMs?: number;
  minSilenceMs?: number;
  speechPadMs?: number;
}

export type VadInstance = MergeOptions & { id?: string | number } & (
  | { wav: string }
  | { samples: number[]; sampleRate: number }
);

export interface Segment {
  /** Seconds from the start of the audio. */
  start: number;
  end: number;
}

export interface VadPrediction {
  id?: string | number;
  frameMs: number;
  /** Speech probability of each 32 ms frame, the last one zero-padded. */
  probabilities: number[];
  segments: Segment[];
}

const msOption = (description: string) => ({ type: 'number', minimum: 0, maximum: MAX_SECONDS * 1000, description });

const instanceSchema = {
  type: 'object',
  description: `Either a base64 WAV (16 kHz mono, 16-bit PCM or 32-bit float) or raw samples; at most ${MAX_SECONDS} s of audio.`,
  properties: {
    id: { type: ['string', 'number'] },
    wav: { type: 'string', minLength: 1, description: 'base64 of a 16 kHz mono WAV file' },
    samples: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_SAMPLES,
      items: { type: 'number', minimum: -1, maximum: 1 },
      description: 'mono float samples in [-1, 1]',
    },
    sampleRate: { type: 'number', description: 'sample rate of `samples`; must be 16000' },
    threshold: { type: 'number', minimum: 0, maximum: 1, description: 'speech probability threshold, default 0.5' },
    minSpeechMs: msOption('drop speech shorter than this, default 250'),
    minSilenceMs: msOption('split speech only at silences at least this long, default 100'),
    speechPadMs: msOption('pad each segment by this much on both sides, default 30'),
  },
  additionalProperties: false,
  oneOf: [{ required: ['wav'] }, { required: ['samples'] }],
  // if/then rather than dependentRequired: it reads the same in every JSON Schema draft a validator may assume.
  allOf: [
    { if: { required: ['samples'] }, then: { required: ['sampleRate'] } },
    { if: { required: ['sampleRate'] }, then: { required: ['samples'] } },
  ],
};

/** Shared by every run: a scalar int64, never written to. */
const SR_TENSOR = new Tensor('int64', BigInt64Array.of(BigInt(SAMPLE_RATE)), []);

async function audioOf(instance: VadInstance, index: number): Promise<Float32Array> {
  const where = `instances[${index}]`;
  if ('wav' in instance) {
    const field = `${where}.wav`;
    const { samples } = await decodeWavBase64(instance.wav, { field, sampleRate: SAMPLE_RATE, maxSeconds: MAX_SECONDS });
    if (samples.length === 0) throw new InputError(`${field}: contains no audio samples`);
    return samples;
  }
  const field = `${where}.samples`;
  if (instance.sampleRate !== SAMPLE_RATE) {
    throw new InputError(`${field}: sample rate ${instance.sampleRate} Hz, expected ${SAMPLE_RATE} Hz mono (resample before sending)`);
  }
  if (instance.samples.length === 0) throw new InputError(`${field}: contains no audio samples`);
  if (instance.samples.length > MAX_SAMPLES) throw new InputError(`${field}: more than ${MAX_SECONDS} s of audio`);
  return Float32Array.from(instance.samples);
}

/** Steps the recurrent model through the audio, one frame a run, from a zero state. */
async function speechProbabilities(audio: Float32Array, runner: ModelRunner): Promise<Float32Array> {
  const frames = Math.ceil(audio.length / FRAME_SAMPLES);
  const probabilities = new Float32Array(frames);
  // One buffer for the whole instance: [64 context | 512 frame]. The run is awaited before it is rewritten.
  const input = new Float32Array(CONTEXT_SAMPLES + FRAME_SAMPLES);
  const inputTensor = new Tensor('float32', input, [1, input.length]);
  let state: Tensor = new Tensor('float32', new Float32Array(2 * 128), [2, 1, 128]);

  for (let frame = 0; frame < frames; frame++) {
    // Context = last 64 samples of the previous frame (upstream OnnxWrapper; zeros before the first frame).
    input.copyWithin(0, FRAME_SAMPLES, FRAME_SAMPLES + CONTEXT_SAMPLES);
    const start = frame * FRAME_SAMPLES;
    const end = Math.min(start + FRAME_SAMPLES, audio.length);
    input.set(audio.subarray(start, end), CONTEXT_SAMPLES);
    if (end - start < FRAME_SAMPLES) input.fill(0, CONTEXT_SAMPLES + end - start);

    const outputs = await runner.run({ input: inputTensor, state, sr: SR_TENSOR });
    probabilities[frame] = (outputs.output!.data as Float32Array)[0]!;
    state = outputs.stateN!;
  }
  return probabilities;
}

/**
 * Silero's get_speech_timestamps (without max_speech_duration): enter speech at >= threshold, leave after
 * minSilence below threshold - 0.15, drop segments shorter than minSpeech, then pad. Positions in samples.
 */
export function mergeSegments(
  probabilities: ArrayLike<number>,
  audioLength: number,
  options: MergeOptions = {},
): Array<{ start: number; end: number }> {
  const threshold = options.threshold ?? 0.5;
  const negThreshold = Math.max(threshold - 0.15, 0.01);
  const minSpeech = (SAMPLE_RATE * (options.minSpeechMs ?? 250)) / 1000;
  const minSilence = (SAMPLE_RATE * (options.minSilenceMs ?? 100)) / 1000;
  const pad = (SAMPLE_RATE * (options.speechPadMs ?? 30)) / 1000;

  const speeches: Array<{ start: number; end: number }> = [];
  let triggered = false;
  let start = 0;
  let tempEnd = 0;
  for (let i = 0; i < probabilities.length; i++) {
    const p = probabilities[i]!;
    const position = FRAME_SAMPLES * i;
    if (p >= threshold && tempEnd) tempEnd = 0;
    if (p >= threshold && !triggered) {
      triggered = true;
      start = position;
      continue;
    }
    if (p < negThreshold && triggered) {
      if (!tempEnd) tempEnd = position;
      if (position - tempEnd < minSilence) continue;
      if (tempEnd - start > minSpeech) speeches.push({ start, end: tempEnd });
      triggered = false;
      tempEnd = 0;
    }
  }
  if (triggered && audioLength - start > minSpeech) speeches.push({ start, end: audioLength });

  for (let i = 0; i < speeches.length; i++) {
    const speech = speeches[i]!;
    if (i === 0) speech.start = Math.floor(Math.max(0, speech.start - pad));
    const next = speeches[i + 1];
    if (!next) {
      speech.end = Math.floor(Math.min(audioLength, speech.end + pad));
      continue;
    }
    const gap = next.start - speech.end;
    if (gap < 2 * pad) {
      const half = Math.floor(gap / 2);
      speech.end += half;
      next.start = Math.max(0, next.start - half);
    } else {
      speech.end = Math.floor(Math.min(audioLength, speech.end + pad));
      next.start = Math.floor(Math.max(0, next.start - pad));
    }
  }
  return speeches;
}

const seconds = (samples: number) => Math.round((samples / SAMPLE_RATE) * 1000) / 1000;

export default defineModel<VadInstance, VadPrediction>({
  name: 'vad',
  version: '5',
  description: `Silero VAD v5 voice activity detection: 16 kHz mono audio (at most ${MAX_SECONDS} s) in, per-32 ms speech probabilities and speech segments out.`,
  file: { package: '@ricky0123/vad-web', path: 'dist/silero_vad_v5.onnx' },
  instanceSchema,
  // Recurrent and stepped one frame at a time: nothing to stack across requests.
  batching: false,
  // A tiny model run thousands of times per request: thread hand-offs cost more than they save.
  sessionOptions: { intraOpNumThreads: 1, interOpNumThreads: 1 },

  async predict(instances, runner) {
    // Decode everything first so a bad instance fails the request before any model time is spent.
    const audios: Float32Array[] = [];
    for (const [index, instance] of instances.entries()) audios.push(await audioOf(instance, index));
    const predictions: VadPrediction[] = [];
    for (const [index, instance] of instances.entries()) {
      const audio = audios[index]!;
      const probabilities = await speechProbabilities(audio, runner);
      const segments = mergeSegments(probabilities, audio.length, instance).map((s) => ({ start: seconds(s.start), end: seconds(s.end) }));
      const rounded = new Array<number>(probabilities.length);
      for (let i = 0; i < probabilities.length; i++) rounded[i] = Math.round(probabilities[i]! * 10_000) / 10_000;
      predictions.push({
        ...(instance.id !== undefined && { id: instance.id }),
        frameMs: FRAME_MS,
        probabilities: rounded,
        segments,
      });
    }
    return predictions;
  },
});
