import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { InferenceSession } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import anomaly, { type AnomalyInstance, type AnomalyPrediction } from '../models/anomaly/model.ts';
import { FEATURE_NAMES, Rng, generateUserDays, rocAuc, toFeatures } from '../scripts/anomaly-data.ts';
import { MIN_AUC, featuresTensor, trainAnomaly } from '../scripts/train-anomaly.ts';

const modelUrl = new URL('../models/anomaly/anomaly.onnx', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('../models/anomaly/features.json', import.meta.url), 'utf8')) as {
  features: string[];
  threshold: number;
  seed: number;
};

let session: InferenceSession;

beforeAll(async () => {
  session = await InferenceSession.create(readFileSync(modelUrl));
});

afterAll(async () => {
  await session?.release();
});

/** The serving path without the HTTP layer: preprocess -> session.run -> postprocess. */
async function predict(instances: AnomalyInstance[]): Promise<AnomalyPrediction[]> {
  const feeds = await anomaly.preprocess!(instances);
  const outputs = await session.run(feeds);
  return anomaly.postprocess!(outputs, instances);
}

const typicalOfficeDay: AnomalyInstance = {
  logins: 3,
  failed_logins: 0,
  sessions: 4,
  session_minutes: 380,
  bytes_downloaded_mb: 140,
  distinct_ips: 1,
  countries: 1,
  night_activity_ratio: 0.03,
  api_calls: 22,
  files_accessed: 26,
  privilege_changes: 0,
};

const accountTakeover: AnomalyInstance = {
  ...typicalOfficeDay,
  logins: 9,
  failed_logins: 35,
  distinct_ips: 11,
  countries: 4,
  night_activity_ratio: 0.78,
  bytes_downloaded_mb: 900,
};

describe('rocAuc', () => {
  it('equals the pairwise definition, ties counting 1/2', () => {
    const rng = new Rng(7);
    for (let trial = 0; trial < 20; trial++) {
      const n = 5 + rng.int(60);
      const scores = Array.from({ length: n }, () => rng.int(8) / 8); // coarse, so many ties
      const labels = Array.from({ length: n }, (_, i) => (i < 2 ? i : rng.int(2)));
      let wins = 0;
      let pairs = 0;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          if (labels[i] !== 1 || labels[j] !== 0) continue;
          pairs++;
          wins += scores[i]! > scores[j]! ? 1 : scores[i] === scores[j] ? 0.5 : 0;
        }
      }
      expect(rocAuc(scores, labels)).toBeCloseTo(wins / pairs, 12);
    }
    expect(rocAuc([0.1, 0.2, 0.3], [0, 0, 1])).toBe(1);
    expect(rocAuc([0.5, 0.5], [0, 1])).toBe(0.5);
    expect(() => rocAuc([0.1, 0.2], [1, 1])).toThrow();
  });
});

describe('anomaly model: committed ONNX file', () => {
  it('has the documented inputs, outputs and feature order', () => {
    expect(manifest.features).toEqual([...FEATURE_NAMES]);
    expect(session.inputNames).toEqual(['features']);
    expect(session.outputNames).toEqual(['score', 'label']);
  });

  it(`scores fresh synthetic user-days with ROC AUC >= ${MIN_AUC}`, async () => {
    const rows = generateUserDays(5000, 20260101); // not the training seed
    expect(rows.filter((r) => r.label === 1).length).toBeGreaterThan(100);
    const out = await session.run({ features: featuresTensor(rows) });
    expect(out.score!.dims).toEqual([rows.length, 1]);
    expect(out.label!.dims).toEqual([rows.length, 1]);
    const auc = rocAuc(out.score!.data as Float32Array, rows.map((r) => r.label));
    expect(auc).toBeGreaterThanOrEqual(MIN_AUC);

    // Same rows through preprocess/postprocess in serving-sized chunks: same scores, flags follow the threshold.
    const predictions: AnomalyPrediction[] = [];
    for (let start = 0; start < rows.length; start += 256) {
      predictions.push(...(await predict(rows.slice(start, start + 256).map(toFeatures))));
    }
    // Not bit-identical: onnxruntime's Gemm may round differently for different batch sizes.
    const whole = out.score!.data as Float32Array;
    expect(predictions).toHaveLength(rows.length);
    predictions.forEach((p, i) => expect(Math.abs(p.score - whole[i]!)).toBeLessThanOrEqual(1e-5));
    for (const p of predictions) expect(p.anomaly).toBe(p.score >= Math.fround(manifest.threshold));
  });

  it('is what the training pipeline produces (retrain after changing the generator or trainer)', async () => {
    const result = await trainAnomaly({ seed: manifest.seed });
    expect(result.heldOutAuc).toBeGreaterThanOrEqual(MIN_AUC);
    expect(result.maxScoreDiff).toBeLessThanOrEqual(1e-5);
    expect(Buffer.from(result.onnxBytes).equals(readFileSync(modelUrl))).toBe(true);
  });
});

