/**
 * Mock Bedrock Runtime Converse API on real loopback HTTP: `POST /model/{modelId}/converse` (JSON) and
 * `POST /model/{modelId}/converse-stream` (`application/vnd.amazon.eventstream`, binary AWS event-stream
 * messages). It listens with HTTP/1.1 and h2c on one port, so the SDK's default (HTTP/2) client and a
 * `NodeHttpHandler` client both work against `server.url`. Errors are sent the way Bedrock sends them:
 * the exception name in `x-amzn-errortype` and a JSON `{"message"}` body (reference §3).
 *
 * ```ts
 * const bedrock = await startMockBedrock();
 * const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: bedrock.url, credentials });
 * await client.send(new ConverseCommand({ modelId: 'rate-limit', messages })); // ThrottlingException
 * ```
 *
 * Scenarios, chosen by the model id (percent-decoded). Unknown ids (e.g. `anthropic.claude-3-haiku`)
 * behave as `normal`, and so does a name with a bad argument.
 *
 * | Model id | ConverseStream | Converse |
 * |---|---|---|
 * | `normal` | "Hello! This is a mock answer from <name>." in `chunks` (4) text deltas | the same text |
 * | `echo` | the text of the last user message | the same text |
 * | `long:<N>` (`long` = 2000) | N characters of numbered sentences, `chunkSize` (64) a delta | the same text |
 * | `tools` | a text block, then a `toolUse` block (the request's first tool, else `get_weather`) with streamed input | the same blocks, `stopReason: tool_use` |
 * | `slow[:<ms>]` | `normal` with ms (default `slowChunkDelayMs`, 200) between events | `normal`, sent after (chunks − 1) × ms |
 * | `guardrail-intervened` | `messageStart`, `messageStop` with `stopReason: guardrail_intervened`, `metadata`; no content | the same, as JSON |
 * | `<failure>` | the failure's HTTP status and exception (table below) | the same |
 * | `stream-error:<failure>` | HTTP 200, the failure as the first event (`:message-type: exception`) | as `<failure>` |
 * | `midstream-error[:<failure>]` | half the text deltas, then the failure as an exception event (default `error-500`) | as `<failure>` |
 * | `midstream-drop` | half the text deltas, then the connection is destroyed (HTTP/2: the stream is reset) | half the JSON body, then the same |
 * | `no-stop` | all content, then a clean end without `messageStop` and `metadata` | `normal` |
 * | `pings` | `normal`, with events of types ConverseStream does not define (`ping`, `contentBlockAnnotation`) before every text delta and before `messageStop` | `normal` |
 * | `hang` | no answer at all; the call log records when the client gives up | the same |
 *
 * Failures (`<failure>`). In-stream (`stream-error:`, `midstream-error:`) only the first six exist, as in the
 * real ConverseStream API; `stream-error:` with another failure is an unknown name.
 *
 * | `<failure>` | Status | `x-amzn-errortype` / `:exception-type` | Message |
 * |---|---|---|---|
 * | `error-500` | 500 | `InternalServerException` / `internalServerException` | "The system encountered an unexpected error during processing. Try your request again." |
 * | `error-503` | 503 | `ServiceUnavailableException` / `serviceUnavailableException` | "Bedrock is unable to process your request." |
 * | `rate-limit[:<s>]` | 429 | `ThrottlingException` / `throttlingException` | "Too many requests, please wait before trying again." (`retry-after: s` when s is given) |
 * | `context-window` | 400 | `ValidationException` / `validationException` | "Input is too long for requested model." |
 * | `bad-request` | 400 | `ValidationException` / `validationException` | "Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again." |
 * | `model-error` | 424 | `ModelErrorException` / `modelStreamErrorException` | "The model encountered an error processing the request." |
 * | `access-denied` | 403 | `AccessDeniedException` | "You don't have access to the model with the specified model ID." |
 * | `auth` | 403 | `UnrecognizedClientException` | "The security token included in the request is invalid." |
 * | `not-found` | 404 | `ResourceNotFoundException` | "Could not resolve the foundation model from the provided model identifier." |
 * | `model-timeout` | 408 | `ModelTimeoutException` | "Model has timed out in processing the request. Try your request again." |
 *
 * Answers honour `inferenceConfig.maxTokens` (4 characters a token, `stopReason: max_tokens`) and
 * `stopSequences`.
 *
 * Extended thinking: a request to a Claude model id (containing `anthropic.claude`, any case; it plays
 * `normal`) with `additionalModelRequestFields.thinking` whose `type` is not `disabled` is answered with a
 * reasoning block before the text: `MOCK_BEDROCK_REASONING` (in `chunks` deltas of `reasoningContent.text`,
 * then one `reasoningContent.signature` delta; as `reasoningContent.reasoningText` in Converse) signed with
 * `mockBedrockSignature(seq)`. When the last user message contains Anthropic's test string
 * `MOCK_BEDROCK_REDACTED_TRIGGER`, a redacted block (`MOCK_BEDROCK_REDACTED_BYTES`) follows it. The text's
 * and the tool's content block indexes shift by the reasoning blocks; reasoning counts as output tokens
 * (never cut by `maxTokens`). Other models, and Claude without thinking, answer as before.
 */
