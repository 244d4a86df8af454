/**
 * AWS Bedrock adapter over the Converse / ConverseStream API: OpenAI chat requests in, OpenAI
 * `chat.completion` JSON or `chat.completion.chunk`s out, every failure a classified `GatewayError`
 * (`classifyBedrockError`, with the message tables from `reference/provider-errors.md`, Bedrock rows).
 *
 * A guardrail or content filter that stops the model (`stopReason: guardrail_intervened` /
 * `content_filtered`) is not an exception on Bedrock: it arrives as a normal answer. The adapter reports it
 * as `finish_reason: "content_filter"` (non-streaming and as the finish chunk of a stream); classifying
 * that as a content-policy violation (and falling back) is the router's job, the same for every provider.
 *
 * Anthropic extras (issue 16, `ANTHROPIC_EXTRAS` in `lib/types.ts`) are kept for Claude models only: a model
 * id, inference profile or ARN containing `anthropic.claude` (`isBedrockClaude`; an application inference
 * profile ARN names no model and counts as not Claude). For them:
 * - the request's `thinking` goes as `additionalModelRequestFields: { thinking }`, exactly as the client wrote
 *   it (`{ type: 'enabled', budget_tokens }`; Bedrock passes it to Claude, which enforces its constraints:
 *   `budget_tokens` ≥ 1024 and below `max_tokens`, no `temperature`/`top_k`, `top_p` ≥ 0.95, `tool_choice`
 *   auto or none; the adapter changes none of these, so Bedrock's 400 reaches the client as Anthropic's would);
 * - an assistant message's thinking blocks become `reasoningContent` blocks (text and signature, or the
 *   redacted bytes) before its text and tool calls, in order;
 * - a cache breakpoint (`cache_control`, from the extras or a part's own field) on a content part, a system
 *   message or a part of it, a tool, a tool call, or a whole message (a tool result's) becomes a `cachePoint`
 *   block right after it, except on the Claude models older than 3.7 Sonnet / 3.5 Haiku, where Bedrock has
 *   no prompt caching (dropped there);
 * - a tool result's `is_error` becomes the Converse tool result's `status: 'error'`;
 * - the answer's reasoning comes back as the completion message's thinking blocks, or as thinking deltas
 *   on chunks without text (`AnthropicDeltaExtras`), only when the request's `thinking` was sent.
 * For any other Bedrock model the request's `thinking`, history thinking blocks, cache breakpoints and
 * `is_error` are dropped: Converse has no common field for them, and another model's reasoning (DeepSeek, gpt-oss) would
 * carry no Anthropic signature, so its reasoning output is dropped as before.
 */
import { randomUUID } from 'node:crypto';
import type {
  BedrockRuntimeClient,
  CachePointBlock,
  ContentBlock,
  ConversationRole,
  ConverseCommand,
  ConverseCommandInput,
  ConverseCommandOutput,
  ConverseStreamCommand,
  ConverseStreamOutput,
  ImageFormat,
  InferenceConfiguration,
  ReasoningContentBlock,
  ReasoningContentBlockDelta,
  SystemContentBlock,
  TokenUsage,
  Tool,
  ToolChoice,
  ToolConfiguration,
  ToolUseBlock,
} from '@aws-sdk/client-bedrock-runtime';
import { type BedrockSdk, bedrockSdk } from '../bedrock-sdk.js';
import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  ContextWindowExceededError,
  GatewayError,
  InternalError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  TimeoutError,
  UpstreamError,
  type GatewayErrorOptions,
} from '../errors.js';
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
import { asGatewayCredentialFailure, retryAfterMs } from './classify.js';
import type { Deployment, ProviderAdapter, UpstreamRequest } from './types.js';
import { parseToolArguments } from './tool-arguments.js';
import { upstreamModel } from './model.js';

export interface BedrockAdapterOptions {
  /**
   * The client to call Bedrock with, instead of one built from the deployment. The adapter never
   * destroys it (`close()` leaves it to its owner), and its retry settings are the caller's choice.
   * @default a client built from `deployment.region`, `baseUrl` and `awsCredentials`
   */
  client?: BedrockRuntimeClient;
}

const DEFAULT_REGION = 'us-east-1';
const DEFAULT_MAX_TOKENS = 4096;

/** Creates the adapter for one Bedrock deployment (`deployment.model` is the model id or inference profile). */
export function createBedrockAdapter(deployment: Deployment, options: BedrockAdapterOptions = {}): ProviderAdapter {
  const ownsClient = options.client === undefined;
  // The SDK is loaded now (a given client needs its command classes too), not with the first request.
  const sdk = bedrockSdk();
  const client = options.client ?? createBedrockClient(sdk, deployment);
  const call: BedrockCall = { sdk, client };
  return {
    provider: 'bedrock',
    async complete(request) {
      const { input, reasoning } = toConverseInput(request.body, deployment);
      try {
        const output = await client.send(withHeaders(new sdk.ConverseCommand(input), deployment.headers), { abortSignal: request.signal });
        return toChatCompletion(output, input.modelId!, reasoning);
      } catch (err) {
        throw callFailure(err, request.signal, deployment);
      }
    },
    stream: (request) => streamCompletion(call, deployment, request),
    async close() {
      if (ownsClient) client.destroy();
    },
  };
}

