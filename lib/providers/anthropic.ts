/**
 * The Anthropic Messages adapter: translates the OpenAI-shaped request to `POST /v1/messages`, and the
 * answer (JSON or the event stream) back to `chat.completion` / `chat.completion.chunk` objects.
 */
import { BadRequestError, UpstreamError } from '../errors.js';
import {
  ANTHROPIC_EXTRAS,
  anthropicExtras,
  type AnthropicDeltaExtras,
  type AnthropicMessageExtras,
  type AnthropicPartExtras,
  type AnthropicRequestExtras,
  type AnthropicThinkingBlock,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionChunkDelta,
  type ChatCompletionRequest,
  type ChatMessage,
  type ContentPart,
  type FinishReason,
  type ToolCall,
  type Usage,
} from '../types.js';
import { classifyUpstreamError } from './classify.js';
import {
  adapterFailure,
  createUpstreamClient,
  credentialOf,
  lowerCaseHeaders,
  parseJsonOrText,
  readJsonBody,
  streamResponse,
  withoutTrailingSlash,
  type UpstreamResponse,
} from './http.js';
import { MalformedEvent, malformedEventHandler, parseEventData, readSse } from './sse.js';
import { parseToolArguments } from './tool-arguments.js';
import { upstreamModel } from './model.js';
import type { Deployment, ProviderAdapter, UpstreamRequest } from './types.js';

const DEFAULT_BASE_URL = 'https://api.anthropic.com';
const ANTHROPIC_VERSION = '2023-06-01';
const DEFAULT_MAX_TOKENS = 4096;

/**
 * Creates the adapter for a `provider: 'anthropic'` deployment: POST `${baseUrl}/v1/messages` with
 * `x-api-key` and `anthropic-version: 2023-06-01`, plus `deployment.headers` (e.g. `anthropic-beta`).
 *
 * Request: system/developer messages become `system`; consecutive turns of one role merge (tool results
 * become one user turn); images become `image` blocks; tool calls and results, tools, `tool_choice`,
 * `stop`, the token limit (default `deployment.defaultMaxTokens ?? 4096`), `temperature`, `top_p` and
 * `user` are mapped. What cannot be expressed (`n > 1`, audio/file parts, tool arguments that are not
 * JSON) is a `BadRequestError` naming the field, thrown before any upstream call.
 *
 * Anthropic extras (`ANTHROPIC_EXTRAS`, set by the Messages protocol) go back as the client wrote them:
 * the request's `thinking`; an assistant message's thinking blocks, before its text and `tool_use` blocks;
 * `cache_control` of parts, tool calls, tools, tool messages (with `is_error`) and system messages (a chat
 * part's own `cache_control` field is kept too). `thinking` is sent as is: what Anthropic requires with it
 * (`budget_tokens` below `max_tokens`, no `temperature` other than 1, no `top_k`, `top_p` of at least 0.95,
 * no forced tool choice) is the client's to respect, and Anthropic's 400 tells it, as it would directly.
 * The answer's thinking comes back the same way: a whole answer's thinking and redacted thinking blocks in
 * the message's extras (`AnthropicMessageExtras`), a stream's as chunks whose delta has only extras
 * (`AnthropicDeltaExtras`: `thinking_delta` → `thinking`, `signature_delta` → `signature`, a
 * `redacted_thinking` block → `redacted`). `JSON.stringify` drops them: a chat client sees an empty delta.
 *
 * What `stream()` yields, exactly:
 * - `message_start` → a role chunk (`delta: { role: "assistant", content: "" }`).
 * - text deltas → content chunks; a `tool_use` block → a tool-call chunk with id and name (one `index`
 *   per tool, in order), its `input_json_delta`s → argument chunks.
 * - `message_delta` → the finish chunk (`end_turn`/`stop_sequence` → `stop`, `max_tokens` → `length`,
 *   `tool_use` → `tool_calls`, `refusal` → `content_filter`).
 * - `message_stop` → a final usage-only chunk (`choices: []`, `usage`), like OpenAI's with
 *   `include_usage`, then the end. The router strips it when the client did not ask for usage.
 * - `ping`, SSE comments, blank data and unknown events (an event name or `type` the adapter does not
 *   know, whatever its data) are skipped. `event: error`, first or later, throws the classified error
 *   (the same class as the HTTP form). A stream that ends without `message_stop` throws `UpstreamError`;
 *   a body with no event at all ends quietly (an empty answer, for the router to judge).
 * - A known event whose data is not a JSON object is malformed: under `deployment.malformedChunks:
 *   'error'` (the default) it throws `UpstreamError` (502, "malformed chunk"); under `'skip'` it is dropped.
 * Chunks carry the message id and the upstream model name; `created` is when `message_start` arrived.
 */
