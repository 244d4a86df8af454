/**
 * The raw wire of one request in any of the three inbound protocols, read strictly, for the guardrail tests
 * (test/protocol-guardrail.test.ts): the exact bytes, the named events, and what they say in chat terms.
 *
 * Unlike `ask()` (test/helpers/protocols.ts), this reader knows every normal ending of each protocol:
 * Responses `response.completed` *and* `response.incomplete` (a soft block ends with the latter), Messages
 * `message_stop` after a `message_delta`, chat `[DONE]`; and it records which terminal events came, so a test
 * can assert "exactly one terminal error, then nothing". Anything malformed throws.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { rawRequest, sseData } from './http.js';
import { namedEvents, PROTOCOL_PATHS, protocolBody, type WireProtocol } from './protocols.js';

export interface WireEvent {
  /** The `event:` line (undefined for chat's plain `data:` frames). */
  event: string | undefined;
  data: Record<string, unknown>;
}

export interface Wire {
  protocol: WireProtocol;
  status: number;
  headers: IncomingHttpHeaders;
  /** The body exactly as received. */
  raw: string;
  complete: boolean;
  transportError: Error | undefined;
  stream: boolean;
  /** Streams only: every frame as a named event (chat: `event` undefined; `[DONE]` is not an event). */
  events: WireEvent[];
  /** The answer text: the deltas of a stream, the text content of a whole answer. */
  text: string;
  /** In chat terms: stop, length, tool_calls, content_filter; undefined when the answer did not end normally. */
  finish: string | undefined;
  /** The error, normalized to `{ message, type }` (plus `code` as a number where the protocol has one). */
  error: { message: unknown; type: unknown; code?: number } | undefined;
  /** The error object exactly as the wire had it (the JSON body's, or the stream's terminal error event's data). */
  errorWire: Record<string, unknown> | undefined;
  /**
   * How it ended: `completed` (the protocol's normal ending: response.completed / response.incomplete /
   * message_stop / [DONE] without error), `error` (the terminal error event(s)), `cut` (neither), `json`.
   */
  ending: 'completed' | 'error' | 'cut' | 'json';
  /** Responses: the status of the Response in the last lifecycle event or the JSON body; Messages: the stop_reason. */
  protocolStop: unknown;
  /** Responses: `incomplete_details.reason`. */
  incompleteReason: unknown;
}

const RESPONSES_FINISH: Record<string, string> = { max_output_tokens: 'length', content_filter: 'content_filter' };
const MESSAGES_FINISH: Record<string, string> = { end_turn: 'stop', stop_sequence: 'stop', max_tokens: 'length', tool_use: 'tool_calls', refusal: 'content_filter' };

/** POSTs a chat-shaped body in `protocol`'s form and reads the wire. */
export function wire(protocol: WireProtocol, baseUrl: string, chatBody: Record<string, unknown>): Promise<Wire> {
  return wireRequest(protocol, baseUrl, protocolBody(protocol, chatBody));
}

/** POSTs a body already in `protocol`'s form (to its path, or `path`) and reads the wire. */
export async function wireRequest(protocol: WireProtocol, baseUrl: string, body: Record<string, unknown>, options: { path?: string; headers?: Record<string, string> } = {}): Promise<Wire> {
  const res = await rawRequest(baseUrl, { body, path: options.path ?? PROTOCOL_PATHS[protocol], ...(options.headers ? { headers: options.headers } : {}) });
  const stream = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
  const base = { protocol, status: res.status, headers: res.headers, raw: res.text, complete: res.complete, transportError: res.error, stream };
  if (!stream) return { ...base, events: [], ending: 'json', ...readJson(protocol, res.status, res.text) };
  if (protocol === 'chat') return { ...base, ...readChatStream(res.text) };
  const events = namedEvents(res.text);
  return { ...base, events, ...(protocol === 'responses' ? readResponsesStream(events) : readMessagesStream(events)) };
}

/** Both modes of the same request. */
export async function wireBoth(protocol: WireProtocol, baseUrl: string, chatBody: Record<string, unknown>): Promise<[Wire, Wire]> {
  const plain = await wire(protocol, baseUrl, { ...chatBody, stream: false });
  const streamed = await wire(protocol, baseUrl, { ...chatBody, stream: true });
  return [plain, streamed];
}

/** Names of the stream's events (chat: `data` for chunks, `error` for the error frame). */
export function eventNames(w: Wire): string[] {
  return w.events.map((e) => e.event ?? (e.data['error'] !== undefined ? 'error' : 'data'));
}

