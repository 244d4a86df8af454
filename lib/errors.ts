/**
 * The error taxonomy. Every failure the gateway can report becomes exactly one of these classes, with
 * its HTTP status, a `type` slug, whether it is worth retrying, and one `toBody()` that every writer
 * (JSON before commit, the in-band SSE frame after commit) uses, so the same failure always has the
 * same error object on the wire.
 */

import { redact } from './redact.js';

/**
 * The wire form of every error body.
 * - `'gateway'` (default): `{"error":{"message":"…","code":400,"type":"…"}}`, numeric `code`.
 * - `'openai'`: `{"error":{"message":"…","type":"…","param":null,"code":"400"}}`, OpenAI's typed form
 *   with `code` as a string, for strictly typed clients (OpenAI's Java SDK, typed Python code).
 */
export type ErrorBodyForm = 'gateway' | 'openai';

export const ERROR_BODY_FORMS: readonly ErrorBodyForm[] = ['gateway', 'openai'];

export interface GatewayErrorObject {
  message: string;
  type: string;
  code: number | string;
  param?: string | null;
  [extra: string]: unknown;
}

export interface ErrorBody {
  error: GatewayErrorObject;
}

export interface GatewayErrorOptions {
  /** The request field at fault (bad requests). Shown as `param` in the `'openai'` form. */
  param?: string;
  /** The underlying error. Never serialized; kept for logs and for `err.cause` in code. */
  cause?: unknown;
  /** The upstream HTTP status, when the failure came from a provider. */
  upstreamStatus?: number;
  /** Milliseconds the upstream asked us to wait (`Retry-After`), when it said so. */
  retryAfterMs?: number;
}

/** What an error constructed with an empty (or blank) message says instead. */
const BLANK_MESSAGE = 'The request failed (no details given).';

/** Base class of every classified failure. Use the subclasses; `instanceof GatewayError` tells them apart from bugs. */
export abstract class GatewayError extends Error {
  /** HTTP status the client gets before commit; also the `code` of the in-band frame after commit. */
  abstract readonly status: number;
  /** The semantic slug sent as `error.type`. */
  abstract readonly type: string;
  /** Whether retrying the same request (elsewhere, or later) can succeed. Deterministic failures say no. */
  abstract readonly retryable: boolean;
  readonly param: string | undefined;
  readonly upstreamStatus: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: GatewayErrorOptions = {}) {
    // A blank message would put `"message": ""` on the wire, where clients expect something to show.
    const clean = sanitizeMessage(message);
    super(clean.trim() === '' ? BLANK_MESSAGE : clean, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.param = options.param;
    this.upstreamStatus = options.upstreamStatus;
    this.retryAfterMs = options.retryAfterMs;
  }

  /**
   * Headers that go with this error when it is answered before commit: `Retry-After` (whole seconds) on a
   * 429 or 503 whose wait is known.
   */
  responseHeaders(): Record<string, string> {
    if (this.retryAfterMs === undefined || (this.status !== 429 && this.status !== 503)) return {};
    return { 'retry-after': String(Math.max(1, Math.ceil(this.retryAfterMs / 1000))) };
  }

  /** The error object clients see, in the configured form. Extra fields go inside `error`, never beside it. */
  toBody(form: ErrorBodyForm = 'gateway', extra?: Record<string, unknown>): ErrorBody {
    const error: GatewayErrorObject =
      form === 'openai'
        ? { message: this.message, type: this.type, param: this.param ?? null, code: String(this.status) }
        : { message: this.message, code: this.status, type: this.type };
    return { error: extra === undefined ? error : { ...error, ...extra } };
  }
}

/** 400: the request itself is wrong (a field, the JSON, the size). Never retried, never falls back. */
export class BadRequestError extends GatewayError {
  readonly status = 400;
  readonly type = 'invalid_request_error';
  readonly retryable = false;
}

/** 401: the upstream (or the gateway's own auth) rejected the credentials. */
export class AuthenticationError extends GatewayError {
  readonly status = 401;
  readonly type = 'authentication_error';
  readonly retryable = false;
}

/** 403: the credentials are valid but not allowed to do this. */
export class PermissionDeniedError extends GatewayError {
  readonly status = 403;
  readonly type = 'permission_error';
  readonly retryable = false;
}

/** 404: unknown model group, deployment or route. */
export class NotFoundError extends GatewayError {
  readonly status = 404;
  readonly type = 'not_found_error';
  readonly retryable = false;
}