import { randomUUID } from 'node:crypto';
import http2 from 'node:http2';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { fromUtf8, toUtf8 } from '@smithy/core/serde';
import { listenDualStack, type EmulatorRequest, type EmulatorResponse } from './bedrock-emulator/listener.js';
import {
  estimateTokens,
  isRecord,
  lastUserText,
  limitText,
  longText,
  normalText,
  positiveInteger,
  promptText,
  splitBySize,
  splitIntoWords,
  stringList,
  type StopCause,
} from './mock-scenarios.js';

export interface MockBedrockOptions {
  /** Port on 127.0.0.1; `0` picks a free one. Default `0`. */
  port?: number;
  /** Appears in answers ("… mock answer from <name>."). Default `mock-bedrock`. */
  name?: string;
  /** Text deltas of a `normal`, `echo` or `slow` answer. Default `4`. */
  chunks?: number;
  /** Characters per delta of a `long:<N>` answer. Default `64`. */
  chunkSize?: number;
  /** Delay between streamed events; a Converse answer waits for the whole "generation". Default `0`. */
  chunkDelayMs?: number;
  /** Delay between events for `slow` without an argument. Default `200`. */
  slowChunkDelayMs?: number;
  /** The call log keeps the newest `maxCallLog` calls; `callCount()` counts them all. Default `1000`. */
  maxCallLog?: number;
}

export type MockBedrockOperation = 'converse' | 'converse-stream' | 'unknown';

/** One request as the mock saw it. Updated in place while the response is in flight. */
export interface MockBedrockCall {
  /** 1-based number since the server started or was reset. */
  seq: number;
  method: string;
  path: string;
  operation: MockBedrockOperation;
  /** The percent-decoded `{modelId}` path label. */
  modelId: string | undefined;
  /** The scenario that was played (`normal` for an unknown name). */
  scenario: string;
  /** `'1.1'` (NodeHttpHandler, curl) or `'2.0'` (the SDK's default handler). */
  httpVersion: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body; `undefined` when empty or not JSON. */
  body: unknown;
  /** `true` for ConverseStream. */
  stream: boolean;
  receivedAt: number;
  respondedAt: number | undefined;
  status: number | undefined;
  /** When the exchange ended: finished, abandoned by the client or dropped by the scenario. */
  closedAt: number | undefined;
  /** The client closed the connection (or reset the HTTP/2 stream) before the response was complete. */
  clientAborted: boolean;
}

