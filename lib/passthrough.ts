/**
 * Pass-through for the endpoints the gateway does not interpret (embeddings, moderations, audio, images…):
 * the configured paths, and only those, are proxied with http-proxy-middleware to one upstream with the
 * gateway's credentials. Only an allow-list of headers crosses in either direction, upstream error bodies
 * are redacted, and one deadline covers the whole exchange; a cut-off upstream body cuts off the client's.
 */
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type * as ProxyMiddleware from 'http-proxy-middleware';
import { requireDependency } from './require.cjs';
import {
  BadRequestError,
  ConnectionError,
  type ErrorBodyForm,
  ERROR_BODY_FORMS,
  type GatewayError,
  TimeoutError,
  UpstreamError,
} from './errors.js';
import { assertCalledAsFactory, definedOnly, GatewayConfigError, optionsValidator } from './options.js';
import { compilePathPolicy, DEFAULT_PASSTHROUGH_PATHS } from './passthrough-paths.js';
import { redact, registerSecret, registerUrlCredentials } from './redact.js';
import { echoRequestId } from './request-id.js';
import { ResponseWriter } from './response-writer.js';

export { DEFAULT_PASSTHROUGH_PATHS } from './passthrough-paths.js';

export interface PassThroughOptions {
  /** The upstream origin and optional base path, e.g. `https://api.openai.com` (the request path is appended). */
  target: string;
  /** Sent as `Authorization: Bearer …`; the client's own `Authorization` is never forwarded unless listed in `forwardHeaders`. */
  apiKey?: string;
  /** Extra headers for every proxied request (e.g. `OpenAI-Organization`). Their values are redacted from error bodies. */
  headers?: Record<string, string>;
  /**
   * The paths proxied, relative to where the middleware is mounted: `'/v1/embeddings'` (every method) or
   * `'POST /v1/embeddings'`, `'GET,DELETE /v1/files/*'`. `*` is exactly one segment, a final `/**` one or
   * more. Matching is exact and case-sensitive; everything else goes to `next()`. Patterns that would
   * cover `/v1/chat/completions` or `/v1/models` are refused.
   * @default DEFAULT_PASSTHROUGH_PATHS (POST embeddings, moderations, audio speech/transcriptions/translations, images generations/edits/variations)
   */
  paths?: string[];
  /**
   * Client request headers forwarded in addition to the built-in allow-list (`accept`, `content-type`,
   * `content-length`, `content-encoding`, `user-agent`, `openai-beta`, `idempotency-key`), e.g.
   * `['openai-organization']`. A header set by `apiKey` or `headers` wins over the client's.
   * @default []
   */
  forwardHeaders?: string[];
  /**
   * Time limit in ms for the whole exchange: connecting, the upstream's headers and its whole body.
   * Before the response started, the client gets a 504 `timeout`; after, its connection is cut.
   * @default 120000
   */
  timeoutMs?: number;
  /** @default 'gateway' */
  errorBodyForm?: ErrorBodyForm;
}

/** The options' JSON Schema; the config file's `passthrough` section is this without `errorBodyForm`. */
export const passThroughOptionsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['target'],
  properties: {
    target: { type: 'string', pattern: '^https?://' },
    apiKey: { type: 'string', minLength: 1 },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    paths: { type: 'array', items: { type: 'string', minLength: 1 } },
    forwardHeaders: { type: 'array', items: { type: 'string', pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" } },
    timeoutMs: { type: 'integer', minimum: 1 },
    errorBodyForm: { enum: ERROR_BODY_FORMS },
  },
} as const;

const validateOptions = optionsValidator(passThroughOptionsSchema, 'passThrough');

/** Client headers that reach the upstream (besides `forwardHeaders`): what describes the body and the client. */
const FORWARDED_REQUEST_HEADERS = ['accept', 'content-type', 'content-length', 'content-encoding', 'user-agent', 'openai-beta', 'idempotency-key'];

/** Never forwarded, even when listed: connection-level headers, the client's cookies, and ours. */
const NEVER_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'host', 'cookie', 'x-request-id']);

