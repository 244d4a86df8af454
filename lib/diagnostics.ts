/**
 * Tracing through `node:diagnostics_channel`: three `TracingChannel`s that APMs (and the
 * `express-llm-gateway/otel` entry) subscribe to, no monkey-patching needed.
 *
 *   express-llm-gateway:request    one per chat request that passed validation
 *   express-llm-gateway:attempt    one per upstream call (first try, retry, fallback)
 *   express-llm-gateway:guardrail  one per ApplyGuardrail call
 *
 * Each operation has one message object that goes through its channel's events in `tracePromise`'s order:
 * `start` and `end` when it begins (the synchronous part), then, once it finished, `error` (only when it
 * failed) followed by `asyncStart` and `asyncEnd`. The fields that describe the ending are set on the same
 * object before those last events. As Node does, an operation that began while nobody listened publishes
 * nothing, even if someone subscribes before it ends.
 *
 * No message carries prompt or completion text, credentials, an upstream's error message or a full URL:
 * only names from the configuration, counts, timings and the error taxonomy's type. With no subscriber,
 * each publish point costs one `hasSubscribers` check.
 */
import { type TracingChannel, tracingChannel } from 'node:diagnostics_channel';
import type { Attempt, AttemptKind, AttemptOutcome } from './attempts.js';
import type { GatewayContext, GuardrailRecord } from './context.js';
import type { RequestSummary } from './events.js';
import type { Deployment, ProviderAdapter, ProviderName, UpstreamRequest } from './providers/types.js';
import { RawChunk } from './raw-chunk.js';
import type { ChatCompletionChunk, Usage } from './types.js';

export const REQUEST_CHANNEL = 'express-llm-gateway:request';
export const ATTEMPT_CHANNEL = 'express-llm-gateway:attempt';
export const GUARDRAIL_CHANNEL = 'express-llm-gateway:guardrail';

/** Token counts in a message: as the upstream reported them, or the gateway's estimate (`estimated: true`). */
export interface TracedUsage {
  inputTokens: number;
  outputTokens: number;
  estimated: boolean;
}

/**
 * The `error` of a failed operation (what `tracePromise` would set): only the error taxonomy's `type` (also
 * the message) and HTTP-equivalent status, never the upstream's own message.
 */
export class TracedFailure extends Error {
  override readonly name = 'TracedFailure';
  constructor(
    readonly type: string,
    readonly status: number | undefined,
  ) {
    super(type);
  }
}

/** One client request (`express-llm-gateway:request`). */
export interface RequestMessage {
  /** The inbound protocol. */
  readonly protocol: 'chat.completions';
  /** The gateway request id (`x-request-id`). */
  readonly requestId: string;
  /** The model group the client asked for. */
  readonly model: string;
  readonly stream: boolean;
  // Set when the request ended (see `RequestSummary` for each one's meaning).
  /** How it ended: the HTTP status sent, or 499 when the client left first. */
  status?: number;
  /** The status line that went out, if one did. */
  httpStatus?: number | undefined;
  /** The error type it ended with (JSON or in-band), `client_disconnected` when the client left. */
  errorType?: string | undefined;
  clientAborted?: boolean;
  committed?: boolean;
  /** Milliseconds from the request's context to the status line. */
  timeToFirstByteMs?: number | undefined;
  durationMs?: number;
  /** Upstream calls made, and how many of them were retries and fallbacks. */
  attempts?: number;
  retries?: number;
  fallbacks?: number;
  /** Guardrail calls made. */
  guardrailCalls?: number;
  /** Tokens of the attempt that ended the request (see `RequestSummary.usage`). */
  usage?: TracedUsage | undefined;
  /** Set, and published on `error`, when `errorType` is. */
  error?: TracedFailure;
}

/** One upstream call (`express-llm-gateway:attempt`). */
export interface AttemptMessage {
  /** The request it serves, when that request is traced too (the same object its channel published). */
  readonly request: RequestMessage | undefined;
  readonly requestId: string;
  /** The model group this attempt served (the requested one, or a fallback group). */
  readonly group: string;
  /** The deployment's id inside its group. */
  readonly deployment: string;
  readonly provider: ProviderName;
  readonly kind: AttemptKind;
  /** The model name sent upstream (`deployment.model`, or the client's with a `'*'` deployment). */
  readonly model: string;
  readonly stream: boolean;
  /** Host name and port of the upstream, from the deployment's `baseUrl` (or the provider's default). */
  readonly serverAddress: string;
  readonly serverPort: number;
  /**
   * Extra headers for this upstream call. A subscriber may add trace context (`traceparent`,
   * `tracestate`) here while handling `start`; the OpenAI-compatible and Anthropic adapters send them
   * (Bedrock, through the AWS SDK, does not).
   */
  readonly headers: Record<string, string>;
  // Set when the attempt ended.
  outcome?: Exclude<AttemptOutcome, 'pending'>;
  /** HTTP-equivalent status and error type of a failure. */
  status?: number | undefined;
  errorType?: string | undefined;
  latencyMs?: number;
  /** Streaming: milliseconds from the call to the first chunk received from the upstream, if one came. */
  timeToFirstChunkMs?: number | undefined;
  /** The model the upstream says answered, if it said. */
  responseModel?: string | undefined;
  usage?: TracedUsage | undefined;
  error?: TracedFailure;
}

