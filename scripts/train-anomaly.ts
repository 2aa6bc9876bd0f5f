/**
 * Trains the `anomaly` example model (nightly anomaly scoring of user activity) and exports it to ONNX.
 *
 *   npm run train:anomaly      writes models/anomaly/anomaly.onnx and models/anomaly/features.json
 *
 * Pipeline: synthetic user-days (scripts/anomaly-data.ts) -> 80/20 split -> log1p + standardize (train stats)
 * -> 1-hidden-layer MLP (ReLU, sigmoid, BCE, Adam, minibatches) -> held-out ROC AUC (exit 1 below 0.9)
 * -> ONNX graph with the preprocessing baked in -> checked against the TS forward pass with onnxruntime-node.
 */
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { FEATURE_NAMES, Rng, featureVector, generateUserDays, rocAuc, type UserDay } from './anomaly-data.ts';

const { onnx } = onnxProto;

export const MIN_AUC = 0.9;

export interface TrainOptions {
  seed: number;
  rows: number;
  anomalyRate: number;
  heldOutFraction: number;
  hidden: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  weightDecay: number;
}

export const DEFAULT_OPTIONS: TrainOptions = {
  seed: 1337,
  rows: 20_000,
  anomalyRate: 0.04,
  heldOutFraction: 0.2,
  hidden: 16,
  epochs: 40,
  batchSize: 64,
  learningRate: 0.005,
  weightDecay: 1e-4,
};

