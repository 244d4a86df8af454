/**
 * The OpenAI-compatible adapter: OpenAI, Azure OpenAI, and every server that speaks the same API
 * (DashScope compatible mode, vLLM, SGLang, Mistral, deepseek…). Requests and answers are already in the
 * gateway's shape, so the adapter only routes, authenticates and polices the stream.
 */
import { lazySignalAdapters, upstreamAbortOf } from '../attempt-control.js';
import { UpstreamError } from '../errors.js';
import { GatewayConfigError } from '../options.js';
import { keepRawBody, scanChunk, type RawChunk } from '../raw-chunk.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../types.js';
import { classifyUpstreamError } from './classify.js';
import {
  type AbortState,
  adapterFailure,
  createUpstreamClient,
  credentialOf,
  lowerCaseHeaders,
  parseJsonOrText,
  streamResponse,
  withoutTrailingSlash,
  type UpstreamResponse,
} from './http.js';
import { MalformedEvent, malformedEventHandler, parseEventData, readSseBatches, SseSplitter, type SseEvent } from './sse.js';
import { upstreamModel } from './model.js';
import { FlowingStream, type ReadStep } from './raw-stream.js';
import type { Deployment, ProviderAdapter, UpstreamRequest } from './types.js';

const DEFAULT_BASE_URL = 'https://api.openai.com/v1';
const DEFAULT_AZURE_API_VERSION = '2024-10-21';

/** Where and how one deployment is called, worked out once when the adapter is created. */
interface Target {
  /** The URL for the upstream model (Azure puts it in the path). */
  url(model: string): string;
  /** `authorization` (as `Bearer <key>`) or Azure's `api-key`. */
  keyHeader: 'authorization' | 'api-key';
  /** Whether the body carries `model`; Azure routes by the deployment in the path and gets none. */
  sendsModel: boolean;
}

/**
 * Creates the adapter for a deployment with `provider: 'openai'` (POST `${baseUrl}/chat/completions`,
 * `Authorization: Bearer`) or `provider: 'azure'` (POST `${baseUrl}/openai/deployments/${model}/chat/completions
 * ?api-version=…`, `api-key`). The client's body goes upstream with `model` set to `deployment.model`
 * (the client's own with `model: '*'`), plus `deployment.headers` and the gateway's `x-request-id`.
 *
 * What `stream()` yields, exactly:
 * - Every upstream chunk as it came, **including the usage-only chunk** (`choices: []`, `usage` set) near
 *   the end. Upstream is always asked for `stream_options.include_usage`, so usage is known even when the
 *   client did not ask; the router strips that chunk (and the `usage: null` OpenAI then puts on every other
 *   chunk) when the client did not ask for `include_usage`.
 * - Not yielded: a chunk with no choices and no usage (Azure's leading `prompt_filter_results` chunk). It is
 *   not content, and dropping it keeps "the first chunk" meaning the first real one.
 * - Skipped, whatever the policy: frames that carry nothing for the client. SSE comments (`: keep-alive`),
 *   `event: ping`, a blank `data:`, and any JSON object without `choices` and without `error` (`{}`,
 *   `{"type":"metadata",…}`); under another event name than `error`, the same rules apply to its data,
 *   and data that is not JSON is skipped too (an extension we do not know, not a broken chunk). A choice
 *   without `delta` (Azure's asynchronous-filter annotations) gets an empty one.
 * - A `finish_reason: "content_filter"` chunk is yielded like any other: the router decides what it means.
 * - `[DONE]` ends the iteration. A stream that ends without `[DONE]` ends quietly if a choice finished,
 *   and throws `UpstreamError` ("ended before it finished") if none did. A body with no event at all ends
 *   quietly: an empty answer, for the router to judge.
 * - An in-band error (`data: {"error":…}`, a bare `{"object":"error",…}`, or an `event: error` frame),
 *   first or later, throws the error classified exactly as the same error with its HTTP status would be.
 * - Malformed (a real protocol violation): data that is not a JSON object, `choices` that is not an
 *   array, a choice or `delta` that is not an object. Under `deployment.malformedChunks: 'error'` (the
 *   default) it throws `UpstreamError` (502, "malformed chunk"); under `'skip'` the frame is dropped.
 *   Either way `request.onMalformedChunk` hears of it.
 * - When `request.signal` aborts, the upstream socket is destroyed and `signal.reason` is thrown.
 *
 * `streamRaw()` is the same stream for a router that reads no chunk in parsed form: a chunk `scanChunk`
 * fully understands comes as a `RawChunk` (its text as received, minus `"usage":null` unless the client asked
 * for usage), every other one is parsed and judged exactly as above; the chunks of one network read come as
 * one array. `complete()` keeps the body's text
 * beside the completion (`rawBodyOf`), so an answer nothing changes can go out as received.
 */