/** One ApplyGuardrail call (`express-llm-gateway:guardrail`). */
export interface GuardrailMessage {
  readonly request: RequestMessage | undefined;
  readonly requestId: string;
  /** The guardrail's configured name. */
  readonly guardrail: string;
  readonly source: 'INPUT' | 'OUTPUT';
  /** Text blocks sent (their count, not their text). */
  readonly texts: number;
  // Set when the call ended.
  /** What was done: `ERROR` when the call failed (then `error` is set too). */
  action?: GuardrailRecord['action'];
  /** Text units billed. */
  units?: number;
  latencyMs?: number;
  error?: TracedFailure;
}

export const requestChannel = tracingChannel<object, RequestMessage>(REQUEST_CHANNEL);
export const attemptChannel = tracingChannel<object, AttemptMessage>(ATTEMPT_CHANNEL);
export const guardrailChannel = tracingChannel<object, GuardrailMessage>(GUARDRAIL_CHANNEL);

/** The traced requests' messages (kept off the context, which users log). */
const requestMessages = new WeakMap<GatewayContext, RequestMessage>();

/**
 * Starts the request's trace and runs `next` (the rest of the pipeline) inside it, so stores bound to the
 * request channel's `start` (`bindStore`) are active for everything the request does. Call only when
 * `requestChannel.hasSubscribers`.
 */
export function traceRequest(ctx: GatewayContext, next: () => void): void {
  const message: RequestMessage = { protocol: 'chat.completions', requestId: ctx.id, model: ctx.model, stream: ctx.stream };
  requestMessages.set(ctx, message);
  requestChannel.start.runStores(message, () => {
    try {
      next();
    } finally {
      requestChannel.end.publish(message);
    }
  });
}

/** Whether the request's start was published (its end must be, from the summary). */
export function isTracedRequest(ctx: GatewayContext): boolean {
  return requestMessages.has(ctx);
}

/** Ends a traced request's trace with its summary. */
export function endRequestTrace(ctx: GatewayContext, summary: RequestSummary): void {
  const message = requestMessages.get(ctx);
  if (!message) return;
  requestMessages.delete(ctx);
  let retries = 0;
  let fallbacks = 0;
  for (const a of summary.attempts) {
    if (a.kind === 'retry') retries++;
    else if (a.kind === 'fallback') fallbacks++;
  }
  message.status = summary.status;
  message.httpStatus = summary.httpStatus;
  message.errorType = summary.errorType;
  message.clientAborted = summary.clientAborted;
  message.committed = summary.committed;
  message.timeToFirstByteMs = summary.timeToFirstByteMs;
  message.durationMs = summary.durationMs;
  message.attempts = summary.attempts.length;
  message.retries = retries;
  message.fallbacks = fallbacks;
  message.guardrailCalls = summary.guardrails.length;
  message.usage = tracedUsage(summary.usage);
  // The request's status is on the message: after commit the status line (200) says nothing of the failure.
  if (summary.errorType !== undefined) message.error = new TracedFailure(summary.errorType, undefined);
  finish(requestChannel, message);
}

/** An attempt being traced: end it once its record is final. */
export interface AttemptTrace {
  readonly message: AttemptMessage;
  /** `adapter`, sending the message's headers and noting the response model and the first chunk's time. */
  observe(adapter: ProviderAdapter): ProviderAdapter;
  /** Publishes the end from the attempt's final record and this attempt's usage. */
  end(record: Attempt, usage: Usage | undefined): void;
}

/** Starts an attempt's trace. Call only when `attemptChannel.hasSubscribers`. */
export function traceAttempt(ctx: GatewayContext, record: Attempt, deployment: Deployment): AttemptTrace {
  const server = serverOf(deployment);
  const message: AttemptMessage = {
    request: requestMessages.get(ctx),
    requestId: ctx.id,
    group: record.group,
    deployment: record.deployment,
    provider: deployment.provider,
    kind: record.kind,
    model: deployment.model === '*' ? ctx.model : deployment.model,
    stream: ctx.stream,
    serverAddress: server.address,
    serverPort: server.port,
    headers: {},
  };
  attemptChannel.start.publish(message);
  attemptChannel.end.publish(message);
  const startedAt = performance.now();
  return {
    message,
    observe: (adapter) => observed(adapter, message, startedAt),
    end(final, usage) {
      message.outcome = final.outcome === 'pending' ? 'error' : final.outcome;
      message.status = final.status;
      message.errorType = final.errorType;
      message.latencyMs = final.latencyMs;
      message.usage = tracedUsage(usage);
      if (message.outcome !== 'success') message.error = new TracedFailure(final.errorType ?? 'upstream_error', final.status);
      finish(attemptChannel, message);
    },
  };
}

/** A guardrail call being traced. */
export interface GuardrailTrace {
  end(record: GuardrailRecord): void;
}

