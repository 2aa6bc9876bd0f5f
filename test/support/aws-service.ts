import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildAws, type AwsBuild } from '../../scripts/build-aws.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const require = createRequire(import.meta.url);
/** osls's own CLI entry, run with this Node (no npx: nothing is fetched). */
export const OSLS_BIN = path.join(path.dirname(require.resolve('osls/package.json')), 'bin', 'serverless.js');

const PLUGINS = ['serverless-offline', 'serverless-step-functions', 'serverless-plugin-warmup'];

export interface ServiceDir {
  dir: string;
  build: AwsBuild;
  remove(): void;
}

/**
 * A copy of the AWS service in a temp folder: serverless.yml, the state machine file, a fresh build in
 * `.deploy/aws/build/`, and node_modules holding only the plugins — so the bundle can only use what the build put
 * beside it (the pruned onnxruntime-node, the model files), and parallel test files never share a build.
 */
export async function prepareServiceDir(): Promise<ServiceDir> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'modelfn-aws-service-'));
  copyFileSync(path.join(REPO_ROOT, 'serverless.yml'), path.join(dir, 'serverless.yml'));
  mkdirSync(path.join(dir, 'adapters', 'aws', 'state-machines'), { recursive: true });
  copyFileSync(path.join(REPO_ROOT, 'adapters/aws/state-machines/batch.yml'), path.join(dir, 'adapters/aws/state-machines/batch.yml'));
  mkdirSync(path.join(dir, 'node_modules'));
  for (const plugin of PLUGINS) {
    symlinkSync(realpathSync(path.join(REPO_ROOT, 'node_modules', plugin)), path.join(dir, 'node_modules', plugin), 'dir');
  }
  const build = await buildAws({ outDir: path.join(dir, '.deploy', 'aws', 'build') });
  return { dir, build, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * The environment osls runs in: no AWS credentials or profile (packaging must not need them), no telemetry,
 * no update or notification checks.
 */
export function offlineOslsEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!/^(AWS_|SLS_|SERVERLESS_)/.test(name)) env[name] = value;
  return {
    ...env,
    SLS_TELEMETRY_DISABLED: '1',
    SLS_TRACKING_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
    SLS_DEPRECATION_DISABLE: '*',
    AWS_SDK_LOAD_CONFIG: '0',
    AWS_CONFIG_FILE: path.join(os.tmpdir(), 'modelfn-no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(os.tmpdir(), 'modelfn-no-aws-credentials'),
    ...extra,
  };
}

/** `osls package --package <out>` in the service folder; resolves with the output folder. */
export async function oslsPackage(service: ServiceDir): Promise<string> {
  const out = path.join(service.dir, 'package-out');
  await promisify(execFile)(process.execPath, [OSLS_BIN, 'package', '--package', out, '--stage', 'test', '--region', 'us-east-1'], {
    cwd: service.dir,
    env: offlineOslsEnv(),
    timeout: 90_000,
  });
  return out;
}