export function createOpenAIAdapter(deployment: Deployment): ProviderAdapter {
  const target = targetOf(deployment);
  const baseHeaders = { 'content-type': 'application/json', ...lowerCaseHeaders(deployment.headers) };
  const client = createUpstreamClient({ connectMs: deployment.timeouts.connectMs, backstopMs: deployment.timeouts.totalMs, connections: deployment.maxConnections });

  // A static key (or none, `apiKey: false`) goes into the headers once; a key function is asked per request.
  const fixedHeaders = staticKeyHeaders(deployment, target, baseHeaders);

  // Not an async function: a static key sends at once (no promise of its own). Callers await it in a try.
  function send(request: UpstreamRequest, streaming: boolean): Promise<UpstreamResponse> {
    if (fixedHeaders && request.headers === undefined) return post(request, streaming, { ...fixedHeaders, 'x-request-id': request.requestId });
    return credentialOf(deployment).then((key) => {
      const headers: Record<string, string> = { ...baseHeaders, ...request.headers, 'x-request-id': request.requestId };
      if (key !== undefined) headers[target.keyHeader] = target.keyHeader === 'authorization' ? `Bearer ${key}` : key;
      return post(request, streaming, headers);
    });
  }

  function post(request: UpstreamRequest, streaming: boolean, headers: Record<string, string>): Promise<UpstreamResponse> {
    const model = upstreamModel(deployment, request.body);
    const body = JSON.stringify(upstreamBody(request.body, target.sendsModel ? model : undefined, streaming));
    return client.post({ url: target.url(model), headers, body, signal: upstreamAbortOf(request) });
  }

  const adapter: ProviderAdapter = {
    provider: deployment.provider,
    async complete(request) {
      try {
        const response = await send(request, false);
        return await readCompletion(response);
      } catch (error) {
        throw adapterFailure(error, upstreamAbortOf(request), deployment);
      }
    },
    stream: (request) => {
      const malformed = malformedEventHandler(deployment, request);
      return eachChunk(
        streamResponse(() => send(request, true), (chunks, signal) => openAIChunks(chunks, signal, malformed, undefined), request.signal, deployment),
        request.signal,
      );
    },
    streamRaw: (request, includeUsage) => {
      const malformed = malformedEventHandler(deployment, request);
      // The attempt itself rather than its AbortSignal, when the router made the request: no signal is created.
      const abort = upstreamAbortOf(request);
      const step = new OpenAIRawStep(abort, malformed, { dropNullUsage: !includeUsage });
      return new FlowingStream(() => send(request, true), step, abort, deployment);
    },
    close: () => client.close(),
  };
  lazySignalAdapters.add(adapter);
  return adapter;
}

/**
 * The headers of every request when the key never changes (a non-blank string, or `apiKey: false`): the
 * same as `send` builds per request with `credentialOf`, minus `x-request-id`. Undefined for a key function
 * (asked per request) and for a missing key (`credentialOf` refuses it per request).
 */
function staticKeyHeaders(deployment: Deployment, target: Target, baseHeaders: Record<string, string>): Record<string, string> | undefined {
  const { apiKey } = deployment;
  if (apiKey === false) return { ...baseHeaders };
  if (typeof apiKey !== 'string' || apiKey.trim() === '') return undefined;
  return { ...baseHeaders, [target.keyHeader]: target.keyHeader === 'authorization' ? `Bearer ${apiKey}` : apiKey };
}

function targetOf(deployment: Deployment): Target {
  if (deployment.provider === 'azure') {
    if (deployment.baseUrl === undefined) {
      throw new GatewayConfigError(`${deployment.id}.baseUrl`, 'Azure deployments need the resource origin, e.g. https://NAME.openai.azure.com.');
    }
    const base = `${withoutTrailingSlash(deployment.baseUrl)}/openai/deployments/`;
    const suffix = `/chat/completions?api-version=${encodeURIComponent(deployment.apiVersion ?? DEFAULT_AZURE_API_VERSION)}`;
    const azureUrl = (model: string): string => `${base}${encodeURIComponent(model)}${suffix}`;
    // A wildcard deployment ('*') learns its model per request; any other is fixed.
    const fixed = deployment.model === '*' ? undefined : azureUrl(deployment.model);
    return { url: (model) => fixed ?? azureUrl(model), keyHeader: 'api-key', sendsModel: false };
  }
  if (deployment.provider !== 'openai') {
    throw new GatewayConfigError(`${deployment.id}.provider`, `the OpenAI adapter serves 'openai' and 'azure', not '${deployment.provider}'.`);
  }
  const url = `${withoutTrailingSlash(deployment.baseUrl ?? DEFAULT_BASE_URL)}/chat/completions`;
  return { url: () => url, keyHeader: 'authorization', sendsModel: true };
}

