import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import os from 'node:os';

export const REPO_ROOT = new URL('../../', import.meta.url);

/** A free TCP port on loopback, as the kernel hands one out. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function hasCommand(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
    return true;
  } catch (error) {
    // Some tools (wrk --version) exit non-zero after printing; only a missing binary is ENOENT.
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/**
 * With 2+ cores, the server under test runs on core 1 and the load generator on core 0 (taskset), so the
 * two never preempt each other and runs of the same server agree; both sides of a ratio get the same pinning.
 */
const canPin = os.cpus().length >= 2 && process.platform === 'linux' && hasCommand('taskset', ['-V']);
export const SERVER_CPU = 1;
export const CLIENT_CPU = 0;

export function pinned(command: string[], cpu: number): string[] {
  return canPin ? ['taskset', '-c', String(cpu), ...command] : command;
}

export const pinning = canPin ? `server pinned to core ${SERVER_CPU}, load generator to core ${CLIENT_CPU}` : 'no CPU pinning';

export interface SpawnedServer {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Start a TypeScript server entry with tsx on a free port and wait until `readyPath` answers 200. */
export async function spawnServer(entry: string, args: string[], options: { env?: NodeJS.ProcessEnv; readyPath?: string; port?: number } = {}): Promise<SpawnedServer> {
  const port = options.port ?? (await freePort());
  const command = [process.execPath, '--import', 'tsx', entry, ...args.map((arg) => arg.replace('{port}', String(port)))];
  const [file, ...rest] = pinned(command, SERVER_CPU);
  const child = spawn(file!, rest, {
    cwd: new URL('.', REPO_ROOT).pathname,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', ...options.env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${entry} exited with ${child.exitCode}`);
    try {
      const response = await fetch(url + (options.readyPath ?? '/'), { method: options.readyPath ? 'GET' : 'HEAD' });
      if (options.readyPath ? response.ok : true) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${entry} did not become ready`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    process: child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}


/**
 * The load generator: wrk (C, Debian package `wrk`) when installed, else autocannon. On a 2-core machine
 * the client shares the CPU with the server; wrk takes far less of it, so the server is what is measured.
 */
export const loadClient: 'wrk' | 'autocannon' = process.env.BENCH_CLIENT === 'autocannon' || !hasCommand('wrk', ['--version']) ? 'autocannon' : 'wrk';

/** A bounded load run on loopback: POST `body` to `url` over `connections` keep-alive connections. */
export async function load(url: string, options: { connections: number; seconds: number; body: string }): Promise<LoadResult> {
  return loadClient === 'wrk' ? loadWithWrk(url, options) : loadWithAutocannon(url, options);
}

/** autocannon's CLI in its own process, so it can be pinned to the load generator's core like wrk. */
function loadWithAutocannon(url: string, options: { connections: number; seconds: number; body: string }): Promise<LoadResult> {
  const cli = fileURLToPath(import.meta.resolve('autocannon/autocannon.js'));
  const command = [process.execPath, cli, '--json', '-m', 'POST', '-H', 'content-type=application/json', '-b', options.body, '-c', String(options.connections), '-d', String(options.seconds), url];
  const [file, ...args] = pinned(command, CLIENT_CPU);
  return new Promise((resolve, reject) => {
    const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited with ${code}`));
      const result = JSON.parse(out) as { requests: { average: number }; latency: { p50: number; p99: number }; errors: number; non2xx: number };
      resolve({
        requestsPerSecond: result.requests.average,
        p50Ms: result.latency.p50,
        p99Ms: result.latency.p99,
        errors: result.errors,
        non2xx: result.non2xx,
      });
    });
  });
}

function loadWithWrk(url: string, options: { connections: number; seconds: number; body: string }): Promise<LoadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'modelfn-wrk-'));
  writeFileSync(path.join(dir, 'body.json'), options.body);
  const wrkScript = path.join(dir, 'post.lua');
  // The body is read from a file so any size works; done() prints percentiles and error counts as JSON.
  writeFileSync(
    wrkScript,
    `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("${path.join(dir, 'body.json')}", "rb"); wrk.body = f:read("*a"); f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"seconds":%f,"p50":%f,"p99":%f,"errors":%d,"non2xx":%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
`,
  );
  return new Promise((resolve, reject) => {
    const [file, ...args] = pinned(['wrk', '-t1', `-c${options.connections}`, `-d${options.seconds}s`, '-s', wrkScript, url], CLIENT_CPU);
    const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
      if (code !== 0 || !line) return reject(new Error(`wrk exited with ${code}: ${out}`));
      const r = JSON.parse(line) as { requests: number; seconds: number; p50: number; p99: number; errors: number; non2xx: number };
      resolve({ requestsPerSecond: r.requests / r.seconds, p50Ms: r.p50, p99Ms: r.p99, errors: r.errors, non2xx: r.non2xx });
    });
  });
}

export interface LoadResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

export const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} x ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()} ${os.arch()}`;
}

export const ratio = (ours: number, theirs: number) => `${(ours / theirs).toFixed(2)}x`;
