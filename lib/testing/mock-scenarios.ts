/**
 * Scenarios of the mock providers: what a mock server does with a request, chosen by the requested
 * model name (on Azure routes: the deployment name), or per model with `server.setScenario(model, …)`.
 * Every answer is deterministic. **Unknown names (e.g. `gpt-4o`) behave as `normal`.** A name with an
 * argument it does not take, or a bad argument (`long:abc`), is unknown too.
 *
 * | Model name | `stream: true` | non-streaming |
 * |---|---|---|
 * | `normal` | "Hello! This is a mock answer from <name>." in `chunks` chunks (default 4) | the same text |
 * | `echo` | the text of the last user message | the same text |
 * | `long:<N>` (`long` = 2000) | N characters of numbered sentences, `chunkSize` (64) characters a chunk | the same text |
 * | `tools` | a tool call (the request's first tool, else `get_weather`) with streamed arguments | `tool_calls` / `tool_use` |
 * | `slow[:<ms>]` | `normal` with ms (default `slowChunkDelayMs`, 200) between chunks | `normal`, sent after (chunks − 1) × ms |
 * | `slow-headers:<ms>` | `normal`, the status line sent only after ms | the same |
 * | `<failure>` | the failure's HTTP status and body (table below) | the same |
 * | `stream-error:<failure>` | HTTP 200, the failure as the first in-band event | as `<failure>` |
 * | `midstream-error[:<failure>]` | the first half of the chunks, then the failure in band (default OpenAI `error-500`, Anthropic `overloaded`) | as `<failure>` |
 * | `empty-stream` | HTTP 200; OpenAI: only `data: [DONE]`; Anthropic: no event at all | an empty answer |
 * | `no-done` | the content, then a clean end: no finish chunk, usage or `[DONE]` (Anthropic: no `content_block_stop`, `message_delta`, `message_stop`) | `normal` |
 * | `midstream-drop` | the first half of the chunks, then the socket is destroyed | half the JSON body, then the socket is destroyed |
 * | `malformed-chunk` | a non-JSON `data:` line as the first content event, then the normal answer | HTTP 200 with a non-JSON body |
 * | `midstream-malformed-chunk` | the same non-JSON line after the first half of the content, then the rest of the answer | as `malformed-chunk` |
 * | `pings` | `normal`, with frames that carry nothing before every content chunk and before the end: OpenAI a `: keep-alive` comment, a blank `data:`, `data: {}`, `event: ping`, a metadata object without `choices` (Azure routes also a choice without `delta`, as Azure's content-filter annotations); Anthropic extra `ping` events, a comment, an unnamed `{"type":"metadata"}` and unknown event types (one with data that is not JSON) | `normal` |
 * | `content-filter-first` | OpenAI: one chunk with `finish_reason: "content_filter"` and no content (Azure's form on Azure routes); Anthropic: `stop_reason: "refusal"`, no content block | the same, as JSON |
 * | `content-filter-first-azure` | OpenAI: Azure's form on any route (a `prompt_filter_results` chunk, then `content_filter` with `content_filter_results`); Anthropic: as `content-filter-first` | the same, as JSON |
 * | `hang` | no answer at all; the call log records when the client gives up | the same |
 * | `hang-after-first` | the first content chunk, then silence | the status line and headers, then silence |
 *
 * Failures (`<failure>`); the exact bodies are in `mock-openai.ts` and `mock-anthropic.ts`:
 *
 * | `<failure>` | OpenAI-compatible | Anthropic |
 * |---|---|---|
 * | `error-500` | 500 `server_error` | 500 `api_error` |
 * | `error-503` | 503 `server_error` "The engine is currently overloaded, …" | 503 `api_error` |
 * | `overloaded` | as `error-503` | 529 `overloaded_error` |
 * | `rate-limit[:<s>]` | 429 `rate_limit_exceeded`, `Retry-After: s` (default `retryAfterSeconds`, 1); Azure routes: Azure's 429 | 429 `rate_limit_error`, `retry-after: s` |
 * | `bad-request` | 400 `invalid_request_error` | 400 `invalid_request_error` |
 * | `auth` | 401 `invalid_api_key`; Azure routes: Azure's 401 | 401 `authentication_error` |
 * | `not-found` | 404 `model_not_found`; Azure routes: `DeploymentNotFound` | 404 `not_found_error` |
 * | `context-window` | 400 `context_length_exceeded` "This model's maximum context length is …" | 400 "prompt is too long: …" |
 * | `content-policy` | 400 `content_policy_violation`; Azure routes: as `content-policy-azure` | 400 "Output blocked by content filtering policy" |
 * | `content-policy-azure` | 400 `content_filter`, `innererror.code: ResponsibleAIPolicyViolation` + `content_filter_result` | as `content-policy` |
 * | `content-policy-dashscope` | 400 `data_inspection_failed` "Input data may contain inappropriate content." | as `content-policy` |
 *
 * Arguments nest: `stream-error:rate-limit:5` is a 200 stream whose first event is a rate-limit error.
 * Answers also honour the request's token limit (`max_tokens` / `max_completion_tokens`: the text is
 * cut at 4 characters a token, finish `length` / `max_tokens`) and stop sequences (`stop` /
 * `stop_sequences`), and OpenAI's `n` (choice `i > 0` ends with " (choice i)").
 */