/**
 * Upstream response headers the client gets: the body's description, caching validators, and the rate
 * limit and timing information a client acts on. Everything else (set-cookie, server, via, x-envoy-*,
 * openai-organization, the upstream's own request id…) stays behind.
 */
const RETURNED_RESPONSE_HEADERS = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'content-disposition',
  'content-language',
  'cache-control',
  'etag',
  'last-modified',
  'retry-after',
  'openai-processing-ms',
]);
const RETURNED_RESPONSE_PREFIXES = ['x-ratelimit-'];

/** Larger upstream error bodies are not relayed (they are read whole to be redacted). */
const MAX_ERROR_BODY_BYTES = 256 * 1024;

/** One proxied request: its deadline and upstream request, so the deadline and a departing client end both. */
interface Exchange {
  timer: NodeJS.Timeout;
  upstream: ClientRequest | undefined;
}

export function passThrough(options: PassThroughOptions): RequestHandler {
  assertCalledAsFactory(options, 'passThrough');
  const given = definedOnly(options);
  validateOptions(given);
  const form = given.errorBodyForm ?? 'gateway';
  const timeoutMs = given.timeoutMs ?? 120_000;
  const extraHeaders = given.headers ?? {};
  const policy = compilePathPolicy(given.paths ?? DEFAULT_PASSTHROUGH_PATHS);
  const forwarded = new Set(FORWARDED_REQUEST_HEADERS);
  given.forwardHeaders?.forEach((name, i) => {
    const lower = name.toLowerCase();
    if (NEVER_FORWARDED.has(lower)) throw new GatewayConfigError(`passThrough.forwardHeaders[${i}]`, `'${name}' is never forwarded.`);
    forwarded.add(lower);
  });
  // Redacted by value from everything that reaches a client or a log, the error bodies relayed here included.
  registerSecret(given.apiKey);
  registerUrlCredentials(given.target);
  for (const value of Object.values(extraHeaders)) registerSecret(value);
  const exchanges = new WeakMap<IncomingMessage, Exchange>();
  const fail = (res: ServerResponse, error: GatewayError): void => new ResponseWriter(res).fail(error, form);

  // Loaded by the first passThrough() rather than with the package.
  const { createProxyMiddleware, fixRequestBody } = requireDependency('http-proxy-middleware') as typeof ProxyMiddleware;
  const proxy = createProxyMiddleware<IncomingMessage, ServerResponse>({
    target: given.target,
    changeOrigin: true,
    // We write the response ourselves: filtered headers, redacted error bodies, cut-offs passed on.
    selfHandleResponse: true,
    on: {
      proxyReq(proxyReq: ClientRequest, req: IncomingMessage, res: ServerResponse) {
        const exchange = exchanges.get(req);
        if (exchange) exchange.upstream = proxyReq;
        for (const name of proxyReq.getHeaderNames()) {
          if (name !== 'host' && !forwarded.has(name)) proxyReq.removeHeader(name);
        }
        // A chunked body still streaming in is streamed on in chunks (Node sends a body unframed once its
        // transfer-encoding was removed); one a body parser consumed gets its length from fixRequestBody.
        if (req.headers['transfer-encoding'] !== undefined && !req.readableEnded) proxyReq.setHeader('transfer-encoding', 'chunked');
        if (given.apiKey !== undefined) proxyReq.setHeader('authorization', `Bearer ${given.apiKey}`);
        for (const [name, value] of Object.entries(extraHeaders)) proxyReq.setHeader(name, value);
        proxyReq.setHeader('x-request-id', String(res.getHeader('x-request-id')));
        // A body parser mounted before us consumed the stream: write the parsed body back.
        fixRequestBody(proxyReq, req);
      },
      proxyRes(proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) {
        if (res.headersSent || res.writableEnded) {
          proxyRes.destroy(); // the deadline already answered
          return;
        }
        const status = proxyRes.statusCode ?? 502;
        const headers = returnedHeaders(proxyRes.headers);
        if (status >= 400) {
          relayErrorBody(proxyRes, res, status, headers, fail);
          return;
        }
        res.writeHead(status, headers);
        // A body that ends early (upstream closed, reset) destroys the client's response: the client sees
        // the truncation at once, and its keep-alive connection does not wait for bytes that never come.
        pipeline(proxyRes, res, (err) => {
          if (err) res.destroy();
          finishExchange(exchanges, req);
        });
      },
      error(_err: Error, req: IncomingMessage, res: ServerResponse | Socket) {
        finishExchange(exchanges, req);
        if (!('writeHead' in res)) res.destroy();
        else if (res.writableEnded) return; // already answered (the deadline's 504)
        else if (res.headersSent) res.destroy(); // mid-body: the client must see the cut
        else fail(res, new ConnectionError('The upstream could not be reached.'));
      },
    },
  });

  return function llmGatewayPassThrough(req: Request, res: Response, next: NextFunction): void {
    const decision = policy.decide(req.method, req.url);
    if (decision === 'next') {
      next();
      return;
    }
    echoRequestId(req, res); // and sent upstream, so both sides log the same id
    if (decision === 'reject') {
      fail(res, new BadRequestError('Request path: dot segments, percent-encoding, backslashes and empty segments are not accepted.', { param: 'path' }));
      return;
    }
    // http-proxy skips its proxyReq event (our header allow-list) for requests carrying `Expect`.
    delete req.headers.expect;
    startExchange(exchanges, req, res, timeoutMs, fail);
    void proxy(req, res, next);
  };
}

