/**
 * The fault soak (soak/soak.ts), CI size: 1,000 mixed requests, streaming and not, some abandoned by the
 * client, through upstreams and a guardrail that fail in every way the mocks know. Any violation of the
 * invariants (a cut stream, a second error frame, a 500, a leaked key or URL, an unhandled rejection, an
 * upstream left open after an abort, memory not coming back) fails the test and is listed. The checks
 * themselves are tested first on hand-made responses, so a clean soak cannot mean a blind one.
 */
import { checkExchange } from '../soak/checks.js';
import type { Exchange } from '../soak/client.js';
import { runSoak } from '../soak/soak.js';

describe('soak checks', () => {
  const leaks = { secrets: ['sk-secret-123456789'], origins: ['127.0.0.1:4000'] };
  const plan = { index: 0, id: 'soak-1-0', protocol: 'chat', group: 'chat', stream: true, body: '{}', invalid: false, abortAfterMs: undefined } as const;
  const exchange = (over: Partial<Exchange>): Exchange => ({
    plan,
    status: 200,
    contentType: 'text/event-stream; charset=utf-8',
    body: '',
    complete: true,
    error: undefined,
    startedAt: 0,
    endedAt: 1,
    abortedAt: undefined,
    timedOut: false,
    ...over,
  });
  const chunk = (content: string, finish: string | null = null): string =>
    `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
  const errorFrame = `data: ${JSON.stringify({ error: { message: 'Upstream failed.', code: 502, type: 'upstream_error' } })}\n\n`;
  const done = 'data: [DONE]\n\n';

  test.each([
    ['a normal finish', chunk('Hi') + chunk('', 'stop') + done, 'ok:stream'],
    ['one error frame after content', chunk('Hi') + errorFrame + done, 'in-band:upstream_error'],
  ])('accepts %s', (_name, body, outcome) => {
    expect(checkExchange(exchange({ body }), leaks)).toEqual({ outcome, violations: [] });
  });

  test.each([
    ['a stream cut before [DONE]', chunk('Hi'), /does not end with \[DONE\]/],
    ['[DONE] without a finish or an error', chunk('Hi') + done, /without a finish reason/],
    ['two error frames', chunk('Hi') + errorFrame + errorFrame + done, /2 error frames/],
    ['data after [DONE]', chunk('Hi', 'stop') + done + chunk('late') + done, /data after \[DONE\]/],
    ['a frame that is not JSON', 'data: {"choices":\n\n' + done, /not a JSON data frame/],
    ['an error frame as the first frame', errorFrame + done, /lazy commit/],
    ['a URL in a frame', chunk('see http://127.0.0.1:4000/v1') + chunk('', 'stop') + done, /URL in body/],
    ['an API key in a frame', chunk('key sk-secret-123456789') + chunk('', 'stop') + done, /credential in body/],
  ])('flags %s', (_name, body, message) => {
    expect(checkExchange(exchange({ body }), leaks).violations.join('\n')).toMatch(message);
  });

  test('flags a 500, an internal error and a stack trace in a JSON body', () => {
    const body = JSON.stringify({ error: { message: 'boom\n    at handler (/app/lib/router.ts:10:5)', code: 500, type: 'internal_error' } });
    const { violations } = checkExchange(exchange({ status: 500, contentType: 'application/json', body, plan: { ...plan, stream: false } }), leaks);
    expect(violations.join('\n')).toMatch(/stack trace/);
    expect(violations.join('\n')).toMatch(/internal error/);
    expect(violations.join('\n')).toMatch(/unexpected status 500/);
  });

  test('flags a JSON error whose code is not the status, and a cut response', () => {
    const body = JSON.stringify({ error: { message: 'Rate limited.', code: 503, type: 'rate_limit_exceeded' } });
    const { violations } = checkExchange(exchange({ status: 429, contentType: 'application/json', body, complete: false }), leaks);
    expect(violations.join('\n')).toMatch(/code 503 differs from status 429/);
    expect(violations.join('\n')).toMatch(/response cut/);
  });
});

describe('soak checks: Responses', () => {
  const leaks = { secrets: ['sk-secret-123456789'], origins: ['127.0.0.1:4000'] };
  const plan = { index: 0, id: 'soak-1-0', protocol: 'responses', group: 'chat', stream: true, body: '{}', invalid: false, abortAfterMs: undefined } as const;
  const exchange = (body: string, over: Partial<Exchange> = {}): Exchange => ({
    plan,
    status: 200,
    contentType: 'text/event-stream; charset=utf-8',
    body,
    complete: true,
    error: undefined,
    startedAt: 0,
    endedAt: 1,
    abortedAt: undefined,
    timedOut: false,
    ...over,
  });
  /** Events numbered from 0 in the order given (`seq` overrides a number). */
  const stream = (...events: [string, Record<string, unknown>][]): string =>
    events.map(([type, fields], i) => `event: ${type}\ndata: ${JSON.stringify({ type, ...fields, sequence_number: fields['seq'] ?? i })}\n\n`).join('');
  const response = (status: string, text: string, more: Record<string, unknown> = {}) => ({
    response: { object: 'response', status, output: [{ type: 'message', content: [{ type: 'output_text', text }] }], ...more },
  });
  const opening: [string, Record<string, unknown>][] = [
    ['response.created', { response: { status: 'in_progress' } }],
    ['response.in_progress', { response: { status: 'in_progress' } }],
    ['response.output_text.delta', { delta: 'Hi' }],
  ];
  const error = { code: '502', message: 'Upstream failed.', param: null, error: { type: 'upstream_error', code: '502', message: 'Upstream failed.', param: null } };
  const failed = response('failed', 'Hi', { error: { code: '502', message: 'Upstream failed.' } });

  test.each([
    ['response.completed', stream(...opening, ['response.completed', response('completed', 'Hi')]), 'ok:stream'],
    ['response.incomplete', stream(...opening, ['response.incomplete', response('incomplete', 'Hi', { incomplete_details: { reason: 'max_output_tokens' } })]), 'ok:stream'],
    ['error then response.failed', stream(...opening, ['error', error], ['response.failed', failed]), 'in-band:upstream_error'],
  ])('accepts %s', (_name, body, outcome) => {
    expect(checkExchange(exchange(body), leaks)).toEqual({ outcome, violations: [] });
  });

  test.each([
    ['a stream cut before its terminal event', stream(...opening), /does not end with a terminal event/],
    ['a stream cut mid-event', stream(...opening).slice(0, -5), /does not end with a terminal event \(cut mid-event\)/],
    ['an error without response.failed', stream(...opening, ['error', error]), /does not end with a terminal event/],
    ['response.failed without an error', stream(...opening, ['response.failed', failed]), /without an error event/],
    ['two error events', stream(...opening, ['error', error], ['error', error], ['response.failed', failed]), /3 terminal events/],
    ['response.completed after an error', stream(...opening, ['error', error], ['response.completed', response('completed', 'Hi')]), /2 terminal events/],
    ['an event after response.completed', stream(...opening, ['response.completed', response('completed', 'Hi')], ['response.output_text.delta', { delta: '!' }]), /does not end with a terminal event/],
    ['a sequence number out of order', stream(opening[0]!, ['response.in_progress', { seq: 5 }], ['response.completed', response('completed', '')]), /event 1 \(response.in_progress\) has sequence_number 5/],
    ['a stream that does not open with response.created', stream(opening[2]!, ['response.completed', response('completed', 'Hi')]), /not response.created/],
    ['a final text other than the deltas', stream(...opening, ['response.completed', response('completed', 'Hello')]), /holds 5 characters of text, the deltas 2/],
    ['an error event with a 500', stream(...opening, ['error', { ...error, code: '500', error: { ...error.error, code: '500', type: 'internal_error' } }], ['response.failed', response('failed', 'Hi', { error: { code: '500', message: 'x' } })]), /internal error/],
    ['an error whose nested error differs', stream(...opening, ['error', { ...error, error: { ...error.error, message: 'other' } }], ['response.failed', failed]), /nested error is not its own/],
    ['an event without its event: line', 'data: {"type":"response.created","sequence_number":0}\n\n', /malformed event stream/],
    ['an event whose data names another type', 'event: response.created\ndata: {"type":"response.completed","sequence_number":0}\n\n', /malformed event stream/],
    ['a credential in an event', stream(...opening, ['error', { ...error, message: 'key sk-secret-123456789' }], ['response.failed', failed]), /credential in body/],
  ])('flags %s', (_name, body, message) => {
    expect(checkExchange(exchange(body), leaks).violations.join('\n')).toMatch(message);
  });

  test('accepts a Response and a chat-form error; flags an error whose code is not the status', () => {
    const json = { plan: { ...plan, stream: false }, contentType: 'application/json' };
    expect(checkExchange(exchange(JSON.stringify({ object: 'response', status: 'completed', output: [] }), json), leaks)).toEqual({ outcome: 'ok:json', violations: [] });
    const rateLimited = JSON.stringify({ error: { message: 'Rate limited.', code: 429, type: 'rate_limit_exceeded' } });
    expect(checkExchange(exchange(rateLimited, { ...json, status: 429 }), leaks)).toEqual({ outcome: 'json-error:rate_limit_exceeded', violations: [] });
    expect(checkExchange(exchange(rateLimited, { ...json, status: 503 }), leaks).violations.join('\n')).toMatch(/code 429 differs from status 503/);
    expect(checkExchange(exchange(JSON.stringify({ object: 'response', status: 'failed', output: [] }), json), leaks).violations.join('\n')).toMatch(/200 response with status failed/);
  });
});

describe('soak checks: Messages', () => {
  const leaks = { secrets: ['sk-secret-123456789'], origins: ['127.0.0.1:4000'] };
  const plan = { index: 0, id: 'soak-1-0', protocol: 'messages', group: 'claude', stream: true, body: '{}', invalid: false, abortAfterMs: undefined } as const;
  const exchange = (body: string, over: Partial<Exchange> = {}): Exchange => ({
    plan,
    status: 200,
    contentType: 'text/event-stream; charset=utf-8',
    body,
    complete: true,
    error: undefined,
    startedAt: 0,
    endedAt: 1,
    abortedAt: undefined,
    timedOut: false,
    ...over,
  });
  const ev = (type: string, fields: Record<string, unknown> = {}): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...fields })}\n\n`;
  const start = ev('message_start', { message: { type: 'message', role: 'assistant', content: [] } }) + ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
  const text = ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hi' } });
  const ending = ev('content_block_stop', { index: 0 }) + ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 1 } }) + ev('message_stop');
  const error = ev('error', { error: { type: 'api_error', message: 'Upstream failed.' } });

  test.each([
    ['message_delta then message_stop', start + text + ending, 'ok:stream'],
    ['one error event after content', start + text + error, 'in-band:api_error'],
  ])('accepts %s', (_name, body, outcome) => {
    expect(checkExchange(exchange(body), leaks)).toEqual({ outcome, violations: [] });
  });

  test.each([
    ['a stream cut before message_stop', start + text, /does not end with message_stop or error/],
    ['a stream cut mid-event', (start + text + ending).slice(0, -3), /does not end with message_stop or error \(cut mid-event\)/],
    ['message_stop after an error', start + text + error + ev('message_stop'), /message_stop after 1 error event/],
    ['an error after message_delta and message_stop', start + text + ending + error, /success-looking ending/],
    ['two error events', start + text + error + error, /2 error events/],
    ['message_stop without message_delta', start + text + ev('content_block_stop', { index: 0 }) + ev('message_stop'), /not one message_delta then one message_stop/],
    ['a message_delta without a stop reason', start + text + ev('content_block_stop', { index: 0 }) + ev('message_delta', { delta: { stop_reason: null } }) + ev('message_stop'), /without a stop reason/],
    ['a block left open at message_delta', start + text + ev('message_delta', { delta: { stop_reason: 'end_turn' } }) + ev('message_stop'), /block\(s\) 0 still open/],
    ['a stream that does not open with message_start', text + error, /not message_start/],
    ['an error event of an unknown type', start + text + ev('error', { error: { type: 'internal_error', message: 'boom' } }), /error event with type internal_error/],
    ['an error event without its event: line', start + text + `data: ${JSON.stringify({ type: 'error', error: { type: 'api_error', message: 'x' } })}\n\n`, /malformed event stream/],
    ['a URL in an event', start + ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'see http://127.0.0.1:4000/v1' } }) + ending, /URL in body/],
  ])('flags %s', (_name, body, message) => {
    expect(checkExchange(exchange(body), leaks).violations.join('\n')).toMatch(message);
  });

  test('accepts a Message and an Anthropic error of its status; flags a chat-form error and a mismatched type', () => {
    const json = { plan: { ...plan, stream: false }, contentType: 'application/json' };
    const message = JSON.stringify({ type: 'message', role: 'assistant', content: [{ type: 'text', text: 'Hi' }], stop_reason: 'end_turn' });
    expect(checkExchange(exchange(message, json), leaks)).toEqual({ outcome: 'ok:json', violations: [] });
    const overloaded = JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Unavailable.' } });
    expect(checkExchange(exchange(overloaded, { ...json, status: 503 }), leaks)).toEqual({ outcome: 'json-error:overloaded_error', violations: [] });
    expect(checkExchange(exchange(overloaded, { ...json, status: 429 }), leaks).violations.join('\n')).toMatch(/error type overloaded_error for status 429 \(expected rate_limit_error\)/);
    const chatForm = JSON.stringify({ error: { message: 'Unavailable.', code: 503, type: 'upstream_error' } });
    expect(checkExchange(exchange(chatForm, { ...json, status: 503 }), leaks).violations.join('\n')).toMatch(/without an Anthropic error body/);
    const internal = JSON.stringify({ type: 'error', error: { type: 'api_error', message: 'boom' } });
    expect(checkExchange(exchange(internal, { ...json, status: 500 }), leaks).violations.join('\n')).toMatch(/unexpected status 500/);
  });
});

