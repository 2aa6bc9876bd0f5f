import type { ErrorObject, ValidateFunction } from 'ajv';
import type { InferenceSession } from 'onnxruntime-node';
import { MicroBatcher, type BatchRunInfo } from './batcher.ts';
import { errorMessage, InputError, ModelfnError, NotFoundError, UnavailableError } from './errors.ts';
import type { Metrics } from './metrics.ts';
import type { ModelDefinition, ModelRunner, TensorMap } from './model-definition.ts';
import { ModelRuntime, resolveModelFile } from './model-runtime.ts';
import { decodeInferRequest, encodeTensor, inferSpecOf, type InferSpec, type OipInferResponse } from './oip.ts';
import { sharedRowCount, tensorSpecs, type TensorSpec } from './tensors.ts';

/** Where the time of one call went; every adapter reports it (Server-Timing on HTTP, the log line everywhere). */
export interface StageTimings {
  cold: boolean;
  loadMs: number;
  validateMs: number;
  preprocessMs: number;
  queueMs: number;
  runMs: number;
  postprocessMs: number;
  totalMs: number;
  batchRows: number;
  batchRequests: number;
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: 'onnx_onnxv1';
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

/** Why one v1 instance fails the model's schema (the message names `where` and the field), or undefined when valid. */
export type InstanceCheck = (instance: unknown, where?: string) => string | undefined;

// JSON Schema 2020-12, the draft the definition type documents; lenient about unknown keywords (they may be
// annotations). unicode: false measures strings by .length: counting code points walks every character of a
// multi-megabyte base64 field for nothing. Ajv is imported and built on first use: its code and the 2020-12
// meta-schema it compiles cost a Lambda cold start ~100 ms that an OIP-only request or a warm-up ping must not pay.
let schemaCompiler: Promise<import('ajv/dist/2020.js').Ajv2020> | undefined;

async function compileSchema(schema: object): Promise<ValidateFunction> {
  schemaCompiler ??= import('ajv/dist/2020.js').then((module) => {
    // Node names the CommonJS export Ajv2020; a bundle's CommonJS interop (esbuild) may give only `default`.
    const Ajv2020 = module.Ajv2020 ?? (module.default as unknown as typeof module).Ajv2020 ?? module.default;
    return new Ajv2020({ allErrors: false, strict: false, unicode: false, logger: false });
  });
  return (await schemaCompiler).compile(schema);
}

const acceptEverything: InstanceCheck = () => undefined;

function newTimings(): StageTimings {
  return { cold: false, loadMs: 0, validateMs: 0, preprocessMs: 0, queueMs: 0, runMs: 0, postprocessMs: 0, totalMs: 0, batchRows: 0, batchRequests: 0 };
}

function describeSchemaError(prefix: string, error: ErrorObject): string {
  const where = `${prefix}${error.instancePath.replaceAll('/', '.')}`;
  if (error.keyword === 'additionalProperties') return `${where} has unexpected property "${String(error.params.additionalProperty)}"`;
  if (error.keyword === 'required') return `${where} is missing required property "${String(error.params.missingProperty)}"`;
  return `${where} ${error.message ?? 'is invalid'}`;
}

/** One model's pipeline: decode and validate -> preprocess -> run (micro-batched) -> postprocess, each stage timed. */
export class ModelService {
  readonly runtime: ModelRuntime;
  private instanceCheckReady: Promise<InstanceCheck> | undefined;
  private batcher: MicroBatcher | undefined;
  private inferSpec: InferSpec | undefined;
  private initialisedFor: InferenceSession | undefined;

  constructor(
    readonly definition: ModelDefinition,
    readonly modelDir: string,
    private readonly metrics?: Metrics,
  ) {
    this.runtime = new ModelRuntime(
      definition.name,
      () => resolveModelFile(definition.file, modelDir),
      definition.sessionOptions,
      (ms) => metrics?.modelLoadSeconds.set({ model: definition.name }, ms / 1000),
    );
  }

  get name(): string {
    return this.definition.name;
  }

  /**
   * The model's instance check, its schema compiled on first use (once per process). Batch and jobs validate
   * record by record with it, so one bad record fails alone. A schema that does not compile is the
   * definition's fault: the model is "not ready" for v1 (503 naming why); tensors still serve.
   */
  instanceCheck(): Promise<InstanceCheck> {
    this.instanceCheckReady ??= this.compileInstanceCheck();
    return this.instanceCheckReady;
  }

  private async compileInstanceCheck(): Promise<InstanceCheck> {
    const schema = this.definition.instanceSchema;
    if (!schema) return acceptEverything;
    let validate: ValidateFunction;
    try {
      validate = await compileSchema(schema);
    } catch (error) {
      throw new UnavailableError(`model "${this.name}" is not ready: its instanceSchema does not compile: ${errorMessage(error)}`);
    }
    return (instance, where = 'instance') => (validate(instance) ? undefined : describeSchemaError(where, validate.errors![0]!));
  }

  get version(): string {
    return this.definition.version;
  }

