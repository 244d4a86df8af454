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
 * (chat tool messages carry text only). `thinking` and `redacted_thinking` blocks of earlier turns are dropped.
 *
 * Accepted and not carried, because the internal request has no field every provider reads: `top_k`,
 * `thinking` (the answer then has no thinking blocks, which clients accept), `is_error` of a tool result,
 * `cache_control` and `citations` on blocks, and any other field. Refused with a 400 naming the field,
 * because dropping them would change the answer: `document` blocks, server tools (a tool with a `type` other
 * than `custom`), `mcp_servers`, and more than 4 `stop_sequences` (Anthropic takes any number; the chat
 * `stop` holds 4). Limits the chat request sets are the body's too: tool names of at most 64 characters
 * (Anthropic's own rule), a body nested at most `MAX_BODY_NESTING - 1` levels (see `toChatRequest`), a
 * `model` other than `.` and `..`.
 */
import { BadRequestError } from '../../errors.js';
import { checkModelName, describeValidationErrors, fieldNestedTooDeeply, lazyValidator, MAX_BODY_NESTING, nestedTooDeeplyError } from '../../request-validation.js';
import type { ChatCompletionRequest, ChatMessage, ContentPart, ToolCall } from '../../types.js';
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
}

interface TextBlock {
  type: 'text';
  text: string;
}

interface ImageBlock {
  type: 'image';
  source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string };
}

interface ToolResultBlock {
  type: 'tool_result';
  tool_use_id: string;
  content?: string | (TextBlock | ImageBlock)[];
}

interface ToolUseBlock {
  type: 'tool_use';
  id: string;
  name: string;
  input: Record<string, unknown>;
}

type Block = TextBlock | ImageBlock | ToolResultBlock | ToolUseBlock | { type: 'document' | 'thinking' | 'redacted_thinking' };

interface MessageParam {
  role: 'user' | 'assistant';
  content: string | Block[];
}

interface ToolParam {
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
  return request;
}

function systemMessage(system: MessagesRequest['system']): ChatMessage | undefined {
  if (system === undefined || system === '' || system.length === 0) return undefined;
  if (typeof system === 'string') return { role: 'system', content: system };
  return { role: 'system', content: system.map((block) => textPart(block.text)) };
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
        parts.push(textPart(block.text));
        break;
      case 'image':
        parts.push(imagePart(block));
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

function toolMessage(block: ToolResultBlock, images: ContentPart[]): ChatMessage {
  const { content } = block;
  if (content === undefined || typeof content === 'string') return { role: 'tool', tool_call_id: block.tool_use_id, content: content ?? '' };
  const texts: ContentPart[] = [];
  for (const part of content) {
    if (part.type === 'text') texts.push(textPart(part.text));
    else images.push(imagePart(part));
  }
  return { role: 'tool', tool_call_id: block.tool_use_id, content: texts.length === 0 ? '' : texts };
}

function assistantMessage(content: MessageParam['content']): ChatMessage {
  if (typeof content === 'string') return { role: 'assistant', content };
  const parts: ContentPart[] = [];
  const toolCalls: ToolCall[] = [];
  for (const block of content) {
    if (block.type === 'text') parts.push(textPart(block.text));
    else if (block.type === 'tool_use') {
      toolCalls.push({ id: block.id, type: 'function', function: { name: block.name, arguments: JSON.stringify(block.input) } });
    }
  }
  // OpenAI's convention: `content` is null for a pure tool call; an assistant turn that said nothing else is ''.
  const message: ChatMessage = { role: 'assistant', content: parts.length > 0 ? parts : toolCalls.length > 0 ? null : '' };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
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
  return { type: 'function', function: fn };
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
