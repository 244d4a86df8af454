/**
 * What the streamed and the whole answer share: the stop reason, the usage and the error object in
 * Anthropic's terms, and the whole answer (a `Message`) itself.
 */
import type { GatewayError } from '../../errors.js';
import { anthropicExtras, type AnthropicMessageExtras, type AnthropicThinkingBlock, type ChatCompletion, type ChatMessage, type FinishReason, type Usage } from '../../types.js';
import type { AnswerInfo } from '../types.js';

export type StopReason = 'end_turn' | 'max_tokens' | 'tool_use' | 'refusal';

/**
 * The chat finish reason in Anthropic's terms. A chat `stop` does not say whether a stop sequence matched,
 * so it is always `end_turn` (and `stop_sequence` is always null).
 */
export function stopReasonOf(finish: FinishReason | null | undefined): StopReason {
  switch (finish) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
    case 'function_call':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    default:
      return 'end_turn';
  }
}

export interface MessagesUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens?: number;
}

/**
 * Chat usage in Anthropic's terms: OpenAI's `prompt_tokens` includes the cached prompt tokens, Anthropic's
 * `input_tokens` does not (they are `cache_read_input_tokens`, given when the upstream reported them).
 */
export function messagesUsageOf(usage: Usage): MessagesUsage {
  const details = usage['prompt_tokens_details'] as { cached_tokens?: unknown } | null | undefined;
  const cached = typeof details?.cached_tokens === 'number' ? details.cached_tokens : undefined;
  const prompt = count(usage.prompt_tokens);
  const out: MessagesUsage = { input_tokens: cached === undefined ? prompt : Math.max(0, prompt - cached), output_tokens: count(usage.completion_tokens) };
  if (cached !== undefined) out.cache_read_input_tokens = cached;
  return out;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
}

/** The id of the answer: `msg_` and the gateway's request id. */
export function messageId(answer: AnswerInfo): string {
  return `msg_${answer.id}`;
}

/**
 * The error type clients see, by Anthropic's taxonomy (`ErrorType` in @anthropic-ai/sdk), so the AI SDK infers
 * the right status and retryability from it mid-stream: the 400 family → `invalid_request_error`, 413 →
 * `request_too_large`, 401/403/404/429 → their types, 503 (an upstream or the gateway itself shedding load)
 * → `overloaded_error`, 504 → `timeout_error`, any other 5xx (a failed or unreachable upstream, a gateway
 * bug) → `api_error`. A guardrail block keeps `guardrail_violation`, which every client passes through.
 * The HTTP status of a pre-commit answer stays `error.status`.
 */
export function anthropicErrorType(error: GatewayError): string {
  if (error.type === 'guardrail_violation') return 'guardrail_violation';
  switch (error.status) {
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
      return 'overloaded_error';
    case 504:
      return 'timeout_error';
  }
  return error.status >= 500 ? 'api_error' : 'invalid_request_error';
}

export interface MessagesErrorBody {
  type: 'error';
  error: { type: string; message: string; [extra: string]: unknown };
}

/** The one error object of both forms (the JSON body before commit, the `error` event after). `extra` goes inside `error`. */
export function messagesErrorBody(error: GatewayError, extra?: Record<string, unknown>): MessagesErrorBody {
  const inner = { type: anthropicErrorType(error), message: error.message };
  return { type: 'error', error: extra === undefined ? inner : { ...inner, ...extra } };
}

type ContentBlock = AnthropicThinkingBlock | { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: unknown };

/** The `Message` of a whole chat completion (choice 0): its thinking blocks (Anthropic extras) first, then text and tool uses. */
export function messageJson(completion: ChatCompletion, answer: AnswerInfo): string {
  const choice = completion.choices[0];
  const content: ContentBlock[] = [];
  if (choice !== undefined) {
    for (const block of anthropicExtras<AnthropicMessageExtras>(choice.message)?.thinking ?? []) {
      content.push(block.type === 'thinking' ? { type: 'thinking', thinking: block.thinking, signature: block.signature } : { type: 'redacted_thinking', data: block.data });
    }
    const text = textOf(choice.message);
    if (text !== '') content.push({ type: 'text', text });
    for (const call of choice.message.tool_calls ?? []) {
      content.push({ type: 'tool_use', id: call.id, name: call.function.name, input: toolInputOf(call.function.arguments) });
    }
  }
  const usage = completion.usage === undefined ? { input_tokens: 0, output_tokens: 0 } : messagesUsageOf(completion.usage);
  return messageText(answer, content, stopReasonOf(choice?.finish_reason), usage);
}

/** The `Message` of a soft block: `text` as its content, stopped as a refusal. */
export function softMessageJson(text: string, answer: AnswerInfo): string {
  return messageText(answer, text === '' ? [] : [{ type: 'text', text }], 'refusal', { input_tokens: 0, output_tokens: 0 });
}

function messageText(answer: AnswerInfo, content: ContentBlock[], stopReason: StopReason, usage: MessagesUsage): string {
  const message = { id: messageId(answer), type: 'message', role: 'assistant', model: answer.model, content, stop_reason: stopReason, stop_sequence: null, usage };
  return JSON.stringify(message);
}

/** The assistant's text: `content` (a string, or its text parts) and a `refusal`, which Anthropic has no block for. */
function textOf(message: ChatMessage): string {
  let text = '';
  const { content, refusal } = message;
  if (typeof content === 'string') text = content;
  else if (Array.isArray(content)) for (const part of content) if (part.type === 'text') text += part.text;
  if (typeof refusal === 'string') text += refusal;
  return text;
}

/**
 * A tool call's `arguments` as the `input` object Anthropic's clients expect. Arguments that are not a JSON
 * object (a call cut short by the token limit, or a model's malformed output) give `{}`: `input` is always
 * an object on Anthropic's wire, and a whole answer has no place for the raw text. (A stream carries the
 * raw text in its `input_json_delta`s; the client's own partial-JSON parser decides there.)
 */
function toolInputOf(args: string): Record<string, unknown> {
  try {
    const input: unknown = JSON.parse(args);
    if (typeof input === 'object' && input !== null && !Array.isArray(input)) return input as Record<string, unknown>;
  } catch {
    // not JSON: falls through to {}
  }
  return {};
}
