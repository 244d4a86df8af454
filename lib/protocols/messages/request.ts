/**
 * The Messages body → the internal chat request.
 *
 * Carried: `model` (as written), `max_tokens` (→ `max_tokens`, which every OpenAI-compatible server knows),
 * `messages`, `system` (→ one leading system message), `stop_sequences` (→ `stop`), `temperature`, `top_p`,
 * custom `tools`, `tool_choice` (with `disable_parallel_tool_use` → `parallel_tool_calls: false`),
 * `metadata.user_id` (→ `user`) and `stream` (a stream always asks for the usage chunk, which the encoder
 * turns into the final `message_delta.usage`).
 *
 * Messages: text and image blocks become content parts (a base64 source becomes a `data:` URL); an assistant's
 * `tool_use` blocks become `tool_calls` (`arguments` = the JSON of `input`); a user's `tool_result` blocks become
 * `tool` messages placed before the rest of that user turn (a chat tool message answers the assistant's
 * calls directly), with their text as content and their images moved into the user message that follows
 * (chat tool messages carry text only).
 *
 * Kept for the Anthropic family only, as Anthropic extras (`ANTHROPIC_EXTRAS` in lib/types.ts, a symbol key
 * that `JSON.stringify` drops, so an OpenAI-compatible upstream gets none of it): `thinking` (on the
 * request), an assistant turn's `thinking` / `redacted_thinking` blocks (on its message, in order),
 * `cache_control` of text and image blocks (on their parts), of `tool_use` blocks (on their tool calls), of
 * `tool_result` blocks (on their tool messages, with `is_error`), of system blocks (on their parts) and of
 * tools (on `tools[i]`). An adapter of the Anthropic family sends them back as written; every other
 * upstream answers without thinking, and without prompt caching by breakpoint.
 *
 * Accepted and not carried, because the internal request has no field every provider reads: `top_k`,
 * `citations` on blocks, and any other field. Refused with a 400 naming the field,
 * because dropping them would change the answer: `document` blocks, server tools (a tool with a `type` other
 * than `custom`), `mcp_servers`, and more than 4 `stop_sequences` (Anthropic takes any number; the chat
 * `stop` holds 4). Limits the chat request sets are the body's too: tool names of at most 64 characters
 * (Anthropic's own rule), a body nested at most `MAX_BODY_NESTING - 1` levels (see `toChatRequest`), a
 * `model` other than `.` and `..`.
 */
import { BadRequestError } from '../../errors.js';
import { checkModelName, describeValidationErrors, fieldNestedTooDeeply, lazyValidator, MAX_BODY_NESTING, nestedTooDeeplyError } from '../../request-validation.js';
import {
  ANTHROPIC_EXTRAS,
  type AnthropicMessageExtras,
  type AnthropicPartExtras,
  type AnthropicRequestExtras,
  type AnthropicThinkingBlock,
  type ChatCompletionRequest,
  type ChatMessage,
  type ContentPart,
  type ToolCall,
} from '../../types.js';
import { messagesRequestSchema } from './schema.js';

/** The body as the schema guarantees it (fields the mapping does not read are left out). */
interface MessagesRequest {
  model: string;
  max_tokens: number;
  messages: MessageParam[];
  system?: string | TextBlock[];
  stop_sequences?: string[];
  temperature?: number;
  top_p?: number;
  tools?: ToolParam[];
  tool_choice?: { type: 'auto' | 'any' | 'tool' | 'none'; name?: string; disable_parallel_tool_use?: boolean };
  metadata?: { user_id?: string | null };
  stream?: boolean;
  mcp_servers?: unknown[];
  thinking?: Record<string, unknown>;
}

/** A block's cache breakpoint (`{ type: 'ephemeral', ttl? }`), kept as written. */
interface Cacheable {
  cache_control?: Record<string, unknown> | null;
}

interface TextBlock extends Cacheable {
  type: 'text';
  text: string;
}

interface ImageBlock extends Cacheable {
  type: 'image';
  source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string };
}

interface ToolResultBlock extends Cacheable {
  type: 'tool_result';
  tool_use_id: string;
  content?: string | (TextBlock | ImageBlock)[];
  is_error?: boolean;
}

interface ToolUseBlock extends Cacheable {
  type: 'tool_use';
  id: string;
  name: string;
  input: Record<string, unknown>;
}

interface ThinkingBlock {
  type: 'thinking';
  thinking: string;
  signature: string;
}

interface RedactedThinkingBlock {
  type: 'redacted_thinking';
  data: string;
}

