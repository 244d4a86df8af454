/**
 * Upstream failure classification: (HTTP status, error body or message, headers) → exactly one
 * `GatewayError`. Pure functions over data; every adapter (OpenAI-compatible, Azure, Anthropic, and the
 * Vertex/Gemini text forms) goes through `classifyUpstreamError`, for HTTP errors and in-band stream
 * errors alike, so the same failure gets the same class whichever way it arrives.
 *
 * The facts come from `reference/provider-errors.md` (LiteLLM's exception mapping, its tests and issues).
 * The signal tables are exported so tests can iterate them. Where we differ from LiteLLM, on purpose:
 * - DashScope moderation (`data_inspection_failed`, `DataInspectionFailed`, "inappropriate content") is a
 *   content-policy violation, so content-policy fallbacks fire for Qwen too.
 * - An error without an HTTP status (in band, inside a 200) takes the status its `type`/`code`/`status`
 *   fields imply (`server_error` → 500, `overloaded_error` → 529, Azure's `"429"`…), so the stream form
 *   classifies exactly like the HTTP form.
 * - A failure we cannot place is an `UpstreamError` (retryable, counted against the deployment), never a
 *   "connection error" that skips the cooldown.
 * - "too many tokens" is not a context-window text: Bedrock's throttling message is "Too many tokens,
 *   please wait before trying again."
 * - A bare "429" inside a message is not a rate limit (it shows up in token counts); the status is.
 * - Vertex's `IndexError: list index out of range` is a Python exception inside LiteLLM's own client,
 *   not something an upstream sends; it is left out.
 * - A 403 is a permission error on every provider (LiteLLM calls Vertex's a bad request; both are final).
 * - Seen from the client, an authentication or permission failure is not a 401/403 at all: the key the
 *   upstream judged is the gateway's own (`asGatewayCredentialFailure`, applied by every adapter).
 */
import {
  AuthenticationError,
  BadRequestError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  TimeoutError,
  UpstreamCredentialsError,
  UpstreamError,
  type GatewayError,
} from '../errors.js';

/** Response headers as undici gives them (lower-case names). */
export type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

export interface UpstreamFailure {
  /** The HTTP status; `undefined` (or a 2xx) for an error that arrived in band, inside a 200. */
  status?: number | undefined;
  /** The parsed JSON error body, or its text. */
  body?: unknown;
  headers?: HeaderBag | undefined;
}

/** How one failure class shows itself: substrings of the message, or exact `type`/`code` values. */
export interface ErrorSignals {
  /** Case-insensitive substrings of the message (and of the type/code slugs). */
  readonly texts: readonly string[];
  /** Case-insensitive exact values of `type`, `code`, `status` or Azure's `innererror.code`. */
  readonly codes: readonly string[];
}

/** Applied first, to any provider. */
export const TIMEOUT_SIGNALS: ErrorSignals = {
  texts: [
    'Request Timeout Error',
    'Request timed out',
    'Timed out generating response',
    'The read operation timed out',
    'A timeout occurred',
    'Deadline expired',
    'Deadline Exceeded',
  ],
  codes: [],
};

export const CONTEXT_WINDOW_SIGNALS: ErrorSignals = {
  texts: [
    // OpenAI and OpenAI-compatible (vLLM, deepseek, Azure…)
    'exceed context limit',
    "this model's maximum context length is",
    'string too long. expected a string with maximum length',
    "model's maximum context limit",
    // SGLang
    "is longer than the model's context length",
    // Mistral ("Prompt contains N tokens …, too large for model with 32768 maximum context length")
    'too large for model with',
    // DashScope compatible mode ("Range of input length should be [1, 30720]")
    'range of input length should be',
    // Anthropic
    'prompt is too long',
    'prompt: length',
    // Vertex / Gemini
    '400 Request payload size exceeds',
    // TGI, Replicate, Hugging Face
    '`inputs` tokens + `max_new_tokens` must be <=',
    'input is too long',
    'length limit exceeded',
  ],
  codes: ['context_length_exceeded'],
};

export const CONTENT_POLICY_SIGNALS: ErrorSignals = {
  texts: [
    // OpenAI
    'violating our usage policy',
    'request was rejected as a result of the safety system',
    'rejected as a result of our safety system',
    // Azure
    "The response was filtered due to the prompt triggering Azure OpenAI's content management",
    'Your task failed as a result of our safety system',
    'The model produced invalid content',
    // DashScope (LiteLLM misses these)
    'inappropriate content',
    // Anthropic, and Anthropic on Vertex
    'content filtering policy',
    // Vertex / Gemini
    'The response was blocked.',
  ],
  codes: [
    'content_policy_violation',
    'content_filter',
    'content_filter_policy',
    'ResponsibleAIPolicyViolation',
    'data_inspection_failed',
    'DataInspectionFailed',
  ],
};