/** The loaded SDK and the client to call it with. */
interface BedrockCall {
  sdk: BedrockSdk;
  client: BedrockRuntimeClient;
}

function createBedrockClient({ BedrockRuntimeClient, NodeHttpHandler }: BedrockSdk, deployment: Deployment): BedrockRuntimeClient {
  return new BedrockRuntimeClient({
    region: deployment.region ?? DEFAULT_REGION,
    ...(deployment.baseUrl === undefined ? {} : { endpoint: deployment.baseUrl }),
    // Without static credentials the SDK's default chain applies: the user's choice, documented on the option.
    // A copy: the SDK writes into the credentials object it is given, which is the caller's config.
    ...(deployment.awsCredentials === undefined ? {} : { credentials: { ...deployment.awsCredentials } }),
    // The router retries and falls back; SDK retries would hide failures from it and sleep twice.
    maxAttempts: 1,
    // HTTP/1.1 with keep-alive instead of the SDK's default HTTP/2 handler: that handler opens one
    // session per request anyway (`disableConcurrentStreams`), fails against HTTP/1.1-only endpoints
    // (proxies, gateways, local mocks given as `baseUrl`) with `NghttpError`, and has no connect
    // timeout. Aborting a request here destroys exactly its socket. The socket cap is lifted because a
    // stream holds its socket for the whole generation: the default 50 would queue the 51st concurrent
    // call silently, while limiting concurrency is the router's job (rpm/tpm, cooldowns).
    requestHandler: new NodeHttpHandler({
      connectionTimeout: deployment.timeouts.connectMs,
      httpAgent: { maxSockets: Infinity },
      httpsAgent: { maxSockets: Infinity },
    }),
  });
}

/** Adds the deployment's extra headers to one command (before signing), leaving shared clients untouched. */
function withHeaders<C extends ConverseCommand | ConverseStreamCommand>(command: C, headers: Record<string, string> | undefined): C {
  if (headers === undefined) return command;
  // Both commands have the same stack API; the cast only picks one of the two generic instantiations.
  (command.middlewareStack as ConverseCommand['middlewareStack']).add(
    (next) => (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers !== undefined) Object.assign(request.headers, headers);
      return next(args);
    },
    { step: 'build', name: 'gatewayDeploymentHeaders' },
  );
  return command;
}

/**
 * What a failed call throws: the abort reason when the call was cancelled (the router put a classified
 * error there), else the classified error, with a refusal of the gateway's own AWS credentials reported
 * against the deployment (`asGatewayCredentialFailure`).
 */
function callFailure(err: unknown, signal: AbortSignal, deployment: Deployment): unknown {
  return signal.aborted ? signal.reason : asGatewayCredentialFailure(classifyBedrockError(err), deployment.id);
}

// ---------------------------------------------------------------------------------------------
// Request: OpenAI chat → Converse

type ConverseTurn = { role: ConversationRole; content: ContentBlock[] };
/** The SDK's JSON document type (tool input, tool schema). */
type JsonDocument = NonNullable<ToolUseBlock['input']>;

/** A Converse input, and whether the answer's reasoning is the client's (its `thinking` was sent). */
interface ConverseRequest {
  input: ConverseCommandInput;
  reasoning: boolean;
}

/**
 * Whether a Bedrock model id is a Claude model: a foundation model id (`anthropic.claude-…`), a system
 * inference profile (`us.anthropic.claude-…`, `global.anthropic.claude-…`) or an ARN of either. An
 * application inference profile's ARN does not name its model and counts as not Claude.
 */
export function isBedrockClaude(modelId: string): boolean {
  return modelId.toLowerCase().includes('anthropic.claude');
}

/** Claude models on Bedrock without prompt caching (`cachePoint` is refused): the generations before 3.7 Sonnet and 3.5 Haiku. */
const CLAUDE_WITHOUT_CACHING = /anthropic\.claude-(?:instant|v2|3-haiku|3-sonnet|3-opus|3-5-sonnet)/i;

/** What of the Anthropic extras one request can carry to its model. */
interface ClaudeFeatures {
  /** A Claude model: thinking blocks of the history go as `reasoningContent`, a failed tool result (`is_error`) as `status: 'error'`. */
  claude: boolean;
  /** Cache breakpoints go as `cachePoint` blocks. */
  cachePoints: boolean;
}

function toConverseInput(body: ChatCompletionRequest, deployment: Deployment): ConverseRequest {
  if (body.n != null && body.n > 1) {
    throw new BadRequestError('n: Bedrock Converse returns one choice; n must be 1.', { param: 'n' });
  }
  const modelId = upstreamModel(deployment, body);
  const claude = isBedrockClaude(modelId);
  const features: ClaudeFeatures = { claude, cachePoints: claude && !CLAUDE_WITHOUT_CACHING.test(modelId) };
  const { system, messages } = toConverseMessages(body.messages, features);
  const input: ConverseCommandInput = { modelId, messages, inferenceConfig: toInferenceConfig(body, deployment) };
  if (system.length > 0) input.system = system;
  const toolConfig = toToolConfig(body, features);
  if (toolConfig !== undefined) input.toolConfig = toolConfig;
  const thinking = claude ? anthropicExtras<AnthropicRequestExtras>(body)?.thinking : undefined;
  if (thinking !== undefined) input.additionalModelRequestFields = { thinking: thinking as JsonDocument };
  return { input, reasoning: thinking !== undefined };
}