type Block = TextBlock | ImageBlock | ToolResultBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock | { type: 'document' };

interface MessageParam {
  role: 'user' | 'assistant';
  content: string | Block[];
}

interface ToolParam extends Cacheable {
  type?: string;
  name: string;
  description?: string;
  input_schema: object;
}

/** The deepest nesting accepted in a Messages body: one level less than the chat path's (see `toChatRequest`). */
const MESSAGES_NESTING = MAX_BODY_NESTING - 1;

/** The shared validator, compiled on first use (or when the gateway factory asks). */
export const compileMessagesValidator = lazyValidator<MessagesRequest>(messagesRequestSchema);

/** Validates a parsed Messages body and maps it to the internal chat request (see the module comment). */
export function toChatRequest(body: unknown): ChatCompletionRequest {
  const validate = compileMessagesValidator();
  if (!validate(body)) throw describeValidationErrors(validate.errors ?? []);
  // Tool inputs are turned back into JSON (a few thousand levels would overflow the stack there), and the
  // mapping nests a tool's `input_schema` one level deeper (`tools[i].function.parameters`): the limit leaves
  // room for that, so the chat request is always within the chat path's own.
  const tooDeep = fieldNestedTooDeeply(body, MESSAGES_NESTING);
  if (tooDeep !== undefined) throw nestedTooDeeplyError(tooDeep, MESSAGES_NESTING);
  checkModelName(body.model);
  if (body.mcp_servers !== undefined && body.mcp_servers.length > 0) {
    throw new BadRequestError("Invalid request: 'mcp_servers' is not supported by this gateway (the model would answer without those tools).", {
      param: 'mcp_servers',
    });
  }

  const messages: ChatMessage[] = [];
  const system = systemMessage(body.system);
  if (system !== undefined) messages.push(system);
  body.messages.forEach((message, i) => {
    if (message.role === 'user') addUserTurn(messages, message.content, `messages[${i}]`);
    else messages.push(assistantMessage(message.content));
  });

  const request: ChatCompletionRequest = { model: body.model, messages, max_tokens: body.max_tokens };
  if (body.stream === true) {
    request.stream = true;
    request.stream_options = { include_usage: true };
  }
  if (body.temperature !== undefined) request.temperature = body.temperature;
  if (body.top_p !== undefined) request.top_p = body.top_p;
  if (body.stop_sequences !== undefined && body.stop_sequences.length > 0) request.stop = body.stop_sequences;
  const userId = body.metadata?.user_id;
  if (typeof userId === 'string') request.user = userId;
  if (body.tools !== undefined && body.tools.length > 0) {
    request.tools = body.tools.map(chatTool);
    addToolChoice(request, body.tool_choice);
  }
  if (body.thinking !== undefined) withExtras<AnthropicRequestExtras>(request, { thinking: body.thinking });
  return request;
}

/** Puts Anthropic extras on `target` (see `ANTHROPIC_EXTRAS`): a symbol key, so no JSON ever carries them. */
function withExtras<E extends object>(target: object, extras: E): void {
  (target as { [ANTHROPIC_EXTRAS]?: E })[ANTHROPIC_EXTRAS] = extras;
}

/** A block's `cache_control` onto the part (tool call, tool, tool message) made of it. `null` is no breakpoint. */
function keepCacheControl<T extends object>(target: T, block: Cacheable): T {
  if (block.cache_control != null) withExtras<AnthropicPartExtras>(target, { cache_control: block.cache_control });
  return target;
}

function systemMessage(system: MessagesRequest['system']): ChatMessage | undefined {
  if (system === undefined || system === '' || system.length === 0) return undefined;
  if (typeof system === 'string') return { role: 'system', content: system };
  return { role: 'system', content: system.map((block) => keepCacheControl(textPart(block.text), block)) };
}

/**
 * A user turn: its tool results first, as `tool` messages (they answer the previous assistant turn's calls),
 * then one user message with the rest (text and images, plus the tool results' images), if there is any.
 */