export function createAnthropicAdapter(deployment: Deployment): ProviderAdapter {
  const url = `${withoutTrailingSlash(deployment.baseUrl ?? DEFAULT_BASE_URL)}/v1/messages`;
  const baseHeaders = {
    'content-type': 'application/json',
    'anthropic-version': ANTHROPIC_VERSION,
    ...lowerCaseHeaders(deployment.headers),
  };
  const defaultMaxTokens = deployment.defaultMaxTokens ?? DEFAULT_MAX_TOKENS;
  const client = createUpstreamClient({ connectMs: deployment.timeouts.connectMs, backstopMs: deployment.timeouts.totalMs, connections: deployment.maxConnections });

  async function send(request: UpstreamRequest, streaming: boolean): Promise<UpstreamResponse> {
    const model = upstreamModel(deployment, request.body);
    const body = JSON.stringify(toAnthropicRequest(request.body, model, defaultMaxTokens, streaming));
    const key = await credentialOf(deployment);
    const base = request.headers ? { ...baseHeaders, ...request.headers } : baseHeaders;
    const headers = key === undefined ? base : { ...base, 'x-api-key': key };
    return client.post({ url, headers, body, signal: request.signal });
  }

  return {
    provider: 'anthropic',
    async complete(request) {
      try {
        const response = await send(request, false);
        return toChatCompletion(await readJsonBody(response));
      } catch (error) {
        throw adapterFailure(error, request.signal, deployment);
      }
    },
    stream: (request) => {
      const malformed = malformedEventHandler(deployment, request);
      return streamResponse(() => send(request, true), (chunks, signal) => anthropicChunks(chunks, signal, malformed), request.signal, deployment);
    },
    close: () => client.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Request translation

type Block = Record<string, unknown>;

interface Turn {
  role: 'user' | 'assistant';
  content: Block[];
}

function toAnthropicRequest(
  body: ChatCompletionRequest,
  model: string,
  defaultMaxTokens: number,
  streaming: boolean,
): Record<string, unknown> {
  if (body.n != null && body.n !== 1) {
    throw new BadRequestError('n: Anthropic models answer with one choice; n must be 1.', { param: 'n' });
  }
  const system: Block[] = [];
  const turns: Turn[] = [];
  body.messages.forEach((message, index) => addMessage(message, `messages[${index}]`, system, turns));
  const out: Record<string, unknown> = {
    model,
    max_tokens: body.max_completion_tokens ?? body.max_tokens ?? defaultMaxTokens,
    messages: turns,
  };
  if (system.length > 0) out.system = systemField(system);
  if (streaming) out.stream = true;
  if (body.temperature != null) out.temperature = body.temperature;
  if (body.top_p != null) out.top_p = body.top_p;
  if (body.stop != null) out.stop_sequences = typeof body.stop === 'string' ? [body.stop] : body.stop;
  if (body.user !== undefined) out.metadata = { user_id: body.user };
  if (body.tools !== undefined && body.tools.length > 0) out.tools = body.tools.map(toAnthropicTool);
  const toolChoice = toAnthropicToolChoice(body.tool_choice, body.parallel_tool_calls === false);
  if (toolChoice !== undefined) out.tool_choice = toolChoice;
  const thinking = anthropicExtras<AnthropicRequestExtras>(body)?.thinking;
  if (thinking !== undefined) out.thinking = thinking;
  return out;
}

/**
 * `block` with the cache breakpoint of `value` (a part, tool call, tool or message) when it has one: its
 * Anthropic extras, or for a text part (`ownField`) its own `cache_control` field, as chat clients write it.
 */
function withCacheControl(block: Block, value: object, ownField = false): Block {
  const own = ownField ? (value as { cache_control?: unknown }).cache_control : undefined;
  const cacheControl = own !== undefined ? own : anthropicExtras<AnthropicPartExtras>(value)?.cache_control;
  if (cacheControl !== undefined) block.cache_control = cacheControl;
  return block;
}

function addMessage(message: ChatMessage, path: string, system: Block[], turns: Turn[]): void {
  switch (message.role) {
    case 'system':
    case 'developer': {
      const blocks = contentBlocks(message.content, `${path}.content`, false);
      // A breakpoint on the message itself marks its end: its last block.
      const last = blocks.at(-1);
      if (last !== undefined && last.cache_control === undefined) withCacheControl(last, message);
      system.push(...blocks);
      return;
    }
    case 'user':
      pushTurn(turns, 'user', contentBlocks(message.content, `${path}.content`, true));
      return;
    case 'assistant':
      pushTurn(turns, 'assistant', [...thinkingBlocks(message), ...contentBlocks(message.content, `${path}.content`, false), ...toolUseBlocks(message, path)]);
      return;
    case 'tool':
      pushTurn(turns, 'user', [toolResultBlock(message, path)]);
      return;
    case 'function':
      throw new BadRequestError(`${path}.role: 'function' messages are not supported for Anthropic models; use tools.`, {
        param: `${path}.role`,
      });
  }
}

/** Anthropic wants user and assistant turns to alternate: consecutive messages of one role become one turn. */
function pushTurn(turns: Turn[], role: Turn['role'], blocks: Block[]): void {
  const last = turns.at(-1);
  if (last?.role === role) last.content.push(...blocks);
  else turns.push({ role, content: blocks });
}

/** One plain text block travels as a string; anything more (several, `cache_control`) as blocks. */
function systemField(blocks: Block[]): string | Block[] {
  const [only] = blocks;
  return blocks.length === 1 && only !== undefined && only.cache_control === undefined ? (only.text as string) : blocks;
}

/** Text (and, where Anthropic allows them, image) blocks of a message's content. Empty texts carry nothing and are dropped. */
function contentBlocks(content: ChatMessage['content'], path: string, imagesAllowed: boolean): Block[] {
  if (content == null || content === '') return [];
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  const blocks: Block[] = [];
  content.forEach((part, index) => {
    const block = partBlock(part, `${path}[${index}]`, imagesAllowed);
    if (block !== undefined) blocks.push(block);
  });
  return blocks;
}

function partBlock(part: ContentPart, path: string, imagesAllowed: boolean): Block | undefined {
  switch (part.type) {
    case 'text':
      if (part.text === '') return undefined;
      return withCacheControl({ type: 'text', text: part.text }, part, true);
    case 'refusal':
      return part.refusal === '' ? undefined : { type: 'text', text: part.refusal };
    case 'image_url':
      if (imagesAllowed) return withCacheControl(imageBlock(part.image_url.url, `${path}.image_url.url`), part);
  }
  throw new BadRequestError(`${path}.type: '${part.type}' content is not supported here for Anthropic models.`, { param: `${path}.type` });
}

const DATA_URL = /^data:([^;,]+);base64,(.+)$/s;

function imageBlock(url: string, path: string): Block {
  const data = DATA_URL.exec(url);
  if (data !== null) return { type: 'image', source: { type: 'base64', media_type: data[1], data: data[2] } };
  if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
  throw new BadRequestError(`${path}: expected an http(s) URL or a base64 data: URL.`, { param: path });
}

/** An assistant message's thinking blocks (Anthropic extras), as Anthropic answered them: they go first in its turn. */
function thinkingBlocks(message: ChatMessage): Block[] {
  const thinking = anthropicExtras<AnthropicMessageExtras>(message)?.thinking;
  if (thinking === undefined) return [];
  return thinking.map((block) =>
    block.type === 'thinking' ? { type: 'thinking', thinking: block.thinking, signature: block.signature } : { type: 'redacted_thinking', data: block.data },
  );
}

function toolUseBlocks(message: ChatMessage, path: string): Block[] {
  return (message.tool_calls ?? []).map((call, index) =>
    withCacheControl(
      {
        type: 'tool_use',
        id: call.id,
        name: call.function.name,
        input: parseToolArguments(call.function.arguments, `${path}.tool_calls[${index}].function.arguments`),
      },
      call,
    ),
  );
}

function toolResultBlock(message: ChatMessage, path: string): Block {
  if (typeof message.tool_call_id !== 'string' || message.tool_call_id === '') {
    throw new BadRequestError(`${path}.tool_call_id: required for a tool message.`, { param: `${path}.tool_call_id` });
  }
  const content = typeof message.content === 'string' ? message.content : contentBlocks(message.content, `${path}.content`, true);
  const block: Block = { type: 'tool_result', tool_use_id: message.tool_call_id, content };
  const isError = anthropicExtras<AnthropicPartExtras>(message)?.is_error;
  if (isError !== undefined) block.is_error = isError;
  return withCacheControl(block, message);
}

function toAnthropicTool(tool: NonNullable<ChatCompletionRequest['tools']>[number]): Block {
  const { name, description, parameters } = tool.function;
  const block: Block = { name, input_schema: parameters ?? { type: 'object', properties: {} } };
  if (description !== undefined) block.description = description;
  return withCacheControl(block, tool);
}

function toAnthropicToolChoice(choice: ChatCompletionRequest['tool_choice'], oneToolAtATime: boolean): Block | undefined {
  const mapped = toolChoiceOf(choice) ?? (oneToolAtATime ? { type: 'auto' } : undefined);
  if (mapped === undefined || !oneToolAtATime || mapped.type === 'none') return mapped;
  return { ...mapped, disable_parallel_tool_use: true };
}

function toolChoiceOf(choice: ChatCompletionRequest['tool_choice']): Block | undefined {
  switch (choice) {
    case undefined:
      return undefined;
    case 'auto':
      return { type: 'auto' };
    case 'required':
      return { type: 'any' };
    case 'none':
      return { type: 'none' };
    default:
      return { type: 'tool', name: choice.function.name };
  }
}

// ---------------------------------------------------------------------------------------------
// Answer translation

const FINISH_REASONS: ReadonlyMap<string, FinishReason> = new Map([
  ['end_turn', 'stop'],
  ['stop_sequence', 'stop'],
  ['pause_turn', 'stop'],
  ['max_tokens', 'length'],
  ['model_context_window_exceeded', 'length'],
  ['tool_use', 'tool_calls'],
  ['refusal', 'content_filter'],
]);

function finishReasonOf(stopReason: unknown): FinishReason | null {
  if (typeof stopReason !== 'string') return null;
  return FINISH_REASONS.get(stopReason) ?? 'stop';
}

/** Anthropic counts cached prompt tokens apart from `input_tokens`; OpenAI's `prompt_tokens` includes them. */
function usageOf(usage: unknown): Usage {
  const u = isRecord(usage) ? usage : {};
  const cacheRead = count(u.cache_read_input_tokens);
  const prompt = count(u.input_tokens) + count(u.cache_creation_input_tokens) + cacheRead;
  const completion = count(u.output_tokens);
  const result: Usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (cacheRead > 0) result.prompt_tokens_details = { cached_tokens: cacheRead };
  return result;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function toChatCompletion(value: unknown): ChatCompletion {
  if (!isRecord(value)) throw new UpstreamError('The upstream answered with JSON that is not a message.');
  if (value.type === 'error' || value.error != null) throw classifyUpstreamError({ body: value });
  if (!Array.isArray(value.content)) throw new UpstreamError('The upstream answered with JSON that is not a message.');
  let text = '';
  const toolCalls: ToolCall[] = [];
  const thinking: AnthropicThinkingBlock[] = [];
  for (const block of value.content as unknown[]) {
    if (!isRecord(block)) continue;
    if (block.type === 'text' && typeof block.text === 'string') text += block.text;
    else if (block.type === 'tool_use') toolCalls.push(toolCallOf(block));
    else if (block.type === 'thinking') thinking.push({ type: 'thinking', thinking: stringOf(block.thinking), signature: stringOf(block.signature) });
    else if (block.type === 'redacted_thinking') thinking.push({ type: 'redacted_thinking', data: stringOf(block.data) });
  }
  // OpenAI's convention: `content` is null for a pure tool call, a string (maybe empty) otherwise.
  const message: ChatMessage = { role: 'assistant', content: text === '' && toolCalls.length > 0 ? null : text };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
  if (thinking.length > 0) (message as { [ANTHROPIC_EXTRAS]?: AnthropicMessageExtras })[ANTHROPIC_EXTRAS] = { thinking };
  return {
    id: String(value.id ?? ''),
    object: 'chat.completion',
    created: nowSeconds(),
    model: String(value.model ?? ''),
    choices: [{ index: 0, message, finish_reason: finishReasonOf(value.stop_reason), logprobs: null }],
    usage: usageOf(value.usage),
  };
}

function toolCallOf(block: Record<string, unknown>): ToolCall {
  return { id: String(block.id), type: 'function', function: { name: String(block.name), arguments: JSON.stringify(block.input ?? {}) } };
}

/** The events `anthropicChunks` translates (or that end the stream); every other name is skipped unread. */
const TRANSLATED_EVENTS: ReadonlySet<string> = new Set(['message_start', 'content_block_start', 'content_block_delta', 'message_delta', 'message_stop']);

/** What a stream's chunks share, and what it has learnt so far. */
interface StreamState {
  id: string;
  model: string;
  created: number;
  /** Anthropic's usage, merged from `message_start` and `message_delta`. */
  usage: Record<string, unknown>;
  /** Content block index → OpenAI tool-call index. */
  toolIndexes: Map<number, number>;
}

/** Yields the translated chunks (see the adapter's JSDoc); returns whether the stream completed. */
async function* anthropicChunks(
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
  malformed: (event: MalformedEvent) => void,
): AsyncGenerator<ChatCompletionChunk, boolean, undefined> {
  const state: StreamState = { id: '', model: '', created: 0, usage: {}, toolIndexes: new Map() };
  let sawEvent = false;
  for await (const event of readSse(chunks, signal)) {
    sawEvent = true;
    if (event.event === 'ping') continue;
    if (event.event === 'error') throw classifyUpstreamError({ body: parseJsonOrText(event.data) });
    const data = parseEventData(event.data);
    if (data === undefined) continue;
    if (data instanceof MalformedEvent) {
      // Only an event we would have translated is broken; an unknown one carried nothing for us anyway.
      if (event.event === undefined || TRANSLATED_EVENTS.has(event.event)) malformed(data);
      continue;
    }
    let chunk: ChatCompletionChunk | undefined;
    switch (data.type) {
      case 'message_start':
        chunk = startMessage(state, data);
        break;
      case 'content_block_start':
        chunk = startBlock(state, data);
        break;
      case 'content_block_delta':
        chunk = blockDelta(state, data);
        break;
      case 'message_delta':
        chunk = messageDelta(state, data);
        break;
      case 'message_stop':
        yield usageChunk(state);
        return true;
      case 'error':
        throw classifyUpstreamError({ body: data });
      // `content_block_stop`, and events Anthropic may add later, carry nothing to translate.
    }
    if (chunk !== undefined) yield chunk;
  }
  if (sawEvent) throw new UpstreamError('The upstream stream ended before it finished.');
  return true;
}

function startMessage(state: StreamState, data: Record<string, unknown>): ChatCompletionChunk {
  const message = isRecord(data.message) ? data.message : {};
  state.id = String(message.id ?? '');
  state.model = String(message.model ?? '');
  state.created = nowSeconds();
  if (isRecord(message.usage)) state.usage = message.usage;
  return chunkOf(state, { role: 'assistant', content: '' }, null);
}

function startBlock(state: StreamState, data: Record<string, unknown>): ChatCompletionChunk | undefined {
  const block = data.content_block;
  if (!isRecord(block)) return undefined;
  if (block.type === 'text') return typeof block.text === 'string' && block.text !== '' ? chunkOf(state, { content: block.text }, null) : undefined;
  // A thinking block opens empty (its text and signature come as deltas); redacted thinking comes whole.
  if (block.type === 'thinking') return typeof block.thinking === 'string' && block.thinking !== '' ? thinkingChunk(state, { thinking: block.thinking }) : undefined;
  if (block.type === 'redacted_thinking') return thinkingChunk(state, { redacted: stringOf(block.data) });
  if (block.type !== 'tool_use') return undefined;
  const index = state.toolIndexes.size;
  state.toolIndexes.set(Number(data.index), index);
  const call = { index, id: String(block.id), type: 'function' as const, function: { name: String(block.name), arguments: '' } };
  return chunkOf(state, { tool_calls: [call] }, null);
}

function blockDelta(state: StreamState, data: Record<string, unknown>): ChatCompletionChunk | undefined {
  const delta = data.delta;
  if (!isRecord(delta)) return undefined;
  if (delta.type === 'text_delta' && typeof delta.text === 'string') return chunkOf(state, { content: delta.text }, null);
  if (delta.type === 'thinking_delta' && typeof delta.thinking === 'string') return delta.thinking === '' ? undefined : thinkingChunk(state, { thinking: delta.thinking });
  if (delta.type === 'signature_delta' && typeof delta.signature === 'string') return thinkingChunk(state, { signature: delta.signature });
  if (delta.type !== 'input_json_delta' || typeof delta.partial_json !== 'string' || delta.partial_json === '') return undefined;
  const index = state.toolIndexes.get(Number(data.index));
  if (index === undefined) return undefined;
  return chunkOf(state, { tool_calls: [{ index, function: { arguments: delta.partial_json } }] }, null);
}

function messageDelta(state: StreamState, data: Record<string, unknown>): ChatCompletionChunk | undefined {
  if (isRecord(data.usage)) state.usage = { ...state.usage, ...data.usage };
  const finishReason = isRecord(data.delta) ? finishReasonOf(data.delta.stop_reason) : null;
  return finishReason === null ? undefined : chunkOf(state, {}, finishReason);
}

/** A chunk of thinking: its delta carries nothing but the Anthropic extras (an empty delta on the chat wire). */
function thinkingChunk(state: StreamState, extras: AnthropicDeltaExtras): ChatCompletionChunk {
  const delta: ChatCompletionChunkDelta & { [ANTHROPIC_EXTRAS]?: AnthropicDeltaExtras } = {};
  delta[ANTHROPIC_EXTRAS] = extras;
  return chunkOf(state, delta, null);
}

function usageChunk(state: StreamState): ChatCompletionChunk {
  return { id: state.id, object: 'chat.completion.chunk', created: state.created, model: state.model, choices: [], usage: usageOf(state.usage) };
}

function chunkOf(state: StreamState, delta: ChatCompletionChunkDelta, finishReason: FinishReason | null): ChatCompletionChunk {
  return {
    id: state.id,
    object: 'chat.completion.chunk',
    created: state.created,
    model: state.model,
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  };
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function stringOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
