/**
 * Mock Anthropic Messages API on real HTTP: `POST /v1/messages` (any prefix ending in `/v1/messages`),
 * JSON or the real SSE event sequence, and errors as `{"type":"error","error":{type, message}}`.
 * Scenarios (chosen by model name): see `mock-scenarios.ts`.
 *
 * Extended thinking: a request whose `thinking.type` is not `disabled` is answered with a thinking block
 * before the text or tool use: `MOCK_ANTHROPIC_THINKING` (streamed as two `thinking_delta`s, then one
 * `signature_delta`) signed with `mockAnthropicSignature(seq)`. When the last user message contains
 * Anthropic's test string `MOCK_ANTHROPIC_REDACTED_TRIGGER`, a `redacted_thinking` block
 * (`MOCK_ANTHROPIC_REDACTED_DATA`) follows it. The other blocks' indexes shift by the thinking blocks, and
 * thinking counts as output tokens (never cut by `max_tokens`). Without thinking, answers are as before.
 */
import {
  startMockServer,
  type IncomingRequest,
  type MockExchange,
  type MockProviderOptions,
  type MockServer,
  type RequestFacts,
} from './mock-core.js';
import {
  completionTokens,
  play,
  sendFailure,
  sseData,
  sseEvent,
  type Answer,
  type AnswerChoice,
  type Dialect,
  type Frame,
  type HttpFailure,
} from './mock-playback.js';
import { estimateTokens, isRecord, lastUserText, positiveInteger, promptText, stringList, type Failure } from './mock-scenarios.js';

/** Starts a mock Anthropic server (default name `mock-anthropic`) on `http://127.0.0.1:<free port>`. */
export function startMockAnthropic(options?: MockProviderOptions): Promise<MockServer> {
  return startMockServer(
    { defaultName: 'mock-anthropic', midstreamFailure: 'overloaded', describe: describeRequest, respond },
    options,
  );
}

/** Claude usually says something before it calls a tool; the mock does too, so answers have two blocks. */
const TOOL_PREFACE = 'Let me check that for you.';

/** The thinking text of a thinking answer. */
export const MOCK_ANTHROPIC_THINKING = 'The user greets me. A short, friendly answer fits.';
/** Anthropic's documented prompt string that makes Claude answer with a redacted thinking block. */
export const MOCK_ANTHROPIC_REDACTED_TRIGGER = 'ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253';
/** The `data` of the mock's redacted thinking block. */
export const MOCK_ANTHROPIC_REDACTED_DATA = 'EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj2pLmN3kjw2';

/** The signature of the thinking block answered to call `seq`. */
export function mockAnthropicSignature(seq: number): string {
  return Buffer.from(`mock-anthropic-signature:${seq}`).toString('base64');
}

function describeRequest(request: IncomingRequest): RequestFacts {
  const body = isRecord(request.body) ? request.body : {};
  const endpoint = request.method === 'POST' && request.path.endsWith('/v1/messages') ? 'messages' : 'unknown';
  return {
    api: 'anthropic',
    endpoint,
    model: typeof body.model === 'string' ? body.model : undefined,
    stream: endpoint === 'messages' && body.stream === true,
    apiKey: headerValue(request.headers['x-api-key']),
    apiVersion: headerValue(request.headers['anthropic-version']),
  };
}

function respond(x: MockExchange): void {
  const { call, settings } = x;
  if (call.endpoint === 'unknown') return x.sendJson(404, anthropicError('not_found_error', 'Not Found'));
  if (call.apiKey === undefined) return x.sendJson(401, anthropicError('authentication_error', 'x-api-key header is required'));
  if (settings.requireAuth !== undefined && call.apiKey !== settings.requireAuth) {
    return sendFailure(x, anthropicDialect, { name: 'auth', retryAfterSeconds: 0 });
  }
  if (call.apiVersion === undefined) {
    return x.sendJson(400, anthropicError('invalid_request_error', 'anthropic-version: header is required'));
  }
  if (x.request.bodyInvalid) return x.sendJson(400, anthropicError('invalid_request_error', 'There was an error parsing the body.'));
  const missing = missingField(x.request.body);
  if (missing !== undefined) return x.sendJson(400, anthropicError('invalid_request_error', `${missing}: Field required`));
  play(x, anthropicDialect);
}