export interface MockBedrock {
  /** `http://127.0.0.1:<port>`: pass it as the SDK client's `endpoint` (or a deployment's `baseUrl`). */
  readonly url: string;
  readonly port: number;
  /** The newest calls (up to `maxCallLog`), oldest first. */
  readonly calls: readonly MockBedrockCall[];
  /** Calls since the last reset, for one model id or all. */
  callCount(modelId?: string): number;
  /** Resolves with the first call, logged or future, that matches; re-checked whenever a call changes (e.g. closes). */
  waitForCall(predicate?: (call: MockBedrockCall) => boolean, timeoutMs?: number): Promise<MockBedrockCall>;
  /** Clears the call log and counters. */
  reset(): void;
  /** Stops listening and destroys every connection and HTTP/2 session, hung requests included. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

export const MOCK_BEDROCK_FAILURES = [
  'error-500',
  'error-503',
  'rate-limit',
  'context-window',
  'bad-request',
  'model-error',
  'access-denied',
  'auth',
  'not-found',
  'model-timeout',
] as const;
export type MockBedrockFailureName = (typeof MOCK_BEDROCK_FAILURES)[number];

/** The failures ConverseStream can also send as an exception event: its output union has members for them. */
export const MOCK_BEDROCK_STREAM_FAILURES = [
  'error-500',
  'error-503',
  'rate-limit',
  'context-window',
  'bad-request',
  'model-error',
] as const satisfies readonly MockBedrockFailureName[];

interface FailureSpec {
  status: number;
  /** The exception name in `x-amzn-errortype`. */
  exception: string;
  /** The ConverseStream union member (`:exception-type`), for failures that exist in-stream. */
  streamException?: string;
  message: string;
}

const FAILURES: Record<MockBedrockFailureName, FailureSpec> = {
  'error-500': {
    status: 500,
    exception: 'InternalServerException',
    streamException: 'internalServerException',
    message: 'The system encountered an unexpected error during processing. Try your request again.',
  },
  'error-503': {
    status: 503,
    exception: 'ServiceUnavailableException',
    streamException: 'serviceUnavailableException',
    message: 'Bedrock is unable to process your request.',
  },
  'rate-limit': {
    status: 429,
    exception: 'ThrottlingException',
    streamException: 'throttlingException',
    message: 'Too many requests, please wait before trying again.',
  },
  'context-window': {
    status: 400,
    exception: 'ValidationException',
    streamException: 'validationException',
    message: 'Input is too long for requested model.',
  },
  'bad-request': {
    status: 400,
    exception: 'ValidationException',
    streamException: 'validationException',
    message: 'Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again.',
  },
  'model-error': {
    status: 424,
    exception: 'ModelErrorException',
    streamException: 'modelStreamErrorException',
    message: 'The model encountered an error processing the request.',
  },
  'access-denied': {
    status: 403,
    exception: 'AccessDeniedException',
    message: "You don't have access to the model with the specified model ID.",
  },
  auth: { status: 403, exception: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.' },
  'not-found': {
    status: 404,
    exception: 'ResourceNotFoundException',
    message: 'Could not resolve the foundation model from the provided model identifier.',
  },
  'model-timeout': {
    status: 408,
    exception: 'ModelTimeoutException',
    message: 'Model has timed out in processing the request. Try your request again.',
  },
};

interface Failure {
  name: MockBedrockFailureName;
  retryAfterSeconds: number | undefined;
}

type AnswerContent = 'normal' | 'echo' | 'long' | 'tools';

interface AnswerScenario {
  kind: 'answer';
  content: AnswerContent;
  /** Characters of a `long` answer. */
  length: number;
  /** Set by `slow`; otherwise the server's `chunkDelayMs` applies. */
  chunkDelayMs: number | undefined;
}

type Scenario =
  | AnswerScenario
  | { kind: 'failure'; failure: Failure; delivery: 'status' | 'stream-start' | 'mid-stream' }
  | { kind: 'guardrail-intervened' | 'midstream-drop' | 'no-stop' | 'pings' | 'hang' };

const NORMAL: AnswerScenario = { kind: 'answer', content: 'normal', length: 0, chunkDelayMs: undefined };
const DEFAULT_LONG_LENGTH = 2000;
const PATHOLOGIES = ['guardrail-intervened', 'midstream-drop', 'no-stop', 'pings', 'hang'] as const;

function parseScenario(name: string, slowChunkDelayMs: number): Scenario | undefined {
  const colon = name.indexOf(':');
  const head = colon < 0 ? name : name.slice(0, colon);
  const arg = colon < 0 ? undefined : name.slice(colon + 1);
  switch (head) {
    case 'normal':
    case 'echo':
    case 'tools':
      return arg === undefined ? { ...NORMAL, content: head } : undefined;
    case 'long': {
      const length = arg === undefined ? DEFAULT_LONG_LENGTH : parseNonNegativeInteger(arg);
      return length === undefined ? undefined : { ...NORMAL, content: 'long', length };
    }
    case 'slow': {
      const delay = arg === undefined ? slowChunkDelayMs : parseNonNegativeInteger(arg);
      return delay === undefined ? undefined : { ...NORMAL, chunkDelayMs: delay };
    }
    case 'stream-error':
    case 'midstream-error': {
      const failure = parseFailure(arg ?? (head === 'midstream-error' ? 'error-500' : ''));
      if (failure === undefined || FAILURES[failure.name].streamException === undefined) return undefined;
      return { kind: 'failure', failure, delivery: head === 'stream-error' ? 'stream-start' : 'mid-stream' };
    }
  }
  if ((PATHOLOGIES as readonly string[]).includes(name)) return { kind: name as (typeof PATHOLOGIES)[number] };
  const failure = parseFailure(name);
  return failure === undefined ? undefined : { kind: 'failure', failure, delivery: 'status' };
}

function parseFailure(text: string): Failure | undefined {
  const colon = text.indexOf(':');
  const head = colon < 0 ? text : text.slice(0, colon);
  if (!(MOCK_BEDROCK_FAILURES as readonly string[]).includes(head)) return undefined;
  const name = head as MockBedrockFailureName;
  if (colon < 0) return { name, retryAfterSeconds: undefined };
  const seconds = name === 'rate-limit' ? parseNonNegativeInteger(text.slice(colon + 1)) : undefined;
  return seconds === undefined ? undefined : { name, retryAfterSeconds: seconds };
}

function parseNonNegativeInteger(text: string): number | undefined {
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Answers

const TOOL_PREFACE = 'Let me check that for you.';
const TOOL_INPUT = '{"location":"Paris","unit":"celsius"}';
const DEFAULT_TOOL_NAME = 'get_weather';

/** The reasoning text of a thinking answer. */
export const MOCK_BEDROCK_REASONING = 'The user greets me. A short, friendly answer fits.';
/** Anthropic's documented prompt string that makes Claude answer with a redacted thinking block. */
export const MOCK_BEDROCK_REDACTED_TRIGGER = 'ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253';
/** The bytes of the mock's redacted thinking block. */
export const MOCK_BEDROCK_REDACTED_BYTES: Uint8Array = new Uint8Array([0x6d, 0x6f, 0x63, 0x6b, 0x00, 0xff, 0x10, 0x80, 0x72, 0x65, 0x64]);

/** The signature of the reasoning block answered to call `seq`. */
export function mockBedrockSignature(seq: number): string {
  return Buffer.from(`mock-bedrock-signature:${seq}`).toString('base64');
}

interface Reasoning {
  /** Text deltas of the reasoning block. */
  pieces: string[];
  signature: string;
  /** A redacted block after it. */
  redacted: boolean;
}

interface Answer {
  /** Reasoning blocks before the text (a thinking request to a Claude model). */
  reasoning: Reasoning | undefined;
  /** Text deltas of the first (text) block. */
  pieces: string[];
  tool: { id: string; name: string; pieces: string[] } | undefined;
  stopReason: string;
  inputTokens: number;
  outputTokens: number;
}

interface ConverseBody {
  messages: unknown;
  system: unknown;
  maxTokens: number | undefined;
  stopSequences: string[];
  firstToolName: string | undefined;
  /** Thinking asked of a Claude model: the answer reasons first. */
  thinking: boolean;
}

function readBody(body: unknown, modelId: string | undefined): ConverseBody {
  const request = isRecord(body) ? body : {};
  const inference = isRecord(request.inferenceConfig) ? request.inferenceConfig : {};
  const toolConfig = isRecord(request.toolConfig) ? request.toolConfig : {};
  const firstTool: unknown = Array.isArray(toolConfig.tools) ? toolConfig.tools[0] : undefined;
  const spec = isRecord(firstTool) && isRecord(firstTool.toolSpec) ? firstTool.toolSpec : {};
  return {
    messages: request.messages,
    system: request.system,
    maxTokens: positiveInteger(inference.maxTokens),
    stopSequences: stringList(inference.stopSequences),
    firstToolName: typeof spec.name === 'string' ? spec.name : undefined,
    thinking: modelId !== undefined && modelId.toLowerCase().includes('anthropic.claude') && asksForThinking(request.additionalModelRequestFields),
  };
}

function asksForThinking(fields: unknown): boolean {
  return isRecord(fields) && isRecord(fields.thinking) && fields.thinking.type !== 'disabled';
}

function reasoningOf(body: ConverseBody, settings: Settings, seq: number): Reasoning | undefined {
  if (!body.thinking) return undefined;
  return {
    pieces: splitIntoWords(MOCK_BEDROCK_REASONING, settings.chunks),
    signature: mockBedrockSignature(seq),
    redacted: lastUserText(body.messages).includes(MOCK_BEDROCK_REDACTED_TRIGGER),
  };
}

function buildAnswer(scenario: AnswerScenario, body: ConverseBody, settings: Settings, seq: number): Answer {
  const inputTokens = estimateTokens(promptText(body.messages, body.system));
  const reasoning = reasoningOf(body, settings, seq);
  const reasoningTokens = reasoning === undefined ? 0 : estimateTokens(MOCK_BEDROCK_REASONING);
  if (scenario.content === 'tools') {
    const name = body.firstToolName ?? DEFAULT_TOOL_NAME;
    const pieces = splitBySize(TOOL_INPUT, Math.ceil(TOOL_INPUT.length / settings.chunks));
    const outputTokens = reasoningTokens + estimateTokens(TOOL_PREFACE) + estimateTokens(TOOL_INPUT);
    return { reasoning, pieces: [TOOL_PREFACE], tool: { id: `tooluse_mock_${seq}`, name, pieces }, stopReason: 'tool_use', inputTokens, outputTokens };
  }
  const limited = limitText(answerText(scenario, body, settings), body.maxTokens, body.stopSequences);
  const pieces =
    scenario.content === 'long' ? splitBySize(limited.text, settings.chunkSize) : splitIntoWords(limited.text, settings.chunks);
  const outputTokens = reasoningTokens + estimateTokens(limited.text);
  return { reasoning, pieces, tool: undefined, stopReason: STOP_REASONS[limited.stop], inputTokens, outputTokens };
}

const STOP_REASONS: Record<StopCause, string> = { end: 'end_turn', max_tokens: 'max_tokens', stop_sequence: 'stop_sequence' };

function answerText(scenario: AnswerScenario, body: ConverseBody, settings: Settings): string {
  if (scenario.content === 'echo') return lastUserText(body.messages);
  if (scenario.content === 'long') return longText(scenario.length);
  return normalText(settings.name);
}

function usageOf(inputTokens: number, outputTokens: number): object {
  return { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens };
}

function converseJson(answer: Answer): object {
  const content: object[] = [];
  if (answer.reasoning !== undefined) {
    const { pieces, signature, redacted } = answer.reasoning;
    content.push({ reasoningContent: { reasoningText: { text: pieces.join(''), signature } } });
    if (redacted) content.push({ reasoningContent: { redactedContent: Buffer.from(MOCK_BEDROCK_REDACTED_BYTES).toString('base64') } });
  }
  const text = answer.pieces.join('');
  if (text !== '') content.push({ text });
  if (answer.tool) {
    content.push({ toolUse: { toolUseId: answer.tool.id, name: answer.tool.name, input: JSON.parse(TOOL_INPUT) as unknown } });
  }
  return {
    output: { message: { role: 'assistant', content } },
    stopReason: answer.stopReason,
    usage: usageOf(answer.inputTokens, answer.outputTokens),
    metrics: { latencyMs: 1 },
  };
}

function guardrailJson(inputTokens: number): object {
  return {
    output: { message: { role: 'assistant', content: [] } },
    stopReason: 'guardrail_intervened',
    usage: usageOf(inputTokens, 0),
    metrics: { latencyMs: 1 },
  };
}

// ---------------------------------------------------------------------------------------------
// Event-stream encoding

const codec = new EventStreamCodec(toUtf8, fromUtf8);

function stringHeader(value: string): { type: 'string'; value: string } {
  return { type: 'string', value };
}

function eventMessage(type: string, payload: object): Uint8Array {
  return codec.encode({
    headers: {
      ':event-type': stringHeader(type),
      ':content-type': stringHeader('application/json'),
      ':message-type': stringHeader('event'),
    },
    body: fromUtf8(JSON.stringify(payload)),
  });
}

function exceptionMessage(failure: Failure): Uint8Array {
  const spec = FAILURES[failure.name];
  return codec.encode({
    headers: {
      ':exception-type': stringHeader(spec.streamException ?? spec.exception),
      ':content-type': stringHeader('application/json'),
      ':message-type': stringHeader('exception'),
    },
    body: fromUtf8(JSON.stringify({ message: spec.message })),
  });
}

/** Events up to and including the content deltas; `upTo` cuts the text deltas (mid-stream failures). */
function contentEvents(answer: Answer, upTo = answer.pieces.length): Uint8Array[] {
  const events = [eventMessage('messageStart', { role: 'assistant' })];
  // Reasoning blocks come first (their text, then the signature that closes the block), as Bedrock streams Claude's thinking.
  let index = 0;
  if (answer.reasoning !== undefined) {
    const { pieces, signature, redacted } = answer.reasoning;
    for (const text of pieces) events.push(eventMessage('contentBlockDelta', { contentBlockIndex: index, delta: { reasoningContent: { text } } }));
    events.push(eventMessage('contentBlockDelta', { contentBlockIndex: index, delta: { reasoningContent: { signature } } }));
    events.push(eventMessage('contentBlockStop', { contentBlockIndex: index++ }));
    if (redacted) {
      const redactedContent = Buffer.from(MOCK_BEDROCK_REDACTED_BYTES).toString('base64');
      events.push(eventMessage('contentBlockDelta', { contentBlockIndex: index, delta: { reasoningContent: { redactedContent } } }));
      events.push(eventMessage('contentBlockStop', { contentBlockIndex: index++ }));
    }
  }
  const textIndex = index;
  for (const text of answer.pieces.slice(0, upTo)) events.push(eventMessage('contentBlockDelta', { contentBlockIndex: textIndex, delta: { text } }));
  if (upTo < answer.pieces.length) return events;
  if (answer.pieces.length > 0) events.push(eventMessage('contentBlockStop', { contentBlockIndex: textIndex }));
  if (answer.tool) {
    const toolIndex = textIndex + 1;
    const { id: toolUseId, name, pieces } = answer.tool;
    events.push(eventMessage('contentBlockStart', { contentBlockIndex: toolIndex, start: { toolUse: { toolUseId, name } } }));
    for (const input of pieces) events.push(eventMessage('contentBlockDelta', { contentBlockIndex: toolIndex, delta: { toolUse: { input } } }));
    events.push(eventMessage('contentBlockStop', { contentBlockIndex: toolIndex }));
  }
  return events;
}

/** Events of types the real API does not send (yet): an SDK that knows only today's types must skip them. */
function withUnknownEvents(events: Uint8Array[]): Uint8Array[] {
  const unknown = [eventMessage('ping', {}), eventMessage('contentBlockAnnotation', { contentBlockIndex: 0, annotation: { kind: 'future' } })];
  const out: Uint8Array[] = [];
  for (const event of events) {
    const type = codec.decode(event).headers[':event-type']?.value;
    if (type === 'contentBlockDelta' || type === 'messageStop') out.push(...unknown);
    out.push(event);
  }
  return out;
}

function finishEvents(stopReason: string, inputTokens: number, outputTokens: number): Uint8Array[] {
  return [
    eventMessage('messageStop', { stopReason }),
    eventMessage('metadata', { usage: usageOf(inputTokens, outputTokens), metrics: { latencyMs: 1 } }),
  ];
}

// ---------------------------------------------------------------------------------------------
// Server

interface Settings {
  port: number;
  name: string;
  chunks: number;
  chunkSize: number;
  chunkDelayMs: number;
  slowChunkDelayMs: number;
  maxCallLog: number;
}

function parseOptions(options: MockBedrockOptions): Settings {
  const settings: Settings = {
    port: options.port ?? 0,
    name: options.name ?? 'mock-bedrock',
    chunks: options.chunks ?? 4,
    chunkSize: options.chunkSize ?? 64,
    chunkDelayMs: options.chunkDelayMs ?? 0,
    slowChunkDelayMs: options.slowChunkDelayMs ?? 200,
    maxCallLog: options.maxCallLog ?? 1000,
  };
  const minimums: [keyof Settings, number][] = [
    ['port', 0],
    ['chunks', 1],
    ['chunkSize', 1],
    ['chunkDelayMs', 0],
    ['slowChunkDelayMs', 0],
    ['maxCallLog', 1],
  ];
  for (const [field, min] of minimums) {
    const value = settings[field];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      throw new TypeError(`Mock Bedrock option \`${field}\` must be an integer >= ${min}, got ${String(value)}.`);
    }
  }
  return settings;
}

/** The subset of the HTTP/1.1 and HTTP/2 compat response APIs the mock uses (both implement it). */
interface ResponseSink {
  writeHead(status: number, headers: Record<string, string>): unknown;
  write(chunk: Uint8Array, callback?: () => void): unknown;
  end(chunk?: Uint8Array | string): unknown;
  once(event: 'close', listener: () => void): unknown;
}

const ROUTE = /^\/model\/([^/]+)\/(converse|converse-stream)$/;
const CORAL_NAMESPACE = 'http://internal.amazon.com/coral/com.amazon.bedrock/';

/**
 * One request/response in flight. Every delayed step goes through `later()`, so the exchange closing
 * (client gone, server closing) cancels whatever was still to come.
 */
class Exchange {
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  /** The mock called `end()`: HTTP/2's compat response also emits `finish` when the client resets the stream. */
  private ended = false;
  private droppedByServer = false;
  private readonly sink: ResponseSink;
  private readonly requestId = randomUUID();

  constructor(
    readonly call: MockBedrockCall,
    private readonly res: EmulatorResponse,
    private readonly onChange: () => void,
  ) {
    this.sink = res as unknown as ResponseSink;
    this.sink.once('close', () => this.onClose());
  }

  later(ms: number, step: () => void): void {
    if (ms <= 0) return step();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) step();
    }, ms);
    this.timers.add(timer);
  }

  sendJson(status: number, body: object, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    this.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
    this.end(text);
  }

  sendFailure(failure: Failure): void {
    const spec = FAILURES[failure.name];
    const headers: Record<string, string> = { 'x-amzn-errortype': `${spec.exception}:${CORAL_NAMESPACE}` };
    if (failure.retryAfterSeconds !== undefined) headers['retry-after'] = String(failure.retryAfterSeconds);
    this.sendJson(spec.status, { message: spec.message }, headers);
  }

  /** Declares the full length of the body, sends its first half, then drops the connection. */
  sendTruncatedJson(body: object): void {
    const text = JSON.stringify(body);
    this.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    this.writeThenDrop(Buffer.from(text.slice(0, Math.floor(text.length / 2))));
  }

  /** Streams event-stream messages `delayMs` apart, then ends the response as told. */
  stream(messages: readonly Uint8Array[], delayMs: number, ending: 'end' | 'drop'): void {
    this.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
    const writeFrom = (index: number): void => {
      const message = messages[index];
      if (message === undefined) {
        if (ending === 'end') this.end();
        return;
      }
      const isLast = index === messages.length - 1;
      if (isLast && ending === 'drop') return this.writeThenDrop(message);
      this.sink.write(message);
      this.later(delayMs, () => writeFrom(index + 1));
    };
    writeFrom(0);
  }

  private end(data?: string): void {
    this.ended = true;
    this.sink.end(data);
  }

  /** Node corks the socket for the current tick, so dropping at once would lose the data written with it. */
  private writeThenDrop(data: Uint8Array): void {
    this.sink.write(data, () => {
      this.droppedByServer = true;
      if (this.res instanceof http2.Http2ServerResponse) this.res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      else this.res.destroy();
    });
  }

  private writeHead(status: number, headers: Record<string, string>): void {
    this.sink.writeHead(status, { 'x-amzn-requestid': this.requestId, ...headers });
    this.call.status = status;
    this.call.respondedAt = Date.now();
    this.onChange();
  }

  private onClose(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.call.closedAt = Date.now();
    this.call.clientAborted = !this.ended && !this.droppedByServer;
    this.onChange();
  }
}

