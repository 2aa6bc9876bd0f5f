import { readFileSync } from 'node:fs';
import { Tensor } from 'onnxruntime-node';
import { defineModel, type JsonSchema } from '../../handlers/model-definition.ts';

/** What scripts/train-anomaly.ts wrote next to the ONNX file; its `features` order is the tensor's column order. */
interface Manifest {
  features: string[];
  threshold: number;
}

const manifest = JSON.parse(readFileSync(new URL('./features.json', import.meta.url), 'utf8')) as Manifest;

const FEATURE_DOCS = {
  logins: 'successful logins that day',
  failed_logins: 'failed login attempts',
  sessions: 'sessions started',
  session_minutes: 'total minutes in sessions',
  bytes_downloaded_mb: 'megabytes downloaded',
  distinct_ips: 'distinct source IP addresses',
  countries: 'distinct countries the IPs geolocate to',
  night_activity_ratio: 'share of activity between 00:00 and 06:00 local time, 0..1',
  api_calls: 'API requests made with the user’s credentials',
  files_accessed: 'distinct files read',
  privilege_changes: 'role or permission changes on the account',
} as const;

export type FeatureName = keyof typeof FEATURE_DOCS;

/** One user-day; every feature is required. */
export type AnomalyInstance = { id?: string | number } & Record<FeatureName, number>;

export interface AnomalyPrediction {
  id?: string | number;
  /** Anomaly probability in [0, 1]. */
  score: number;
  /** score >= the threshold baked into the model (features.json `threshold`). */
  anomaly: boolean;
}

const FEATURES = manifest.features as FeatureName[];
// A retrain that renames or adds a column must update this file too; fail at load rather than feed garbage.
if (FEATURES.length !== Object.keys(FEATURE_DOCS).length || !FEATURES.every((f) => Object.hasOwn(FEATURE_DOCS, f))) {
  throw new Error(`models/anomaly: features.json lists [${FEATURES.join(', ')}], model.ts knows [${Object.keys(FEATURE_DOCS).join(', ')}]`);
}

const instanceSchema: JsonSchema = {
  type: 'object',
  properties: {
    id: { anyOf: [{ type: 'string', maxLength: 256 }, { type: 'number' }], description: 'echoed back in the prediction' },
    ...Object.fromEntries(
      FEATURES.map((name) => [
        name,
        {
          type: 'number',
          minimum: 0,
          ...(name === 'night_activity_ratio' ? { maximum: 1 } : {}),
          description: FEATURE_DOCS[name],
        },
      ]),
    ),
  },
  required: FEATURES,
  additionalProperties: false,
};

export default defineModel<AnomalyInstance, AnomalyPrediction>({
  name: 'anomaly',
  version: '1',
  description: `Nightly anomaly scoring of user activity: one user-day of ${FEATURES.length} counters -> anomaly probability and flag (threshold ${manifest.threshold.toFixed(3)}).`,
  file: 'anomaly.onnx',
  instanceSchema,
  preprocess(instances) {
    const n = instances.length;
    const F = FEATURES.length;
    const data = new Float32Array(n * F);
    instances.forEach((instance, i) => {
      FEATURES.forEach((name, f) => {
        data[i * F + f] = instance[name];
      });
    });
    return { features: new Tensor('float32', data, [n, F]) };
  },
  postprocess(outputs, instances) {
    const scores = outputs.score!.data as Float32Array;
    const labels = outputs.label!.data as Uint8Array; // bool tensors come back as bytes
    return instances.map((instance, i) => ({
      ...(instance.id !== undefined ? { id: instance.id } : {}),
      score: scores[i]!,
      anomaly: labels[i] !== 0,
    }));
  },
  // An 11-16-1 MLP gains nothing from onnxruntime's intra-op thread pool; its threads only compete with the event loop.
  sessionOptions: { intraOpNumThreads: 1, interOpNumThreads: 1 },
  batching: { maxBatchSize: 256, maxDelayMs: 0 },
});