/**
 * A committed stream ended by exactly one terminal error, then the end of the body:
 * chat: the error frame then `[DONE]`; Responses: `error` then `response.failed`, nothing after;
 * Messages: `error`, no `message_delta` or `message_stop`.
 */
export function expectTerminalError(w: Wire, error: { message: string; type: string }): void {
  expect(w.status).toBe(200);
  expect(w.stream).toBe(true);
  expect(w.complete).toBe(true);
  expect(w.transportError).toBeUndefined();
  expect(w.ending).toBe('error');
  expect(w.error).toMatchObject(error);
  expect(w.raw.endsWith('\n\n')).toBe(true);
  const names = eventNames(w);
  expect(names.filter((n) => n === 'error')).toHaveLength(1);
  if (w.protocol === 'chat') {
    expect(w.raw.endsWith(`data: ${JSON.stringify(w.errorWire)}\n\ndata: [DONE]\n\n`)).toBe(true);
    expect(names.at(-1)).toBe('error');
  }
  if (w.protocol === 'responses') {
    expect(names.slice(-2)).toEqual(['error', 'response.failed']);
    expect(names.filter((n) => n === 'response.failed')).toHaveLength(1);
    expect(names.some((n) => n === 'response.completed' || n === 'response.incomplete')).toBe(false);
    const failed = w.events.at(-1)!.data['response'] as Record<string, unknown>;
    expect(failed['status']).toBe('failed');
    expect(failed['error']).toEqual({ code: String(w.error!.code), message: error.message });
    // The flat fields of the error event say the same as its nested error.
    expect(w.errorWire).toMatchObject({ type: 'error', code: String(w.error!.code), message: error.message });
    expect(w.raw.endsWith(`data: ${JSON.stringify(w.events.at(-1)!.data)}\n\n`)).toBe(true);
  }
  if (w.protocol === 'messages') {
    expect(names.at(-1)).toBe('error');
    expect(names).not.toContain('message_stop');
    expect(names).not.toContain('message_delta');
    expect(names[0]).toBe('message_start');
    expect(w.errorWire).toEqual({ type: 'error', error: error });
    expect(w.raw.endsWith(`event: error\ndata: ${JSON.stringify(w.errorWire)}\n\n`)).toBe(true);
  }
}

/** What must agree between the two modes when nothing was sent before the outcome was known. */
export function agreement(w: Wire): Record<string, unknown> {
  return { status: w.status, error: w.error && { message: w.error.message, type: w.error.type }, text: w.text, finish: w.error ? undefined : w.finish };
}

type Read = Pick<Wire, 'text' | 'finish' | 'error' | 'errorWire' | 'protocolStop' | 'incompleteReason'>;

function readJson(protocol: WireProtocol, status: number, text: string): Read {
  const json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
  const none = { protocolStop: undefined, incompleteReason: undefined };
  if (status !== 200) {
    const inner = (json['error'] ?? {}) as Record<string, unknown>;
    if (protocol === 'messages' && json['type'] !== 'error') throw new Error(`a Messages error body without type "error": ${text}`);
    const error = protocol === 'messages' ? { message: inner['message'], type: inner['type'] } : { message: inner['message'], type: inner['type'], code: Number(inner['code']) };
    return { text: '', finish: undefined, error, errorWire: json, ...none };
  }
  if (protocol === 'chat') {
    const choice = (json['choices'] as { message: { content: string | null }; finish_reason: string | null }[])[0];
    return { text: choice?.message.content ?? '', finish: choice?.finish_reason ?? undefined, error: undefined, errorWire: undefined, ...none };
  }
  if (protocol === 'responses') {
    const output = (json['output'] ?? []) as { type: string; content?: { type: string; text?: string }[] }[];
    const answer = output
      .filter((item) => item.type === 'message')
      .flatMap((item) => item.content ?? [])
      .filter((part) => part.type === 'output_text')
      .map((part) => part.text ?? '')
      .join('');
    const reason = (json['incomplete_details'] as { reason?: string } | null | undefined)?.reason;
    const finish = json['status'] === 'incomplete' ? (RESPONSES_FINISH[reason ?? ''] ?? reason) : json['status'] === 'completed' ? 'stop' : undefined;
    return { text: answer, finish, error: undefined, errorWire: undefined, protocolStop: json['status'], incompleteReason: reason };
  }
  const content = (json['content'] ?? []) as { type: string; text?: string }[];
  const stop = json['stop_reason'] as string;
  return {
    text: content.filter((b) => b.type === 'text').map((b) => b.text ?? '').join(''),
    finish: MESSAGES_FINISH[stop] ?? stop,
    error: undefined,
    errorWire: undefined,
    protocolStop: stop,
    incompleteReason: undefined,
  };
}