/** The required fields an adapter is most likely to forget (`max_tokens` has no default upstream). */
function missingField(body: unknown): string | undefined {
  const request = isRecord(body) ? body : {};
  if (typeof request.model !== 'string') return 'model';
  if (!Array.isArray(request.messages)) return 'messages';
  if (positiveInteger(request.max_tokens) === undefined) return 'max_tokens';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Messages

const anthropicDialect: Dialect = {
  readRequest(body) {
    const request = isRecord(body) ? body : {};
    const firstTool: unknown = Array.isArray(request.tools) ? request.tools[0] : undefined;
    return {
      choices: 1,
      maxTokens: positiveInteger(request.max_tokens),
      stopSequences: stringList(request.stop_sequences),
      toolName: isRecord(firstTool) && typeof firstTool.name === 'string' ? firstTool.name : undefined,
      messages: request.messages,
      system: request.system,
    };
  },

  answerJson(x, answer) {
    const choice = firstChoice(answer);
    const thinking = thinkingBlocks(x);
    return {
      ...messageShell(x),
      content: [...thinking.map((block) => block.whole), ...contentBlocks(x, answer, choice)],
      stop_reason: stopReason(choice),
      stop_sequence: choice.stopSequence ?? null,
      usage: { input_tokens: answer.promptTokens, output_tokens: outputTokens(answer, choice) + thinkingTokens(thinking) },
    };
  },

  answerFrames(x, answer) {
    const choice = firstChoice(answer);
    const frames: Frame[] = [
      frame('message_start', { type: 'message_start', message: startedMessage(x, answer.promptTokens) }),
    ];
    const thinking = thinkingBlocks(x);
    [...thinking, ...streamedBlocks(x, answer, choice)].forEach((block, index) => {
      frames.push(frame('content_block_start', { type: 'content_block_start', index, content_block: block.start }));
      if (index === 0) frames.push(frame('ping', { type: 'ping' }));
      for (const delta of block.deltas) {
        frames.push({ text: sseEvent('content_block_delta', { type: 'content_block_delta', index, delta }), content: true });
      }
      frames.push(frame('content_block_stop', { type: 'content_block_stop', index }));
    });
    frames.push(
      frame('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: stopReason(choice), stop_sequence: choice.stopSequence ?? null },
        usage: { output_tokens: outputTokens(answer, choice) + thinkingTokens(thinking) },
      }),
      frame('message_stop', { type: 'message_stop' }),
    );
    return frames;
  },

  failure: anthropicFailure,

  /** Anthropic sends `event: error` and closes the stream: no `message_stop` follows. */
  inBandError(x, failure) {
    return sseEvent('error', anthropicFailure(x, failure).body);
  },

  contentFilterJson(x) {
    return {
      ...messageShell(x),
      content: [],
      stop_reason: 'refusal',
      stop_sequence: null,
      usage: { input_tokens: promptTokensOf(x), output_tokens: 0 },
    };
  },

  contentFilterStream(x) {
    return (
      sseEvent('message_start', { type: 'message_start', message: startedMessage(x, promptTokensOf(x)) }) +
      sseEvent('message_delta', { type: 'message_delta', delta: { stop_reason: 'refusal', stop_sequence: null }, usage: { output_tokens: 0 } }) +
      sseEvent('message_stop', { type: 'message_stop' })
    );
  },

  malformedFrame: 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel\n\n',

  harmlessFrames: () => HARMLESS_FRAMES,
  emptyStream: '',
};

/** Extra pings, a comment, metadata without an event name, and event types Anthropic may add one day. */
const HARMLESS_FRAMES =
  sseEvent('ping', { type: 'ping' }) +
  ': keep-alive\n\n' +
  sseData({ type: 'metadata', server: 'mock-anthropic' }) +
  sseEvent('content_block_annotation', { type: 'content_block_annotation', index: 0, annotation: { kind: 'future' } }) +
  'event: server_heartbeat\ndata: still here\n\n';

function frame(event: string, data: object): Frame {
  return { text: sseEvent(event, data), content: false };
}

function firstChoice(answer: Answer): AnswerChoice {
  const choice = answer.choices[0];
  if (choice === undefined) throw new Error('mock-anthropic: an answer always has one choice');
  return choice;
}

function messageShell(x: MockExchange): object {
  return { id: `msg_mock_${x.call.seq}`, type: 'message', role: 'assistant', model: x.call.model ?? '' };
}

/** `message_start` carries the message with no content yet; `output_tokens` starts at 1 as upstream. */
function startedMessage(x: MockExchange, inputTokens: number): object {
  return {
    ...messageShell(x),
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: inputTokens, output_tokens: 1 },
  };
}

function contentBlocks(x: MockExchange, answer: Answer, choice: AnswerChoice): object[] {
  if (answer.tool !== undefined) {
    const input: unknown = JSON.parse(answer.tool.arguments);
    return [
      { type: 'text', text: TOOL_PREFACE },
      { type: 'tool_use', id: toolUseId(x), name: answer.tool.name, input },
    ];
  }
  return choice.text === '' ? [] : [{ type: 'text', text: choice.text }];
}

interface StreamedBlock {
  start: object;
  deltas: object[];
}

interface ThinkingAnswerBlock extends StreamedBlock {
  /** The block in a whole answer. */
  whole: { type: 'thinking'; thinking: string; signature: string } | { type: 'redacted_thinking'; data: string };
}