/** The client's body for upstream: our model, and for streams always `include_usage` (see the adapter's JSDoc). */
function upstreamBody(body: ChatCompletionRequest, model: string | undefined, streaming: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body };
  if (model === undefined) delete out.model;
  else out.model = model;
  if (streaming) {
    out.stream = true;
    out.stream_options = { ...body.stream_options, include_usage: true };
  } else {
    // OpenAI rejects `stream_options` without `stream: true`.
    delete out.stream;
    delete out.stream_options;
  }
  return out;
}

/** Reads a whole 2xx answer as a completion, keeping its text (see `rawBodyOf`). A body that is not JSON is the upstream's failure. */
async function readCompletion(response: UpstreamResponse): Promise<ChatCompletion> {
  const text = await response.body.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UpstreamError('The upstream answered with a body that is not JSON.', { cause: error, upstreamStatus: response.status });
  }
  return keepRawBody(completionOf(value), text);
}

/** A 200 body: a completion, or (some compatible servers) an error object under 200. */
function completionOf(value: unknown): ChatCompletion {
  if (!isRecord(value)) throw new UpstreamError('The upstream answered with JSON that is not a completion.');
  if (value.error != null) throw classifyUpstreamError({ body: value });
  if (!Array.isArray(value.choices)) throw new UpstreamError('The upstream answered with JSON that is not a completion.');
  return value as ChatCompletion;
}

/**
 * Yields the stream's chunks (see the adapter's JSDoc), one array per network read (never empty): the
 * asynchronous steps are per read, not per chunk. Returns whether it completed, so the socket can be reused.
 * With `raw`, chunks the scan understands come as `RawChunk`s; without, every chunk is parsed. A failure
 * (in-band error, malformed chunk under `error`) is thrown after the chunks before it were yielded.
 */
function openAIChunks(
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
  malformed: (event: MalformedEvent) => void,
  raw: undefined,
): AsyncGenerator<ChatCompletionChunk[], boolean, undefined>;
function openAIChunks(
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
  malformed: (event: MalformedEvent) => void,
  raw: { dropNullUsage: boolean },
): AsyncGenerator<(ChatCompletionChunk | RawChunk)[], boolean, undefined>;
async function* openAIChunks(
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
  malformed: (event: MalformedEvent) => void,
  raw: { dropNullUsage: boolean } | undefined,
): AsyncGenerator<(ChatCompletionChunk | RawChunk)[], boolean, undefined> {
  let sawEvent = false;
  const state = new ChunkState();
  for await (const events of readSseBatches(chunks, signal)) {
    sawEvent = true;
    const out = chunksOf(events, state, malformed, raw);
    if (out.length > 0) yield out;
    if (state.failed) throw state.failure;
    if (state.done) return true;
  }
  if (sawEvent && !state.finished) throw new UpstreamError('The upstream stream ended before it finished.');
  return true;
}

/** What `chunksOf` learned so far: a choice finished; `[DONE]` came; a failure to throw once the chunks before it went out. */
class ChunkState {
  finished = false;
  done = false;
  failed = false;
  failure: unknown = undefined;
}

/** The chunks of one read's events (see `openAIChunk`), stopping at `[DONE]` or at a failure (both noted in `state`). */
function chunksOf(
  events: SseEvent[],
  state: ChunkState,
  malformed: (event: MalformedEvent) => void,
  raw: { dropNullUsage: boolean } | undefined,
): (ChatCompletionChunk | RawChunk)[] {
  const out: (ChatCompletionChunk | RawChunk)[] = [];
  try {
    for (const event of events) {
      const chunk = openAIChunk(event, state, malformed, raw);
      if (chunk === DONE) {
        state.done = true;
        break;
      }
      if (chunk !== undefined) out.push(chunk);
    }
  } catch (error) {
    state.failed = true;
    state.failure = error;
  }
  return out;
}

/**
 * `streamRaw()`'s work per network read, for `FlowingStream`: the read's SSE events (`SseSplitter`), the
 * signal checked before its chunks, the chunks (`chunksOf`), exactly as `openAIChunks` over `readSseBatches`
 * does in generator form: `[DONE]` completes the stream, a failure is thrown after the chunks before it, a
 * body that ends without a finished choice (after some event) fails.
 */
