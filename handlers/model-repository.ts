import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { errorMessage, NotFoundError } from './errors.ts';
import type { Metrics } from './metrics.ts';
import type { ModelDefinition } from './model-definition.ts';
import { ModelService } from './model-service.ts';

/** The example models shipped in this package. */
export const BUNDLED_MODELS_DIR = fileURLToPath(new URL('../models/', import.meta.url));

const DEFINITION_FILES = ['model.ts', 'model.js', 'model.mjs'];

/** How to import one model folder's definition module (its default export is the `defineModel(...)`). */
export type DefinitionImport = () => Promise<{ default?: unknown }>;

/**
 * A bundle cannot follow the folder scan's dynamic import, so a bundler (scripts/build-aws.ts) registers a
 * static import per example model folder here, by folder name. The folders' other files (ONNX, JSON) are
 * still read from BUNDLED_MODELS_DIR, which the bundle carries next to itself.
 */
let bundledDefinitions: Record<string, DefinitionImport> | undefined;

export function useBundledDefinitions(definitions: Record<string, DefinitionImport>): void {
  bundledDefinitions = definitions;
}

/** A folder that looked like a model but whose definition could not be imported. */
export interface BrokenModel {
  name: string;
  error: string;
}

/** The models a process serves: one folder per model, discovered at start (Triton's model repository). */
export class ModelRepository {
  private readonly services = new Map<string, ModelService>();
  readonly broken: BrokenModel[] = [];

  add(service: ModelService): void {
    if (this.services.has(service.name)) throw new Error(`two models are named "${service.name}"`);
    this.services.set(service.name, service);
  }

  get(name: string): ModelService {
    const service = this.services.get(name);
    if (!service) {
      const broken = this.broken.find((model) => model.name === name);
      if (broken) throw new NotFoundError(`model "${name}" failed to load its definition: ${broken.error}`);
      throw new NotFoundError(`model "${name}" not found; available: ${[...this.services.keys()].join(', ') || 'none'}`);
    }
    return service;
  }

  list(): ModelService[] {
    return [...this.services.values()];
  }

  /** Load every model's session now (provisioned concurrency, containers); a failed model stays not ready. */
  async preload(): Promise<void> {
    // A schema that does not compile is reported by every v1 request that needs it; preloading goes on.
    await Promise.all(this.list().map((service) => Promise.all([service.ready(), service.instanceCheck().catch(() => undefined)])));
  }

  async dispose(): Promise<void> {
    await Promise.all(this.list().map((service) => service.runtime.dispose()));
  }
}

/**
 * Discover `<dir>/<name>/model.ts` (or .js) files, each default-exporting a `defineModel(...)`.
 * `definitions` (folder name -> import) replaces the scan of `dir`; without both, the bundled examples are used
 * (statically imported when running from a bundle). A definition that fails to import is recorded as broken,
 * not thrown: the other models still serve.
 */
export async function loadModelRepository(
  options: { dir?: string; definitions?: Record<string, DefinitionImport>; metrics?: Metrics; only?: string[] } = {},
): Promise<ModelRepository> {
  const dir = path.resolve(options.dir ?? BUNDLED_MODELS_DIR);
  const definitions = options.definitions ?? (options.dir === undefined ? bundledDefinitions : undefined);
  const repository = new ModelRepository();
  const folders = (definitions ? Object.keys(definitions) : readdirSync(dir, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name))
    .filter((name) => !options.only || options.only.includes(name))
    .sort();
  for (const folder of folders) {
    const modelDir = path.join(dir, folder);
    let importDefinition = definitions?.[folder];
    let file = 'model.ts';
    if (!importDefinition) {
      const found = DEFINITION_FILES.map((name) => path.join(modelDir, name)).find((candidate) => existsSync(candidate));
      if (!found) continue;
      file = path.basename(found);
      importDefinition = () => import(pathToFileURL(found).href) as Promise<{ default?: unknown }>;
    }
    try {
      const definition = (await importDefinition()).default as ModelDefinition | undefined;
      if (!definition || typeof definition.name !== 'string') throw new Error(`${file} has no default export from defineModel()`);
      repository.add(new ModelService(definition, modelDir, options.metrics));
    } catch (error) {
      // The first line says what is wrong; the rest (require stacks) would only leak file paths to callers.
      const message = errorMessage(error).split('\n')[0]!;
      repository.broken.push({ name: folder, error: message });
    }
  }
  return repository;
}