/** All parameters, already rounded to float32 so the TS forward pass sees what the ONNX file holds. */
export interface MlpParams {
  featureCount: number;
  hidden: number;
  /** Per-feature mean and std of log1p(x) on the training split. */
  mean: Float32Array;
  std: Float32Array;
  /** [featureCount, hidden], row-major (Gemm B with transB = 0). */
  w1: Float32Array;
  b1: Float32Array;
  /** [hidden, 1]. */
  w2: Float32Array;
  b2: Float32Array;
  threshold: number;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

/** Reference forward pass on one raw feature row: log1p -> standardize -> Gemm -> ReLU -> Gemm -> sigmoid. */
export function forward(p: MlpParams, raw: ArrayLike<number>): number {
  let logit = p.b2[0]!;
  for (let h = 0; h < p.hidden; h++) {
    let a = p.b1[h]!;
    for (let f = 0; f < p.featureCount; f++) {
      const z = (Math.log1p(Math.fround(raw[f]!)) - p.mean[f]!) / p.std[f]!;
      a += z * p.w1[f * p.hidden + h]!;
    }
    if (a > 0) logit += a * p.w2[h]!;
  }
  return sigmoid(logit);
}

function standardization(rows: number[][]): { mean: Float32Array; std: Float32Array } {
  const f = rows[0]!.length;
  const mean = new Float64Array(f);
  const sq = new Float64Array(f);
  for (const r of rows) for (let j = 0; j < f; j++) mean[j]! += Math.log1p(r[j]!) / rows.length;
  for (const r of rows) for (let j = 0; j < f; j++) sq[j]! += (Math.log1p(r[j]!) - mean[j]!) ** 2 / rows.length;
  const std = Float32Array.from(sq, (v) => (v > 1e-12 ? Math.sqrt(v) : 1));
  return { mean: Float32Array.from(mean), std };
}

/** Minibatch Adam on binary cross-entropy; returns float64 weights (rounded to float32 by the caller). */
function trainMlp(x: Float64Array[], y: Uint8Array, o: TrainOptions, rng: Rng) {
  const F = x[0]!.length;
  const H = o.hidden;
  // He init for the ReLU layer, Xavier for the output.
  const w1 = Float64Array.from({ length: F * H }, () => rng.normal() * Math.sqrt(2 / F));
  const b1 = new Float64Array(H);
  const w2 = Float64Array.from({ length: H }, () => rng.normal() * Math.sqrt(1 / H));
  const b2 = new Float64Array(1);
  const params = [w1, b1, w2, b2];
  const grads = params.map((p) => new Float64Array(p.length));
  const m = params.map((p) => new Float64Array(p.length));
  const v = params.map((p) => new Float64Array(p.length));
  const [gw1, gb1, gw2, gb2] = grads as [Float64Array, Float64Array, Float64Array, Float64Array];
  const beta1 = 0.9;
  const beta2 = 0.999;
  const act = new Float64Array(H);
  const order = Array.from({ length: x.length }, (_, i) => i);
  let step = 0;
  let lastLoss = 0;

  for (let epoch = 0; epoch < o.epochs; epoch++) {
    rng.shuffle(order);
    // Cosine decay: large steps early, settles at the end without a validation set to pick an epoch.
    const lr = o.learningRate * (0.55 + 0.45 * Math.cos((Math.PI * epoch) / o.epochs));
    let lossSum = 0;
    for (let start = 0; start < order.length; start += o.batchSize) {
      const batch = order.slice(start, start + o.batchSize);
      for (const g of grads) g.fill(0);
      for (const i of batch) {
        const xi = x[i]!;
        let logit = b2[0]!;
        for (let h = 0; h < H; h++) {
          let a = b1[h]!;
          for (let f = 0; f < F; f++) a += xi[f]! * w1[f * H + h]!;
          act[h] = a > 0 ? a : 0;
          logit += act[h]! * w2[h]!;
        }
        const p = sigmoid(logit);
        const target = y[i]!;
        lossSum -= target ? Math.log(Math.max(p, 1e-12)) : Math.log(Math.max(1 - p, 1e-12));
        const dLogit = (p - target) / batch.length;
        gb2[0]! += dLogit;
        for (let h = 0; h < H; h++) {
          if (act[h]! <= 0) continue;
          gw2[h]! += dLogit * act[h]!;
          const dA = dLogit * w2[h]!;
          gb1[h]! += dA;
          for (let f = 0; f < F; f++) gw1[f * H + h]! += dA * xi[f]!;
        }
      }
      step++;
      const c1 = 1 - beta1 ** step;
      const c2 = 1 - beta2 ** step;
      params.forEach((p, k) => {
        const g = grads[k]!;
        const mk = m[k]!;
        const vk = v[k]!;
        const decay = k === 0 || k === 2 ? o.weightDecay : 0; // weights only, not biases
        for (let j = 0; j < p.length; j++) {
          const gj = g[j]! + decay * p[j]!;
          mk[j] = beta1 * mk[j]! + (1 - beta1) * gj;
          vk[j] = beta2 * vk[j]! + (1 - beta2) * gj * gj;
          p[j]! -= (lr * (mk[j]! / c1)) / (Math.sqrt(vk[j]! / c2) + 1e-8);
        }
      });
    }
    lastLoss = lossSum / x.length;
  }
  return { w1, b1, w2, b2, lastLoss };
}

/** Threshold maximising F1 over the given scores; ties broken towards the higher threshold. */
export function bestF1Threshold(scores: ArrayLike<number>, labels: ArrayLike<number>): { threshold: number; f1: number } {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b]! - scores[a]!);
  let positives = 0;
  for (let i = 0; i < labels.length; i++) positives += labels[i] ? 1 : 0;
  let tp = 0;
  let best = { threshold: 1, f1: 0 };
  for (let k = 0; k < order.length; k++) {
    tp += labels[order[k]!] ? 1 : 0;
    const s = scores[order[k]!]!;
    if (k + 1 < order.length && scores[order[k + 1]!] === s) continue; // predict >= s takes the whole tie group
    const f1 = (2 * tp) / (k + 1 + positives);
    if (f1 > best.f1) best = { threshold: s, f1 };
  }
  return best;
}

export function confusion(scores: ArrayLike<number>, labels: ArrayLike<number>, threshold: number) {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < scores.length; i++) {
    const predicted = scores[i]! >= threshold;
    if (predicted && labels[i]) tp++;
    else if (predicted) fp++;
    else if (labels[i]) fn++;
  }
  const precision = tp + fp ? tp / (tp + fp) : 0;
  const recall = tp + fn ? tp / (tp + fn) : 0;
  return { tp, fp, fn, precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0 };
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const BOOL = onnx.TensorProto.DataType.BOOL;