/** System and developer messages go to `system`; the rest become alternating turns (Converse rejects two in a row). */
function toConverseMessages(messages: ChatMessage[], features: ClaudeFeatures): { system: SystemContentBlock[]; messages: ConverseTurn[] } {
  const system: SystemContentBlock[] = [];
  const turns: ConverseTurn[] = [];
  messages.forEach((message, i) => {
    const param = `messages[${i}]`;
    // A breakpoint on the whole message (the Messages mapping puts a tool result's there) follows its blocks.
    const after = features.cachePoints ? cachePointOf(message) : undefined;
    switch (message.role) {
      case 'system':
      case 'developer':
        system.push(...systemBlocks(message.content, param, features));
        if (after !== undefined) system.push({ cachePoint: after });
        return;
      case 'user':
        return appendTurn(turns, 'user', withCachePoint(contentBlocks(message.content, param, features), after));
      case 'assistant': {
        const reasoning = features.claude ? reasoningBlocks(message) : [];
        const blocks = [...reasoning, ...contentBlocks(message.content, param, features), ...toolUseBlocks(message, param, features)];
        return appendTurn(turns, 'assistant', withCachePoint(blocks, after));
      }
      case 'tool':
        return appendTurn(turns, 'user', withCachePoint([toolResultBlock(message, param, features)], after));
      default:
        throw new BadRequestError(`${param}.role: '${message.role}' is not supported by Bedrock; use tool_calls and tool messages.`, {
          param: `${param}.role`,
        });
    }
  });
  return { system, messages: turns };
}

/** A cache point after blocks (never as the first block: it marks the end of content). */
function withCachePoint(blocks: ContentBlock[], cachePoint: CachePointBlock | undefined): ContentBlock[] {
  if (cachePoint !== undefined && blocks.length > 0) blocks.push({ cachePoint });
  return blocks;
}

/**
 * The cache point for an object's breakpoint: its Anthropic extras' `cache_control`, else its own
 * `cache_control` field (a chat part may carry one, as the Anthropic adapter accepts). Anthropic's `ttl`
 * (`5m`, `1h`) is Converse's too; any other value is left to the default.
 */
function cachePointOf(value: object): CachePointBlock | undefined {
  const control = anthropicExtras<AnthropicPartExtras>(value)?.cache_control ?? (value as { cache_control?: unknown }).cache_control;
  if (typeof control !== 'object' || control === null) return undefined;
  const ttl = (control as { ttl?: unknown }).ttl;
  return ttl === '5m' || ttl === '1h' ? { type: 'default', ttl } : { type: 'default' };
}

/** An assistant message's thinking blocks as Converse reasoning blocks, signatures and redacted bytes unchanged. */
function reasoningBlocks(message: ChatMessage): ContentBlock[] {
  const thinking = anthropicExtras<AnthropicMessageExtras>(message)?.thinking;
  if (thinking === undefined) return [];
  return thinking.map((block): ContentBlock => {
    const reasoningContent: ReasoningContentBlock =
      block.type === 'thinking'
        ? { reasoningText: block.signature === '' ? { text: block.thinking } : { text: block.thinking, signature: block.signature } }
        : { redactedContent: Buffer.from(block.data, 'base64') };
    return { reasoningContent };
  });
}

function appendTurn(turns: ConverseTurn[], role: ConversationRole, blocks: ContentBlock[]): void {
  const last = turns[turns.length - 1];
  if (last?.role === role) last.content.push(...blocks);
  else turns.push({ role, content: blocks });
}

/** Bedrock rejects blank text blocks, so empty strings are left out (and so is a cache point after one). */
function contentBlocks(content: ChatMessage['content'], param: string, features: ClaudeFeatures): ContentBlock[] {
  if (content == null || content === '') return [];
  if (typeof content === 'string') return [{ text: content }];
  const blocks: ContentBlock[] = [];
  content.forEach((part, j) => {
    const block = partBlock(part, `${param}.content[${j}]`);
    if (block === undefined) return;
    blocks.push(block);
    const cachePoint = features.cachePoints ? cachePointOf(part) : undefined;
    if (cachePoint !== undefined) blocks.push({ cachePoint });
  });
  return blocks;
}

function partBlock(part: ContentPart, param: string): ContentBlock | undefined {
  if (part.type === 'text') return part.text === '' ? undefined : { text: part.text };
  if (part.type === 'image_url') return imageBlock(part.image_url.url, `${param}.image_url.url`);
  throw new BadRequestError(`${param}.type: '${part.type}' content is not supported by Bedrock Converse.`, { param: `${param}.type` });
}

const DATA_URL = /^data:image\/(png|jpeg|jpg|gif|webp);base64,/;

/** Converse takes image bytes (or S3), never a URL to fetch, so only base64 `data:` URLs can be sent. */
function imageBlock(url: string, param: string): ContentBlock {
  const match = DATA_URL.exec(url);
  if (match === null) {
    throw new BadRequestError(`${param}: Bedrock accepts images only as base64 data: URLs (png, jpeg, gif, webp).`, { param });
  }
  const format = (match[1] === 'jpg' ? 'jpeg' : match[1]) as ImageFormat;
  return { image: { format, source: { bytes: Buffer.from(url.slice(match[0].length), 'base64') } } };
}

