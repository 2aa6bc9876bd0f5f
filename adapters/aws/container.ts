import type { Core } from '../../handlers/index.ts';

/**
 * What lives as long as one Lambda execution environment: the core, created once and shared by every
 * invocation, and the count that tells the first (cold) invocation from the rest.
 */
export class Container {
  private invocations = 0;
  private core: Core | undefined;
  private pending: Promise<Core> | undefined;
  private initReported = false;
  /** How long creating the core took: model discovery, plus every session when preloading. */
  initMs: number | undefined;

  constructor(private readonly createCore: () => Promise<Core>) {}

  /** Count one invocation; true for the first this environment serves. */
  beginInvocation(): boolean {
    return ++this.invocations === 1;
  }

  /** The core if it exists; never creates it. */
  get current(): Core | undefined {
    return this.core;
  }

  /**
   * The core, created on first use. Concurrent first callers share one creation (single-flight); a creation
   * that fails is tried again by the next caller, so one bad start never poisons the environment.
   */
  get(): Promise<Core> {
    if (this.core) return Promise.resolve(this.core);
    this.pending ??= this.create();
    return this.pending;
  }

  /** The init time, handed out once: to the first invocation that uses the core. */
  takeInitMs(): number | undefined {
    if (this.initReported || this.initMs === undefined) return undefined;
    this.initReported = true;
    return this.initMs;
  }

  private async create(): Promise<Core> {
    const started = performance.now();
    try {
      const core = await this.createCore();
      this.initMs = performance.now() - started;
      this.core = core;
      return core;
    } finally {
      this.pending = undefined;
    }
  }
}
