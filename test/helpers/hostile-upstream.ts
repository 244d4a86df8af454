/**
 * A pass-through upstream that does everything a gateway must not relay: it echoes the key it received in
 * its headers and error bodies, sets cookies, sends internal headers, cuts a body off in the middle and
 * stalls. It records every request it gets, so a test can show what never reached it.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { listen, type RunningServer } from './http.js';

export interface RecordedRequest {
  method: string;
  /** The request target exactly as received. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface HostileUpstream extends RunningServer {
  readonly requests: RecordedRequest[];
  /** The request targets whose connection closed before the upstream finished its answer, in order. */
  readonly abandoned: string[];
}

/** Bytes the truncating path sends before it destroys the socket (it announces `content-length: 1000`). */
export const TRUNCATED_BYTES = 93;

/** What a badly behaved upstream adds to every answer. */
function internalHeaders(req: IncomingMessage): Record<string, string | string[]> {
  return {
    'set-cookie': ['upstream_session=abc123; HttpOnly', 'tracking=1'],
    server: 'envoy-internal/1.2',
    'x-powered-by': 'UpstreamPHP/7.4',
    via: '1.1 internal-lb.corp.example',
    'x-envoy-upstream-service-time': '12',
    'openai-organization': 'org-internal-tenant',
    'x-upstream-debug-key': String(req.headers['authorization'] ?? ''),
    'x-ratelimit-remaining-requests': '99',
    'retry-after': '1',
  };
}

export async function startHostileUpstream(): Promise<HostileUpstream> {
  const requests: RecordedRequest[] = [];
  const abandoned: string[] = [];
  const server = await listen((req: IncomingMessage, res: ServerResponse) => {
    res.on('close', () => {
      if (!res.writableFinished) abandoned.push(req.url ?? '');
    });
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      answer(req, res);
    });
  });
  return { ...server, requests, abandoned };
}

function answer(req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '').split('?')[0];
  const key = String(req.headers['authorization'] ?? '').replace(/^Bearer /, '');
  const json = (status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { ...internalHeaders(req), 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  switch (path) {
    case '/v1/embeddings':
      json(200, { object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }], model: 'e' });
      return;
    case '/v1/moderations':
      // An auth failure that quotes the key, the organization header and an internal address.
      json(401, {
        error: {
          message: `Incorrect API key provided: ${key}. Organization ${String(req.headers['openai-organization'])} via http://10.0.0.7:8443/internal/auth`,
          type: 'invalid_request_error',
          debug: { authorization: req.headers['authorization'] },
        },
      });
      return;
    case '/v1/audio/speech':
      res.writeHead(200, { 'content-type': 'audio/mpeg', 'content-length': 1000 });
      res.write(Buffer.alloc(TRUNCATED_BYTES, 1), () => res.socket?.destroy());
      return;
    case '/v1/images/generations':
      return; // never answers
    case '/v1/images/edits':
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 });
      res.write('{"data":['); // then nothing, forever
      return;
    case '/v1/chat/completions':
      json(200, { reached: 'the upstream chat endpoint, around the gateway' });
      return;
    default:
      json(404, { error: { message: `no route ${path}` } });
  }
}