export const MOCK_FAILURE_NAMES = [
  'error-500',
  'error-503',
  'overloaded',
  'rate-limit',
  'bad-request',
  'auth',
  'not-found',
  'context-window',
  'content-policy',
  'content-policy-azure',
  'content-policy-dashscope',
] as const;
export type MockFailureName = (typeof MOCK_FAILURE_NAMES)[number];

export const MOCK_PATHOLOGIES = [
  'empty-stream',
  'no-done',
  'midstream-drop',
  'malformed-chunk',
  'midstream-malformed-chunk',
  'pings',
  'content-filter-first',
  'content-filter-first-azure',
  'hang',
  'hang-after-first',
] as const;
export type MockPathology = (typeof MOCK_PATHOLOGIES)[number];

export interface Failure {
  name: MockFailureName;
  /** Sent as `Retry-After` by `rate-limit`. */
  retryAfterSeconds: number;
}

/** Where the text of an answer comes from. */
export type AnswerContent = 'normal' | 'echo' | 'long' | 'tools';

export type Scenario =
  | {
      kind: 'answer';
      content: AnswerContent;
      /** Characters of a `long` answer. */
      length: number;
      /** Set by `slow`; otherwise the server's `chunkDelayMs` applies. */
      chunkDelayMs: number | undefined;
      /** Set by `slow-headers`. */
      headersDelayMs: number;
    }
  | { kind: 'failure'; failure: Failure; delivery: 'status' | 'stream-start' | 'mid-stream' }
  | { kind: 'pathology'; pathology: MockPathology };

/** Server-level values that scenario names without an argument fall back to. */
export interface ScenarioDefaults {
  slowChunkDelayMs: number;
  retryAfterSeconds: number;
  /** The failure `midstream-error` sends without an argument (each provider's typical mid-stream error). */
  midstreamFailure: MockFailureName;
}

const DEFAULT_LONG_LENGTH = 2000;

export const NORMAL_SCENARIO: Scenario = answer('normal');

function answer(content: AnswerContent, extra: Partial<Extract<Scenario, { kind: 'answer' }>> = {}): Scenario {
  return { kind: 'answer', content, length: 0, chunkDelayMs: undefined, headersDelayMs: 0, ...extra };
}

/** Parses a scenario name (see the table above); `undefined` for a name it does not know. */
export function parseScenario(name: string, defaults: ScenarioDefaults): Scenario | undefined {
  const [head, arg] = splitArgument(name);
  switch (head) {
    case 'normal':
    case 'echo':
    case 'tools':
      return arg === undefined ? answer(head) : undefined;
    case 'long': {
      const length = arg === undefined ? DEFAULT_LONG_LENGTH : parseNonNegativeInteger(arg);
      return length === undefined ? undefined : answer('long', { length });
    }
    case 'slow': {
      const delay = arg === undefined ? defaults.slowChunkDelayMs : parseNonNegativeInteger(arg);
      return delay === undefined ? undefined : answer('normal', { chunkDelayMs: delay });
    }
    case 'slow-headers': {
      const delay = arg === undefined ? undefined : parseNonNegativeInteger(arg);
      return delay === undefined ? undefined : answer('normal', { headersDelayMs: delay });
    }
    case 'stream-error':
      return failureScenario(arg === undefined ? undefined : parseFailure(arg, defaults), 'stream-start');
    case 'midstream-error':
      return failureScenario(parseFailure(arg ?? defaults.midstreamFailure, defaults), 'mid-stream');
  }
  if (isPathology(name)) return { kind: 'pathology', pathology: name };
  return failureScenario(parseFailure(name, defaults), 'status');
}