class OpenAIRawStep implements ReadStep<(ChatCompletionChunk | RawChunk)[]> {
  completed = false;
  failure: { error: unknown } | undefined = undefined;
  private readonly splitter = new SseSplitter();
  private readonly state = new ChunkState();
  private sawEvent = false;

  constructor(
    private readonly abort: AbortState,
    private readonly malformed: (event: MalformedEvent) => void,
    private readonly raw: { dropNullUsage: boolean },
  ) {}

  read(bytes: Buffer | null): (ChatCompletionChunk | RawChunk)[] | undefined {
    const atEnd = bytes === null;
    const events = atEnd ? this.splitter.end() : this.splitter.feed(bytes);
    if (events === undefined) {
      if (atEnd) this.endCheck();
      return undefined;
    }
    if (this.abort.aborted) throw this.abort.reason;
    this.sawEvent = true;
    const { state } = this;
    const out = chunksOf(events, state, this.malformed, this.raw);
    if (state.failed) this.failure = { error: state.failure };
    else if (state.done) this.completed = true;
    else if (atEnd) {
      try {
        this.endCheck();
      } catch (error) {
        this.failure = { error };
      }
    }
    return out.length > 0 ? out : undefined;
  }

  /** The body ended (no `[DONE]`): quietly when a choice finished or no event came at all. */
  private endCheck(): void {
    if (this.sawEvent && !this.state.finished) throw new UpstreamError('The upstream stream ended before it finished.');
  }
}

/**
 * Yields the chunks of `openAIChunks`' arrays one by one (for `stream()`, whose consumers take chunks). Once
 * `signal` is aborted no further chunk comes out (those of a read already received included): its reason is thrown.
 */
async function* eachChunk<T>(batches: AsyncIterable<T[]>, signal: AbortSignal): AsyncGenerator<T, void, undefined> {
  for await (const batch of batches) {
    for (const chunk of batch) {
      signal.throwIfAborted();
      yield chunk;
    }
  }
}

const DONE = Symbol('done');

/** One event of the stream: the chunk to yield, `undefined` to skip it, `DONE` at `[DONE]`; throws a failure. */
function openAIChunk(
  event: SseEvent,
  state: ChunkState,
  malformed: (event: MalformedEvent) => void,
  raw: { dropNullUsage: boolean } | undefined,
): ChatCompletionChunk | RawChunk | typeof DONE | undefined {
  if (event.data === '[DONE]') return DONE;
  const name = event.event;
  if (name === 'error') throw classifyUpstreamError({ body: parseJsonOrText(event.data) });
  if (name === 'ping') return undefined;
  if (raw) {
    const forwarded = scanChunk(event.data, raw.dropNullUsage);
    if (forwarded) {
      if (!state.finished) state.finished = forwarded.finished;
      return forwarded;
    }
  }
  const data = parseEventData(event.data);
  if (data === undefined) return undefined;
  if (data instanceof MalformedEvent) {
    // OpenAI's chunks come unnamed (or as `message`); a named event is an extension we do not know.
    if (name === undefined || name === 'message') malformed(data);
    return undefined;
  }
  // `{"error":…}` as OpenAI sends it; a bare `{"object":"error",…}` as some vLLM-style servers do.
  if (data.error != null || data.object === 'error') throw classifyUpstreamError({ body: data });
  const choices = data.choices;
  // Keep-alives (`{}`) and metadata of shapes we do not know: nothing for the client.
  if (choices == null) return undefined;
  if (!Array.isArray(choices)) {
    malformed(new MalformedEvent('choices is not an array'));
    return undefined;
  }
  if (choices.length === 0) {
    if (data.usage == null) return undefined;
  } else if (!normalizeChoices(choices)) {
    malformed(new MalformedEvent('a choice or its delta is not an object'));
    return undefined;
  }
  const chunk = data as unknown as ChatCompletionChunk;
  if (!state.finished) state.finished = hasFinishReason(chunk);
  return chunk;
}

/**
 * Checks the choices in place, which everything downstream reads as `choice.delta.…`: false when one is
 * not an object; a missing `delta` (Azure's filter annotations, some servers' finish chunks) becomes `{}`.
 */
function normalizeChoices(choices: unknown[]): boolean {
  for (const choice of choices) {
    if (!isRecord(choice)) return false;
    const delta = choice.delta;
    if (delta == null) choice.delta = {};
    else if (!isRecord(delta)) return false;
  }
  return true;
}

function hasFinishReason(chunk: ChatCompletionChunk): boolean {
  for (const choice of chunk.choices) if (choice.finish_reason != null) return true;
  return false;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
