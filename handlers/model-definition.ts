import type { InferenceSession, Tensor } from 'onnxruntime-node';

/** Named tensors, as onnxruntime feeds and fetches. */
export type TensorMap = Record<string, Tensor>;

/** A JSON Schema object (draft 2020-12 subset that Ajv understands). */
export type JsonSchema = Record<string, unknown>;

/** Where the ONNX file comes from: a path relative to the model folder, or a file inside an installed npm package. */
export type ModelSource = string | { package: string; path: string };

export interface BatchingOptions {
  /** Most rows (sum of dim 0 over stacked requests) in one tensor run. */
  maxBatchSize: number;
  /**
   * Longest time a request may wait for others to stack with it. 0 (the default) never waits on a timer:
   * a request runs at once when the model is idle and stacks with whatever queued while a run was in flight.
   */
  maxDelayMs?: number;
  /** Requests waiting beyond this many rows get 503 instead of queueing without bound. */
  maxQueueRows?: number;
}

/** What a model's own code may call to run the ONNX session (used by custom `predict`). */
export interface ModelRunner {
  /** One tensor run through the model's batcher (or straight to the session when batching is off). */
  run(feeds: TensorMap): Promise<TensorMap>;
  readonly session: InferenceSession;
}

export interface ModelDefinition<Instance = unknown, Prediction = unknown> {
  name: string;
  version: string;
  description?: string;
  file: ModelSource;
  /** JSON Schema of one v1 `instances[]` element; checked before preprocess. */
  instanceSchema?: JsonSchema;
  /**
   * Turn validated v1 instances into feeds. Every feed's dim 0 must be the number of rows the instances make,
   * so that concurrent requests can be stacked into one run.
   */
  preprocess?: (instances: Instance[]) => TensorMap | Promise<TensorMap>;
  /** Turn this request's slice of the outputs into one prediction per instance. */
  postprocess?: (outputs: TensorMap, instances: Instance[]) => Prediction[] | Promise<Prediction[]>;
  /**
   * For models whose v1 predict is not one stacked run (a recurrent model stepped frame by frame, say):
   * replaces preprocess -> run -> postprocess.
   */
  predict?: (instances: Instance[], runner: ModelRunner) => Promise<Prediction[]>;
  /** Micro-batching across concurrent requests; `false` for models without a dynamic batch dimension. */
  batching?: BatchingOptions | false;
  /** Passed to onnxruntime's InferenceSession.create. */
  sessionOptions?: InferenceSession.SessionOptions;
}

/** Typed identity: gives a model folder's `model.ts` its types and a single place to evolve the contract. */
export function defineModel<Instance, Prediction>(
  definition: ModelDefinition<Instance, Prediction>,
): ModelDefinition<Instance, Prediction> {
  if (!definition.preprocess !== !definition.postprocess) {
    throw new Error(`model ${definition.name}: give preprocess and postprocess together (or predict, or neither for a v2-only model)`);
  }
  return definition;
}