/** 413: the request body is larger than the configured limit (the gateway's own, or a body parser's). */
export class RequestTooLargeError extends GatewayError {
  readonly status = 413;
  readonly type = 'invalid_request_error';
  readonly retryable = false;
}

/**
 * 408: the client did not send the whole request body in time (`context.bodyTimeoutMs`). The type is the
 * client's-fault `invalid_request_error`, like 413, not `timeout`: `timeout` (504) means an upstream was
 * slow, and dashboards counting it should not count slow uploads. The connection is closed with it.
 */
export class RequestTimeoutError extends GatewayError {
  readonly status = 408;
  readonly type = 'invalid_request_error';
  readonly retryable = false;
}

/**
 * 415: the request body is in an encoding the gateway cannot read (a `Content-Encoding` other than gzip,
 * deflate, br or identity). `acceptEncoding` is sent back as `Accept-Encoding`, which is how RFC 7694 tells
 * a client which codings it may use instead.
 */
export class UnsupportedMediaTypeError extends GatewayError {
  readonly status = 415;
  readonly type = 'invalid_request_error';
  readonly retryable = false;
  readonly acceptEncoding: string | undefined;
  constructor(message: string, options: GatewayErrorOptions & { acceptEncoding?: string } = {}) {
    super(message, options);
    this.acceptEncoding = options.acceptEncoding;
  }

  override responseHeaders(): Record<string, string> {
    return this.acceptEncoding === undefined ? {} : { 'accept-encoding': this.acceptEncoding };
  }
}

/** 405: the gateway serves this path, but not with this method. `allow` goes out as the `Allow` header. */
export class MethodNotAllowedError extends GatewayError {
  readonly status = 405;
  readonly type = 'invalid_request_error';
  readonly retryable = false;
  readonly allow: readonly string[];
  constructor(allow: readonly string[], message = `This endpoint accepts ${allow.join(', ')} only.`, options: GatewayErrorOptions = {}) {
    super(message, options);
    this.allow = allow;
  }

  override responseHeaders(): Record<string, string> {
    return { allow: this.allow.join(', ') };
  }
}

/** 400: the prompt does not fit the model's context window. Deterministic: falls back at once, never retried. */
export class ContextWindowExceededError extends GatewayError {
  readonly status = 400;
  readonly type = 'context_window_exceeded';
  readonly retryable = false;
}

/** 400: the provider's own moderation refused the request or the answer. Deterministic, like context window. */
export class ContentPolicyViolationError extends GatewayError {
  readonly status = 400;
  readonly type = 'content_policy_violation';
  readonly retryable = false;
}

/**
 * 400: a gateway guardrail (Bedrock Guardrails) blocked the input or the output. With `softMessage`, the
 * block is a *soft* one: the client gets that text as a normal completion ending with
 * `finish_reason: "content_filter"` instead of an error.
 */
export class GuardrailViolationError extends GatewayError {
  readonly status = 400;
  readonly type = 'guardrail_violation';
  readonly retryable = false;
  readonly softMessage: string | undefined;
  constructor(message = 'Violated guardrail policy', options: GatewayErrorOptions & { softMessage?: string } = {}) {
    super(message, options);
    this.softMessage = options.softMessage;
  }
}

/** 503: the guardrail service failed or timed out and the guardrail is configured to fail closed. */
export class GuardrailUnavailableError extends GatewayError {
  readonly status = 503;
  readonly type = 'guardrail_unavailable';
  readonly retryable = false;
}

/** 429: the provider (or a deployment's own rpm/tpm limit) is rate limiting. */
export class RateLimitError extends GatewayError {
  readonly status = 429;
  readonly type = 'rate_limit_exceeded';
  readonly retryable = true;
}

/** 504: the upstream did not connect, answer, or keep streaming in time. */
export class TimeoutError extends GatewayError {
  readonly status = 504;
  readonly type = 'timeout';
  readonly retryable = true;
}

/** 502/503: the upstream answered with a server error or could not be reached. */
export class UpstreamError extends GatewayError {
  readonly status: number;
  readonly type = 'upstream_error';
  readonly retryable = true;
  constructor(message: string, options: GatewayErrorOptions & { status?: 502 | 503 } = {}) {
    super(message, options);
    this.status = options.status ?? (options.upstreamStatus === 503 ? 503 : 502);
  }
}

