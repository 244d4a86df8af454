/**
 * The OpenAI chat-completions shapes the gateway speaks on both sides. Every provider adapter converts to
 * these, and everything downstream of an adapter (guardrails, accounting, the writer) sees only them.
 * Fields the gateway does not interpret stay open (`[key: string]: unknown`) and pass through.
 */

export type ChatRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool' | 'function';

export interface TextContentPart {
  type: 'text';
  text: string;
  [key: string]: unknown;
}

export interface ImageContentPart {
  type: 'image_url';
  image_url: { url: string; detail?: 'auto' | 'low' | 'high' };
  [key: string]: unknown;
}

export interface AudioContentPart {
  type: 'input_audio';
  input_audio: { data: string; format: string };
  [key: string]: unknown;
}

export interface FileContentPart {
  type: 'file';
  file: { file_data?: string; file_id?: string; filename?: string };
  [key: string]: unknown;
}

export interface RefusalContentPart {
  type: 'refusal';
  refusal: string;
  [key: string]: unknown;
}

export type ContentPart = TextContentPart | ImageContentPart | AudioContentPart | FileContentPart | RefusalContentPart;

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
  [key: string]: unknown;
}

export interface ChatMessage {
  role: ChatRole;
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  refusal?: string | null;
  function_call?: { name: string; arguments: string } | null;
  [key: string]: unknown;
}

export interface ChatCompletionRequest {
  model: string;
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean; [key: string]: unknown } | null;
  n?: number;
  temperature?: number | null;
  top_p?: number | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  tools?: { type: 'function'; function: { name: string; description?: string; parameters?: object } }[];
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };
  response_format?: { type: 'text' | 'json_object' | 'json_schema'; [key: string]: unknown };
  stop?: string | string[] | null;
  user?: string;
  metadata?: Record<string, string> | null;
  [key: string]: unknown;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [key: string]: unknown;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

export interface ChatCompletionChoice {
  index: number;
  message: ChatMessage;
  finish_reason: FinishReason | null;
  logprobs?: unknown;
  [key: string]: unknown;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: ChatCompletionChoice[];
  usage?: Usage;
  [key: string]: unknown;
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
  [key: string]: unknown;
}

export interface ChatCompletionChunkDelta {
  role?: ChatRole;
  content?: string | null;
  refusal?: string | null;
  tool_calls?: ToolCallDelta[];
  [key: string]: unknown;
}

export interface ChatCompletionChunkChoice {
  index: number;
  delta: ChatCompletionChunkDelta;
  finish_reason: FinishReason | null;
  logprobs?: unknown;
  [key: string]: unknown;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChatCompletionChunkChoice[];
  usage?: Usage | null;
  [key: string]: unknown;
}

/**
 * Anthropic-native extras (issue 16): what a Messages client sent, or an Anthropic model answered, that only
 * the Anthropic family (Anthropic, Bedrock Claude) understands, carried beside the chat shape under a symbol
 * key. `JSON.stringify` drops symbol keys, so they never reach an OpenAI-compatible upstream or a chat client;
 * adapters of the Anthropic family read them when they build their request, and the Messages protocol when
 * it writes the answer. A piece that rebuilds an object (masking a part, an output filter rewriting a chunk)
 * may drop them: the answer then loses the extra (a thinking block, a cache breakpoint), never its text.
 */
export const ANTHROPIC_EXTRAS: unique symbol = Symbol('express-llm-gateway.anthropic');

export type AnthropicThinkingBlock = { type: 'thinking'; thinking: string; signature: string } | { type: 'redacted_thinking'; data: string };

/** On a `ChatCompletionRequest`: the Messages request's `thinking` configuration, as the client wrote it. */
export interface AnthropicRequestExtras {
  thinking?: Record<string, unknown>;
}

/** On an assistant `ChatMessage` (history) or a completion's message (answer): its thinking blocks, in order, before its content. */
export interface AnthropicMessageExtras {
  thinking?: AnthropicThinkingBlock[];
}

/**
 * On a content part, a tool (`tools[i]`), a tool call (`tool_calls[i]`, a `tool_use` block's) or a system
 * message: the client's cache breakpoint. On a `tool` message (a `tool_result` block): its breakpoint and
 * its `is_error`.
 */
export interface AnthropicPartExtras {
  cache_control?: Record<string, unknown>;
  is_error?: boolean;
}

/**
 * On a streamed chunk's `delta` (choice 0): a piece of a thinking block. `thinking` text belongs to the current
 * thinking block (a new one opens when none is open); `signature` comes last and closes it (Anthropic and
 * Bedrock both send the signature at the end of the block); `redacted` is a whole redacted block.
 */
export interface AnthropicDeltaExtras {
  thinking?: string;
  signature?: string;
  redacted?: string;
}

/** Reads the Anthropic extras of an object (`undefined` when it has none). */
export function anthropicExtras<T>(value: object | null | undefined): T | undefined {
  return (value as { [ANTHROPIC_EXTRAS]?: T } | null | undefined)?.[ANTHROPIC_EXTRAS];
}