function readChatStream(raw: string): Read & Pick<Wire, 'events' | 'ending'> {
  const frames = sseData(raw);
  const done = frames.at(-1) === '[DONE]';
  if (frames.slice(0, -1).includes('[DONE]')) throw new Error('[DONE] before the end of the stream');
  const events: WireEvent[] = frames.filter((f) => f !== '[DONE]').map((f) => ({ event: undefined, data: JSON.parse(f) as Record<string, unknown> }));
  let text = '';
  let finish: string | undefined;
  let errorWire: Record<string, unknown> | undefined;
  events.forEach(({ data }, i) => {
    if (errorWire !== undefined) throw new Error(`frame ${i} after the error frame`);
    if (data['error'] !== undefined) {
      errorWire = data;
      return;
    }
    for (const choice of (data['choices'] as { index: number; delta: { content?: string | null }; finish_reason: string | null }[]) ?? []) {
      if (choice.index !== 0) continue;
      text += choice.delta.content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  });
  const inner = errorWire?.['error'] as Record<string, unknown> | undefined;
  return {
    events,
    text,
    finish: errorWire ? undefined : finish,
    error: inner && { message: inner['message'], type: inner['type'], code: Number(inner['code']) },
    errorWire,
    ending: !done ? 'cut' : errorWire ? 'error' : 'completed',
    protocolStop: undefined,
    incompleteReason: undefined,
  };
}

function readResponsesStream(events: WireEvent[]): Read & Pick<Wire, 'ending'> {
  let text = '';
  let ending = 'cut' as Wire['ending'];
  let errorWire: Record<string, unknown> | undefined;
  let final: Record<string, unknown> | undefined;
  events.forEach(({ event, data }, i) => {
    if (data['sequence_number'] !== i) throw new Error(`event ${i} (${event}) has sequence_number ${String(data['sequence_number'])}`);
    // After `error`, only `response.failed` may come (once); after a normal ending, nothing.
    if (ending === 'completed') throw new Error(`event ${event} after the stream's normal ending`);
    if (ending === 'error' && !(event === 'response.failed' && final === undefined)) throw new Error(`event ${event} after the stream's terminal error`);
    if (event === 'response.output_text.delta') text += String(data['delta']);
    if (event === 'error') {
      errorWire = data;
      ending = 'error';
    }
    if (event === 'response.failed') {
      if (ending !== 'error') throw new Error('response.failed without the error event before it');
      final = data['response'] as Record<string, unknown>;
    }
    if (event === 'response.completed' || event === 'response.incomplete') {
      final = data['response'] as Record<string, unknown>;
      ending = 'completed';
    }
  });
  const reason = (final?.['incomplete_details'] as { reason?: string } | null | undefined)?.reason;
  const status = final?.['status'];
  const finish = ending !== 'completed' ? undefined : status === 'incomplete' ? (RESPONSES_FINISH[reason ?? ''] ?? reason) : 'stop';
  const inner = errorWire?.['error'] as Record<string, unknown> | undefined;
  return {
    text,
    finish,
    error: inner && { message: inner['message'], type: inner['type'], code: Number(inner['code']) },
    errorWire,
    ending,
    protocolStop: status,
    incompleteReason: reason,
  };
}

function readMessagesStream(events: WireEvent[]): Read & Pick<Wire, 'ending'> {
  let text = '';
  let ending = 'cut' as Wire['ending'];
  let errorWire: Record<string, unknown> | undefined;
  let stop: string | undefined;
  events.forEach(({ event, data }, i) => {
    if (ending !== 'cut') throw new Error(`event ${event} after the stream's terminal event`);
    if (i === 0 && event !== 'message_start' && event !== 'error') throw new Error(`the stream opens with ${event}`);
    const delta = data['delta'] as Record<string, unknown> | undefined;
    if (event === 'content_block_delta' && delta?.['type'] === 'text_delta') text += String(delta['text']);
    if (event === 'message_delta') stop = delta?.['stop_reason'] as string;
    if (event === 'error') {
      errorWire = data;
      ending = 'error';
    }
    if (event === 'message_stop') {
      if (stop === undefined) throw new Error('message_stop without a message_delta');
      ending = 'completed';
    }
  });
  const inner = errorWire?.['error'] as Record<string, unknown> | undefined;
  return {
    text,
    finish: ending === 'completed' && stop !== undefined ? (MESSAGES_FINISH[stop] ?? stop) : undefined,
    error: inner && { message: inner['message'], type: inner['type'] },
    errorWire,
    ending,
    protocolStop: stop,
    incompleteReason: undefined,
  };
}
