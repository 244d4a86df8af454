/**
 * `POST /v1/responses` body → the internal chat request, statelessly: the whole conversation comes in
 * `input`; nothing is stored and nothing is looked up (`previous_response_id`, `conversation`, `file_id`,
 * `background: true` are refused with a 400 naming the field). `store` is accepted and ignored: a
 * response cannot be retrieved later, whatever it says.
 *
 * Field by field:
 * - `instructions` → a leading `system` message. `input` (a string: one user message) → `messages`: message
 *   items by role (`input_text`/`output_text` → text parts, `input_image` → `image_url`, `input_file` with
 *   `file_data` → `file`, `refusal` → a refusal part); `function_call` items → `tool_calls` of one assistant
 *   message (consecutive calls, and an assistant message just before them, become one message);
 *   `function_call_output` → a `tool` message; `reasoning` items are dropped.
 * - `tools` (function tools only) → chat tools, `strict` passed only when written (the chat default is not
 *   strict, the Responses default is); `tool_choice`, `parallel_tool_calls`, `temperature`, `top_p`, `user`
 *   as they are; `max_output_tokens` → `max_completion_tokens` (what OpenAI's reasoning models accept and
 *   what the Anthropic and Bedrock adapters read first); `text.format` → `response_format`
 *   (`text` → none); `text.verbosity` → `verbosity`; `reasoning.effort` → `reasoning_effort`;
 *   `prompt_cache_key`, `safety_identifier`, `service_tier` as they are (the same fields in chat).
 * - `metadata` is echoed in the answer and not sent upstream (OpenAI's chat API takes it only with `store`).
 * - `stream: true` → `stream: true` with `stream_options.include_usage`, so the usage chunk reaches the
 *   encoder (the Responses API always reports usage). The client's own `stream_options` (obfuscation) has no
 *   chat equivalent and is ignored. Other fields are not forwarded: they belong to the Responses API.
 */
import { BadRequestError } from '../../errors.js';
import { checkModelName, describeValidationErrors, fieldNestedTooDeeply, lazyValidator, MAX_BODY_NESTING, nestedTooDeeplyError } from '../../request-validation.js';
import type { ChatCompletionRequest, ChatMessage, ContentPart, ToolCall } from '../../types.js';
import { responsesRequestSchema } from './schema.js';

// ---------------------------------------------------------------------------------------------
// The client's body, as the schema lets it through

type InputTextPart = { type: 'input_text'; text: string };
type InputPart =
  | InputTextPart
  | { type: 'output_text'; text: string }
  | { type: 'refusal'; refusal: string }
  | { type: 'input_image'; image_url?: string | null; file_id?: string | null; detail?: 'auto' | 'low' | 'high' }
  | { type: 'input_file'; file_data?: string; filename?: string; file_id?: string | null; file_url?: string };

type MessageItem = { type?: 'message'; role: 'user' | 'assistant' | 'system' | 'developer'; content: string | InputPart[] };
type FunctionCallItem = { type: 'function_call'; call_id: string; name: string; arguments: string };
type FunctionCallOutputItem = { type: 'function_call_output'; call_id: string; output: string | InputTextPart[] };
type InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | { type: 'reasoning' };

export interface FunctionTool {
  type: 'function';
  name: string;
  description?: string | null;
  parameters?: Record<string, unknown> | null;
  strict?: boolean | null;
}

export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; name: string };

export type TextFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; name: string; schema: Record<string, unknown>; description?: string; strict?: boolean | null };

