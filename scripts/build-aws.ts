/**
 * `npm run build:aws`: bundle the Lambda entries into `.deploy/aws/build/` (what serverless.yml packages).
 *
 * - One ESM file per entry (`http.mjs`, `sqs-jobs.mjs`, `sqs-dead-letters.mjs`, `s3-batch.mjs`, `batch-chunk.mjs`), minified, node22,
 *   with the AWS SDK v3 and every other dependency inlined and tree-shaken: a cold start reads one file instead
 *   of resolving hundreds of modules in node_modules.
 * - onnxruntime-node stays external (a native addon that loads its binary by a computed path) and is copied in
 *   with only its linux-x64 binaries: ~46 MB instead of ~290 MB.
 * - The model folders' definitions are imported statically (the folder scan's dynamic import cannot be bundled);
 *   their other files (ONNX, JSON) are copied to `models/<name>/`, and a model file shipped inside an npm
 *   package (vad: `@ricky0123/vad-web`) to `node_modules/<package>/`, where the runtime resolves them.
 */
import { build, type Metafile, type Plugin } from 'esbuild';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadModelRepository } from '../handlers/model-repository.ts';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The Lambda entries of the AWS adapter: output name (serverless.yml `handler: .deploy/aws/build/<name>.handler`) -> source. */
export const AWS_ENTRIES: Record<string, string> = {
  http: 'adapters/aws/handler.ts',
  'sqs-jobs': 'adapters/aws/sqs-jobs.ts',
  'sqs-dead-letters': 'adapters/aws/sqs-dead-letters.ts',
  's3-batch': 'adapters/aws/s3-batch.ts',
  'batch-chunk': 'adapters/aws/batch-chunk.ts',
};

export const DEFAULT_AWS_BUILD_DIR = path.join(REPO_ROOT, '.deploy', 'aws', 'build');

/**
 * CommonJS dependencies inlined into an ES module still call require() for Node's built-ins. esbuild puts the
 * banner on every output file; dropRequireBannerWhereUnused takes it off those that never call require().
 */
const REQUIRE_BANNER = "import{createRequire as __modelfnCreateRequire}from'node:module';const require=__modelfnCreateRequire(import.meta.url);";

/** Native packages left out of the bundle and copied, pruned, next to it. */
const EXTERNAL_PACKAGES = ['onnxruntime-node', 'onnxruntime-common'];

export interface AwsBuild {
  outDir: string;
  /** Entry output files, relative to outDir. */
  entries: string[];
  models: string[];
  /** Bytes per part of the build: bundles (entries and chunks), onnxruntime, models, total. */
  bytes: { bundles: number; onnxruntime: number; models: number; total: number };
  /** Per entry, the JavaScript a cold start loads before the handler runs: the entry and the chunks it imports statically. */
  startupBytes: Record<string, number>;
}

/** The bundle's static registry of model folders, imported as `modelfn:bundled-models`. */
function bundledModelsPlugin(modelsDir: string, folders: string[]): Plugin {
  return {
    name: 'modelfn-bundled-models',
    setup(build) {
      build.onResolve({ filter: /^modelfn:bundled-models$/ }, (args) => ({ path: args.path, namespace: 'modelfn' }));
      build.onLoad({ filter: /.*/, namespace: 'modelfn' }, () => {
        const repository = JSON.stringify(path.join(REPO_ROOT, 'handlers', 'model-repository.ts'));
        // Evaluated on first call, a definition that throws is recorded as that model's failure, as with the folder
        // scan, instead of failing the whole function's init. require(), not import(): esbuild then keeps the
        // definition in the entry's own file (wrapped to run on first call) instead of splitting it, and the code it
        // shares with the entry, into chunks of their own — each one more module a cold start resolves and links.
        const entries = folders.map((folder) => `${JSON.stringify(folder)}: async () => require(${JSON.stringify(path.join(modelsDir, folder, 'model.ts'))})`);
        return {
          contents: `import { useBundledDefinitions } from ${repository};\nuseBundledDefinitions({ ${entries.join(', ')} });\n`,
          resolveDir: REPO_ROOT,
          loader: 'js',
        };
      });
    },
  };
}

/**
 * `import.meta.url` in a bundled source file would be the bundle's URL. Give each repository file the URL it
 * would have at its own relative place beside the bundle (`models/anomaly/model.ts` -> `<out>/models/anomaly/model.ts`),
 * where the build copies the files those URLs point at (features.json, the models folder).
 */