/** The texts of a system/developer/tool message (string or text parts). */
function textsOf(content: ChatMessage['content'], param: string): string[] {
  if (content == null || content === '') return [];
  if (typeof content === 'string') return [content];
  return content.map((part, j) => {
    if (part.type !== 'text') {
      throw new BadRequestError(`${param}.content[${j}].type: only text is allowed here.`, { param: `${param}.content[${j}].type` });
    }
    return part.text;
  });
}

/** A system/developer message's text blocks, each part's cache breakpoint after it. */
function systemBlocks(content: ChatMessage['content'], param: string, features: ClaudeFeatures): SystemContentBlock[] {
  const texts = textsOf(content, param);
  const parts = features.cachePoints && Array.isArray(content) ? content : undefined;
  const blocks: SystemContentBlock[] = [];
  texts.forEach((text, j) => {
    blocks.push({ text });
    const part = parts?.[j];
    const cachePoint = part === undefined ? undefined : cachePointOf(part);
    if (cachePoint !== undefined) blocks.push({ cachePoint });
  });
  return blocks;
}

function toolUseBlocks(message: ChatMessage, param: string, features: ClaudeFeatures): ContentBlock[] {
  const blocks: ContentBlock[] = [];
  (message.tool_calls ?? []).forEach((call, j) => {
    blocks.push({
      toolUse: {
        toolUseId: call.id,
        name: call.function.name,
        // Converse wants the tool input as a JSON object, where OpenAI carries it as a string.
        input: parseToolArguments(call.function.arguments, `${param}.tool_calls[${j}].function.arguments`) as JsonDocument,
      },
    });
    const cachePoint = features.cachePoints ? cachePointOf(call) : undefined;
    if (cachePoint !== undefined) blocks.push({ cachePoint });
  });
  return blocks;
}

/** A Messages `tool_result` with `is_error` is a failed tool result: Converse's `status: 'error'`, which Claude reads. */
function toolResultBlock(message: ChatMessage, param: string, features: ClaudeFeatures): ContentBlock {
  if (typeof message.tool_call_id !== 'string' || message.tool_call_id === '') {
    throw new BadRequestError(`${param}.tool_call_id: required on tool messages.`, { param: `${param}.tool_call_id` });
  }
  const content = [{ text: textsOf(message.content, param).join('') }];
  const failed = features.claude && anthropicExtras<AnthropicPartExtras>(message)?.is_error === true;
  return { toolResult: failed ? { toolUseId: message.tool_call_id, content, status: 'error' } : { toolUseId: message.tool_call_id, content } };
}

function toInferenceConfig(body: ChatCompletionRequest, deployment: Deployment): InferenceConfiguration {
  const config: InferenceConfiguration = {
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? deployment.defaultMaxTokens ?? DEFAULT_MAX_TOKENS,
  };
  if (body.temperature != null) config.temperature = body.temperature;
  if (body.top_p != null) config.topP = body.top_p;
  if (body.stop != null && body.stop.length > 0) config.stopSequences = typeof body.stop === 'string' ? [body.stop] : body.stop;
  return config;
}

const EMPTY_SCHEMA = { type: 'object', properties: {} };

/** `tool_choice: "none"` sends no tools at all: Converse has no way to offer tools and forbid them. */
function toToolConfig(body: ChatCompletionRequest, features: ClaudeFeatures): ToolConfiguration | undefined {
  if (body.tools === undefined || body.tools.length === 0 || body.tool_choice === 'none') return undefined;
  const tools: Tool[] = [];
  for (const tool of body.tools) {
    const fn = tool.function;
    tools.push({
      toolSpec: {
        name: fn.name,
        ...(fn.description === undefined ? {} : { description: fn.description }),
        inputSchema: { json: (fn.parameters ?? EMPTY_SCHEMA) as JsonDocument },
      },
    });
    // A tool's breakpoint caches the tool definitions up to it: a cache point entry after it in the list.
    const cachePoint = features.cachePoints ? cachePointOf(tool) : undefined;
    if (cachePoint !== undefined) tools.push({ cachePoint });
  }
  const toolChoice = toToolChoice(body.tool_choice);
  return toolChoice === undefined ? { tools } : { tools, toolChoice };
}

function toToolChoice(choice: ChatCompletionRequest['tool_choice']): ToolChoice | undefined {
  if (choice === undefined || choice === 'none') return undefined;
  if (choice === 'auto') return { auto: {} };
  if (choice === 'required') return { any: {} };
  return { tool: { name: choice.function.name } };
}

// ---------------------------------------------------------------------------------------------
// Response: Converse → OpenAI chat

const FINISH_REASONS: Readonly<Record<string, FinishReason>> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  guardrail_intervened: 'content_filter',
  content_filtered: 'content_filter',
};

/** Unknown and malformed-output stop reasons end the answer like a normal stop: the text so far is all there is. */
function finishReasonOf(stopReason: string | undefined): FinishReason {
  return (stopReason === undefined ? undefined : FINISH_REASONS[stopReason]) ?? 'stop';
}

function usageOf(usage: TokenUsage): Usage {
  const prompt = usage.inputTokens ?? 0;
  const completion = usage.outputTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: usage.totalTokens ?? prompt + completion };
}

function completionId(): string {
  return `chatcmpl-${randomUUID()}`;
}

