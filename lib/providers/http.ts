/**
 * Upstream HTTP for the provider adapters, over undici: one keep-alive pool per adapter, JSON POSTs, and
 * the failure rules every adapter shares.
 *
 * - A non-2xx answer is read (at most 64 KB) and classified (`classify.ts`) before the adapter sees it.
 * - A network failure becomes a `ConnectionError` (refused, reset, DNS, TLS) or a `TimeoutError`
 *   (connect timeout), with the original as `cause` and a message without the URL.
 * - When the request's signal is aborted, the reason the router put there is what gets thrown, always,
 *   and undici destroys the socket at once (the signal stays attached until the body is consumed).
 * - The first-token, idle and total timers belong to the router (through the signal); undici's own
 *   headers/body timeouts are only a generous backstop against a caller that never aborts.
 */
import type { Readable } from 'node:stream';
import type * as Undici from 'undici';
import type { Dispatcher } from 'undici';
import { requireDependency } from '../require.cjs';
import { ConnectionError, GatewayError, InternalError, TimeoutError, UpstreamCredentialsError, UpstreamError } from '../errors.js';
import { asGatewayCredentialFailure, classifyUpstreamError } from './classify.js';
import { registerSecret } from '../redact.js';
import type { Deployment } from './types.js';
import type { UpstreamAbort } from '../attempt-control.js';

/** What the failure rules read of an abort signal (an `AbortSignal`, or the router's attempt). */
export interface AbortState {
  readonly aborted: boolean;
  readonly reason?: unknown;
}

/** The body of an upstream response (undici's `BodyReadable`). */
export type UpstreamBody = Dispatcher.ResponseData['body'];

export interface UpstreamResponse {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  body: UpstreamBody;
}

export interface UpstreamPost {
  url: string;
  headers: Record<string, string>;
  /** The JSON text to send. */
  body: string;
  /** An `AbortSignal`, or the router's attempt itself (`upstreamAbortOf`): undici takes both. */
  signal: AbortSignal | UpstreamAbort;
}

export interface UpstreamClientOptions {
  /** Milliseconds to establish the TCP/TLS connection. */
  connectMs: number;
  /** Backstop for a response that never starts or stalls, when no signal ends it first. */
  backstopMs: number;
  /**
   * Concurrent connections per origin. A stream holds its connection for the whole answer, so a cap here
   * is a cap on concurrent streams (the next one waits for a running answer to end).
   * @default unlimited
   */
  connections?: number | undefined;
}

export interface UpstreamClient {
  /** POSTs JSON. Resolves with a 2xx response; rejects with a classified `GatewayError`, or the signal's reason. */
  post(post: UpstreamPost): Promise<UpstreamResponse>;
  /** Closes the pool; requests still in flight are aborted. */
  close(): Promise<void>;
}

/** Error bodies are small; a provider sending more is not telling us anything more useful. */
const ERROR_BODY_LIMIT = 64 * 1024;
/** Under Node's default server keep-alive (5 s); an upstream's `Keep-Alive: timeout` hint still wins. */
const KEEP_ALIVE_MS = 4_000;

export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  // Loaded by the first adapter rather than with the package.
  const { Agent, request } = requireDependency('undici') as typeof Undici;
  const agent = new Agent({
    connections: options.connections ?? null,
    keepAliveTimeout: KEEP_ALIVE_MS,
    headersTimeout: options.backstopMs,
    bodyTimeout: options.backstopMs,
    connect: { timeout: options.connectMs },
  });
  // The agent is called with origin and path, as undici's `request(url)` does after parsing the URL: the
  // parse is done once per URL here (an adapter posts to one URL, or one per model with a wildcard).
  const targets = new Map<string, RequestTarget | null>();
  const targetOf = (url: string): RequestTarget | null => {
    let target = targets.get(url);
    if (target === undefined) {
      target = parseTarget(url);
      if (targets.size >= MAX_CACHED_TARGETS) targets.clear();
      targets.set(url, target);
    }
    return target;
  };
  return {
    async post({ url, headers, body, signal }) {
      let response: Dispatcher.ResponseData;
      try {
        const target = targetOf(url);
        response = target
          ? await agent.request({ origin: target.origin, path: target.path, method: 'POST', headers, body, signal })
          : await request(url, { dispatcher: agent, method: 'POST', headers, body, signal }); // undici's own refusal
      } catch (error) {
        throw upstreamFailure(error, signal);
      }
      const { statusCode: status, headers: responseHeaders } = response;
      if (status >= 200 && status < 300) return { status, headers: responseHeaders, body: response.body };
      const errorBody = await readErrorBody(response.body, signal);
      throw classifyUpstreamError({ status, body: errorBody, headers: responseHeaders });
    },
    close: () => agent.destroy(),
  };
}