export const RATE_LIMIT_SIGNALS: ErrorSignals = {
  texts: [
    'rate limit',
    'too many requests',
    // Mistral
    'service tier capacity exceeded',
    // OpenAI's TPM overflow comes as "Request too large for <model> … on tokens per min"
    'Request too large',
    // Vertex / Gemini
    '429 Quota exceeded',
    'Quota exceeded for',
    '429 Unable to submit request because the service is temporarily out of capacity.',
  ],
  codes: ['token_quota_reached', 'insufficient_quota'],
};

export const NOT_FOUND_SIGNALS: ErrorSignals = {
  texts: [],
  codes: ['model_not_found', 'DeploymentNotFound'],
};

export const AUTHENTICATION_SIGNALS: ErrorSignals = {
  texts: ['Incorrect API key provided', 'Invalid API Key', 'API key not valid'],
  codes: ['invalid_api_key'],
};

/** Vertex project set-up problems: final, whatever the status. */
export const BAD_REQUEST_SIGNALS: ErrorSignals = {
  texts: ['Vertex AI API has not been used in project', 'Unable to find your project'],
  codes: [],
};

/** The upstream is there but cannot take the request now: a 503, whatever status it came with. */
export const UNAVAILABLE_SIGNALS: ErrorSignals = {
  texts: ['overloaded', 'service unavailable', 'temporarily unavailable'],
  codes: [],
};

/** Server-side failures that some providers send with a 4xx status (or none). */
export const SERVER_ERROR_SIGNALS: ErrorSignals = {
  texts: [
    'Internal server error',
    'Web server is returning an unknown error',
    'The server had an error processing your request.',
    'Mistral API raised a streaming error',
    'None Unknown Error.',
    'Content has no parts.',
    '500 Internal Server Error',
  ],
  codes: [],
};

/**
 * The HTTP status an error's `type`/`code`/`status` slug stands for, used when the error came without an
 * HTTP status (in band). Covers OpenAI, Anthropic and Google (gRPC status names) slugs.
 */
export const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  badrequesterror: 400,
  invalid_argument: 400,
  failed_precondition: 400,
  authentication_error: 401,
  unauthenticated: 401,
  permission_error: 403,
  permission_denied: 403,
  not_found_error: 404,
  not_found: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  rate_limit_exceeded: 429,
  resource_exhausted: 429,
  requests: 429,
  tokens: 429,
  server_error: 500,
  api_error: 500,
  internal: 500,
  unavailable: 503,
  overloaded_error: 529,
  timeout_error: 504,
  deadline_exceeded: 504,
};

type ErrorKind =
  | 'timeout'
  | 'context_window'
  | 'content_policy'
  | 'rate_limit'
  | 'not_found'
  | 'authentication'
  | 'permission'
  | 'bad_request'
  | 'unavailable'
  | 'server_error';

/** What classification looks at, read once from the body. */
interface ErrorFacts {
  /** The HTTP status, or the one the body implies; `undefined` when nothing says. */
  status: number | undefined;
  message: string;
  param: string | undefined;
  /** Lower-case message and slugs, for substring tests. */
  text: string;
  /** Lower-case `type`, `code`, `status` and `innererror.code` values. */
  codes: string[];
}

interface CompiledSignals {
  texts: string[];
  codes: Set<string>;
}

function compile(signals: ErrorSignals): CompiledSignals {
  return {
    texts: signals.texts.map((text) => text.toLowerCase()),
    codes: new Set(signals.codes.map((code) => code.toLowerCase())),
  };
}

const TIMEOUT = compile(TIMEOUT_SIGNALS);
const CONTEXT_WINDOW = compile(CONTEXT_WINDOW_SIGNALS);
const CONTENT_POLICY = compile(CONTENT_POLICY_SIGNALS);
const RATE_LIMIT = compile(RATE_LIMIT_SIGNALS);
const NOT_FOUND = compile(NOT_FOUND_SIGNALS);
const AUTHENTICATION = compile(AUTHENTICATION_SIGNALS);
const BAD_REQUEST = compile(BAD_REQUEST_SIGNALS);
const UNAVAILABLE = compile(UNAVAILABLE_SIGNALS);
const SERVER_ERROR = compile(SERVER_ERROR_SIGNALS);

