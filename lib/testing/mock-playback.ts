/**
 * How each scenario plays out on the wire, written once for both providers. A provider supplies a
 * `Dialect` (its JSON bodies, SSE frames and error shapes); this module decides what to send when.
 */
import type { MockExchange } from './mock-core.js';
import {
  estimateTokens,
  limitText,
  lastUserText,
  longText,
  normalText,
  promptText,
  splitBySize,
  splitIntoWords,
  type AnswerContent,
  type Failure,
  type LimitedText,
  type MockPathology,
  type StopCause,
} from './mock-scenarios.js';

/** One write unit of a stream (one or more SSE frames); `content` marks those that carry answer content. */
export interface Frame {
  text: string;
  content: boolean;
}

export interface HttpFailure {
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

/** What an answer depends on in the request, read the provider's way. */
export interface AnswerRequest {
  choices: number;
  maxTokens: number | undefined;
  stopSequences: string[];
  toolName: string | undefined;
  messages: unknown;
  system: unknown;
}

export interface AnswerChoice extends Omit<LimitedText, 'stop'> {
  stop: StopCause | 'tool_use';
  /** The text as streamed. */
  pieces: string[];
}

export interface ToolCall {
  name: string;
  /** JSON text of the arguments. */
  arguments: string;
  pieces: string[];
}

export interface Answer {
  choices: AnswerChoice[];
  /** Set for `tools`: every choice answers with this call. */
  tool: ToolCall | undefined;
  promptTokens: number;
  /** Streamed content events per choice: a non-streamed answer takes as long as the stream would. */
  steps: number;
}

export interface Dialect {
  readRequest(body: unknown): AnswerRequest;
  answerJson(x: MockExchange, answer: Answer): unknown;
  /** The whole answer as SSE, in order, from the first frame to the provider's end of stream. */
  answerFrames(x: MockExchange, answer: Answer): Frame[];
  failure(x: MockExchange, failure: Failure): HttpFailure;
  /** The failure as in-band SSE: everything the provider sends from the error to the end of the stream. */
  inBandError(x: MockExchange, failure: Failure): string;
  contentFilterJson(x: MockExchange, azureStyle: boolean): unknown;
  contentFilterStream(x: MockExchange, azureStyle: boolean): string;
  /** An SSE frame whose data is not JSON. */
  malformedFrame: string;
  /** SSE frames that carry nothing for the client (keep-alives, pings, unknown events), for `pings`. */
  harmlessFrames(x: MockExchange): string;
  /** The whole body of an `empty-stream` answer. */
  emptyStream: string;
}

const MALFORMED_JSON_BODY = '{"choices": [ this is not JSON';
const TOOL_ARGUMENTS = '{"location":"Paris","unit":"celsius"}';
const DEFAULT_TOOL_NAME = 'get_weather';

/** Answers a validated request as its scenario says. */
export function play(x: MockExchange, dialect: Dialect): void {
  const { scenario } = x.resolved;
  switch (scenario.kind) {
    case 'answer':
      return x.later(scenario.headersDelayMs, () => sendAnswer(x, dialect, buildAnswer(x, dialect, scenario.content)));
    case 'failure':
      if (!x.call.stream || scenario.delivery === 'status') return sendFailure(x, dialect, scenario.failure);
      if (scenario.delivery === 'stream-start') return x.stream([dialect.inBandError(x, scenario.failure)], 'end');
      return x.stream([...firstHalf(toBatches(contentFrames(x, dialect))), dialect.inBandError(x, scenario.failure)], 'end');
    case 'pathology':
      return x.call.stream ? playStreamPathology(x, dialect, scenario.pathology) : playJsonPathology(x, dialect, scenario.pathology);
  }
}

export function sendFailure(x: MockExchange, dialect: Dialect, failure: Failure): void {
  const { status, body, headers } = dialect.failure(x, failure);
  x.sendJson(status, body, headers);
}

function sendAnswer(x: MockExchange, dialect: Dialect, answer: Answer): void {
  if (x.call.stream) {
    x.stream(toBatches(dialect.answerFrames(x, answer)), 'end');
    return;
  }
  x.later((answer.steps - 1) * x.resolved.chunkDelayMs, () => x.sendJson(200, dialect.answerJson(x, answer)));
}

function playStreamPathology(x: MockExchange, dialect: Dialect, pathology: MockPathology): void {
  switch (pathology) {
    case 'empty-stream':
      return x.stream([dialect.emptyStream], 'end');
    case 'no-done':
      return x.stream(toBatches(contentFrames(x, dialect)), 'end');
    case 'midstream-drop':
      return x.stream(firstHalf(toBatches(contentFrames(x, dialect))), 'destroy');
    case 'malformed-chunk':
      return x.stream(toBatches(withMalformedFrame(dialect, normalFrames(x, dialect), 0)), 'end');
    case 'midstream-malformed-chunk': {
      const frames = normalFrames(x, dialect);
      const contentCount = frames.filter((frame) => frame.content).length;
      return x.stream(toBatches(withMalformedFrame(dialect, frames, Math.ceil(contentCount / 2))), 'end');
    }
    case 'pings':
      return x.stream(toBatches(withHarmlessFrames(dialect.harmlessFrames(x), normalFrames(x, dialect))), 'end');
    case 'content-filter-first':
    case 'content-filter-first-azure':
      return x.stream([dialect.contentFilterStream(x, pathology === 'content-filter-first-azure')], 'end');
    case 'hang':
      return;
    case 'hang-after-first':
      return x.stream(toBatches(normalFrames(x, dialect)).slice(0, 1), 'hang');
  }
}

function playJsonPathology(x: MockExchange, dialect: Dialect, pathology: MockPathology): void {
  switch (pathology) {
    case 'empty-stream':
      return x.sendJson(200, dialect.answerJson(x, buildAnswer(x, dialect, 'empty')));
    case 'no-done':
      return sendAnswer(x, dialect, buildAnswer(x, dialect, 'normal'));
    case 'midstream-drop':
      return x.sendTruncatedJson(JSON.stringify(dialect.answerJson(x, buildAnswer(x, dialect, 'normal'))));
    case 'malformed-chunk':
    case 'midstream-malformed-chunk':
      return x.sendMalformedJson(MALFORMED_JSON_BODY);
    case 'pings':
      return sendAnswer(x, dialect, buildAnswer(x, dialect, 'normal'));
    case 'content-filter-first':
    case 'content-filter-first-azure':
      return x.sendJson(200, dialect.contentFilterJson(x, pathology === 'content-filter-first-azure'));
    case 'hang':
      return;
    case 'hang-after-first':
      return x.sendHeadersOnly(200, 'application/json');
  }
}

function normalFrames(x: MockExchange, dialect: Dialect): Frame[] {
  return dialect.answerFrames(x, buildAnswer(x, dialect, 'normal'));
}

/** The normal answer up to its last content frame: no finish, usage or end-of-stream marker. */
function contentFrames(x: MockExchange, dialect: Dialect): Frame[] {
  const frames = normalFrames(x, dialect);
  const lastContent = frames.findLastIndex((frame) => frame.content);
  return frames.slice(0, lastContent + 1);
}

/** Puts the malformed frame before the content frame number `afterContent` (0: before the first content). */
function withMalformedFrame(dialect: Dialect, frames: Frame[], afterContent: number): Frame[] {
  let seen = 0;
  let at = frames.length;
  for (const [i, frame] of frames.entries()) {
    if (!frame.content) continue;
    if (seen === afterContent) {
      at = i;
      break;
    }
    seen++;
  }
  return [...frames.slice(0, at), { text: dialect.malformedFrame, content: true }, ...frames.slice(at)];
}

/** `harmless` before every content frame and once more before the end (finish, usage, terminator). */
function withHarmlessFrames(harmless: string, frames: Frame[]): Frame[] {
  const out: Frame[] = [];
  const lastContent = frames.findLastIndex((frame) => frame.content);
  for (const [i, frame] of frames.entries()) {
    if (frame.content || i === lastContent + 1) out.push({ text: harmless, content: false });
    out.push(frame);
  }
  return out;
}

/**
 * Groups frames into writes: each write ends with a content frame, so the frames before the first
 * content (role chunk, `message_start`…) go out with it and the delays fall between content chunks.
 */
export function toBatches(frames: readonly Frame[]): string[] {
  const batches: string[] = [];
  let pending = '';
  for (const frame of frames) {
    pending += frame.text;
    if (frame.content) {
      batches.push(pending);
      pending = '';
    }
  }
  if (pending !== '') batches.push((batches.pop() ?? '') + pending);
  return batches;
}

function firstHalf<T>(items: readonly T[]): T[] {
  return items.slice(0, Math.ceil(items.length / 2));
}

function buildAnswer(x: MockExchange, dialect: Dialect, content: AnswerContent | 'empty'): Answer {
  const request = dialect.readRequest(x.request.body);
  const tool = content === 'tools' ? toolCall(x, request) : undefined;
  const base = tool === undefined ? answerText(x, request, content) : '';
  const choices: AnswerChoice[] = [];
  for (let index = 0; index < request.choices; index++) {
    const choice = tool === undefined ? textChoice(x, content, choiceText(base, index), request) : toolChoice();
    choices.push(choice);
  }
  const steps = Math.max(1, tool?.pieces.length ?? 0, ...choices.map((choice) => choice.pieces.length));
  return { choices, tool, promptTokens: estimateTokens(promptText(request.messages, request.system)), steps };
}

function answerText(x: MockExchange, request: AnswerRequest, content: AnswerContent | 'empty'): string {
  if (content === 'empty') return '';
  if (x.resolved.text !== undefined) return x.resolved.text;
  const { scenario } = x.resolved;
  switch (content) {
    case 'echo':
      return lastUserText(request.messages);
    case 'long':
      return longText(scenario.kind === 'answer' ? scenario.length : 0);
    default:
      return normalText(x.settings.name);
  }
}

/** Choices after the first differ, so a test can tell them apart (and catch mixed-up indexes). */
function choiceText(text: string, index: number): string {
  return index === 0 || text === '' ? text : `${text} (choice ${index})`;
}

function textChoice(x: MockExchange, content: AnswerContent | 'empty', text: string, request: AnswerRequest): AnswerChoice {
  const limited = limitText(text, request.maxTokens, request.stopSequences);
  const pieces =
    content === 'long' ? splitBySize(limited.text, x.settings.chunkSize) : splitIntoWords(limited.text, x.resolved.chunks);
  return { ...limited, pieces };
}

function toolChoice(): AnswerChoice {
  return { text: '', stop: 'tool_use', stopSequence: undefined, pieces: [] };
}

function toolCall(x: MockExchange, request: AnswerRequest): ToolCall {
  const pieceSize = Math.ceil(TOOL_ARGUMENTS.length / x.resolved.chunks);
  return { name: request.toolName ?? DEFAULT_TOOL_NAME, arguments: TOOL_ARGUMENTS, pieces: splitBySize(TOOL_ARGUMENTS, pieceSize) };
}

/** Output tokens of a choice, tool call included. */
export function completionTokens(answer: Answer, choice: AnswerChoice): number {
  return estimateTokens(choice.text) + (answer.tool === undefined ? 0 : estimateTokens(answer.tool.arguments));
}

export function sseData(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

export function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