export interface ResponsesRequest {
  model: string;
  input: string | InputItem[];
  instructions?: string | null;
  tools?: ({ type: string } & Partial<FunctionTool>)[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean | null;
  max_output_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  text?: { format?: TextFormat; verbosity?: string | null } | null;
  reasoning?: { effort?: string | null; [key: string]: unknown } | null;
  stream?: boolean | null;
  store?: boolean | null;
  background?: boolean | null;
  user?: string;
  metadata?: Record<string, string> | null;
  prompt_cache_key?: string;
  safety_identifier?: string;
  service_tier?: string;
  previous_response_id?: unknown;
  conversation?: unknown;
  prompt?: unknown;
}

/**
 * The request settings a Response object repeats (`instructions`, `tools`, `temperature`…), as the client
 * wrote them. Kept beside the chat request it was mapped to, for the answer's writer (see `echoOf`).
 */
export interface ResponseEcho {
  instructions: string | null;
  tools: FunctionTool[];
  tool_choice: ToolChoice;
  parallel_tool_calls: boolean;
  max_output_tokens: number | null;
  temperature: number | null;
  top_p: number | null;
  text: { format: TextFormat; verbosity?: string };
  metadata: Record<string, string>;
  user?: string;
  /** These settings as Response members, once written (`settingsMembers` caches them here). */
  membersJson?: string;
}

/** What a Response says of a request it knows nothing of (OpenAI's defaults). */
export const DEFAULT_ECHO: ResponseEcho = {
  instructions: null,
  tools: [],
  tool_choice: 'auto',
  parallel_tool_calls: true,
  max_output_tokens: null,
  temperature: null,
  top_p: null,
  text: { format: { type: 'text' } },
  metadata: {},
};

const echoes = new WeakMap<ChatCompletionRequest, ResponseEcho>();

/** The settings of the Responses body `request` was mapped from, or OpenAI's defaults for any other request. */
export function echoOf(request: ChatCompletionRequest | undefined): ResponseEcho {
  return (request && echoes.get(request)) ?? DEFAULT_ECHO;
}

// ---------------------------------------------------------------------------------------------
// Validation

/** The deepest nesting accepted in a Responses body: one level less than the chat path's (see `toChatRequest`). */
const RESPONSES_NESTING = MAX_BODY_NESTING - 1;

/** The shared validator, compiled on first use (or when the gateway factory asks). */
export const compileResponsesValidator = lazyValidator<ResponsesRequest>(responsesRequestSchema);

/** Validates a parsed `/v1/responses` body and maps it to the chat request (see the module comment). */
export function toChatRequest(body: unknown): ChatCompletionRequest {
  const validate = compileResponsesValidator();
  refuseItemReferences(body);
  if (!validate(body)) throw describeValidationErrors(validate.errors ?? []);
  // Every field counts, as on the chat path: tools and `text.format` are sent upstream and echoed in the
  // Response (a few thousand levels would overflow `JSON.stringify` there), and the mapping nests a tool's
  // `parameters` one level deeper (`tools[i].function.parameters`): the limit leaves room for that, so the
  // chat request is always within the chat path's own.
  const tooDeep = fieldNestedTooDeeply(body, RESPONSES_NESTING);
  if (tooDeep !== undefined) throw nestedTooDeeplyError(tooDeep, RESPONSES_NESTING);
  refuseStatefulFields(body);
  checkModelName(body.model);
  const tools = functionTools(body.tools);
  const messages: ChatMessage[] = [];
  if (typeof body.instructions === 'string' && body.instructions !== '') messages.push({ role: 'system', content: body.instructions });
  if (typeof body.input === 'string') messages.push({ role: 'user', content: body.input });
  else addItems(body.input, messages);
  if (messages.length === 0) {
    throw new BadRequestError(`Invalid request: 'input' has nothing to send (only reasoning items).`, { param: 'input' });
  }

  const out: ChatCompletionRequest = { model: body.model, messages };
  if (body.stream === true) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  }
  if (tools.length > 0) out.tools = tools.map(chatTool);
  if (body.tool_choice !== undefined) out.tool_choice = chatToolChoice(body.tool_choice);
  if (body.parallel_tool_calls != null) out.parallel_tool_calls = body.parallel_tool_calls;
  if (body.max_output_tokens != null) out.max_completion_tokens = body.max_output_tokens;
  if (body.temperature != null) out.temperature = body.temperature;
  if (body.top_p != null) out.top_p = body.top_p;
  const format = body.text?.format;
  if (format !== undefined && format.type !== 'text') out.response_format = responseFormat(format);
  if (body.text?.verbosity != null) out.verbosity = body.text.verbosity;
  if (body.reasoning?.effort != null) out.reasoning_effort = body.reasoning.effort;
  if (body.user !== undefined) out.user = body.user;
  if (body.prompt_cache_key !== undefined) out.prompt_cache_key = body.prompt_cache_key;
  if (body.safety_identifier !== undefined) out.safety_identifier = body.safety_identifier;
  if (body.service_tier !== undefined) out.service_tier = body.service_tier;

