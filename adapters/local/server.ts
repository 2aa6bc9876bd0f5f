import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HttpApp } from '../../handlers/index.ts';

export interface LocalServer {
  url: string;
  port: number;
  /** Stop accepting, let in-flight requests finish (up to drainTimeoutMs), then close every connection. */
  close(drainTimeoutMs?: number): Promise<void>;
}

/** The embedded HTTP server: node:http straight onto the core app, with the body limit enforced while reading. */
export async function startLocalServer(app: HttpApp, options: { port?: number; host?: string } = {}): Promise<LocalServer> {
  let inFlight = 0;
  let draining = false;
  let onIdle: (() => void) | undefined;

  const server = http.createServer((req, res) => {
    inFlight++;
    res.on('close', () => {
      inFlight--;
      if (inFlight === 0) onIdle?.();
    });
    if (draining) res.setHeader('connection', 'close');

    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > app.bodyLimitBytes) return rejectTooLarge(res, app.bodyLimitBytes);
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > app.bodyLimitBytes) {
        tooLarge = true;
        rejectTooLarge(res, app.bodyLimitBytes);
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (tooLarge) return;
      // Node joins repeated headers with ", " already; only set-cookie stays an array, and the core reads none.
      const headers = req.headers as Record<string, string | undefined>;
      app
        .handle({ method: req.method ?? 'GET', url: req.url ?? '/', headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) })
        .then((response) => {
          res.writeHead(response.status, response.headers);
          res.end(response.body);
        })
        .catch(() => {
          // The core turns every error into a response; reaching here means the socket itself failed.
          res.destroy();
        });
    });
  });
  server.keepAliveTimeout = 65_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    async close(drainTimeoutMs = 10_000) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        await Promise.race([
          new Promise<void>((resolve) => (onIdle = resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, drainTimeoutMs).unref()),
        ]);
      }
      server.closeAllConnections();
      await closed;
    },
  };
}

function rejectTooLarge(res: http.ServerResponse, limit: number): void {
  res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
  res.end(JSON.stringify({ error: `request body exceeds the limit of ${limit} bytes` }));
}