/** `reasoning`: the client asked for thinking, so the answer's reasoning blocks become the message's thinking blocks. */
function toChatCompletion(output: ConverseCommandOutput, model: string, reasoning = false): ChatCompletion {
  const blocks = output.output?.message?.content;
  if (blocks === undefined) throw new UpstreamError('Bedrock: Converse answered without a message.');
  let text: string | undefined;
  const toolCalls: ToolCall[] = [];
  const thinking: AnthropicThinkingBlock[] = [];
  for (const block of blocks) {
    if (block.text !== undefined) text = (text ?? '') + block.text;
    else if (block.toolUse !== undefined) toolCalls.push(toToolCall(block.toolUse));
    else if (reasoning && block.reasoningContent !== undefined) {
      const thought = thinkingBlockOf(block.reasoningContent);
      if (thought !== undefined) thinking.push(thought);
    }
  }
  const message: ChatMessage = { role: 'assistant', content: text ?? null };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
  // Under the symbol key: JSON (a chat client's answer) never shows it; the answer without text stays empty.
  if (thinking.length > 0) (message as { [ANTHROPIC_EXTRAS]?: AnthropicMessageExtras })[ANTHROPIC_EXTRAS] = { thinking };
  const completion: ChatCompletion = {
    id: completionId(),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, message, finish_reason: finishReasonOf(output.stopReason) }],
  };
  if (output.usage !== undefined) completion.usage = usageOf(output.usage);
  return completion;
}

/** A Converse reasoning block as an Anthropic thinking block (redacted bytes as base64, Anthropic's `data`). */
function thinkingBlockOf(block: ReasoningContentBlock): AnthropicThinkingBlock | undefined {
  if (block.reasoningText !== undefined) {
    return { type: 'thinking', thinking: block.reasoningText.text ?? '', signature: block.reasoningText.signature ?? '' };
  }
  if (block.redactedContent !== undefined) return { type: 'redacted_thinking', data: Buffer.from(block.redactedContent).toString('base64') };
  return undefined;
}

function toToolCall(toolUse: ToolUseBlock): ToolCall {
  return {
    id: toolUse.toolUseId ?? '',
    type: 'function',
    function: { name: toolUse.name ?? '', arguments: JSON.stringify(toolUse.input ?? {}) },
  };
}

// ---------------------------------------------------------------------------------------------
// Streaming: ConverseStream events → chat.completion.chunk
//
// Harmless events need no special case here: the SDK drops event types it does not model (`$unknown`),
// and `translate` returns nothing for the ones without content (block stops, reasoning the client did not
// ask for, metadata without usage). `malformedChunks: 'skip'` has nothing to act on: a broken event-stream message (bad prelude or
// CRC, a payload that is not JSON) fails inside the SDK's iterator, which cannot be resumed after it throws.

async function* streamCompletion(
  { sdk, client }: BedrockCall,
  deployment: Deployment,
  request: UpstreamRequest,
): AsyncGenerator<ChatCompletionChunk> {
  const { signal } = request;
  const { input, reasoning } = toConverseInput(request.body, deployment);
  let events: AsyncIterable<ConverseStreamOutput>;
  try {
    // The SDK reads the first event before `send` resolves, so an exception as the first event throws here.
    const output = await client.send(withHeaders(new sdk.ConverseStreamCommand(input), deployment.headers), { abortSignal: signal });
    if (output.stream === undefined) throw new UpstreamError('Bedrock: ConverseStream answered without an event stream.');
    events = output.stream;
  } catch (err) {
    throw callFailure(err, signal, deployment);
  }
  const translator = new StreamTranslator(input.modelId!, reasoning);
  try {
    for await (const event of events) {
      if (event.messageStop !== undefined) yield* translator.unstoppedRedacted();
      const chunk = translator.translate(event);
      if (chunk !== undefined) yield chunk;
    }
  } catch (err) {
    throw midStreamFailure(err, signal, deployment);
  }
  if (signal.aborted) throw signal.reason;
  if (!translator.stopped) throw new UpstreamError('Bedrock: the stream ended before it finished (no messageStop).');
}

/** After the 200, a broken connection is a failed answer rather than a failed connect. */
function midStreamFailure(err: unknown, signal: AbortSignal, deployment: Deployment): unknown {
  if (signal.aborted) return signal.reason;
  const error = classifyBedrockError(err);
  if (!(error instanceof ConnectionError)) return asGatewayCredentialFailure(error, deployment.id);
  return new UpstreamError('Bedrock: the connection closed before the stream finished.', { cause: err });
}

/** In-stream exceptions the SDK yields as union members (it throws them when sent as `:message-type: exception`). */
const STREAM_EXCEPTION_MEMBERS = [
  'internalServerException',
  'modelStreamErrorException',
  'validationException',
  'throttlingException',
  'serviceUnavailableException',
] as const;

/**
 * Reasoning (only when the client's `thinking` was sent) becomes chunks whose delta has no text, only
 * `AnthropicDeltaExtras` under the symbol key: `thinking` text, then the block's `signature` (Bedrock sends
 * it last, closing the block), or a whole `redacted` block (its bytes, gathered until the block stops, as
 * base64). A chat client never sees them (JSON drops the symbol; it cannot ask for thinking anyway); for the
 * router they are not content, so they are held until the first text or tool call and released before it,
 * and an answer that is only reasoning is an empty answer, as without streaming.
 */