function startExchange(
  exchanges: WeakMap<IncomingMessage, Exchange>,
  req: IncomingMessage,
  res: ServerResponse,
  timeoutMs: number,
  fail: (res: ServerResponse, error: GatewayError) => void,
): void {
  const timer = setTimeout(() => {
    const upstream = exchanges.get(req)?.upstream;
    exchanges.delete(req);
    if (!res.headersSent) fail(res, new TimeoutError(`The upstream did not complete its answer within ${timeoutMs} ms.`));
    else if (!res.writableEnded) res.destroy();
    upstream?.destroy();
  }, timeoutMs);
  exchanges.set(req, { timer, upstream: undefined });
  res.once('close', () => {
    // The client left (or the response ended): stop the upstream request if it still runs.
    const upstream = exchanges.get(req)?.upstream;
    finishExchange(exchanges, req);
    if (!res.writableFinished) upstream?.destroy();
  });
}

function finishExchange(exchanges: WeakMap<IncomingMessage, Exchange>, req: IncomingMessage): void {
  const exchange = exchanges.get(req);
  if (!exchange) return;
  clearTimeout(exchange.timer);
  exchanges.delete(req);
}

/**
 * An upstream error body, read whole and redacted (`redact()`: the gateway's credentials by value, key-like
 * tokens, internal URLs and addresses) before it reaches the client. One that is cut off, too
 * large or compressed (it cannot be checked) is replaced by the gateway's own error.
 */
function relayErrorBody(
  proxyRes: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: OutgoingHttpHeaders,
  fail: (res: ServerResponse, error: GatewayError) => void,
): void {
  const encoding = proxyRes.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') {
    proxyRes.destroy();
    fail(res, new UpstreamError(`The upstream answered HTTP ${status} with a compressed body, withheld.`, { upstreamStatus: status }));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  proxyRes.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_ERROR_BODY_BYTES) chunks.push(chunk);
    else {
      proxyRes.destroy();
      fail(res, new UpstreamError(`The upstream answered HTTP ${status} with an error body too large to relay.`, { upstreamStatus: status }));
    }
  });
  proxyRes.on('end', () => {
    if (res.headersSent || res.writableEnded) return;
    const body = redact(Buffer.concat(chunks).toString('utf8'));
    res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  proxyRes.on('close', () => {
    if (!proxyRes.complete) fail(res, new UpstreamError(`The upstream's HTTP ${status} answer was cut off.`, { upstreamStatus: status }));
  });
  proxyRes.on('error', () => {}); // reported by 'close' above
}

/** The upstream response headers the client may see (see `RETURNED_RESPONSE_HEADERS`), minus any carrying a secret. */
function returnedHeaders(upstream: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined) continue;
    if (!RETURNED_RESPONSE_HEADERS.has(name) && !RETURNED_RESPONSE_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => redact(v) !== v)) continue;
    out[name] = value;
  }
  return out;
}