  /** v1 predict: `instances` through the model's own validation and pre/post processing. */
  /**
   * v1 predict. `options.validated`: the caller has already run every instance through `instanceCheck()`
   * (batch chunks and job batches check record by record, so a bad record fails alone) — not checked twice.
   */
  async predict(instances: unknown, options: { validated?: boolean } = {}): Promise<{ predictions: unknown[]; timings: StageTimings }> {
    const { definition } = this;
    if (!definition.predict && !definition.preprocess) {
      throw new NotFoundError(`model "${this.name}" defines no v1 pre/post processing; use POST /v2/models/${this.name}/infer`);
    }
    const timings = newTimings();
    const started = performance.now();
    const session = await this.session(timings);

    let mark = performance.now();
    if (!Array.isArray(instances) || instances.length === 0) {
      throw new InputError('request body must be an object with a non-empty "instances" array');
    }
    if (!options.validated) {
      const instanceError = await this.instanceCheck();
      for (let index = 0; index < instances.length; index++) {
        const problem = instanceError(instances[index], `instances[${index}]`);
        if (problem) throw new InputError(problem);
      }
    }
    timings.validateMs = performance.now() - mark;

    let predictions: unknown[];
    if (definition.predict) {
      mark = performance.now();
      predictions = await definition.predict(instances, this.runner(session, timings));
      // A custom predict interleaves its own processing with runs: runMs sums the runs, the rest is its processing.
      timings.preprocessMs = performance.now() - mark - timings.runMs;
    } else {
      mark = performance.now();
      const feeds = await definition.preprocess!(instances);
      timings.preprocessMs = performance.now() - mark;
      const outputs = await this.run(feeds, timings);
      mark = performance.now();
      predictions = await definition.postprocess!(outputs, instances);
      timings.postprocessMs = performance.now() - mark;
    }
    if (predictions.length !== instances.length) {
      throw new Error(`model ${this.name} returned ${predictions.length} predictions for ${instances.length} instances`);
    }
    timings.totalMs = performance.now() - started;
    return { predictions, timings };
  }

  /** v2 infer: Open Inference Protocol tensors in and out, checked against the model's own metadata. */
  async infer(body: unknown): Promise<{ response: OipInferResponse; timings: StageTimings }> {
    const timings = newTimings();
    const started = performance.now();
    const session = await this.session(timings);

    let mark = performance.now();
    const request = decodeInferRequest(body, this.inferSpec!);
    timings.validateMs = performance.now() - mark;
    const outputs = await this.run(request.feeds, timings);

    mark = performance.now();
    const response: OipInferResponse = {
      model_name: this.name,
      model_version: this.version,
      ...(request.id !== undefined && { id: request.id }),
      outputs: request.outputNames.map((name) => encodeTensor(name, outputs[name]!)),
    };
    timings.postprocessMs = performance.now() - mark;
    timings.totalMs = performance.now() - started;
    return { response, timings };
  }

  async metadata(): Promise<ModelMetadata> {
    const { session } = await this.runtime.acquire();
    return {
      name: this.name,
      versions: [this.version],
      platform: 'onnx_onnxv1',
      inputs: tensorSpecs(session.inputMetadata),
      outputs: tensorSpecs(session.outputMetadata),
    };
  }

  /** Loads the model if needed: readiness that reports a corrupt or missing file instead of hiding it. */
  ready(): Promise<boolean> {
    return this.runtime.ensureLoaded();
  }

  private session(timings: StageTimings): InferenceSession | Promise<InferenceSession> {
    const loaded = this.runtime.loaded;
    if (loaded && loaded === this.initialisedFor) return loaded;
    return this.acquireSession(timings);
  }

  private async acquireSession(timings: StageTimings): Promise<InferenceSession> {
    const handle = await this.runtime.acquire();
    timings.cold = handle.cold;
    timings.loadMs = handle.loadMs;
    if (this.initialisedFor !== handle.session) this.onNewSession(handle.session);
    return handle.session;
  }

  /** What depends on the session's metadata is worked out once: the decoding spec, and whether to batch. */
  private onNewSession(session: InferenceSession): void {
    this.initialisedFor = session;
    this.inferSpec = inferSpecOf(session);
    const options = this.definition.batching;
    // Stacking needs a dynamic dim 0 on every input.
    const batchable = session.inputMetadata.every((meta) => meta.isTensor && meta.shape.length > 0 && typeof meta.shape[0] === 'string');
    this.batcher = batchable && options
      ? new MicroBatcher((feeds) => runSession(session, feeds), options, (rows, requests) => this.metrics?.recordBatch(this.name, rows, requests))
      : undefined;
  }

  private async run(feeds: TensorMap, timings: StageTimings): Promise<TensorMap> {
    const rows = this.batcher ? sharedRowCount(feeds) : undefined;
    if (this.batcher && rows !== undefined && rows > 0) {
      const { outputs, info } = await this.batcher.submit(feeds, rows);
      addRunInfo(timings, info);
      return outputs;
    }
    const started = performance.now();
    const session = this.initialisedFor!;
    try {
      return await runSession(session, feeds);
    } finally {
      timings.runMs += performance.now() - started;
      timings.batchRequests = 1;
    }
  }

  private runner(session: InferenceSession, timings: StageTimings): ModelRunner {
    return { session, run: (feeds) => this.run(feeds, timings) };
  }
}

function addRunInfo(timings: StageTimings, info: BatchRunInfo): void {
  timings.queueMs += info.queueMs;
  timings.runMs += info.runMs;
  timings.batchRows = Math.max(timings.batchRows, info.batchRows);
  timings.batchRequests = Math.max(timings.batchRequests, info.batchRequests);
}

async function runSession(session: InferenceSession, feeds: TensorMap): Promise<TensorMap> {
  try {
    return (await session.run(feeds)) as TensorMap;
  } catch (error) {
    throw asRunError(error);
  }
}

/** onnxruntime reports shape and type mismatches it finds at run time; those are the caller's input, not our fault. */
function asRunError(error: unknown): unknown {
  if (error instanceof ModelfnError) return error;
  const message = errorMessage(error);
  if (/invalid (dimensions|rank|input|shape)|Got invalid|Unexpected input data type|input .* not found|data type mismatch/i.test(message)) {
    return new InputError(`the model rejected the input: ${message.split('\n')[0]}`);
  }
  return error;
}
