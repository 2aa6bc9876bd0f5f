import { errorMessage, InputError } from '../errors.ts';
import { LITTLE_ENDIAN_HOST } from '../tensors.ts';

type WaveFileModule = typeof import('wavefile');
let wavefileLoading: Promise<WaveFileModule> | undefined;

/** wavefile (41 KB of JavaScript) loads with the first WAV decoded, not with every function's cold start. */
function loadWavefile(): Promise<WaveFileModule> {
  wavefileLoading ??= import('wavefile').then((module) => ((module as { default?: WaveFileModule }).default ?? module) as WaveFileModule);
  return wavefileLoading;
}

/** Mono audio as float samples, nominally in [-1, 1]. */
export interface DecodedAudio {
  samples: Float32Array;
  sampleRate: number;
}

export interface WavDecodeOptions {
  /** Names the input in error messages, e.g. "wav" or "audio". Default "wav". */
  field?: string;
  /** Required sample rate in Hz; anything else is an InputError (no resampling here). */
  sampleRate?: number;
  /** Longest accepted audio; checked from the header before the samples are converted. */
  maxSeconds?: number;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_IEEE_FLOAT = 3;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

interface FmtChunk {
  audioFormat: number;
  numChannels: number;
  sampleRate: number;
  blockAlign: number;
  bitsPerSample: number;
  subformat?: number[];
}

/**
 * Base64 (standard or URL-safe alphabet, padding optional, whitespace ignored) that rejects anything else:
 * Buffer.from alone silently skips bad characters. Checked by decoded length, which is far cheaper than a
 * regex over megabytes of text.
 */
export function decodeBase64(text: string, field = 'data'): Uint8Array {
  let bytes = Buffer.from(text, 'base64');
  if (bytes.length !== expectedBase64Bytes(text)) {
    const compact = text.replace(/\s+/g, '');
    if (compact.length === text.length || bytes.length !== expectedBase64Bytes(compact)) {
      throw new InputError(`${field}: not valid base64`);
    }
    bytes = Buffer.from(compact, 'base64');
  }
  if (bytes.length === 0) throw new InputError(`${field}: empty base64 string`);
  return bytes;
}

function expectedBase64Bytes(text: string): number {
  let length = text.length;
  if (length % 4 === 1) return -1;
  if (text.endsWith('==')) length -= 2;
  else if (text.endsWith('=')) length -= 1;
  return Math.floor((length * 3) / 4);
}

/**
 * Decode a RIFF WAVE file to mono float samples. Accepts 16-bit PCM and 32-bit IEEE float (plain or
 * WAVE_FORMAT_EXTENSIBLE); anything else, more than one channel, or a rate other than `options.sampleRate`
 * is an InputError naming what was received and what is expected.
 */
export async function decodeWav(bytes: Uint8Array, options: WavDecodeOptions = {}): Promise<DecodedAudio> {
  const field = options.field ?? 'wav';
  const wav = new (await loadWavefile()).WaveFile();
  try {
    wav.fromBuffer(bytes);
  } catch (error) {
    const reason = errorMessage(error);
    throw new InputError(`${field}: not a RIFF WAVE file (${reason})`);
  }
  if (wav.container !== 'RIFF') {
    throw new InputError(`${field}: ${wav.container} container, expected little-endian RIFF WAVE`);
  }

  const fmt = wav.fmt as FmtChunk;
  const expected = `${options.sampleRate ? `${options.sampleRate} Hz ` : ''}mono`;
  const problems: string[] = [];
  if (options.sampleRate !== undefined && fmt.sampleRate !== options.sampleRate) problems.push(`sample rate ${fmt.sampleRate} Hz`);
  if (fmt.numChannels !== 1) problems.push(`${fmt.numChannels} channels`);
  if (problems.length > 0) throw new InputError(`${field}: ${problems.join(', ')}, expected ${expected}`);

  // Extensible files carry the real format code in the first field of the subformat GUID.
  const format = fmt.audioFormat === WAVE_FORMAT_EXTENSIBLE ? (fmt.subformat?.[0] ?? 0) : fmt.audioFormat;
  const isPcm16 = format === WAVE_FORMAT_PCM && fmt.bitsPerSample === 16;
  const isFloat32 = format === WAVE_FORMAT_IEEE_FLOAT && fmt.bitsPerSample === 32;
  if (!isPcm16 && !isFloat32) {
    const got = format === WAVE_FORMAT_PCM ? `${fmt.bitsPerSample}-bit PCM`
      : format === WAVE_FORMAT_IEEE_FLOAT ? `${fmt.bitsPerSample}-bit float`
      : `audio format code ${format}`;
    throw new InputError(`${field}: ${got}, expected 16-bit PCM or 32-bit float`);
  }

  const data = (wav as unknown as { data: { samples: Uint8Array } }).data.samples;
  const bytesPerSample = isPcm16 ? 2 : 4;
  const length = Math.floor(data.length / bytesPerSample);
  if (options.maxSeconds !== undefined && length > options.maxSeconds * fmt.sampleRate) {
    throw new InputError(`${field}: ${(length / fmt.sampleRate).toFixed(1)} s of audio, at most ${options.maxSeconds} s is accepted`);
  }

  const samples = new Float32Array(length);
  // WAV is little-endian: typed-array views when the host is too and the data is aligned, DataView otherwise.
  const direct = LITTLE_ENDIAN_HOST && data.byteOffset % bytesPerSample === 0;
  if (isPcm16) {
    if (direct) {
      const pcm = new Int16Array(data.buffer, data.byteOffset, length);
      for (let i = 0; i < length; i++) samples[i] = pcm[i]! / 32768;
    } else {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      for (let i = 0; i < length; i++) samples[i] = view.getInt16(i * 2, true) / 32768;
    }
  } else {
    if (direct) {
      samples.set(new Float32Array(data.buffer, data.byteOffset, length));
    } else {
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      for (let i = 0; i < length; i++) samples[i] = view.getFloat32(i * 4, true);
    }
    for (let i = 0; i < length; i++) {
      if (!Number.isFinite(samples[i])) throw new InputError(`${field}: sample ${i} is ${samples[i]}, expected finite float samples`);
    }
  }
  return { samples, sampleRate: fmt.sampleRate };
}

/** `decodeWav` of a base64 string (the usual JSON transport). */
export function decodeWavBase64(text: string, options: WavDecodeOptions = {}): Promise<DecodedAudio> {
  return decodeWav(decodeBase64(text, options.field ?? 'wav'), options);
}
