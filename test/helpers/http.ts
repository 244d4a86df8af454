/**
 * Real loopback HTTP for tests: start an app on 127.0.0.1, and a raw client that keeps the exact bytes and
 * tells how the response ended (complete, or cut off), which supertest hides.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sseFrames } from './protocol-wire.js';

export interface RunningServer {
  url: string;
  port: number;
  server: http.Server;
  close(): Promise<void>;
}

export async function listen(handler: http.RequestListener): Promise<RunningServer> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body exactly as received (after de-chunking). */
  text: string;
  /** True when the body ended normally (`res.complete`); false when the connection was cut. */
  complete: boolean;
  /** An error raised while reading (e.g. `aborted`, `ECONNRESET`), if any. */
  error?: Error;
  /** `Date.now()` when the client destroyed the request (with `abortAfterMs`). */
  abortedAt?: number;
}

export interface RawRequestOptions {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | object;
  /** Abort the request after this many ms (to test client disconnects). */
  abortAfterMs?: number;
}

export function rawRequest(baseUrl: string, options: RawRequestOptions = {}): Promise<RawResponse> {
  const body = typeof options.body === 'string' ? options.body : options.body === undefined ? undefined : JSON.stringify(options.body);
  const url = new URL(options.path ?? '/v1/chat/completions', baseUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: options.method ?? 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', ...(options.headers ?? {}) },
    });
    let abortedAt: number | undefined;
    req.on('error', (error) => resolve({ status: 0, headers: {}, text: '', complete: false, error, ...(abortedAt ? { abortedAt } : {}) }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let error: Error | undefined;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => (error = e));
      res.on('aborted', () => (error ??= new Error('aborted')));
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString('utf8'),
          complete: res.complete,
          ...(error ? { error } : {}),
          ...(abortedAt ? { abortedAt } : {}),
        }),
      );
    });
    if (options.abortAfterMs !== undefined) {
      setTimeout(() => {
        abortedAt = Date.now();
        req.destroy();
      }, options.abortAfterMs);
    }
    req.end(body);
    req.on('timeout', () => reject(new Error('timeout')));
  });
}

/** Splits an SSE body into its `data:` payloads, asserting nothing but well-formed `data: …\n\n` frames. */
export function sseData(text: string): string[] {
  return sseFrames(text).map((frame) => {
    if (!frame.startsWith('data: ') || frame.includes('\n')) throw new Error(`not a single data line: ${JSON.stringify(frame)}`);
    return frame.slice('data: '.length);
  });
}