/**
 * 502: the gateway's own credentials for a deployment do not work: the upstream refused them (a 401/403,
 * or a provider's "invalid API key" text under any status), or there was none to send (a key function
 * returned nothing). The gateway never forwards a client's key, so this is never the client's 401: the
 * client cannot fix it, another deployment may serve the request, and the router takes this deployment
 * out of rotation at once (a rejected key does not heal on the next request). The message names the
 * deployment and nothing else: no key, and no upstream text (which may echo the key).
 */
export class UpstreamCredentialsError extends UpstreamError {
  /** The deployment id whose credentials failed. */
  readonly deployment: string;
  constructor(deployment: string, message: string, options: GatewayErrorOptions = {}) {
    super(message, { ...options, status: 502 });
    this.deployment = deployment;
  }
}

/**
 * 503: this gateway instance is shutting down (`gateway.drain()`). Another instance can answer the same
 * request, so clients are told when to retry, and the connection is closed so they reconnect elsewhere.
 */
export class ServiceUnavailableError extends GatewayError {
  readonly status = 503;
  readonly type = 'service_unavailable';
  readonly retryable = true;
  constructor(message = 'The server is shutting down.', options: GatewayErrorOptions = {}) {
    super(message, { retryAfterMs: 1000, ...options });
  }

  override responseHeaders(): Record<string, string> {
    return { ...super.responseHeaders(), connection: 'close' };
  }
}

/** 502: the upstream connection failed (refused, reset, DNS) before an HTTP answer. */
export class ConnectionError extends GatewayError {
  readonly status = 502;
  readonly type = 'connection_error';
  readonly retryable = true;
}

/** 500: a bug or an unexpected failure inside the gateway. Its message never leaks the original error. */
export class InternalError extends GatewayError {
  readonly status = 500;
  readonly type = 'internal_error';
  readonly retryable = false;
  constructor(message = 'The gateway failed to process the request.', options: GatewayErrorOptions = {}) {
    super(message, options);
  }
}

/** The request was cancelled because the client went away. Never written to the client (nobody is listening). */
export class ClientDisconnectedError extends GatewayError {
  readonly status = 499;
  readonly type = 'client_disconnected';
  readonly retryable = false;
  constructor(message = 'The client closed the connection.') {
    super(message);
  }
}

/** Shape of the errors that body-parser / raw-body raise (`express.json()` mounted before us; our own read words its 413 the same way). */
interface HttpParserError {
  type?: unknown;
  status?: unknown;
  statusCode?: unknown;
  expose?: unknown;
  limit?: unknown;
}

/**
 * Turns anything thrown into a classified error. Our own classes pass through; body-parser's errors become
 * a 400 naming the body; everything else becomes an `InternalError` whose message hides the original
 * (which may contain a stack, a URL or a key) and keeps it as `cause` for the logs.
 */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const parserError = fromBodyParserError(err);
  if (parserError) return parserError;
  return new InternalError(undefined, { cause: err });
}

/**
 * The classified form of a body parser's error (`express.json()`, raw-body: bad JSON, too large, bad
 * encoding), or undefined when `err` is not one.
 */
export function fromBodyParserError(err: unknown): GatewayError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { type, status, statusCode, limit } = err as HttpParserError;
  if (typeof type !== 'string') return undefined;
  const httpStatus = typeof status === 'number' ? status : statusCode;
  if (type === 'entity.too.large') {
    return new RequestTooLargeError(`Request body: larger than the ${formatLimit(limit)} limit.`, { param: 'body', cause: err });
  }
  if (type === 'entity.parse.failed') {
    return new BadRequestError('Request body: not valid JSON.', { param: 'body', cause: err });
  }
  if (type.startsWith('entity.') || type.startsWith('request.') || type.startsWith('encoding.') || type === 'charset.unsupported') {
    if (typeof httpStatus === 'number' && httpStatus >= 400 && httpStatus < 500) {
      return new BadRequestError(`Request body: could not be read (${type}).`, { param: 'body', cause: err });
    }
  }
  return undefined;
}

function formatLimit(limit: unknown): string {
  if (typeof limit !== 'number') return 'configured';
  if (limit % (1024 * 1024) === 0) return `${limit / (1024 * 1024)}mb`;
  if (limit % 1024 === 0) return `${limit / 1024}kb`;
  return `${limit} bytes`;
}

/**
 * Removes what must never reach a client from a message (see `redact`): every credential the gateway holds,
 * credential-like tokens, URLs, internal addresses and stack frames. Every error's message goes through it
 * when the error is created, so nothing later can serialize an unredacted one.
 */
export function sanitizeMessage(message: string): string {
  return redact(message);
}