interface RequestTarget {
  origin: string;
  path: string;
}

const MAX_CACHED_TARGETS = 256;

/** Origin and path of an http(s) URL, as undici's `request(url)` would send it; null for anything else (undici refuses it). */
function parseTarget(url: string): RequestTarget | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return null;
  return { origin: parsed.origin, path: parsed.search ? `${parsed.pathname}${parsed.search}` : parsed.pathname };
}

/**
 * What to throw for anything that went wrong talking to the upstream: the signal's reason when it was
 * aborted (the router's classified error), our own classified errors as they are, network failures as
 * `ConnectionError`/`TimeoutError`, anything else as an `InternalError` (a bug, not the upstream).
 */
export function upstreamFailure(error: unknown, signal: AbortState): unknown {
  if (signal.aborted) return signal.reason;
  if (error instanceof GatewayError) return error;
  return networkError(error);
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);
/** Thrown by undici for a request it refuses to send: our bug or bad configuration, not the network. */
const USAGE_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'ERR_INVALID_URL', 'ERR_INVALID_ARG_TYPE']);

function networkError(error: unknown): GatewayError {
  const code = errorCode(error);
  if (code === undefined || USAGE_CODES.has(code)) return new InternalError(undefined, { cause: error });
  if (TIMEOUT_CODES.has(code)) return new TimeoutError(`Timed out talking to the upstream (${code}).`, { cause: error });
  return new ConnectionError(`The upstream connection failed (${code}).`, { cause: error });
}

/** The errno/undici code, also from Node's AggregateError (several addresses) and wrapped causes. */
function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, errors, cause } = error as { code?: unknown; errors?: unknown; cause?: unknown };
  if (typeof code === 'string') return code;
  if (Array.isArray(errors) && errors.length > 0) return errorCode(errors[0]);
  return cause === undefined ? undefined : errorCode(cause);
}

/** Reads at most 64 KB of an error body: JSON when it parses, else the text. A broken body still leaves the status. */
async function readErrorBody(body: UpstreamBody, signal: AbortState): Promise<unknown> {
  const decoder = new TextDecoder();
  let text = '';
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      text += decoder.decode(chunk, { stream: true });
      if (size >= ERROR_BODY_LIMIT) break;
    }
    text += decoder.decode();
  } catch {
    if (signal.aborted) throw signal.reason;
  }
  return parseJsonOrText(text);
}

/** An error payload: JSON when it parses, else the text itself (a message). */
export function parseJsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Reads a whole 2xx JSON answer. A body that is not JSON is the upstream's failure, not ours. */
export async function readJsonBody(response: UpstreamResponse): Promise<unknown> {
  const text = await response.body.text();
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new UpstreamError('The upstream answered with a body that is not JSON.', { cause: error, upstreamStatus: response.status });
  }
}

/**
 * Checks that a streaming request got a stream. Some OpenAI-compatible servers answer a streaming request
 * with a JSON error (or a JSON answer) under HTTP 200: the error is classified like its HTTP form.
 */
export async function expectEventStream(response: UpstreamResponse, signal: AbortState): Promise<void> {
  const contentType = response.headers['content-type'];
  if (typeof contentType !== 'string' || !contentType.startsWith('application/json')) return;
  const body = await readErrorBody(response.body, signal);
  if (typeof body === 'object' && body !== null && 'error' in body) throw classifyUpstreamError({ body });
  throw new UpstreamError('The upstream answered a streaming request without an event stream.', { upstreamStatus: response.status });
}