class StreamTranslator {
  /** `messageStop` arrived: a stream that ends without it was cut off. */
  stopped = false;
  private readonly id = completionId();
  private readonly created = Math.floor(Date.now() / 1000);
  /** Converse content block index → OpenAI tool call index (0, 1, … in order of appearance). */
  private readonly toolIndexes = new Map<number, number>();
  /** Redacted reasoning bytes by content block index, until the block stops. */
  private readonly redacted = new Map<number, Uint8Array[]>();

  constructor(
    private readonly model: string,
    private readonly reasoning = false,
  ) {}

  /** The chunk for one event, or `undefined` for events with nothing to tell (block stops, unasked reasoning, unknown). */
  translate(event: ConverseStreamOutput): ChatCompletionChunk | undefined {
    const { contentBlockDelta: delta } = event;
    if (delta !== undefined) {
      if (delta.delta?.text !== undefined) return delta.delta.text === '' ? undefined : this.chunk({ content: delta.delta.text });
      if (delta.delta?.toolUse !== undefined) return this.toolInputChunk(delta.contentBlockIndex, delta.delta.toolUse.input ?? '');
      if (delta.delta?.reasoningContent !== undefined && this.reasoning) return this.reasoningChunk(delta.contentBlockIndex, delta.delta.reasoningContent);
      return undefined;
    }
    if (event.messageStart !== undefined) return this.chunk({ role: 'assistant' });
    if (event.contentBlockStart?.start?.toolUse !== undefined) {
      return this.toolStartChunk(event.contentBlockStart.contentBlockIndex, event.contentBlockStart.start.toolUse);
    }
    if (event.contentBlockStop !== undefined) return this.redactedChunk(event.contentBlockStop.contentBlockIndex ?? -1);
    if (event.messageStop !== undefined) {
      this.stopped = true;
      return this.chunk({}, finishReasonOf(event.messageStop.stopReason));
    }
    if (event.metadata?.usage !== undefined) return this.usageChunk(usageOf(event.metadata.usage));
    for (const member of STREAM_EXCEPTION_MEMBERS) {
      if (event[member] !== undefined) throw classifyBedrockError(event[member]);
    }
    return undefined;
  }

  private reasoningChunk(blockIndex: number | undefined, reasoning: ReasoningContentBlockDelta): ChatCompletionChunk | undefined {
    let extras: AnthropicDeltaExtras;
    if (reasoning.text !== undefined) {
      if (reasoning.text === '') return undefined;
      extras = { thinking: reasoning.text };
    } else if (reasoning.signature !== undefined) {
      extras = { signature: reasoning.signature };
    } else if (reasoning.redactedContent !== undefined) {
      const index = blockIndex ?? -1;
      const parts = this.redacted.get(index);
      if (parts === undefined) this.redacted.set(index, [reasoning.redactedContent]);
      else parts.push(reasoning.redactedContent);
      return undefined;
    } else {
      return undefined;
    }
    const chunk = this.chunk({});
    setDeltaExtras(chunk.choices[0]!.delta, extras);
    return chunk;
  }

  /** The redacted block that stopped, as one chunk (other blocks' stops tell nothing). */
  private redactedChunk(blockIndex: number): ChatCompletionChunk | undefined {
    const parts = this.redacted.get(blockIndex);
    if (parts === undefined) return undefined;
    this.redacted.delete(blockIndex);
    const chunk = this.chunk({});
    setDeltaExtras(chunk.choices[0]!.delta, { redacted: Buffer.concat(parts).toString('base64') });
    return chunk;
  }

  /** Redacted blocks that never stopped (Bedrock stops every block), each as its chunk: read before `messageStop`, so no bytes are lost. */
  *unstoppedRedacted(): Generator<ChatCompletionChunk> {
    for (const index of [...this.redacted.keys()]) {
      const chunk = this.redactedChunk(index);
      if (chunk !== undefined) yield chunk;
    }
  }

  private toolStartChunk(blockIndex: number | undefined, toolUse: { toolUseId?: string | undefined; name?: string | undefined }): ChatCompletionChunk {
    const index = this.toolIndexes.size;
    this.toolIndexes.set(blockIndex ?? -1, index);
    return this.chunk({
      tool_calls: [{ index, id: toolUse.toolUseId ?? '', type: 'function', function: { name: toolUse.name ?? '', arguments: '' } }],
    });
  }

  private toolInputChunk(blockIndex: number | undefined, input: string): ChatCompletionChunk {
    const index = this.toolIndexes.get(blockIndex ?? -1);
    if (index === undefined) throw new UpstreamError('Bedrock: tool input arrived for a content block that never started.');
    return this.chunk({ tool_calls: [{ index, function: { arguments: input } }] });
  }

  private chunk(delta: ChatCompletionChunkDelta, finishReason: FinishReason | null = null): ChatCompletionChunk {
    return {
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.model,
      choices: [{ index: 0, delta, finish_reason: finishReason }],
    };
  }

  /** Always sent (OpenAI's `include_usage` form); the router drops it when the client did not ask for usage. */
  private usageChunk(usage: Usage): ChatCompletionChunk {
    return { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, choices: [], usage };
  }
}