/** The thinking blocks of the answer: none unless the request asks for thinking (a `thinking` whose `type` is not `disabled`). */
function thinkingBlocks(x: MockExchange): ThinkingAnswerBlock[] {
  const body = isRecord(x.request.body) ? x.request.body : {};
  if (!isRecord(body.thinking) || body.thinking.type === 'disabled') return [];
  const signature = mockAnthropicSignature(x.call.seq);
  const half = Math.ceil(MOCK_ANTHROPIC_THINKING.length / 2);
  const blocks: ThinkingAnswerBlock[] = [
    {
      whole: { type: 'thinking', thinking: MOCK_ANTHROPIC_THINKING, signature },
      start: { type: 'thinking', thinking: '', signature: '' },
      deltas: [
        { type: 'thinking_delta', thinking: MOCK_ANTHROPIC_THINKING.slice(0, half) },
        { type: 'thinking_delta', thinking: MOCK_ANTHROPIC_THINKING.slice(half) },
        { type: 'signature_delta', signature },
      ],
    },
  ];
  if (lastUserText(body.messages).includes(MOCK_ANTHROPIC_REDACTED_TRIGGER)) {
    const whole = { type: 'redacted_thinking' as const, data: MOCK_ANTHROPIC_REDACTED_DATA };
    blocks.push({ whole, start: whole, deltas: [] });
  }
  return blocks;
}

function thinkingTokens(blocks: ThinkingAnswerBlock[]): number {
  return blocks.length === 0 ? 0 : estimateTokens(MOCK_ANTHROPIC_THINKING);
}

function streamedBlocks(x: MockExchange, answer: Answer, choice: AnswerChoice): StreamedBlock[] {
  if (answer.tool !== undefined) {
    return [
      { start: { type: 'text', text: '' }, deltas: [{ type: 'text_delta', text: TOOL_PREFACE }] },
      {
        start: { type: 'tool_use', id: toolUseId(x), name: answer.tool.name, input: {} },
        deltas: answer.tool.pieces.map((piece) => ({ type: 'input_json_delta', partial_json: piece })),
      },
    ];
  }
  if (choice.pieces.length === 0) return [];
  return [{ start: { type: 'text', text: '' }, deltas: choice.pieces.map((piece) => ({ type: 'text_delta', text: piece })) }];
}

function stopReason(choice: AnswerChoice): string {
  return choice.stop === 'end' ? 'end_turn' : choice.stop;
}

function outputTokens(answer: Answer, choice: AnswerChoice): number {
  return completionTokens(answer, choice) + (answer.tool === undefined ? 0 : estimateTokens(TOOL_PREFACE));
}

function promptTokensOf(x: MockExchange): number {
  const body = isRecord(x.request.body) ? x.request.body : {};
  return estimateTokens(promptText(body.messages, body.system));
}

function toolUseId(x: MockExchange): string {
  return `toolu_mock_${x.call.seq}`;
}

// ---------------------------------------------------------------------------------------------
// Failures

function anthropicError(type: string, message: string): object {
  return { type: 'error', error: { type, message } };
}

function anthropicFailure(x: MockExchange, failure: Failure): HttpFailure {
  switch (failure.name) {
    case 'error-500':
      return failed(500, anthropicError('api_error', 'Internal server error'));
    case 'error-503':
      return failed(503, anthropicError('api_error', 'Service unavailable'));
    case 'overloaded':
      return failed(529, anthropicError('overloaded_error', 'Overloaded'));
    case 'rate-limit':
      return failed(429, anthropicError('rate_limit_error', RATE_LIMIT_MESSAGE), { 'retry-after': String(failure.retryAfterSeconds) });
    case 'bad-request':
      return failed(400, anthropicError('invalid_request_error', BAD_REQUEST_MESSAGE));
    case 'auth':
      return failed(401, anthropicError('authentication_error', 'invalid x-api-key'));
    case 'not-found':
      return failed(404, anthropicError('not_found_error', `model: ${x.call.model ?? ''}`));
    case 'context-window':
      return failed(400, anthropicError('invalid_request_error', 'prompt is too long: 208310 tokens > 200000 maximum'));
    case 'content-policy':
    case 'content-policy-azure':
    case 'content-policy-dashscope':
      return failed(400, anthropicError('invalid_request_error', 'Output blocked by content filtering policy'));
  }
}

function failed(status: number, body: object, headers: Record<string, string> = {}): HttpFailure {
  return { status, body, headers };
}

const RATE_LIMIT_MESSAGE =
  'This request would exceed the rate limit for your organization of 50 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.';
const BAD_REQUEST_MESSAGE =
  'messages: roles must alternate between "user" and "assistant", but found multiple "user" roles in a row';

function headerValue(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