/** Classifies one upstream failure. Keeps the upstream's message (the error constructor strips URLs and keys). */
export function classifyUpstreamError(failure: UpstreamFailure): GatewayError {
  const facts = readFacts(failure);
  const kind = errorKind(facts);
  const message = facts.message === '' ? defaultMessage(facts.status) : truncate(facts.message);
  const options = { upstreamStatus: facts.status, param: facts.param };
  switch (kind) {
    case 'timeout':
      return new TimeoutError(message, options);
    case 'context_window':
      return new ContextWindowExceededError(message, options);
    case 'content_policy':
      return new ContentPolicyViolationError(message, options);
    case 'rate_limit':
      return new RateLimitError(message, { ...options, retryAfterMs: retryAfterMs(failure.headers, facts.message) });
    case 'not_found':
      return new NotFoundError(message, options);
    case 'authentication':
      return new AuthenticationError(message, options);
    case 'permission':
      return new PermissionDeniedError(message, options);
    case 'bad_request':
      return new BadRequestError(message, options);
    case 'unavailable':
      return new UpstreamError(message, { ...options, status: 503, retryAfterMs: retryAfterMs(failure.headers, '') });
    case 'server_error':
      return new UpstreamError(message, { ...options, status: 502 });
  }
}

/**
 * The gateway forwards no client credentials, so when an upstream says the credentials are wrong or not
 * allowed (a 401/403, or "Incorrect API key" under a 500), it judged the gateway's own key (or AWS
 * identity) for this deployment. The client cannot fix that: it becomes a 502 naming the deployment,
 * retried on another deployment or fallback, instead of the client's 401. The upstream's text is left
 * out, since a provider may echo the key it refused. Every other error passes through unchanged.
 */
export function asGatewayCredentialFailure(error: unknown, deploymentId: string): unknown {
  if (!(error instanceof AuthenticationError) && !(error instanceof PermissionDeniedError)) return error;
  const { upstreamStatus } = error;
  const message =
    upstreamStatus === undefined
      ? `The gateway's credentials for deployment '${deploymentId}' were rejected or could not be loaded.`
      : `The upstream rejected the gateway's credentials for deployment '${deploymentId}' (${upstreamStatus}).`;
  return new UpstreamCredentialsError(deploymentId, message, { cause: error, upstreamStatus });
}

/** The order matters: the specific signals beat the generic status, timeouts beat everything. */
function errorKind(facts: ErrorFacts): ErrorKind {
  if (matches(facts, TIMEOUT)) return 'timeout';
  if (facts.status === 429) return 'rate_limit';
  if (matches(facts, CONTEXT_WINDOW)) return 'context_window';
  if (matches(facts, CONTENT_POLICY)) return 'content_policy';
  if (matches(facts, RATE_LIMIT)) return 'rate_limit';
  if (matches(facts, NOT_FOUND)) return 'not_found';
  if (matches(facts, AUTHENTICATION)) return 'authentication';
  if (matches(facts, BAD_REQUEST)) return 'bad_request';
  if (matches(facts, UNAVAILABLE)) return 'unavailable';
  if (!isServerStatus(facts.status) && matches(facts, SERVER_ERROR)) return 'server_error';
  return kindOfStatus(facts.status);
}

function kindOfStatus(status: number | undefined): ErrorKind {
  switch (status) {
    case 400:
    case 413:
    case 422:
      return 'bad_request';
    case 401:
      return 'authentication';
    case 403:
      return 'permission';
    case 404:
      return 'not_found';
    case 408:
    case 504:
      return 'timeout';
    case 429:
      return 'rate_limit';
    case 503:
    case 529: // Anthropic "overloaded"
      return 'unavailable';
  }
  if (status !== undefined && status >= 400 && status < 500) return 'bad_request';
  // 5xx, and an in-band error nothing identifies: the upstream failed this request.
  return 'server_error';
}

function isServerStatus(status: number | undefined): boolean {
  return status !== undefined && status >= 500;
}

function matches(facts: ErrorFacts, signals: CompiledSignals): boolean {
  for (const code of facts.codes) if (signals.codes.has(code)) return true;
  for (const text of signals.texts) if (facts.text.includes(text)) return true;
  return false;
}

/** Some upstreams answer errors with a whole HTML page; a client needs the gist, not 64 KB. */
const MAX_MESSAGE_CHARS = 1000;

function truncate(message: string): string {
  return message.length <= MAX_MESSAGE_CHARS ? message : `${message.slice(0, MAX_MESSAGE_CHARS)}…`;
}