function setDeltaExtras(delta: ChatCompletionChunkDelta, extras: AnthropicDeltaExtras): void {
  (delta as { [ANTHROPIC_EXTRAS]?: AnthropicDeltaExtras })[ANTHROPIC_EXTRAS] = extras;
}

// ---------------------------------------------------------------------------------------------
// Classification

/** Message substrings (case-insensitive) meaning the prompt does not fit. They win over the exception name: Bedrock sends them as ValidationException. */
export const BEDROCK_CONTEXT_WINDOW_MESSAGES: readonly string[] = [
  'too many tokens',
  'expected maxLength:',
  'Input is too long',
  'prompt is too long',
  'prompt: length: 1..',
  'Too many input tokens',
  "model's maximum context length",
];

/** Message substrings meaning the credentials were not accepted (or not found). */
export const BEDROCK_AUTH_MESSAGES: readonly string[] = [
  'The security token included in the request is invalid',
  'The security token included in the request is expired',
  'Unable to locate credentials',
  'Could not load credentials from any providers',
];

/** Message substrings of transient server-side failures that arrive with a client-error name or status. */
export const BEDROCK_SERVER_ERROR_MESSAGES: readonly string[] = ['Could not process image'];

/** Message substrings of requests Bedrock will never accept as sent. */
export const BEDROCK_BAD_REQUEST_MESSAGES: readonly string[] = [
  'Malformed input request',
  'A conversation must start with a user message',
  'Conversation blocks and tool result blocks cannot be provided in the same turn',
];

export const BEDROCK_RATE_LIMIT_MESSAGES: readonly string[] = ['throttlingException', 'Too many requests'];

/** `timed out` also covers "Request timed out", "Timed out generating response" and "The read operation timed out". */
export const BEDROCK_TIMEOUT_MESSAGES: readonly string[] = ['timed out', 'Request Timeout Error', 'Connect timeout on endpoint URL'];

type ErrorClass = new (message: string, options?: GatewayErrorOptions) => GatewayError;

/** Exception names (the SDK's `err.name`, also the in-stream exceptions) → class. */
export const BEDROCK_ERRORS_BY_NAME: Readonly<Record<string, ErrorClass>> = {
  ValidationException: BadRequestError,
  AccessDeniedException: PermissionDeniedError,
  UnrecognizedClientException: AuthenticationError,
  InvalidSignatureException: AuthenticationError,
  ExpiredTokenException: AuthenticationError,
  CredentialsProviderError: AuthenticationError,
  ResourceNotFoundException: NotFoundError,
  ThrottlingException: RateLimitError,
  // A quota is exhausted for this account/region: another deployment (or a later retry) may have room.
  ServiceQuotaExceededException: RateLimitError,
  ModelTimeoutException: TimeoutError,
  // The SDK's own socket/connect timeouts (NodeHttpHandler, NodeHttp2Handler).
  TimeoutError: TimeoutError,
  InternalServerException: UpstreamError,
  ServiceUnavailableException: UpstreamError,
  ModelNotReadyException: UpstreamError,
  ModelErrorException: UpstreamError,
  ModelStreamErrorException: UpstreamError,
};

/** Exceptions that mean "try again later" (503) rather than "the upstream failed" (502); the same in-stream, where there is no status. */
const UNAVAILABLE_NAMES = new Set(['ServiceUnavailableException', 'ModelNotReadyException']);

const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_HTTP2_ERROR',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_STREAM_CANCEL',
  'ERR_HTTP2_INVALID_SESSION',
]);

/** What classification looks at, read once from whatever was thrown. */
interface ErrorFacts {
  name: string;
  message: string;
  /** The HTTP status of an error answer (never the 200 of a stream whose events failed). */
  status: number | undefined;
  /** Node's network error code, if any. */
  code: string | undefined;
  /** The SDK marks service exceptions (HTTP errors and in-stream exceptions) with `$fault`. */
  fromService: boolean;
  /** The error passed through the SDK's middleware (which adds `$metadata`). */
  viaSdk: boolean;
  retryAfterMs: number | undefined;
}

interface SdkErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $response?: { statusCode?: unknown; headers?: Record<string, string | undefined> };
}

/**
 * Turns anything the Bedrock SDK throws (or yields as an in-stream exception) into a `GatewayError`.
 * Order: throttling names, message tables that override the name (context window, auth, transient
 * server texts), the exception name, the remaining message tables, Node network codes, the HTTP status.
 * Something that went through the SDK but fits none of these is an `UpstreamError`; anything else (a bug)
 * becomes an `InternalError` that hides the original.
 */
