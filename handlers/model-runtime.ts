import { createRequire } from 'node:module';
import path from 'node:path';
import { InferenceSession } from 'onnxruntime-node';
import { errorMessage, UnavailableError } from './errors.ts';
import type { ModelSource } from './model-definition.ts';

export type LoadState = 'unloaded' | 'loading' | 'ready' | 'failed';

export interface SessionHandle {
  session: InferenceSession;
  /** True for the one call that waited for the load. */
  cold: boolean;
  loadMs: number;
}

/** After a failed load, callers get the same error for this long before the file is tried again. */
const RETRY_AFTER_FAILURE_MS = 5_000;

/** Resolve a model's ONNX file: relative to its folder, or inside an installed npm package. */
export function resolveModelFile(source: ModelSource, modelDir: string): string {
  if (typeof source === 'string') return path.resolve(modelDir, source);
  const require = createRequire(path.join(modelDir, 'model.ts'));
  const packageJson = require.resolve(`${source.package}/package.json`);
  return path.join(path.dirname(packageJson), source.path);
}

/**
 * One onnxruntime session per model per process: created on first use, shared by concurrent first
 * callers (single-flight), kept warm. A missing or corrupt file leaves the model "failed" with the reason,
 * and is retried after a pause, so a bad file never turns into a crash loop or a thundering herd.
 */
export class ModelRuntime {
  private loading: Promise<InferenceSession> | undefined;
  private session: InferenceSession | undefined;
  private failedAt = 0;
  private failure: string | undefined;
  loadMs: number | undefined;

  constructor(
    readonly modelName: string,
    private readonly resolveFile: () => string,
    private readonly sessionOptions: InferenceSession.SessionOptions = {},
    private readonly onLoaded?: (ms: number) => void,
  ) {}

  get state(): LoadState {
    if (this.session) return 'ready';
    if (this.loading) return 'loading';
    return this.failure ? 'failed' : 'unloaded';
  }

  /** The session when loaded, without a promise: the warm path needs no await. */
  get loaded(): InferenceSession | undefined {
    return this.session;
  }

  get loadError(): string | undefined {
    return this.failure;
  }

  /** The session, loading it if needed. Throws UnavailableError when the model cannot be loaded. */
  async acquire(): Promise<SessionHandle> {
    if (this.session) return { session: this.session, cold: false, loadMs: 0 };
    if (this.failure && performance.now() - this.failedAt < RETRY_AFTER_FAILURE_MS) {
      throw new UnavailableError(`model ${this.modelName} is not ready: ${this.failure}`);
    }
    const started = performance.now();
    this.loading ??= this.load();
    const session = await this.loading;
    return { session, cold: true, loadMs: performance.now() - started };
  }

  /** Like acquire, but for readiness checks: resolves to whether the model could be loaded. */
  async ensureLoaded(): Promise<boolean> {
    try {
      await this.acquire();
      return true;
    } catch {
      return false;
    }
  }

  private async load(): Promise<InferenceSession> {
    const started = performance.now();
    try {
      const file = this.resolveFile();
      const session = await InferenceSession.create(file, this.sessionOptions);
      this.session = session;
      this.failure = undefined;
      this.loadMs = performance.now() - started;
      this.onLoaded?.(this.loadMs);
      return session;
    } catch (error) {
      this.failure = describeLoadFailure(error);
      this.failedAt = performance.now();
      throw new UnavailableError(`model ${this.modelName} is not ready: ${this.failure}`);
    } finally {
      this.loading = undefined;
    }
  }

  async dispose(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    await session?.release();
  }
}

function describeLoadFailure(error: unknown): string {
  const message = errorMessage(error);
  if (/ENOENT|No such file|doesn't exist|does not exist|Load model from .* failed:.*No such file/i.test(message)) {
    return `model file not found (${message.split('\n')[0]})`;
  }
  if (/Cannot find module|Cannot find package/i.test(message)) return `model package not installed (${message.split('\n')[0]})`;
  return `model file could not be loaded (${message.split('\n')[0]})`;
}
