/**
 * An HTTP request whose target goes on the wire exactly as written (`/v1/./x`, `/v1//x`, `%2e`,
 * backslashes): `fetch`, supertest and `new URL()` would normalise these before sending.
 */
import http, { type IncomingHttpHeaders } from 'node:http';

export interface ExactResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The raw header lines, names as sent, for "this value appears nowhere" checks. */
  rawHeaders: string[];
  text: string;
  /** True when the body ended normally; false when the connection was cut. */
  complete: boolean;
  /** Milliseconds from sending the request to the end of the response (normal or cut). */
  elapsedMs: number;
}

export interface ExactRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string | object;
  /** A keep-alive agent to reuse connections across requests; a fresh connection each time otherwise. */
  agent?: http.Agent;
}

export function exactRequest(port: number, path: string, options: ExactRequestOptions = {}): Promise<ExactResponse> {
  const body = typeof options.body === 'string' ? options.body : options.body === undefined ? undefined : JSON.stringify(options.body);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      method: options.method ?? 'POST',
      agent: options.agent ?? false,
      // An explicit length: Node sends a GET or DELETE body without one, and the server reads it as a next request.
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }), ...(options.headers ?? {}) },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const settle = (): void => {
        if (settled) return;
        settled = true;
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          text: Buffer.concat(chunks).toString('utf8'),
          complete: res.complete,
          elapsedMs: Date.now() - started,
        });
      };
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', settle); // `aborted`: the server cut the body off
      res.on('close', settle);
    });
    req.end(body);
  });
}