export function classifyBedrockError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const facts = readFacts(err);
  const options: GatewayErrorOptions = { cause: err };
  if (facts.status !== undefined) options.upstreamStatus = facts.status;
  if (facts.retryAfterMs !== undefined) options.retryAfterMs = facts.retryAfterMs;
  const message = facts.message || facts.name;

  const byName = Object.hasOwn(BEDROCK_ERRORS_BY_NAME, facts.name) ? BEDROCK_ERRORS_BY_NAME[facts.name] : undefined;
  // Throttling is decided by the name before any text: Bedrock's token-rate throttling says
  // "Too many tokens, please wait before trying again.", which the context-window table would claim.
  if (byName === RateLimitError) return new RateLimitError(message, options);
  if (includesAny(facts.message, BEDROCK_CONTEXT_WINDOW_MESSAGES)) return new ContextWindowExceededError(message, options);
  if (includesAny(facts.message, BEDROCK_AUTH_MESSAGES)) return new AuthenticationError(message, options);
  if (includesAny(facts.message, BEDROCK_SERVER_ERROR_MESSAGES)) return upstreamError(message, facts, options);
  if (byName === UpstreamError) return upstreamError(message, facts, options);
  if (byName !== undefined) return new byName(message, options);
  if (includesAny(facts.message, BEDROCK_BAD_REQUEST_MESSAGES)) return new BadRequestError(message, options);
  if (includesAny(facts.message, BEDROCK_RATE_LIMIT_MESSAGES)) return new RateLimitError(message, options);
  // Network errors get fixed messages: Node's name the internal address ("connect ECONNREFUSED 10.0.0.7:443").
  if (facts.code !== undefined && TIMEOUT_CODES.has(facts.code)) return new TimeoutError(`Bedrock: the connection timed out (${facts.code}).`, options);
  if (facts.code !== undefined && CONNECTION_CODES.has(facts.code)) {
    return new ConnectionError(`Bedrock: the connection failed (${facts.code}).`, options);
  }
  if (includesAny(facts.message, BEDROCK_TIMEOUT_MESSAGES)) return new TimeoutError(message, options);
  return fromStatus(facts, options);
}

/** Last resort: the status of an error answer. A thrown error that is not Bedrock's (a bug) stays hidden. */
function fromStatus(facts: ErrorFacts, options: GatewayErrorOptions): GatewayError {
  const { status } = facts;
  // Only a service exception's message is Bedrock's own; others (e.g. a proxy's HTML that failed to parse) are not shown.
  const text = facts.fromService && facts.message !== '' ? facts.message : `Bedrock answered with HTTP ${status ?? 'error'} (${facts.name || 'unknown'}).`;
  if (status === 400 || status === 422) return new BadRequestError(text, options);
  if (status === 401) return new AuthenticationError(text, options);
  if (status === 403) return new PermissionDeniedError(text, options);
  if (status === 404) return new NotFoundError(text, options);
  if (status === 408 || status === 504) return new TimeoutError(text, options);
  if (status === 429) return new RateLimitError(text, options);
  if ((status !== undefined && status >= 500) || status === 424) return upstreamError(text, facts, options);
  if (facts.fromService) return upstreamError(text, facts, options);
  // The SDK stamps `$metadata` on whatever failed inside `send` (a body cut off, a TLS failure): the
  // call failed, not the gateway. Anything else thrown here is a bug in the gateway.
  if (facts.viaSdk) return new UpstreamError(`Bedrock: the request failed (${facts.name || 'unknown error'}).`, options);
  return new InternalError(undefined, options);
}

function upstreamError(message: string, facts: ErrorFacts, options: GatewayErrorOptions): UpstreamError {
  const unavailable = facts.status === 503 || UNAVAILABLE_NAMES.has(facts.name);
  return new UpstreamError(message || `Bedrock failed (${facts.name}).`, { ...options, status: unavailable ? 503 : 502 });
}

function includesAny(message: string, phrases: readonly string[]): boolean {
  if (message === '') return false;
  const lower = message.toLowerCase();
  return phrases.some((phrase) => lower.includes(phrase.toLowerCase()));
}

function readFacts(err: unknown): ErrorFacts {
  const shape: SdkErrorShape = typeof err === 'object' && err !== null ? (err as SdkErrorShape) : {};
  const rawStatus = shape.$metadata?.httpStatusCode ?? shape.$response?.statusCode;
  const message = typeof shape.message === 'string' ? shape.message : '';
  return {
    name: typeof shape.name === 'string' ? shape.name : '',
    message,
    status: typeof rawStatus === 'number' && rawStatus >= 300 ? rawStatus : undefined,
    code: networkCodeIn(message) ?? (typeof shape.code === 'string' ? shape.code : undefined),
    fromService: shape.$fault === 'client' || shape.$fault === 'server',
    viaSdk: shape.$metadata !== undefined,
    retryAfterMs: retryAfterMsOf(shape.$response?.headers, message),
  };
}

const NETWORK_CODE_IN_MESSAGE = /\b(E[A-Z]{3,}|ERR_HTTP2_[A-Z_]+)\b/g;

/**
 * Node's network messages name their code ("connect ECONNREFUSED …", "read ECONNRESET"). It is read from
 * the message first because wrappers keep the text but not the `code`: the HTTP/2 handler's
 * "The pending stream has been canceled (caused by: connect ECONNREFUSED …)", and the SDK's
 * "AWS SDK error wrapper for Error: …" for errors from another realm (jest's VM contexts).
 */
function networkCodeIn(message: string): string | undefined {
  for (const [code] of message.matchAll(NETWORK_CODE_IN_MESSAGE)) {
    if (TIMEOUT_CODES.has(code) || CONNECTION_CODES.has(code)) return code;
  }
  return undefined;
}

/** The SDK's own hint `x-amz-retry-after` (milliseconds) first, then the shared `retry-after` rules. */
function retryAfterMsOf(headers: Record<string, string | undefined> | undefined, message: string): number | undefined {
  const amz = headers?.['x-amz-retry-after'];
  if (amz !== undefined && /^\d+$/.test(amz)) return Number(amz);
  return retryAfterMs(headers, message);
}