function addUserTurn(messages: ChatMessage[], content: MessageParam['content'], path: string): void {
  if (typeof content === 'string') {
    messages.push({ role: 'user', content });
    return;
  }
  const parts: ContentPart[] = [];
  const resultImages: ContentPart[] = [];
  content.forEach((block, j) => {
    switch (block.type) {
      case 'text':
        parts.push(keepCacheControl(textPart(block.text), block));
        break;
      case 'image':
        parts.push(keepCacheControl(imagePart(block), block));
        break;
      case 'tool_result':
        messages.push(toolMessage(block, resultImages));
        break;
      case 'document':
        throw new BadRequestError(
          `Invalid request: '${path}.content[${j}].type' is 'document', a block this gateway does not carry; send its text as a text block.`,
          { param: `${path}.content[${j}].type` },
        );
    }
  });
  // Only tool results: the turn is complete without a user message (an empty turn stays one, as sent).
  if (parts.length === 0 && resultImages.length === 0 && content.length > 0) return;
  messages.push({ role: 'user', content: [...resultImages, ...parts] });
}

/** A tool result as a `tool` message; its own `cache_control` and `is_error` go in the message's extras. */
function toolMessage(block: ToolResultBlock, images: ContentPart[]): ChatMessage {
  const message = toolMessageOf(block, images);
  const extras: AnthropicPartExtras = {};
  if (block.cache_control != null) extras.cache_control = block.cache_control;
  if (block.is_error !== undefined) extras.is_error = block.is_error;
  if (extras.cache_control !== undefined || extras.is_error !== undefined) withExtras(message, extras);
  return message;
}

function toolMessageOf(block: ToolResultBlock, images: ContentPart[]): ChatMessage {
  const { content } = block;
  if (content === undefined || typeof content === 'string') return { role: 'tool', tool_call_id: block.tool_use_id, content: content ?? '' };
  const texts: ContentPart[] = [];
  for (const part of content) {
    if (part.type === 'text') texts.push(keepCacheControl(textPart(part.text), part));
    else images.push(keepCacheControl(imagePart(part), part));
  }
  return { role: 'tool', tool_call_id: block.tool_use_id, content: texts.length === 0 ? '' : texts };
}

function assistantMessage(content: MessageParam['content']): ChatMessage {
  if (typeof content === 'string') return { role: 'assistant', content };
  const parts: ContentPart[] = [];
  const toolCalls: ToolCall[] = [];
  const thinking: AnthropicThinkingBlock[] = [];
  for (const block of content) {
    if (block.type === 'text') parts.push(keepCacheControl(textPart(block.text), block));
    else if (block.type === 'tool_use') {
      toolCalls.push(keepCacheControl({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input) } }, block));
    } else if (block.type === 'thinking') thinking.push({ type: 'thinking', thinking: block.thinking, signature: block.signature });
    else if (block.type === 'redacted_thinking') thinking.push({ type: 'redacted_thinking', data: block.data });
  }
  // OpenAI's convention: `content` is null for a pure tool call; an assistant turn that said nothing else is ''.
  const message: ChatMessage = { role: 'assistant', content: parts.length > 0 ? parts : toolCalls.length > 0 ? null : '' };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
  if (thinking.length > 0) withExtras<AnthropicMessageExtras>(message, { thinking });
  return message;
}

function textPart(text: string): ContentPart {
  return { type: 'text', text };
}

function imagePart(block: ImageBlock): ContentPart {
  const { source } = block;
  const url = source.type === 'base64' ? `data:${source.media_type};base64,${source.data}` : source.url;
  return { type: 'image_url', image_url: { url } };
}

function chatTool(tool: ToolParam, i: number): NonNullable<ChatCompletionRequest['tools']>[number] {
  if (tool.type !== undefined && tool.type !== 'custom') {
    throw new BadRequestError(
      `Invalid request: 'tools[${i}].type' is '${tool.type}', a server tool, which this gateway does not run; only custom tools (name, input_schema) are supported.`,
      { param: `tools[${i}].type` },
    );
  }
  const fn: { name: string; description?: string; parameters: object } = { name: tool.name, parameters: tool.input_schema };
  if (tool.description !== undefined) fn.description = tool.description;
  return keepCacheControl({ type: 'function' as const, function: fn }, tool);
}

/** `tool_choice` (only with tools: chat servers refuse it without them) and `disable_parallel_tool_use`. */
function addToolChoice(request: ChatCompletionRequest, choice: MessagesRequest['tool_choice']): void {
  if (choice === undefined) return;
  switch (choice.type) {
    case 'auto':
      request.tool_choice = 'auto';
      break;
    case 'any':
      request.tool_choice = 'required';
      break;
    case 'tool':
      request.tool_choice = { type: 'function', function: { name: choice.name ?? '' } };
      break;
    case 'none':
      request.tool_choice = 'none';
      return;
  }
  if (choice.disable_parallel_tool_use === true) request.parallel_tool_calls = false;
}
