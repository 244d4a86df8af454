/**
 * Per-response checks of the soak, on the raw bytes the client received. Each returns the outcome label
 * the report counts and the violations found (an empty list when the response is what the invariants
 * allow: DESIGN.md, invariants 2, 3 and 5, and "no 500 but a bug").
 *
 * The same invariants hold in each protocol's own wire form (README, "Protocols: Responses and Messages"):
 * a committed stream ends with exactly one terminal event, the normal one after an answer or the protocol's
 * one terminal error, never cut and never success-looking after an error; an error before commit is a JSON
 * body in the protocol's shape with its real status. Outcome labels are the same for every protocol
 * (`ok:stream`, `in-band:<type>`, …), with the protocol's own error types.
 */
import { namedEvents, type NamedEvent } from '../test/helpers/protocol-wire.js';
import type { Exchange } from './client.js';
import { STRICT_GROUP } from './services.js';
import { BLOCKED_WORD } from './upstream.js';

export interface Verdict {
  outcome: string;
  violations: string[];
}

export interface LeakPatterns {
  /** API keys and credentials configured on the gateway. */
  secrets: readonly string[];
  /** `host:port` of every local service. */
  origins: readonly string[];
}

const DONE_FRAME = 'data: [DONE]\n\n';
/** Taxonomy statuses a client may legitimately get (DESIGN.md, "Error taxonomy"), 500 excluded: that is a bug. */
const ERROR_STATUSES = new Set([400, 401, 403, 404, 429, 502, 503, 504]);
const STACK_TRACE = /\n\s+at \S|\(node:internal|\.[cm]?[jt]s:\d+:\d+/;
const URL_TEXT = /\bhttps?:\/\//i;

export function checkExchange(x: Exchange, leaks: LeakPatterns): Verdict {
  const leaked = leaksIn(x.body, leaks);
  if (x.timedOut) return { outcome: 'client-timeout', violations: ['response never ended (client hard timeout)', ...leaked] };
  if (x.abortedAt !== undefined) return { outcome: 'client-aborted', violations: leaked };
  if (x.status === 0) return { outcome: 'no-response', violations: [`no response: ${x.error ?? 'unknown'} ${connectionOf(x)}`] };
  const violations = [...leaked];
  if (!x.complete || x.error !== undefined) violations.push(`response cut (${x.error ?? 'incomplete body'})`);
  const sse = x.contentType.startsWith('text/event-stream');
  const verdict = sse ? STREAM_CHECKS[x.plan.protocol](x) : JSON_CHECKS[x.plan.protocol](x);
  violations.push(...verdict.violations);
  if (x.plan.invalid && verdict.outcome !== 'json-error:invalid_request_error') violations.push(`invalid request answered ${verdict.outcome} (${x.status})`);
  if (x.plan.group === STRICT_GROUP && x.body.includes(BLOCKED_WORD)) violations.push('blocked word reached the client through the fail-closed guardrail');
  return { outcome: verdict.outcome, violations };
}

function connectionOf(x: Exchange): string {
  if (x.socket === undefined) return '(before any connection)';
  return x.socket.reused ? `(on a keep-alive connection reused after ${x.socket.idleMs ?? '?'} ms idle)` : '(on a new connection)';
}

function leaksIn(body: string, leaks: LeakPatterns): string[] {
  const found: string[] = [];
  if (STACK_TRACE.test(body)) found.push('stack trace in body');
  if (URL_TEXT.test(body) || leaks.origins.some((origin) => body.includes(origin))) found.push('URL in body');
  if (leaks.secrets.some((secret) => body.includes(secret))) found.push('credential in body');
  return found;
}

/** What any SSE answer must be: the answer to a streaming request, with status 200. */
function sseHeadViolations(x: Exchange): string[] {
  const violations: string[] = [];
  if (!x.plan.stream) violations.push('SSE answer to a non-streaming request');
  if (x.status !== 200) violations.push(`SSE with status ${x.status}`);
  return violations;
}

/** Invariant 2: `data:` frames, ending with `[DONE]` after a normal finish or exactly one error frame. */
function checkStream(x: Exchange): Verdict {
  const violations = sseHeadViolations(x);
  if (!x.body.endsWith(DONE_FRAME)) return { outcome: 'stream-truncated', violations: [...violations, `stream does not end with [DONE]: …${JSON.stringify(x.body.slice(-80))}`] };
  const frames = x.body.slice(0, -2).split('\n\n');
  const payloads: unknown[] = [];
  for (const frame of frames.slice(0, -1)) {
    if (frame === 'data: [DONE]') return { outcome: 'stream-after-done', violations: [...violations, 'data after [DONE]'] };
    const payload = frame.startsWith('data: ') && !frame.includes('\n') ? parseJson(frame.slice(6)) : undefined;
    if (payload === undefined) return { outcome: 'stream-malformed', violations: [...violations, `not a JSON data frame: ${JSON.stringify(frame.slice(0, 80))}`] };
    payloads.push(payload);
  }
  const errorAt = payloads.map((payload) => errorObjectOf(payload)).flatMap((error, i) => (error ? [{ error, i }] : []));
  if (errorAt.length > 1) violations.push(`${errorAt.length} error frames in one stream`);
  const first = errorAt[0];
  if (first === undefined) {
    if (!payloads.some(hasFinishReason)) violations.push('stream ended with [DONE] but without a finish reason or an error frame');
    return { outcome: 'ok:stream', violations };
  }
  if (first.i !== payloads.length - 1) violations.push('data after the error frame');
  if (first.i === 0) violations.push('committed stream whose first frame is an error (lazy commit)');
  violations.push(...errorShapeViolations(first.error, undefined));
  return { outcome: `in-band:${String(first.error.type)}`, violations };
}

/** Non-streamed answers and pre-commit errors: a completion, or one error object whose code is the status. */
function checkJson(x: Exchange): Verdict {
  const json = parseJson(x.body);
  if (json === undefined) return { outcome: 'json-invalid', violations: [`body is not JSON (status ${x.status}): ${JSON.stringify(x.body.slice(0, 80))}`] };
  if (x.status === 200) {
    const ok = isRecord(json) && json.object === 'chat.completion' && Array.isArray(json.choices) && json.choices.length > 0;
    return { outcome: 'ok:json', violations: ok ? [] : ['200 body is not a chat.completion'] };
  }
  return checkJsonError(x, json);
}

/** A JSON error in the chat body form (Responses errors use it too): one `{ message, code, type }` whose code is the status. */
function checkJsonError(x: Exchange, json: unknown): Verdict {
  const error = errorObjectOf(json);
  if (error === undefined) return { outcome: 'json-unknown', violations: [`status ${x.status} without an error object`] };
  const violations = errorShapeViolations(error, x.status);
  if (!ERROR_STATUSES.has(x.status)) violations.push(`unexpected status ${x.status}`);
  return { outcome: `json-error:${String(error.type)}`, violations };
}

/** Invariant 5: one shape, `{ message, code, type }`; `internal_error` only ever comes from a bug. */
function errorShapeViolations(error: Record<string, unknown>, status: number | undefined): string[] {
  const violations: string[] = [];
  if (typeof error.message !== 'string' || error.message === '' || typeof error.type !== 'string' || typeof error.code !== 'number') {
    violations.push(`error object without message/code/type: ${JSON.stringify(error).slice(0, 120)}`);
  }
  if (status !== undefined && error.code !== status) violations.push(`error code ${String(error.code)} differs from status ${status}`);
  if (error.type === 'internal_error' || error.code === 500) violations.push(`internal error: ${String(error.message)}`);
  return violations;
}

// ---- Responses (`POST /v1/responses`) ----------------------------------------------------------------

const RESPONSES_SUCCESS = new Set(['response.completed', 'response.incomplete']);
const RESPONSES_TERMINAL = new Set([...RESPONSES_SUCCESS, 'error', 'response.failed']);

/**
 * Named events with `sequence_number` 0 … n-1, opening with `response.created`, ending with exactly one
 * terminal: `response.completed`/`response.incomplete` (whose response repeats the streamed text), or
 * exactly `error` then `response.failed`, with nothing after.
 */
function checkResponsesStream(x: Exchange): Verdict {
  const violations = sseHeadViolations(x);
  const read = readNamedEvents(x.body);
  if ('malformed' in read) return { outcome: 'stream-malformed', violations: [...violations, read.malformed] };
  const { events } = read;
  const wrongSequence = events.findIndex(({ data }, i) => data['sequence_number'] !== i);
  if (wrongSequence >= 0) violations.push(`event ${wrongSequence} (${String(events[wrongSequence]!.event)}) has sequence_number ${String(events[wrongSequence]!.data['sequence_number'])}`);
  if (events.length > 0 && events[0]!.event !== 'response.created') violations.push(`stream opens with ${String(events[0]!.event)}, not response.created`);
  const terminals = events.flatMap(({ event }, i) => (RESPONSES_TERMINAL.has(event ?? '') ? [`${i}:${String(event)}`] : []));
  const last = events.at(-1);
  const n = events.length;
  // `error` alone is no ending: `response.failed` must follow it.
  if (last === undefined || !(RESPONSES_SUCCESS.has(last.event ?? '') || last.event === 'response.failed')) {
    return { outcome: 'stream-truncated', violations: [...violations, `stream does not end with a terminal event${read.cut ? ' (cut mid-event)' : ''}: last ${describeLast(events, x.body)}`] };
  }
  if (read.cut) violations.push(`bytes after the terminal event: ${JSON.stringify(read.cut.slice(0, 80))}`);
  if (RESPONSES_SUCCESS.has(last.event!)) {
    if (terminals.length > 1) violations.push(`${terminals.length} terminal events in one stream (${terminals.join(', ')})`);
    violations.push(...responsesSuccessViolations(last, events));
    return { outcome: 'ok:stream', violations };
  }
  // response.failed: exactly `error` then `response.failed`, and no other terminal event.
  const errorEvent = events[n - 2];
  if (errorEvent?.event !== 'error') return { outcome: 'stream-failed-without-error', violations: [...violations, `response.failed without an error event before it (${terminals.join(', ')})`] };
  if (terminals.length > 2) violations.push(`${terminals.length} terminal events in one stream (${terminals.join(', ')})`);
  const nested = isRecord(errorEvent.data['error']) ? errorEvent.data['error'] : undefined;
  violations.push(...responsesErrorViolations(errorEvent.data, nested, last.data));
  return { outcome: `in-band:${String(nested?.['type'])}`, violations };
}

function responsesSuccessViolations(last: NamedEvent, events: NamedEvent[]): string[] {
  const violations: string[] = [];
  const response = isRecord(last.data['response']) ? last.data['response'] : undefined;
  const expected = last.event === 'response.completed' ? 'completed' : 'incomplete';
  if (response?.['status'] !== expected) violations.push(`${String(last.event)} whose response has status ${String(response?.['status'])}`);
  if (expected === 'incomplete' && !(isRecord(response?.['incomplete_details']) && typeof response['incomplete_details']['reason'] === 'string')) {
    violations.push('response.incomplete without incomplete_details.reason');
  }
  const streamed = events.filter(({ event }) => event === 'response.output_text.delta').map(({ data }) => String(data['delta'])).join('');
  const output = Array.isArray(response?.['output']) ? (response['output'] as unknown[]) : [];
  const final = output
    .filter((item): item is Record<string, unknown> => isRecord(item) && item['type'] === 'message' && Array.isArray(item['content']))
    .flatMap((item) => item['content'] as unknown[])
    .filter((part): part is Record<string, unknown> => isRecord(part) && part['type'] === 'output_text')
    .map((part) => String(part['text']))
    .join('');
  if (final !== streamed) violations.push(`${String(last.event)} holds ${final.length} characters of text, the deltas ${streamed.length}`);
  return violations;
}

/** The `error` event: flat `code` (the status as three digits), `message`, and the same error nested; `response.failed` repeats the code. */
function responsesErrorViolations(flat: Record<string, unknown>, nested: Record<string, unknown> | undefined, failed: Record<string, unknown>): string[] {
  const violations: string[] = [];
  const code = flat['code'];
  if (typeof code !== 'string' || !/^\d{3}$/.test(code) || typeof flat['message'] !== 'string' || flat['message'] === '') {
    violations.push(`error event without a three-digit code and a message: ${JSON.stringify(flat).slice(0, 160)}`);
  } else if (!ERROR_STATUSES.has(Number(code))) violations.push(`error event with status code ${code}`);
  if (nested === undefined || typeof nested['type'] !== 'string' || nested['message'] !== flat['message'] || nested['code'] !== code) {
    violations.push(`error event whose nested error is not its own: ${JSON.stringify(flat).slice(0, 160)}`);
  }
  if (nested?.['type'] === 'internal_error' || code === '500') violations.push(`internal error: ${String(flat['message'])}`);
  const response = isRecord(failed['response']) ? failed['response'] : undefined;
  const responseError = isRecord(response?.['error']) ? response['error'] : undefined;
  if (response?.['status'] !== 'failed' || responseError?.['code'] !== code) violations.push(`response.failed with status ${String(response?.['status'])} and code ${String(responseError?.['code'])} after error code ${String(code)}`);
  return violations;
}

/** A whole Response (`completed` or `incomplete`), or an error in the chat body form. */
function checkResponsesJson(x: Exchange): Verdict {
  const json = parseJson(x.body);
  if (json === undefined) return { outcome: 'json-invalid', violations: [`body is not JSON (status ${x.status}): ${JSON.stringify(x.body.slice(0, 80))}`] };
  if (x.status !== 200) return checkJsonError(x, json);
  const violations: string[] = [];
  if (!isRecord(json) || json['object'] !== 'response' || !Array.isArray(json['output'])) return { outcome: 'ok:json', violations: ['200 body is not a response'] };
  if (json['status'] === 'incomplete') {
    if (!(isRecord(json['incomplete_details']) && typeof json['incomplete_details']['reason'] === 'string')) violations.push('incomplete response without incomplete_details.reason');
  } else if (json['status'] !== 'completed') violations.push(`200 response with status ${String(json['status'])}`);
  return { outcome: 'ok:json', violations };
}

// ---- Messages (`POST /v1/messages`) ------------------------------------------------------------------

/** Anthropic's error type for each status (README, "Errors"); `guardrail_violation` goes as it is. */
function anthropicTypeFor(status: number): string {
  const types: Record<number, string> = { 400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error', 413: 'request_too_large', 429: 'rate_limit_error', 503: 'overloaded_error', 504: 'timeout_error' };
  return types[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}
const ANTHROPIC_TYPES = new Set(['invalid_request_error', 'authentication_error', 'permission_error', 'not_found_error', 'request_too_large', 'rate_limit_error', 'overloaded_error', 'timeout_error', 'api_error', 'guardrail_violation']);

/**
 * Named events opening with `message_start`, ending with `message_delta` (a stop reason) then `message_stop`
 * with every content block stopped, or with exactly one `error` event and nothing after it (no
 * `message_delta` or `message_stop` around an error).
 */
function checkMessagesStream(x: Exchange): Verdict {
  const violations = sseHeadViolations(x);
  const read = readNamedEvents(x.body);
  if ('malformed' in read) return { outcome: 'stream-malformed', violations: [...violations, read.malformed] };
  const { events } = read;
  const n = events.length;
  if (n > 0 && events[0]!.event !== 'message_start') violations.push(`stream opens with ${String(events[0]!.event)}, not message_start`);
  const count = (name: string): number => events.filter(({ event }) => event === name).length;
  const [starts, deltas, stops, errors] = [count('message_start'), count('message_delta'), count('message_stop'), count('error')];
  if (starts > 1) violations.push(`${starts} message_start events`);
  const last = events.at(-1);
  if (last === undefined || (last.event !== 'message_stop' && last.event !== 'error')) {
    return { outcome: 'stream-truncated', violations: [...violations, `stream does not end with message_stop or error${read.cut ? ' (cut mid-event)' : ''}: last ${describeLast(events, x.body)}`] };
  }
  if (read.cut) violations.push(`bytes after the terminal event: ${JSON.stringify(read.cut.slice(0, 80))}`);
  violations.push(...blockViolations(events));
  if (last.event === 'message_stop') {
    if (errors > 0) violations.push(`message_stop after ${errors} error event(s)`);
    if (stops !== 1 || deltas !== 1 || events[n - 2]?.event !== 'message_delta') violations.push(`ending is not one message_delta then one message_stop (${deltas} message_delta, ${stops} message_stop, before the last: ${String(events[n - 2]?.event)})`);
    const delta = events.find(({ event }) => event === 'message_delta')?.data['delta'];
    if (!isRecord(delta) || typeof delta['stop_reason'] !== 'string') violations.push('message_delta without a stop reason');
    return { outcome: 'ok:stream', violations };
  }
  if (errors > 1) violations.push(`${errors} error events in one stream`);
  if (stops > 0 || deltas > 0) violations.push(`error event after ${deltas} message_delta and ${stops} message_stop (a success-looking ending)`);
  const error = isRecord(last.data['error']) ? last.data['error'] : undefined;
  if (typeof error?.['type'] !== 'string' || typeof error['message'] !== 'string' || error['message'] === '') {
    violations.push(`error event without type/message: ${JSON.stringify(last.data).slice(0, 160)}`);
  } else if (!ANTHROPIC_TYPES.has(error['type'])) violations.push(`error event with type ${error['type']}`);
  return { outcome: `in-band:${String(error?.['type'])}`, violations };
}

/** Content blocks: started at index 0, 1, 2, … in order, stopped once each, all stopped before `message_delta`. */
function blockViolations(events: NamedEvent[]): string[] {
  const open = new Set<number>();
  let started = 0;
  for (const { event, data } of events) {
    const index = data['index'];
    if (event === 'content_block_start') {
      if (index !== started) return [`content_block_start with index ${String(index)}, expected ${started}`];
      open.add(started++);
    } else if (event === 'content_block_delta') {
      if (typeof index !== 'number' || index >= started) return [`content_block_delta for block ${String(index)}, never started`];
    } else if (event === 'content_block_stop') {
      if (!open.delete(index as number)) return [`content_block_stop for block ${String(index)}, not open`];
    } else if (event === 'message_delta' && open.size > 0) return [`message_delta with block(s) ${[...open].join(', ')} still open`];
  }
  return [];
}

/** A whole `Message`, or Anthropic's `{ type: 'error', error: { type, message } }` with the type of its status. */
function checkMessagesJson(x: Exchange): Verdict {
  const json = parseJson(x.body);
  if (json === undefined) return { outcome: 'json-invalid', violations: [`body is not JSON (status ${x.status}): ${JSON.stringify(x.body.slice(0, 80))}`] };
  if (x.status === 200) {
    const ok = isRecord(json) && json['type'] === 'message' && json['role'] === 'assistant' && Array.isArray(json['content']) && typeof json['stop_reason'] === 'string';
    return { outcome: 'ok:json', violations: ok ? [] : ['200 body is not a message with a stop reason'] };
  }
  const error = isRecord(json) && json['type'] === 'error' ? errorObjectOf(json) : undefined;
  if (error === undefined) return { outcome: 'json-unknown', violations: [`status ${x.status} without an Anthropic error body`] };
  const violations: string[] = [];
  if (typeof error['message'] !== 'string' || error['message'] === '' || typeof error['type'] !== 'string') violations.push(`error object without message/type: ${JSON.stringify(error).slice(0, 120)}`);
  else if (error['type'] !== 'guardrail_violation' && error['type'] !== anthropicTypeFor(x.status)) violations.push(`error type ${error['type']} for status ${x.status} (expected ${anthropicTypeFor(x.status)})`);
  if (!ERROR_STATUSES.has(x.status)) violations.push(`unexpected status ${x.status}`);
  if (error['type'] === 'internal_error') violations.push(`internal error: ${String(error['message'])}`);
  return { outcome: `json-error:${String(error['type'])}`, violations };
}

// ---- shared -------------------------------------------------------------------------------------------

const STREAM_CHECKS: Readonly<Record<Exchange['plan']['protocol'], (x: Exchange) => Verdict>> = {
  chat: checkStream,
  responses: checkResponsesStream,
  messages: checkMessagesStream,
};

const JSON_CHECKS: Readonly<Record<Exchange['plan']['protocol'], (x: Exchange) => Verdict>> = {
  chat: checkJson,
  responses: checkResponsesJson,
  messages: checkMessagesJson,
};

/**
 * The complete named events of a body (strictly: `event:` + one JSON `data:` line of that type), and
 * `cut`: the bytes after the last complete event ('' when the body ends on an event boundary).
 */
function readNamedEvents(body: string): { events: NamedEvent[]; cut: string } | { malformed: string } {
  const boundary = body.lastIndexOf('\n\n');
  const whole = boundary < 0 ? '' : body.slice(0, boundary + 2);
  try {
    return { events: namedEvents(whole), cut: body.slice(whole.length) };
  } catch (error) {
    return { malformed: `malformed event stream: ${(error as Error).message.slice(0, 200)}` };
  }
}

function describeLast(events: NamedEvent[], body: string): string {
  return `${events.length} complete event(s), the last ${String(events.at(-1)?.event)}; …${JSON.stringify(body.slice(-80))}`;
}

function errorObjectOf(payload: unknown): Record<string, unknown> | undefined {
  return isRecord(payload) && isRecord(payload.error) ? payload.error : undefined;
}

function hasFinishReason(payload: unknown): boolean {
  if (!isRecord(payload) || !Array.isArray(payload.choices)) return false;
  return payload.choices.some((choice) => isRecord(choice) && typeof choice.finish_reason === 'string');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
