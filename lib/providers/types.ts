/**
 * The contract between the router and the provider adapters. An adapter turns one OpenAI-shaped request
 * into its provider's wire format, calls it, and turns the answer back into OpenAI `chat.completion` JSON
 * or a stream of `chat.completion.chunk` objects; every failure leaves it as a classified `GatewayError`.
 * The router, the fallback handler and the writer only ever look at the error's class.
 */
import type { RawChunk } from '../raw-chunk.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../types.js';

export type ProviderName = 'openai' | 'azure' | 'anthropic' | 'bedrock';

/** A credential: the value, or a function returning it (called per upstream request; may rotate). */
export type Credential = string | (() => string | Promise<string>);

export interface TimeoutOptions {
  /**
   * Milliseconds to establish the TCP/TLS connection.
   * @default 5000
   */
  connectMs?: number;
  /**
   * Milliseconds from sending the request to the first content (first streamed chunk, or the whole
   * non-streaming answer's headers). Before commit, a timeout here is an ordinary retryable failure.
   * @default 60000
   */
  firstTokenMs?: number;
  /**
   * Largest gap in milliseconds between two streamed chunks. After commit, it ends the stream with an
   * error frame.
   * @default 30000
   */
  idleMs?: number;
  /**
   * Milliseconds for the whole upstream call, including the whole stream.
   * @default 600000
   */
  totalMs?: number;
}

export interface DeploymentOptions {
  /** Unique id inside its group, shown in headers and the attempt log. @default `${provider}/${model}` (with `#n` if repeated) */
  id?: string;
  provider: ProviderName;
  /**
   * The upstream base URL. OpenAI-compatible: up to and including `/v1` (e.g. `http://127.0.0.1:8000/v1`,
   * `https://dashscope.aliyuncs.com/compatible-mode/v1`); Azure: the resource origin
   * (`https://NAME.openai.azure.com`); Anthropic: the origin (`https://api.anthropic.com`); Bedrock: an
   * optional endpoint override.
   * @default OpenAI `https://api.openai.com/v1`, Anthropic `https://api.anthropic.com`; required for Azure
   */
  baseUrl?: string;
  /** The upstream model name (Azure: the deployment name; Bedrock: the model id or inference profile). */
  model: string;
  /**
   * API key: OpenAI/compatible `Authorization: Bearer`, Azure `api-key`, Anthropic `x-api-key`. Never read
   * from the environment by the library. Required for `openai`, `azure` and `anthropic`: a missing, `null`
   * or blank key (say `process.env.X` with `X` unset) throws a `GatewayConfigError` when the router is
   * created. `false` says the server needs none (a local vLLM or Ollama): no auth header is sent. A
   * function is called per upstream request; if it returns no key (or throws), that request's attempt on
   * this deployment fails with a 502 `upstream_error` naming the deployment. Bedrock uses AWS credentials
   * (`awsCredentials`) and ignores this.
   */
  apiKey?: Credential | false;
  /** Azure OpenAI `api-version` query parameter. @default '2024-10-21' */
  apiVersion?: string;
  /** Bedrock region. @default 'us-east-1' */
  region?: string;
  /** Bedrock static credentials (otherwise the AWS SDK's default chain, which is the user's choice to use). */
  awsCredentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Extra headers sent to the upstream on every request. */
  headers?: Record<string, string>;
  /** Relative share of traffic with the weighted strategy. @default 1 */
  weight?: number;
  /** Requests per minute this deployment accepts; over it, it is skipped like one in cooldown. */
  rpm?: number;
  /** Tokens per minute this deployment accepts. */
  tpm?: number;
  /** Context window in tokens, when known (lets the router skip a deployment the prompt cannot fit). */
  contextWindow?: number;
  /**
   * Most connections (so most concurrent requests, streams included) to this deployment from this
   * instance; more wait for a free one.
   * @default unlimited
   */
  maxConnections?: number;
  /** Anthropic requires `max_tokens`; used when the client sent none. @default 4096 */
  defaultMaxTokens?: number;
  timeouts?: TimeoutOptions;
}

/**
 * What a streaming adapter does with an event that breaks its protocol (data that is not JSON, `choices`
 * that is not an array…): `error` ends the attempt with a 502 `upstream_error`; `skip` drops the event and
 * goes on. Events that merely carry nothing for the client (keep-alives, pings, unknown event types or
 * metadata) are never malformed: they are skipped under either policy.
 */
export type MalformedChunkPolicy = 'error' | 'skip';

/** A deployment after validation and defaults. */
export interface Deployment extends Omit<DeploymentOptions, 'id' | 'timeouts' | 'weight'> {
  id: string;
  group: string;
  weight: number;
  timeouts: Required<TimeoutOptions>;
  /** The router's `malformedChunks` policy, set on every deployment it creates. @default 'error' */
  malformedChunks?: MalformedChunkPolicy;
}

/** One upstream call, as the router hands it to an adapter. */
export interface UpstreamRequest {
  /** The client's validated body. `model` is still the group name: the adapter sends `deployment.model`. */
  body: ChatCompletionRequest;
  /**
   * Aborts the call: client gone, a timeout, a guardrail block. When it fires, the adapter stops at once
   * (closing the upstream socket) and throws `signal.reason`.
   */
  signal: AbortSignal;
  /** The gateway request id, forwarded upstream as `x-request-id` where the provider accepts it. */
  requestId: string;
  /**
   * Headers for this call only: trace context (`traceparent`, `tracestate`) added by a tracing subscriber
   * (see `lib/diagnostics.ts`). Sent after the deployment's own headers; absent unless someone traces.
   */
  headers?: Readonly<Record<string, string>>;
  /**
   * Told about every malformed event of a stream (see `MalformedChunkPolicy`): `reason` says what was
   * wrong ("not JSON"), never what the event held; `skipped` is false when the event ends the stream
   * (`error` policy; the adapter throws right after). The router logs and counts it.
   */
  onMalformedChunk?: (reason: string, skipped: boolean) => void;
}

export interface ProviderAdapter {
  readonly provider: ProviderName;
  /** Non-streaming call. Resolves with the OpenAI-shaped completion, or rejects with a `GatewayError`. */
  complete(request: UpstreamRequest): Promise<ChatCompletion>;
  /**
   * Streaming call. Yields normalized chunks as they arrive (never buffering the whole answer). Throws a
   * `GatewayError` for an HTTP error status, an in-band error event (whenever it comes: the first event
   * is classified exactly like the same error returned as an HTTP status), a malformed event (unless
   * `deployment.malformedChunks` is `skip`), or a stream
   * that stops without its terminator (`[DONE]` / `message_stop` / `messageStop`). A stream that ends
   * properly but carried no content simply ends: judging emptiness is the router's job.
   */
  stream(request: UpstreamRequest): AsyncIterable<ChatCompletionChunk>;
  /**
   * Optional: `stream()` for a request whose chunks no output filter reads (the router's choice). A chunk
   * that needs no change may come as a `RawChunk` (the upstream's own text and what the router needs to
   * know about it); every other chunk, and every failure, exactly as `stream()` has them. `includeUsage`:
   * whether the client asked for `stream_options.include_usage` (when not, `"usage":null` is dropped from
   * forwarded text, as the router drops `usage` from parsed chunks). The chunks come in arrays (never
   * empty), one per network read, so the router pays one asynchronous step per read rather than per chunk.
   */
  streamRaw?(request: UpstreamRequest, includeUsage: boolean): AsyncIterable<readonly (ChatCompletionChunk | RawChunk)[]>;
  /** Releases pooled connections and clients. */
  close(): Promise<void>;
}
