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
  const plan = { index: 0, id: 'soak-1-0', group: 'chat', stream: true, body: '{}', invalid: false, abortAfterMs: undefined } as const;
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
}, 60_000);