function play(x: Exchange, scenario: Scenario, settings: Settings): void {
  const { call } = x;
  const body = readBody(call.body, call.modelId);
  const inputTokens = estimateTokens(promptText(body.messages, body.system));
  switch (scenario.kind) {
    case 'hang':
      return;
    case 'guardrail-intervened':
      if (!call.stream) return x.sendJson(200, guardrailJson(inputTokens));
      return x.stream([eventMessage('messageStart', { role: 'assistant' }), ...finishEvents('guardrail_intervened', inputTokens, 0)], 0, 'end');
    case 'failure':
      return playFailure(x, scenario, body, settings);
    case 'midstream-drop': {
      const answer = buildAnswer(NORMAL, body, settings, call.seq);
      if (!call.stream) return x.sendTruncatedJson(converseJson(answer));
      return x.stream(contentEvents(answer, Math.ceil(answer.pieces.length / 2)), settings.chunkDelayMs, 'drop');
    }
    case 'no-stop': {
      const answer = buildAnswer(NORMAL, body, settings, call.seq);
      if (!call.stream) return x.sendJson(200, converseJson(answer));
      return x.stream(contentEvents(answer), settings.chunkDelayMs, 'end');
    }
    case 'pings': {
      const answer = buildAnswer(NORMAL, body, settings, call.seq);
      if (!call.stream) return x.sendJson(200, converseJson(answer));
      const events = [...contentEvents(answer), ...finishEvents(answer.stopReason, answer.inputTokens, answer.outputTokens)];
      return x.stream(withUnknownEvents(events), settings.chunkDelayMs, 'end');
    }
    case 'answer': {
      const answer = buildAnswer(scenario, body, settings, call.seq);
      const delay = scenario.chunkDelayMs ?? settings.chunkDelayMs;
      if (!call.stream) return x.later(delay * (answer.pieces.length - 1), () => x.sendJson(200, converseJson(answer)));
      const events = [...contentEvents(answer), ...finishEvents(answer.stopReason, answer.inputTokens, answer.outputTokens)];
      return x.stream(events, delay, 'end');
    }
  }
}