function sourceRelativeUrlPlugin(): Plugin {
  return {
    name: 'modelfn-source-relative-import-meta-url',
    setup(build) {
      build.onLoad({ filter: /\.ts$/ }, (args) => {
        const relative = path.relative(REPO_ROOT, args.path);
        if (relative.startsWith('..') || relative.split(path.sep).includes('node_modules')) return undefined;
        const source = readFileSync(args.path, 'utf8');
        if (!source.includes('import.meta.url')) return undefined;
        const url = `new URL(${JSON.stringify(`./${relative.split(path.sep).join('/')}`)}, import.meta.url).href`;
        return { contents: source.replaceAll('import.meta.url', url), loader: 'ts' };
      });
    },
  };
}

/**
 * The AWS SDK v3 and its @smithy parts, resolved to their ES module builds (package.json `module`): with their
 * `sideEffects: false`, esbuild drops what an entry does not use (a third less code at start for the S3/SQS
 * entries). Only for these scopes: other packages' `module` builds are not always equivalent to their `main`
 * (wavefile's has no default export).
 */
function awsSdkEsmPlugin(): Plugin {
  return {
    name: 'modelfn-aws-sdk-esm',
    setup(build) {
      build.onResolve({ filter: /^@(aws-sdk|smithy|aws-crypto)\/[^/]+$/ }, async (args) => {
        if (args.pluginData === 'modelfn-aws-sdk-esm') return undefined;
        const resolved = await build.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: 'modelfn-aws-sdk-esm' });
        const at = resolved.path.lastIndexOf(`${path.sep}node_modules${path.sep}${args.path.split('/').join(path.sep)}${path.sep}`);
        if (resolved.errors.length > 0 || at === -1) return resolved.errors.length > 0 ? { errors: resolved.errors } : resolved;
        const root = resolved.path.slice(0, at + `${path.sep}node_modules${path.sep}`.length + args.path.length);
        const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { module?: unknown; exports?: unknown };
        if (typeof manifest.module !== 'string' || manifest.exports !== undefined) return resolved;
        return { path: path.join(root, manifest.module) };
      });
    },
  };
}

/**
 * @middy/core imports node:stream/web at its top for one `instanceof ReadableStream`, in the streaming-response
 * path these functions do not take; web streams cost every cold start ~2 ms to load. In the bundle, middy gets a
 * ReadableStream whose instanceof check loads them on first use.
 */
function deferWebStreamsPlugin(): Plugin {
  return {
    name: 'modelfn-defer-web-streams',
    setup(build) {
      build.onResolve({ filter: /^node:stream\/web$/ }, (args) =>
        args.importer.includes(`${path.sep}node_modules${path.sep}@middy${path.sep}core${path.sep}`) ? { path: 'stream-web', namespace: 'modelfn-deferred' } : undefined,
      );
      build.onLoad({ filter: /.*/, namespace: 'modelfn-deferred' }, () => ({
        contents: 'export const ReadableStream = class { static [Symbol.hasInstance](value) { return value instanceof globalThis.ReadableStream; } };\n',
        loader: 'js',
      }));
    },
  };
}

/**
 * onnxruntime-node imported by its file in the package (`./node_modules/onnxruntime-node/<main>`, every output file
 * sits beside that folder): a bare specifier makes Node walk node_modules and read package.json for each module
 * that imports it, ~1 ms of a cold start.
 */
function onnxRuntimeByPathPlugin(): Plugin {
  const require = createRequire(path.join(REPO_ROOT, 'package.json'));
  const main = path.relative(path.dirname(require.resolve('onnxruntime-node/package.json')), require.resolve('onnxruntime-node'));
  return {
    name: 'modelfn-onnxruntime-by-path',
    setup(build) {
      build.onResolve({ filter: /^onnxruntime-node$/ }, () => ({ path: `./node_modules/onnxruntime-node/${main.split(path.sep).join('/')}`, external: true }));
    },
  };
}

/** Each module that keeps the banner costs a cold start its import.meta and a createRequire, ~0.5 ms. */
function dropRequireBannerWhereUnused(files: string[]): void {
  for (const file of files) {
    const code = readFileSync(file, 'utf8');
    // The banner's line stays, empty, so source maps still line up.
    const body = code.startsWith(`${REQUIRE_BANNER}\n`) ? code.slice(REQUIRE_BANNER.length) : undefined;
    if (body !== undefined && !/\brequire\b/.test(body)) writeFileSync(file, body);
  }
}

function directoryBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/** Copy onnxruntime-node with its JS and the linux-x64 binaries only, and onnxruntime-common's CommonJS build. */
function copyOnnxRuntime(outDir: string): void {
  const require = createRequire(path.join(REPO_ROOT, 'package.json'));
  const nodeRoot = path.dirname(require.resolve('onnxruntime-node/package.json'));
  const target = path.join(outDir, 'node_modules', 'onnxruntime-node');
  copyFileSync(path.join(nodeRoot, 'package.json'), mkdirFor(path.join(target, 'package.json')));
  for (const file of readdirSync(path.join(nodeRoot, 'dist')).filter((name) => name.endsWith('.js'))) {
    copyFileSync(path.join(nodeRoot, 'dist', file), mkdirFor(path.join(target, 'dist', file)));
  }
  const napiDirs = readdirSync(path.join(nodeRoot, 'bin')).filter((name) => name.startsWith('napi-v'));
  for (const napi of napiDirs) {
    const binaries = path.join(nodeRoot, 'bin', napi, 'linux', 'x64');
    if (!existsSync(binaries)) throw new Error(`onnxruntime-node has no linux-x64 binaries in ${path.relative(REPO_ROOT, binaries)}`);
    cpSync(binaries, path.join(target, 'bin', napi, 'linux', 'x64'), { recursive: true });
  }

  const commonRequire = createRequire(path.join(nodeRoot, 'package.json'));
  const commonRoot = path.dirname(path.dirname(path.dirname(commonRequire.resolve('onnxruntime-common'))));
  const commonTarget = path.join(outDir, 'node_modules', 'onnxruntime-common');
  copyFileSync(path.join(commonRoot, 'package.json'), mkdirFor(path.join(commonTarget, 'package.json')));
  cpSync(path.join(commonRoot, 'dist', 'cjs'), path.join(commonTarget, 'dist', 'cjs'), {
    recursive: true,
    filter: (source) => !source.endsWith('.map') && !source.endsWith('.d.ts'),
  });
}

function mkdirFor(file: string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  return file;
}