function floatInitializer(name: string, dims: number[], values: ArrayLike<number>): InstanceType<typeof onnx.TensorProto> {
  const data = Float32Array.from(values);
  // raw_data is little-endian; so is every platform Node runs on.
  return onnx.TensorProto.create({ name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer) });
}

function valueInfo(name: string, elemType: number, dims: (number | string)[], docString: string) {
  return onnx.ValueInfoProto.create({
    name,
    docString,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

/** ONNX model bytes: features[batch, F] float32 -> score[batch, 1] float32, label[batch, 1] bool. */
export function buildOnnx(p: MlpParams, featureNames: readonly string[], metadata: Record<string, string> = {}): Uint8Array {
  const F = p.featureCount;
  const H = p.hidden;
  const node = (opType: string, inputs: string[], outputs: string[]) =>
    onnx.NodeProto.create({ opType, input: inputs, output: outputs, name: `${opType.toLowerCase()}_${outputs[0]}` });
  const graph = onnx.GraphProto.create({
    name: 'anomaly_mlp',
    docString: `User-day anomaly score. Columns of features: ${featureNames.join(', ')}`,
    input: [valueInfo('features', FLOAT, ['batch', F], 'raw user-day counts, in features.json order, all >= 0')],
    output: [
      valueInfo('score', FLOAT, ['batch', 1], 'anomaly probability in [0, 1]'),
      valueInfo('label', BOOL, ['batch', 1], `score >= ${p.threshold}`),
    ],
    initializer: [
      floatInitializer('one', [], [1]),
      floatInitializer('mean', [F], p.mean),
      floatInitializer('std', [F], p.std),
      floatInitializer('w1', [F, H], p.w1),
      floatInitializer('b1', [H], p.b1),
      floatInitializer('w2', [H, 1], p.w2),
      floatInitializer('b2', [1], p.b2),
      floatInitializer('threshold', [], [p.threshold]),
    ],
    node: [
      node('Add', ['features', 'one'], ['features_plus_one']),
      node('Log', ['features_plus_one'], ['log1p']),
      node('Sub', ['log1p', 'mean'], ['centered']),
      node('Div', ['centered', 'std'], ['standardized']),
      node('Gemm', ['standardized', 'w1', 'b1'], ['hidden_pre']),
      node('Relu', ['hidden_pre'], ['hidden']),
      node('Gemm', ['hidden', 'w2', 'b2'], ['logit']),
      node('Sigmoid', ['logit'], ['score']),
      node('GreaterOrEqual', ['score', 'threshold'], ['label']),
    ],
  });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'modelfn',
    producerVersion: '0.1.0',
    modelVersion: 1,
    docString: 'modelfn example: nightly anomaly scoring of user activity (synthetic data, scripts/train-anomaly.ts)',
    graph,
    metadataProps: Object.entries({ features: JSON.stringify(featureNames), ...metadata }).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}

/** Feature matrix of rows as one float32 tensor [n, F]. */
export function featuresTensor(rows: readonly UserDay[]): ort.Tensor {
  const data = new Float32Array(rows.length * FEATURE_NAMES.length);
  rows.forEach((r, i) => data.set(featureVector(r), i * FEATURE_NAMES.length));
  return new ort.Tensor('float32', data, [rows.length, FEATURE_NAMES.length]);
}

export interface TrainResult {
  params: MlpParams;
  onnxBytes: Uint8Array;
  /** Contents of features.json. */
  manifest: Record<string, unknown>;
  heldOutAuc: number;
  onnxHeldOutAuc: number;
  maxScoreDiff: number;
  trainSeconds: number;
  report: string[];
}

/** The whole pipeline, in memory; throws if the ONNX model disagrees with the TS forward pass. */
export async function trainAnomaly(options: Partial<TrainOptions> = {}): Promise<TrainResult> {
  const o = { ...DEFAULT_OPTIONS, ...options };
  const report: string[] = [];
  const rows = generateUserDays(o.rows, o.seed, o.anomalyRate);
  const rng = new Rng(o.seed ^ 0x5eed);
  const shuffled = rng.shuffle([...rows]);
  const heldOutCount = Math.round(rows.length * o.heldOutFraction);
  const heldOut = shuffled.slice(0, heldOutCount);
  const train = shuffled.slice(heldOutCount);
  const trainRaw = train.map(featureVector);
  const heldOutRaw = heldOut.map(featureVector);
  const trainY = Uint8Array.from(train, (r) => r.label);
  const heldOutY = Uint8Array.from(heldOut, (r) => r.label);

  const started = performance.now();
  const { mean, std } = standardization(trainRaw);
  const standardize = (r: number[]) => Float64Array.from(r, (v, f) => (Math.log1p(v) - mean[f]!) / std[f]!);
  const fitted = trainMlp(trainRaw.map(standardize), trainY, o, rng);
  const trainSeconds = (performance.now() - started) / 1000;

  const params: MlpParams = {
    featureCount: FEATURE_NAMES.length,
    hidden: o.hidden,
    mean,
    std,
    w1: Float32Array.from(fitted.w1),
    b1: Float32Array.from(fitted.b1),
    w2: Float32Array.from(fitted.w2),
    b2: Float32Array.from(fitted.b2),
    threshold: 0.5,
  };
  const trainScores = trainRaw.map((r) => forward(params, r));
  const chosen = bestF1Threshold(trainScores, trainY);
  params.threshold = Math.fround(chosen.threshold);
  const heldOutScores = heldOutRaw.map((r) => forward(params, r));
  const trainAuc = rocAuc(trainScores, trainY);
  const heldOutAuc = rocAuc(heldOutScores, heldOutY);
  const held = confusion(heldOutScores, heldOutY, params.threshold);

  report.push(
    `data: ${rows.length} user-days (seed ${o.seed}), train ${train.length} (${sum(trainY)} anomalies), held-out ${heldOut.length} (${sum(heldOutY)} anomalies)`,
    `training: ${o.epochs} epochs, batch ${o.batchSize}, ${FEATURE_NAMES.length}-${o.hidden}-1 MLP, final train BCE ${fitted.lastLoss.toFixed(4)}, ${trainSeconds.toFixed(2)} s`,
    `train AUC ${trainAuc.toFixed(4)}; threshold ${params.threshold.toFixed(4)} (max F1 on train = ${chosen.f1.toFixed(3)})`,
    `held-out ROC AUC ${heldOutAuc.toFixed(4)}; at threshold: precision ${held.precision.toFixed(3)} recall ${held.recall.toFixed(3)} F1 ${held.f1.toFixed(3)}`,
  );
  const kinds = new Map<string, { caught: number; total: number }>();
  heldOut.forEach((r, i) => {
    if (!r.label) return;
    const k = kinds.get(r.kind) ?? { caught: 0, total: 0 };
    k.total++;
    if (heldOutScores[i]! >= params.threshold) k.caught++;
    kinds.set(r.kind, k);
  });
  report.push(`held-out recall by kind: ${[...kinds].map(([k, c]) => `${k} ${c.caught}/${c.total}`).join(', ')}`);

  const manifest = {
    model: 'anomaly',
    features: [...FEATURE_NAMES],
    input: { name: 'features', type: 'float32', shape: ['batch', FEATURE_NAMES.length] },
    outputs: {
      score: { type: 'float32', shape: ['batch', 1] },
      label: { type: 'bool', shape: ['batch', 1], rule: 'score >= threshold' },
    },
    preprocessing: 'inside the graph: log(x + 1), then (. - mean) / std with training-split statistics',
    threshold: params.threshold,
    thresholdRule: 'maximises F1 on the training split',
    heldOutAuc: round(heldOutAuc, 6),
    heldOutAtThreshold: { precision: round(held.precision, 4), recall: round(held.recall, 4), f1: round(held.f1, 4) },
    trainAuc: round(trainAuc, 6),
    seed: o.seed,
    rows: {
      total: rows.length,
      train: train.length,
      heldOut: heldOut.length,
      trainAnomalies: sum(trainY),
      heldOutAnomalies: sum(heldOutY),
    },
    training: {
      architecture: `${FEATURE_NAMES.length}-${o.hidden}-1 MLP, ReLU, sigmoid`,
      loss: 'binary cross-entropy',
      optimizer: `Adam, lr ${o.learningRate} cosine-decayed to 55%, weight decay ${o.weightDecay}`,
      epochs: o.epochs,
      batchSize: o.batchSize,
      anomalyRate: o.anomalyRate,
    },
  };
  const onnxBytes = buildOnnx(params, FEATURE_NAMES, {
    threshold: String(params.threshold),
    held_out_auc: heldOutAuc.toFixed(6),
    seed: String(o.seed),
  });

  // The exported graph must compute what we measured.
  const session = await ort.InferenceSession.create(onnxBytes);
  try {
    const out = await session.run({ features: featuresTensor(heldOut) });
    const score = out.score!;
    const label = out.label!;
    if (score.type !== 'float32' || score.dims.join() !== `${heldOut.length},1`) {
      throw new Error(`ONNX score: expected float32 [${heldOut.length},1], got ${score.type} [${score.dims}]`);
    }
    if (label.type !== 'bool' || label.dims.join() !== `${heldOut.length},1`) {
      throw new Error(`ONNX label: expected bool [${heldOut.length},1], got ${label.type} [${label.dims}]`);
    }
    const onnxScores = score.data as Float32Array;
    const onnxLabels = label.data as Uint8Array;
    let maxScoreDiff = 0;
    for (let i = 0; i < heldOut.length; i++) {
      maxScoreDiff = Math.max(maxScoreDiff, Math.abs(onnxScores[i]! - heldOutScores[i]!));
      if (Boolean(onnxLabels[i]) !== onnxScores[i]! >= params.threshold) throw new Error(`ONNX label disagrees with its score at row ${i}`);
    }
    if (!(maxScoreDiff <= 1e-5)) throw new Error(`ONNX scores differ from the TS forward pass by up to ${maxScoreDiff}`);
    const onnxHeldOutAuc = rocAuc(onnxScores, heldOutY);
    // float32 rounding may reorder near-equal scores, nothing more.
    if (Math.abs(onnxHeldOutAuc - heldOutAuc) > 1e-4) throw new Error(`ONNX AUC ${onnxHeldOutAuc} != TS AUC ${heldOutAuc}`);
    report.push(
      `onnxruntime check: max |score diff| ${maxScoreDiff.toExponential(2)} over ${heldOut.length} rows, ONNX held-out AUC ${onnxHeldOutAuc.toFixed(6)} (TS ${heldOutAuc.toFixed(6)})`,
    );
    return { params, onnxBytes, manifest, heldOutAuc, onnxHeldOutAuc, maxScoreDiff, trainSeconds, report };
  } finally {
    await session.release();
  }
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]!;
  return s;
}
const round = (x: number, decimals: number) => Math.round(x * 10 ** decimals) / 10 ** decimals;

export const MODEL_DIR = fileURLToPath(new URL('../models/anomaly/', import.meta.url));

async function main(): Promise<number> {
  const result = await trainAnomaly();
  for (const line of result.report) console.log(line);
  if (!(result.heldOutAuc >= MIN_AUC)) {
    console.error(`held-out AUC ${result.heldOutAuc.toFixed(4)} is below ${MIN_AUC}; not writing the model`);
    return 1;
  }
  mkdirSync(MODEL_DIR, { recursive: true });
  writeFileSync(`${MODEL_DIR}anomaly.onnx`, result.onnxBytes);
  writeFileSync(`${MODEL_DIR}features.json`, `${JSON.stringify(result.manifest, null, 2)}\n`);
  console.log(`wrote ${MODEL_DIR}anomaly.onnx (${result.onnxBytes.length} bytes) and features.json`);
  return 0;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (invokedDirectly) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