function playFailure(x: Exchange, scenario: Extract<Scenario, { kind: 'failure' }>, body: ConverseBody, settings: Settings): void {
  if (!x.call.stream || scenario.delivery === 'status') return x.sendFailure(scenario.failure);
  if (scenario.delivery === 'stream-start') return x.stream([exceptionMessage(scenario.failure)], 0, 'end');
  const answer = buildAnswer(NORMAL, body, settings, x.call.seq);
  const events = [...contentEvents(answer, Math.ceil(answer.pieces.length / 2)), exceptionMessage(scenario.failure)];
  x.stream(events, settings.chunkDelayMs, 'end');
}

interface Waiter {
  predicate: (call: MockBedrockCall) => boolean;
  resolve: (call: MockBedrockCall) => void;
}

/** Starts a mock Bedrock Runtime (Converse / ConverseStream) on `http://127.0.0.1:<port>`. */
export async function startMockBedrock(options: MockBedrockOptions = {}): Promise<MockBedrock> {
  const settings = parseOptions(options);
  const calls: MockBedrockCall[] = [];
  const counts = new Map<string | undefined, number>();
  let total = 0;
  let waiters: Waiter[] = [];
  /** Bumped by `reset()`: older calls may still close, but must not satisfy a later `waitForCall`. */
  let generation = 0;

  const notify = (call: MockBedrockCall): void => {
    const matched = waiters.filter((waiter) => waiter.predicate(call));
    if (matched.length === 0) return;
    waiters = waiters.filter((waiter) => !matched.includes(waiter));
    for (const waiter of matched) waiter.resolve(call);
  };

  const handle = (req: EmulatorRequest, res: EmulatorResponse, receivedAt: number, raw: Buffer): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = req.method === 'POST' ? ROUTE.exec(path) : null;
    const modelId = route?.[1] === undefined ? undefined : decodeLabel(route[1]);
    const operation: MockBedrockOperation = route ? (route[2] as MockBedrockOperation) : 'unknown';
    const scenario = (modelId === undefined ? undefined : parseScenario(modelId, settings.slowChunkDelayMs)) ?? NORMAL;
    counts.set(modelId, (counts.get(modelId) ?? 0) + 1);
    const call: MockBedrockCall = {
      seq: ++total,
      method: req.method ?? 'GET',
      path,
      operation,
      modelId,
      scenario: scenario === NORMAL ? 'normal' : (modelId ?? 'normal'),
      httpVersion: req.httpVersion,
      headers: { ...req.headers },
      body: parseJson(raw),
      stream: operation === 'converse-stream',
      receivedAt,
      respondedAt: undefined,
      status: undefined,
      closedAt: undefined,
      clientAborted: false,
    };
    if (calls.length >= settings.maxCallLog) calls.shift();
    calls.push(call);
    const born = generation;
    const exchange = new Exchange(call, res, () => {
      if (born === generation) notify(call);
    });
    notify(call);
    if (operation === 'unknown' || modelId === undefined) {
      return exchange.sendJson(404, { message: `No route for ${req.method ?? ''} ${path}` }, { 'x-amzn-errortype': `UnknownOperationException:${CORAL_NAMESPACE}` });
    }
    play(exchange, scenario, settings);
  };

  const listener = await listenDualStack((req, res) => {
    const receivedAt = Date.now();
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => handle(req, res, receivedAt, Buffer.concat(chunks)));
  }, settings.port);

  return {
    url: `http://127.0.0.1:${listener.port}`,
    port: listener.port,
    calls,
    callCount: (modelId) => (modelId === undefined ? total : (counts.get(modelId) ?? 0)),
    waitForCall(predicate = () => true, timeoutMs = 2000) {
      const logged = calls.find(predicate);
      if (logged !== undefined) return Promise.resolve(logged);
      return new Promise<MockBedrockCall>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters = waiters.filter((waiter) => waiter !== entry);
          reject(new Error(`mock-bedrock: no matching call within ${timeoutMs} ms`));
        }, timeoutMs);
        const entry: Waiter = {
          predicate,
          resolve: (call) => {
            clearTimeout(timer);
            resolve(call);
          },
        };
        waiters.push(entry);
      });
    },
    reset() {
      calls.length = 0;
      counts.clear();
      total = 0;
      generation++;
    },
    close: () => listener.close(),
  };
}

function decodeLabel(label: string): string | undefined {
  try {
    return decodeURIComponent(label);
  } catch {
    return undefined;
  }
}

function parseJson(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