test('1,000 requests through failing upstreams and guardrails break no invariant', async () => {
  // The heap only: RSS needs thousands of requests to level off, and jest shares this process (`npm run soak`
  // checks RSS too, in a process of its own).
  const report = await runSoak({ requests: 1000, concurrency: 25, seed: 20240601, memory: { heapUsed: 0.2 } });

  expect(report.violations).toEqual([]);
  expect(report.violationCount).toBe(0);
  // The soak exercised what it claims to: answers, errors before and after commit, and client aborts
  // while an upstream call was in flight.
  const count = (prefix: string): number => Object.entries(report.outcomes).reduce((sum, [outcome, n]) => sum + (outcome.startsWith(prefix) ? n : 0), 0);
  expect(count('ok:stream')).toBeGreaterThan(0);
  expect(count('ok:json')).toBeGreaterThan(0);
  expect(count('json-error:')).toBeGreaterThan(0);
  expect(count('in-band:')).toBeGreaterThan(0);
  expect(report.outcomes['client-aborted']).toBeGreaterThan(0);
  expect(report.aborts.inFlightUpstream).toBeGreaterThan(0);
  expect(report.upstream.guardrailFaultsArmed).toBeGreaterThan(0);
  // The gateway logged (5xx at error level, failures at info), and every line was checked for the credentials.
  expect(report.logLines).toBeGreaterThan(0);
  // Every protocol was spoken (chat 2 : responses 1 : messages 1), and each met answers and errors on both
  // sides of the commit in its own wire form.
  for (const protocol of ['chat', 'responses', 'messages'] as const) {
    const { requests, outcomes } = report.protocols[protocol];
    expect(requests).toBeGreaterThan(150);
    const mine = (prefix: string): number => Object.entries(outcomes).reduce((sum, [outcome, n]) => sum + (outcome.startsWith(prefix) ? n : 0), 0);
    expect({ protocol, stream: mine('ok:stream') > 0, json: mine('ok:json') > 0, jsonError: mine('json-error:') > 0, inBand: mine('in-band:') > 0 }).toEqual({ protocol, stream: true, json: true, jsonError: true, inBand: true });
  }
}, 60_000);