/** Build every entry into `outDir` (emptied first). Throws, naming them, when entries or model files are missing. */
export async function buildAws(options: { outDir?: string; entries?: Record<string, string> } = {}): Promise<AwsBuild> {
  const outDir = path.resolve(options.outDir ?? DEFAULT_AWS_BUILD_DIR);
  const entries = options.entries ?? AWS_ENTRIES;
  const missing = Object.values(entries).filter((source) => !existsSync(path.join(REPO_ROOT, source)));
  if (missing.length > 0) throw new Error(`build:aws: missing Lambda entr${missing.length === 1 ? 'y' : 'ies'}: ${missing.join(', ')}`);

  // The models, loaded from source as the server would: a broken definition fails the build, not the deployment.
  const modelsDir = path.join(REPO_ROOT, 'models');
  const repository = await loadModelRepository({ dir: modelsDir });
  if (repository.broken.length > 0) {
    throw new Error(`build:aws: ${repository.broken.map((model) => `model ${model.name}: ${model.error}`).join('; ')}`);
  }
  const services = repository.list();
  const folders = services.map((service) => path.basename(service.modelDir));

  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  // One esbuild run per entry: chunks are split off only for what an entry imports dynamically (the SDK clients
  // the HTTP path loads on demand, Ajv, wavefile) and the code the entry shares with those, never for code merely
  // shared with another function — the HTTP cold start links three files, not seven.
  const results = await Promise.all(
    Object.entries(entries).map(([name, source]) =>
      build({
        entryPoints: [{ in: `modelfn-entry:${name}`, out: name }],
        plugins: [
          {
            // The function's entry: the static model registry first (evaluated before the handler's top-level
            // preload), then the handler module itself.
            name: 'modelfn-entries',
            setup(build) {
              build.onResolve({ filter: /^modelfn-entry:/ }, (args) => ({ path: args.path.slice('modelfn-entry:'.length), namespace: 'modelfn-entry' }));
              build.onLoad({ filter: /.*/, namespace: 'modelfn-entry' }, () => ({
                contents: `import 'modelfn:bundled-models';\nexport { handler } from ${JSON.stringify(path.join(REPO_ROOT, source))};\n`,
                resolveDir: REPO_ROOT,
                loader: 'js',
              }));
            },
          },
          bundledModelsPlugin(modelsDir, folders),
          sourceRelativeUrlPlugin(),
          awsSdkEsmPlugin(),
          deferWebStreamsPlugin(),
          onnxRuntimeByPathPlugin(),
        ],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node22',
        outdir: outDir,
        outExtension: { '.js': '.mjs' },
        splitting: true,
        // In the same folder as the entries: import.meta.url-relative paths (sourceRelativeUrlPlugin) hold in every
        // file. Content-hashed, so a chunk two entries' runs both emit is the same file.
        chunkNames: '[name]-[hash]',
        minify: true,
        external: EXTERNAL_PACKAGES,
        banner: { js: REQUIRE_BANNER },
        legalComments: 'none',
        logLevel: 'warning',
        metafile: true,
        sourcemap: process.env.MODELFN_BUILD_SOURCEMAP === '1' ? 'external' : false,
      }),
    ),
  );
  const metafile: Metafile = { inputs: {}, outputs: {} };
  for (const result of results) {
    Object.assign(metafile.inputs, result.metafile.inputs);
    Object.assign(metafile.outputs, result.metafile.outputs);
  }

  dropRequireBannerWhereUnused(Object.keys(metafile.outputs).filter((file) => file.endsWith('.mjs')));
  copyOnnxRuntime(outDir);
  for (const service of services) {
    const folder = path.basename(service.modelDir);
    cpSync(service.modelDir, path.join(outDir, 'models', folder), { recursive: true, filter: (source) => !/\.(ts|mts|cts)$/.test(source) });
    const file = service.definition.file;
    if (typeof file !== 'string') {
      // Resolved at run time by createRequire from the model's folder (handlers/model-runtime.ts): the package's
      // package.json and the model file are all it needs.
      const packageRoot = path.dirname(createRequire(path.join(service.modelDir, 'model.ts')).resolve(`${file.package}/package.json`));
      const target = path.join(outDir, 'node_modules', file.package);
      copyFileSync(path.join(packageRoot, 'package.json'), mkdirFor(path.join(target, 'package.json')));
      copyFileSync(path.join(packageRoot, file.path), mkdirFor(path.join(target, file.path)));
    }
  }
  await repository.dispose();

  if (process.env.MODELFN_BUILD_METAFILE) writeFileSync(process.env.MODELFN_BUILD_METAFILE, JSON.stringify(metafile));
  const outputs = metafile.outputs;
  const bundles = Object.keys(outputs).reduce((sum, file) => sum + statSync(file).size, 0);
  const staticClosure = (file: string, seen = new Set<string>()): Set<string> => {
    if (seen.has(file)) return seen;
    seen.add(file);
    for (const imported of outputs[file]?.imports ?? []) if (imported.kind === 'import-statement' && outputs[imported.path]) staticClosure(imported.path, seen);
    return seen;
  };
  const startupBytes = Object.fromEntries(
    Object.entries(outputs)
      .filter(([, output]) => output.entryPoint?.startsWith('modelfn-entry:'))
      .map(([file]) => [path.basename(file), [...staticClosure(file)].reduce((sum, part) => sum + outputs[part]!.bytes, 0)]),
  );
  const onnxruntime = directoryBytes(path.join(outDir, 'node_modules', 'onnxruntime-node')) + directoryBytes(path.join(outDir, 'node_modules', 'onnxruntime-common'));
  const total = directoryBytes(outDir);
  return {
    outDir,
    entries: Object.keys(entries).map((name) => `${name}.mjs`),
    models: folders,
    bytes: { bundles, onnxruntime, models: total - bundles - onnxruntime, total },
    startupBytes,
  };
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    const built = await buildAws({ outDir: process.argv[2] });
    console.log(`built ${built.entries.join(', ')} with models ${built.models.join(', ')} into ${path.relative(process.cwd(), built.outDir) || '.'}`);
    console.log(`loaded at cold start: ${Object.entries(built.startupBytes).map(([entry, bytes]) => `${entry} ${(bytes / 1024).toFixed(0)} KB`).join(', ')}`);
    console.log(
      `unzipped ${mb(built.bytes.total)} (bundles ${mb(built.bytes.bundles)}, onnxruntime linux-x64 ${mb(built.bytes.onnxruntime)}, model files ${mb(built.bytes.models)}); Lambda allows 262.1 MB unzipped`,
    );
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  }
}