describe('anomaly model: instances', () => {
  const validate = new Ajv({ strict: true }).compile(anomaly.instanceSchema!);

  it('accepts complete user-days and rejects malformed ones', () => {
    expect(validate({ id: 'u-1', ...typicalOfficeDay })).toBe(true);
    expect(validate({ id: 17, ...typicalOfficeDay })).toBe(true);
    expect(validate(typicalOfficeDay)).toBe(true);
    const { countries: _omitted, ...missing } = typicalOfficeDay;
    expect(validate(missing)).toBe(false);
    expect(validate({ ...typicalOfficeDay, user: 'alice' })).toBe(false);
    expect(validate({ ...typicalOfficeDay, failed_logins: -1 })).toBe(false);
    expect(validate({ ...typicalOfficeDay, night_activity_ratio: 1.5 })).toBe(false);
    expect(validate({ ...typicalOfficeDay, logins: '3' })).toBe(false);
    expect(validate({ ...typicalOfficeDay, id: { nested: true } })).toBe(false);
  });

  it('preprocess builds one float32 [n, F] tensor in features.json order', async () => {
    const feeds = await anomaly.preprocess!([typicalOfficeDay, accountTakeover]);
    expect(Object.keys(feeds)).toEqual(['features']);
    const tensor = feeds.features!;
    expect(tensor.type).toBe('float32');
    expect(tensor.dims).toEqual([2, FEATURE_NAMES.length]);
    const data = tensor.data as Float32Array;
    expect(Array.from(data.subarray(FEATURE_NAMES.length))).toEqual(
      manifest.features.map((f) => Math.fround(accountTakeover[f as keyof AnomalyInstance] as number)),
    );
  });

  it('scores an obvious account takeover above a typical day, in [0, 1], carrying ids', async () => {
    const [typical, takeover, noId] = await predict([
      { id: 'alice-2024-06-01', ...typicalOfficeDay },
      { id: 42, ...accountTakeover },
      { ...typicalOfficeDay, api_calls: 30 },
    ]);
    expect(typical!.id).toBe('alice-2024-06-01');
    expect(takeover!.id).toBe(42);
    expect(noId).not.toHaveProperty('id');
    for (const p of [typical!, takeover!, noId!]) {
      expect(p.score).toBeGreaterThanOrEqual(0);
      expect(p.score).toBeLessThanOrEqual(1);
    }
    expect(takeover!.score).toBeGreaterThan(typical!.score);
    expect(takeover!.anomaly).toBe(true);
    expect(typical!.anomaly).toBe(false);
  });

  it('batching options match the serving contract', () => {
    expect(anomaly.name).toBe('anomaly');
    expect(anomaly.version).toBe('1');
    expect(anomaly.file).toBe('anomaly.onnx');
    expect(anomaly.batching).toEqual({ maxBatchSize: 256, maxDelayMs: 0 });
  });
});