/**
 * Hands the connection back once the adapter is done with a body. After a complete stream (`[DONE]`,
 * `message_stop`) only the end of the chunked body may be left: reading it keeps the socket in the pool.
 * Otherwise (abandoned, failed) the socket is destroyed, which also stops the upstream generating.
 */
export function releaseBody(body: UpstreamBody, complete: boolean): void {
  if (complete) {
    body.dump().catch(ignore);
    return;
  }
  // undici reports a destroyed unfinished body as an 'error' event; nobody is reading it any more.
  body.on('error', ignore);
  body.destroy();
}

function ignore(): void {}

/**
 * The key to send for a deployment, resolved per request (a key function may rotate it); `undefined` only
 * for `apiKey: false`, a keyless server. No key where one is needed (a key function that returns nothing
 * or throws, an adapter built without one) is the gateway's misconfiguration: a 502 naming the deployment,
 * never an unauthenticated call whose 401 would reach the client as if its own credentials were wrong.
 */
export async function credentialOf(deployment: Deployment): Promise<string | undefined> {
  const { apiKey } = deployment;
  if (apiKey === false) return undefined;
  let key: unknown;
  try {
    key = typeof apiKey === 'function' ? await apiKey() : apiKey;
  } catch (error) {
    // The function's own error may name a vault URL or worse: it stays in `cause`, for the logs.
    throw noCredential(deployment, 'its key function failed', error);
  }
  if (typeof key === 'string' && key.trim() !== '') {
    // A rotated key is as secret as a static one: redacted by value from the moment it is used.
    if (typeof apiKey === 'function') registerSecret(key);
    return key;
  }
  throw noCredential(deployment, typeof apiKey === 'function' ? 'its key function returned none' : 'none is configured');
}

function noCredential(deployment: Deployment, why: string, cause?: unknown): UpstreamCredentialsError {
  return new UpstreamCredentialsError(deployment.id, `The gateway has no API key for deployment '${deployment.id}': ${why}.`, cause === undefined ? {} : { cause });
}

/**
 * What an adapter's call throws, seen from the router: `upstreamFailure`'s answer, with an upstream's
 * verdict on the gateway's own credentials reported against the deployment (see `asGatewayCredentialFailure`).
 */
export function adapterFailure(error: unknown, signal: AbortState, deployment: Deployment): unknown {
  return asGatewayCredentialFailure(upstreamFailure(error, signal), deployment.id);
}

/** Header names lower-cased, so the user's `Authorization` and ours are one header, not two. */
export function lowerCaseHeaders(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) out[name.toLowerCase()] = value;
  return out;
}

export function withoutTrailingSlash(url: string): string {
  return url.endsWith('/') ? withoutTrailingSlash(url.slice(0, -1)) : url;
}

/** For `readSse`: iterating with this leaves the body open when the loop stops, so `releaseBody` decides. */
export function bodyChunks(body: UpstreamBody): AsyncIterable<Uint8Array> {
  return (body as Readable).iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>;
}

/**
 * One streamed call from start to end: sends it, checks the answer is an event stream, yields what
 * `translate` makes of the body, and always hands the connection back (reused after a complete stream,
 * destroyed otherwise). Every failure leaves classified (`signal.reason` once aborted), as `adapterFailure` says.
 */
export async function* streamResponse<T>(
  open: () => Promise<UpstreamResponse>,
  translate: (chunks: AsyncIterable<Uint8Array>, signal: AbortSignal) => AsyncGenerator<T, boolean, undefined>,
  signal: AbortSignal,
  deployment: Deployment,
): AsyncGenerator<T, void, undefined> {
  let body: UpstreamBody | undefined;
  let complete = false;
  try {
    const response = await open();
    body = response.body;
    await expectEventStream(response, signal);
    complete = yield* translate(bodyChunks(body), signal);
  } catch (error) {
    throw adapterFailure(error, signal, deployment);
  } finally {
    if (body !== undefined) releaseBody(body, complete);
  }
}