/**
 * Starts a guardrail call's trace (`parent`: the call's abort signal, to tell a call cut short from a failed
 * one). Call only when `guardrailChannel.hasSubscribers`.
 */
export function traceGuardrail(ctx: GatewayContext, guardrail: string, source: 'INPUT' | 'OUTPUT', texts: number, parent: AbortSignal): GuardrailTrace {
  const message: GuardrailMessage = { request: requestMessages.get(ctx), requestId: ctx.id, guardrail, source, texts };
  guardrailChannel.start.publish(message);
  guardrailChannel.end.publish(message);
  return {
    end(record) {
      message.action = record.action;
      message.units = record.units;
      message.latencyMs = record.latencyMs;
      if (record.action === 'ERROR') {
        message.error = parent.aborted ? new TracedFailure(errorTypeOf(parent.reason) ?? 'aborted', undefined) : new TracedFailure('guardrail_unavailable', 503);
      }
      finish(guardrailChannel, message);
    },
  };
}

function finish<T extends object & { error?: TracedFailure }>(channel: TracingChannel<object, T>, message: T): void {
  if (message.error) channel.error.publish(message);
  channel.asyncStart.publish(message);
  channel.asyncEnd.publish(message);
}

/** The taxonomy type of an abort reason (the gateway aborts with its classified errors). */
function errorTypeOf(reason: unknown): string | undefined {
  const type = (reason as { type?: unknown } | undefined)?.type;
  return typeof type === 'string' ? type : undefined;
}

function tracedUsage(usage: Usage | undefined): TracedUsage | undefined {
  if (!usage) return undefined;
  return { inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens, estimated: usage['estimated'] === true };
}

const DEFAULT_HOSTS: Record<ProviderName, string | undefined> = {
  openai: 'https://api.openai.com',
  azure: undefined,
  anthropic: 'https://api.anthropic.com',
  bedrock: undefined,
};

const servers = new WeakMap<Deployment, { address: string; port: number }>();

/** The upstream's host and port: only those, never the path, query or user info of `baseUrl`. */
function serverOf(deployment: Deployment): { address: string; port: number } {
  let server = servers.get(deployment);
  if (server) return server;
  const base =
    deployment.baseUrl ??
    DEFAULT_HOSTS[deployment.provider] ??
    `https://bedrock-runtime.${deployment.region ?? 'us-east-1'}.amazonaws.com`;
  try {
    const url = new URL(base);
    server = { address: url.hostname.replace(/^\[|\]$/g, ''), port: url.port ? Number(url.port) : url.protocol === 'http:' ? 80 : 443 };
  } catch {
    server = { address: 'unknown', port: 0 };
  }
  servers.set(deployment, server);
  return server;
}

/**
 * The adapter of one traced attempt: sends the message's headers, notes the first chunk's time and the model
 * the upstream names in it (a forwarded chunk's text is searched for it: only the first one, and only here).
 */
function observed(adapter: ProviderAdapter, message: AttemptMessage, startedAt: number): ProviderAdapter {
  const withHeaders = (request: UpstreamRequest): UpstreamRequest =>
    Object.keys(message.headers).length === 0 ? request : { ...request, headers: { ...request.headers, ...message.headers } };
  async function* watch<T extends ChatCompletionChunk | RawChunk>(chunks: AsyncIterable<T>): AsyncGenerator<T> {
    for await (const chunk of chunks) {
      if (message.timeToFirstChunkMs === undefined) {
        message.timeToFirstChunkMs = performance.now() - startedAt;
        message.responseModel = chunk instanceof RawChunk ? MODEL_FIELD.exec(chunk.data)?.[1] : chunk.model || undefined;
      }
      yield chunk;
    }
  }
  async function* watchBatches<T extends ChatCompletionChunk | RawChunk>(batches: AsyncIterable<readonly T[]>): AsyncGenerator<readonly T[]> {
    for await (const batch of batches) {
      const chunk = batch[0];
      if (message.timeToFirstChunkMs === undefined && chunk !== undefined) {
        message.timeToFirstChunkMs = performance.now() - startedAt;
        message.responseModel = chunk instanceof RawChunk ? MODEL_FIELD.exec(chunk.data)?.[1] : chunk.model || undefined;
      }
      yield batch;
    }
  }
  const wrapped: ProviderAdapter = {
    provider: adapter.provider,
    close: () => adapter.close(),
    async complete(request) {
      const completion = await adapter.complete(withHeaders(request));
      message.responseModel = completion.model || undefined;
      return completion;
    },
    stream: (request) => watch(adapter.stream(withHeaders(request))),
  };
  if (adapter.streamRaw) {
    const streamRaw = adapter.streamRaw.bind(adapter);
    wrapped.streamRaw = (request, includeUsage) => watchBatches(streamRaw(withHeaders(request), includeUsage));
  }
  return wrapped;
}

/** The first `model` string in a chunk's text: the chunk's own (model names need no JSON escapes). */
const MODEL_FIELD = /"model"\s*:\s*"([^"\\]*)"/;