function defaultMessage(status: number | undefined): string {
  return status === undefined ? 'The upstream reported an error.' : `The upstream answered with HTTP ${status}.`;
}

// ---------------------------------------------------------------------------------------------
// Reading the error body: OpenAI `{error:{message,type,param,code}}`, Azure `{error:{code,message,
// innererror}}`, Anthropic `{type:"error",error:{type,message}}`, Google `{error:{code,message,status}}`
// (sometimes inside an array), vLLM/SGLang/Mistral bare `{object:"error",message,type,code}`, DashScope
// native `{code,message}`, TGI `{error:"…",error_type}`, FastAPI `{detail:"…"}`, or plain text.

function readFacts(failure: UpstreamFailure): ErrorFacts {
  const error = errorObjectOf(failure.body);
  const message = typeof error === 'string' ? error : messageOf(error);
  const codes = typeof error === 'string' ? [] : slugsOf(error);
  const httpStatus = failure.status !== undefined && failure.status >= 300 ? failure.status : undefined;
  const status = httpStatus ?? (typeof error === 'string' ? undefined : impliedStatus(error, codes));
  const param = typeof error === 'string' || typeof error.param !== 'string' ? undefined : error.param;
  return { status, message, param, text: `${message} ${codes.join(' ')}`.toLowerCase(), codes };
}

type ErrorObject = Record<string, unknown>;

function errorObjectOf(body: unknown): ErrorObject | string {
  if (typeof body === 'string') return body;
  if (Array.isArray(body)) return errorObjectOf(body[0]);
  if (!isRecord(body)) return '';
  if (isRecord(body.error)) return body.error;
  if (typeof body.error === 'string') return { message: body.error, type: body.error_type };
  return body;
}

function messageOf(error: ErrorObject): string {
  if (typeof error.message === 'string') return error.message;
  if (typeof error.detail === 'string') return error.detail;
  return '';
}

function slugsOf(error: ErrorObject): string[] {
  const slugs: string[] = [];
  for (const value of [error.type, error.code, error.status, isRecord(error.innererror) ? error.innererror.code : undefined]) {
    if (typeof value === 'string' && value !== '') slugs.push(value.toLowerCase());
  }
  return slugs;
}

/** A numeric `status`/`code` (vLLM's `code: 400`, Google's `code: 429`, Azure's `code: "429"`), else the slugs' meaning. */
function impliedStatus(error: ErrorObject, codes: readonly string[]): number | undefined {
  const numeric = httpStatusOf(error.status) ?? httpStatusOf(error.code);
  if (numeric !== undefined) return numeric;
  for (const code of codes) {
    const status = STATUS_OF_CODE[code];
    if (status !== undefined) return status;
  }
  return undefined;
}

function httpStatusOf(value: unknown): number | undefined {
  const number = typeof value === 'string' && /^\d{3}$/.test(value) ? Number(value) : value;
  return typeof number === 'number' && Number.isInteger(number) && number >= 400 && number < 600 ? number : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Retry-After

const RETRY_IN_MESSAGE = /(?:try again in|retry after)\s+(?:(\d+)m)?(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?)\b/i;

/**
 * Milliseconds the upstream asked us to wait: `retry-after-ms`, then `Retry-After` (seconds or an HTTP
 * date), then the message ("Please try again in 1.5s", "Please retry after 3 seconds"), which is all an
 * in-band rate-limit error carries.
 */
export function retryAfterMs(headers: HeaderBag | undefined, message: string, now: number = Date.now()): number | undefined {
  const milliseconds = Number(headerOf(headers, 'retry-after-ms') ?? Number.NaN);
  if (Number.isFinite(milliseconds) && milliseconds >= 0) return Math.ceil(milliseconds);
  const retryAfter = headerOf(headers, 'retry-after');
  if (retryAfter !== undefined) {
    const fromHeader = parseRetryAfter(retryAfter, now);
    if (fromHeader !== undefined) return fromHeader;
  }
  const match = RETRY_IN_MESSAGE.exec(message);
  if (match === null) return undefined;
  const minutes = Number(match[1] ?? 0);
  const amount = Number(match[2]);
  const seconds = match[3]?.toLowerCase() === 'ms' ? amount / 1000 : amount;
  return Math.ceil((minutes * 60 + seconds) * 1000);
}

function parseRetryAfter(value: string, now: number): number | undefined {
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function headerOf(headers: HeaderBag | undefined, name: string): string | undefined {
  const value = headers?.[name];
  return Array.isArray(value) ? value[0] : value;
}