  echoes.set(out, echoFrom(body, tools));
  return out;
}

/**
 * An `item_reference` names an item of an earlier stored response by id, which a stateless gateway cannot
 * resolve. Clients send them by default when they believe responses are stored: the AI SDK's OpenAI
 * provider (`store` defaults to true) turns every earlier assistant message that has an id into one. Said
 * before the schema, whose message would only list the item types it knows.
 */
function refuseItemReferences(body: unknown): void {
  const input = (body as { input?: unknown } | null)?.input;
  if (!Array.isArray(input)) return;
  const at = input.findIndex((item) => (item as { type?: unknown } | null)?.type === 'item_reference');
  if (at < 0) return;
  refuse(
    `input[${at}]`,
    "is an item_reference: items cannot be referenced by id, the gateway is stateless; send the item itself (with the AI SDK's OpenAI provider, set providerOptions.openai.store to false)",
  );
}

/** Fields that need state the gateway does not keep. */
function refuseStatefulFields(body: ResponsesRequest): void {
  const stateless = 'the gateway is stateless: send the whole conversation in `input`';
  if (body.previous_response_id != null) refuse('previous_response_id', `is not supported (${stateless})`);
  if (body.conversation != null) refuse('conversation', `is not supported (${stateless})`);
  if (body.prompt != null) refuse('prompt', 'is not supported (stored prompts live with OpenAI; send `instructions` and `input`)');
  if (body.background === true) refuse('background', 'must be false: background responses are not supported (the gateway is stateless)');
}

function refuse(param: string, what: string): never {
  throw new BadRequestError(`Invalid request: '${param}' ${what}.`, { param });
}

/**
 * The function tools, each with only the fields a function tool has, as the client wrote them: the Response
 * echoes these, and a tool's other fields (unknown to the gateway) are neither sent upstream nor echoed.
 */
function functionTools(tools: ResponsesRequest['tools']): FunctionTool[] {
  return (tools ?? []).map((tool, i) => {
    if (tool.type !== 'function') refuse(`tools[${i}].type`, `is '${tool.type}': only function tools are supported`);
    const { name, description, parameters, strict } = tool as FunctionTool;
    const out: FunctionTool = { type: 'function', name };
    if (description !== undefined) out.description = description;
    if (parameters !== undefined) out.parameters = parameters;
    if (strict !== undefined) out.strict = strict;
    return out;
  });
}

function chatTool(tool: FunctionTool): NonNullable<ChatCompletionRequest['tools']>[number] {
  const fn: { name: string; description?: string; parameters?: object; strict?: boolean } = { name: tool.name };
  if (tool.description != null) fn.description = tool.description;
  if (tool.parameters != null) fn.parameters = tool.parameters;
  if (tool.strict != null) fn.strict = tool.strict;
  return { type: 'function', function: fn };
}

function chatToolChoice(choice: ToolChoice): NonNullable<ChatCompletionRequest['tool_choice']> {
  return typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } };
}

function responseFormat(format: Exclude<TextFormat, { type: 'text' }>): NonNullable<ChatCompletionRequest['response_format']> {
  if (format.type === 'json_object') return { type: 'json_object' };
  const schema: Record<string, unknown> = { name: format.name, schema: format.schema };
  if (format.description !== undefined) schema.description = format.description;
  if (format.strict != null) schema.strict = format.strict;
  return { type: 'json_schema', json_schema: schema };
}