function failureScenario(
  failure: Failure | undefined,
  delivery: Extract<Scenario, { kind: 'failure' }>['delivery'],
): Scenario | undefined {
  return failure === undefined ? undefined : { kind: 'failure', failure, delivery };
}

function parseFailure(text: string, defaults: ScenarioDefaults): Failure | undefined {
  const [head, arg] = splitArgument(text);
  if (!isFailureName(head)) return undefined;
  if (arg === undefined) return { name: head, retryAfterSeconds: defaults.retryAfterSeconds };
  const seconds = head === 'rate-limit' ? parseNonNegativeInteger(arg) : undefined;
  return seconds === undefined ? undefined : { name: head, retryAfterSeconds: seconds };
}

function splitArgument(name: string): [string, string | undefined] {
  const colon = name.indexOf(':');
  return colon < 0 ? [name, undefined] : [name.slice(0, colon), name.slice(colon + 1)];
}

function parseNonNegativeInteger(text: string): number | undefined {
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

function isFailureName(name: string): name is MockFailureName {
  return (MOCK_FAILURE_NAMES as readonly string[]).includes(name);
}

function isPathology(name: string): name is MockPathology {
  return (MOCK_PATHOLOGIES as readonly string[]).includes(name);
}

// ---------------------------------------------------------------------------------------------
// Deterministic text

export function normalText(serverName: string): string {
  return `Hello! This is a mock answer from ${serverName}.`;
}

/** Numbered sentences, so a guardrail window or a lost chunk is easy to spot in a failing test. */
export function longText(length: number): string {
  let text = '';
  for (let i = 1; text.length < length; i++) text += `Sentence ${i} of the long mock answer. `;
  return text.slice(0, length);
}

/** Splits on word boundaries into at most `count` pieces that concatenate back to `text`. */
export function splitIntoWords(text: string, count: number): string[] {
  const words = text.match(/\s*\S+\s*/g) ?? [];
  const pieces: string[] = [];
  for (let i = 0; i < count; i++) {
    const piece = words.slice(Math.floor((i * words.length) / count), Math.floor(((i + 1) * words.length) / count));
    if (piece.length > 0) pieces.push(piece.join(''));
  }
  return pieces;
}

export function splitBySize(text: string, size: number): string[] {
  const pieces: string[] = [];
  for (let i = 0; i < text.length; i += size) pieces.push(text.slice(i, i + size));
  return pieces;
}

/** The usual rule of thumb (4 characters a token); good enough for usage numbers and token limits. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}

export type StopCause = 'end' | 'max_tokens' | 'stop_sequence';

export interface LimitedText {
  text: string;
  stop: StopCause;
  /** The stop sequence that ended the text, when `stop` is `stop_sequence`. */
  stopSequence: string | undefined;
}

/** Applies the request's stop sequences and token limit, the way a real model would stop early. */
export function limitText(text: string, maxTokens: number | undefined, stopSequences: readonly string[]): LimitedText {
  let cut: LimitedText = { text, stop: 'end', stopSequence: undefined };
  for (const sequence of stopSequences) {
    const at = sequence === '' ? -1 : cut.text.indexOf(sequence);
    if (at >= 0) cut = { text: cut.text.slice(0, at), stop: 'stop_sequence', stopSequence: sequence };
  }
  if (maxTokens !== undefined && estimateTokens(cut.text) > maxTokens) {
    cut = { text: cut.text.slice(0, maxTokens * 4), stop: 'max_tokens', stopSequence: undefined };
  }
  return cut;
}

// ---------------------------------------------------------------------------------------------
// Reading request bodies (OpenAI and Anthropic messages share the `{ role, content }` shape, and
// both allow content as a string or as parts `{ type: "text", text }`)

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part) => (isRecord(part) && typeof part.text === 'string' ? part.text : '')).join('');
}

export function lastUserText(messages: unknown): string {
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const message: unknown = messages[i];
    if (isRecord(message) && message.role === 'user') return contentText(message.content);
  }
  return '';
}

/** All text of the prompt, for the usage numbers. */
export function promptText(messages: unknown, system?: unknown): string {
  const texts = Array.isArray(messages) ? messages.map((m) => (isRecord(m) ? contentText(m.content) : '')) : [];
  return contentText(system) + texts.join('');
}

export function stringList(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

export function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}