function echoFrom(body: ResponsesRequest, tools: FunctionTool[]): ResponseEcho {
  const echo: ResponseEcho = {
    instructions: body.instructions ?? null,
    tools,
    tool_choice: body.tool_choice ?? 'auto',
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    max_output_tokens: body.max_output_tokens ?? null,
    temperature: body.temperature ?? null,
    top_p: body.top_p ?? null,
    text: { format: body.text?.format ?? { type: 'text' } },
    metadata: body.metadata ?? {},
  };
  if (body.text?.verbosity != null) echo.text.verbosity = body.text.verbosity;
  if (body.user !== undefined) echo.user = body.user;
  return echo;
}

// ---------------------------------------------------------------------------------------------
// Input items → messages

function addItems(items: InputItem[], messages: ChatMessage[]): void {
  // The assistant message the next function_call joins, while nothing else came between.
  let openAssistant: ChatMessage | undefined;
  items.forEach((item, i) => {
    const path = `input[${i}]`;
    switch (item.type) {
      case 'reasoning':
        return;
      case 'function_call': {
        const call: ToolCall = { id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } };
        if (openAssistant === undefined) {
          openAssistant = { role: 'assistant', content: null, tool_calls: [] };
          messages.push(openAssistant);
        }
        (openAssistant.tool_calls ??= []).push(call);
        return;
      }
      case 'function_call_output':
        openAssistant = undefined;
        messages.push({ role: 'tool', tool_call_id: item.call_id, content: typeof item.output === 'string' ? item.output : textParts(item.output) });
        return;
      default: {
        const message: ChatMessage = { role: item.role, content: messageContent(item, `${path}.content`) };
        messages.push(message);
        openAssistant = item.role === 'assistant' ? message : undefined;
      }
    }
  });
}

function textParts(parts: InputTextPart[]): ContentPart[] {
  return parts.map((part) => ({ type: 'text', text: part.text }));
}

function messageContent(item: MessageItem, path: string): string | ContentPart[] {
  if (typeof item.content === 'string') return item.content;
  // An assistant's empty list of parts said nothing, as '' does (the chat path refuses an assistant message
  // with an empty list: OpenAI's chat API requires its content). The Messages mapping does the same.
  if (item.content.length === 0 && item.role === 'assistant') return '';
  return item.content.map((part, j) => contentPart(part, `${path}[${j}]`));
}

function contentPart(part: InputPart, path: string): ContentPart {
  switch (part.type) {
    case 'input_text':
    case 'output_text':
      return { type: 'text', text: part.text };
    case 'refusal':
      return { type: 'refusal', refusal: part.refusal };
    case 'input_image': {
      if (part.file_id != null) refuse(`${path}.file_id`, 'is not supported (the gateway holds no files): send the image as `image_url`, a URL or a data: URL');
      if (typeof part.image_url !== 'string' || part.image_url === '') refuse(`${path}.image_url`, 'is required (a URL or a data: URL)');
      const image: { url: string; detail?: 'auto' | 'low' | 'high' } = { url: part.image_url };
      if (part.detail !== undefined) image.detail = part.detail;
      return { type: 'image_url', image_url: image };
    }
    case 'input_file': {
      if (part.file_id != null) refuse(`${path}.file_id`, 'is not supported (the gateway holds no files): send the file as `file_data`');
      if (part.file_url !== undefined) refuse(`${path}.file_url`, 'is not supported: send the file as `file_data`');
      if (part.file_data === undefined) refuse(`${path}.file_data`, 'is required');
      const file: { file_data: string; filename?: string } = { file_data: part.file_data };
      if (part.filename !== undefined) file.filename = part.filename;
      return { type: 'file', file };
    }
  }
}
