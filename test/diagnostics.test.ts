/**
 * Issue 15: the tracing channels. A subscriber on every event of `express-llm-gateway:request`, `:attempt`
 * and `:guardrail` sees, for a plain answer, a retry, a content-policy fallback, a guardrail block after
 * commit and a client abort, in both modes, one message object per operation going through start, end,
 * (error,) asyncStart, asyncEnd, with the start fields at start and the ending filled in before the async
 * events; the payloads never hold prompt or completion text nor a key. Real HTTP against the mock providers
 * and the Bedrock emulator on 127.0.0.1.
 */
import { tracingChannel } from 'node:diagnostics_channel';
import { ATTEMPT_CHANNEL, GUARDRAIL_CHANNEL, REQUEST_CHANNEL, attemptChannel, guardrailChannel, requestChannel } from '../lib/diagnostics.js';
import { ANTHROPIC_KEY, BLOCKED_PROMPT, CLEAN_TEXT, OPENAI_KEY, PROMPT, startTracedGateway, type Case, type Played } from './helpers/traced-gateway.js';

type EventName = 'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error';
const EVENTS: EventName[] = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'];

interface Seen {
  channel: string;
  event: EventName;
  /** The message object itself (the same one for every event of an operation). */
  message: Record<string, unknown>;
  /** What it held when this event was published. */
  snapshot: Record<string, unknown>;
}

const seen: Seen[] = [];
const handlers: [string, EventName, (message: unknown) => void][] = [];

function snapshot(message: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(message)) {
    // `request` is the request's own message (checked by identity); `error` by its fields.
    if (key === 'request') copy[key] = value === undefined ? undefined : 'request-message';
    else if (value instanceof Error) copy[key] = { ...value, name: value.name, message: value.message };
    else copy[key] = value && typeof value === 'object' ? { ...(value as object) } : value;
  }
  return copy;
}

let gateway: Awaited<ReturnType<typeof startTracedGateway>>;

beforeAll(async () => {
  gateway = await startTracedGateway();
  for (const name of [REQUEST_CHANNEL, ATTEMPT_CHANNEL, GUARDRAIL_CHANNEL]) {
    const channel = tracingChannel(name);
    for (const event of EVENTS) {
      const handler = (message: unknown): void => {
        const m = message as Record<string, unknown>;
        seen.push({ channel: name, event, message: m, snapshot: snapshot(m) });
      };
      channel[event].subscribe(handler);
      handlers.push([name, event, handler]);
    }
  }
});

afterAll(async () => {
  for (const [name, event, handler] of handlers) tracingChannel(name)[event].unsubscribe(handler);
  await gateway.close();
});

interface Operation {
  message: Record<string, unknown>;
  events: EventName[];
  start: Record<string, unknown>;
  /** The snapshot at asyncEnd. */
  final: Record<string, unknown>;
}

/** The operations a request made on `channel`, in start order. */
function operations(channel: string, requestId: string): Operation[] {
  const byMessage = new Map<object, Seen[]>();
  for (const s of seen) {
    if (s.channel !== channel || s.message['requestId'] !== requestId) continue;
    const list = byMessage.get(s.message) ?? [];
    list.push(s);
    byMessage.set(s.message, list);
  }
  return [...byMessage.entries()].map(([message, list]) => ({
    message: message as Record<string, unknown>,
    events: list.map((s) => s.event),
    start: list[0]!.snapshot,
    final: list.at(-1)!.snapshot,
  }));
}

async function play(kase: Case, stream: boolean): Promise<Played & { request: Operation; attempts: Operation[]; guardrails: Operation[] }> {
  const played = await gateway.play(kase, stream);
  const [request, ...others] = operations(REQUEST_CHANNEL, played.requestId);
  expect(others).toEqual([]);
  return { ...played, request: request!, attempts: operations(ATTEMPT_CHANNEL, played.requestId), guardrails: operations(GUARDRAIL_CHANNEL, played.requestId) };
}

const SUCCEEDED: EventName[] = ['start', 'end', 'asyncStart', 'asyncEnd'];
const FAILED: EventName[] = ['start', 'end', 'error', 'asyncStart', 'asyncEnd'];

/** The start payloads hold only what is known at the start. */
function expectRequestStart(op: Operation, requestId: string, model: string, stream: boolean): void {
  expect(op.start).toEqual({ protocol: 'chat.completions', requestId, model, stream });
}

function expectAttemptStart(op: Operation, played: Played, fields: Record<string, unknown>): void {
  expect(op.start).toEqual({
    request: 'request-message',
    requestId: played.requestId,
    stream: expect.any(Boolean),
    serverAddress: '127.0.0.1',
    serverPort: expect.any(Number),
    headers: {},
    ...fields,
  });
}

/** Nothing the client sent or got as text, and no key, is in any payload of the request. */
function expectNoContent(played: Played & { request: Operation; attempts: Operation[]; guardrails: Operation[] }): void {
  const all = JSON.stringify([played.request, played.attempts, played.guardrails].flat().flatMap((op) => [op.start, op.final]));
  for (const secret of [OPENAI_KEY, ANTHROPIC_KEY, 'Zanzibar', 'quokka', 'BLOCKME', CLEAN_TEXT.slice(0, 30), BLOCKED_PROMPT.slice(0, 30), PROMPT.slice(0, 30)]) {
    expect(all).not.toContain(secret);
  }
  // The answer's text, as the client got it: no stretch of 16 characters of it.
  const text = played.outcome.text;
  if (answered(played)) expect(text.length).toBeGreaterThan(16);
  for (let i = 0; i + 16 <= text.length; i += 4) expect(all).not.toContain(text.slice(i, i + 16));
}

/** Whether an answer text is expected (the abort and the refused cases may have none). */
function answered(played: Played): boolean {
  return played.outcome.status === 200 && played.outcome.error === undefined && played.outcome.complete;
}

describe.each([false, true])('tracing channels (stream: %p)', (stream) => {
  it('a plain answer: request and one attempt, start payloads then the ending', async () => {
    const played = await play('plain', stream);
    expect(played.outcome.status).toBe(200);
    const { request, attempts, guardrails } = played;
    expect(request.events).toEqual(SUCCEEDED);
    expectRequestStart(request, played.requestId, 'plain', stream);
    expect(request.final).toMatchObject({ status: 200, httpStatus: 200, clientAborted: false, committed: true, attempts: 1, retries: 0, fallbacks: 0, guardrailCalls: 0 });
    expect(request.final['errorType']).toBeUndefined();
    expect(request.final['error']).toBeUndefined();
    expect(request.final['timeToFirstByteMs']).toEqual(expect.any(Number));
    expect(request.final['durationMs']).toBeGreaterThanOrEqual(request.final['timeToFirstByteMs'] as number);
    expect(request.final['usage']).toEqual({ inputTokens: expect.any(Number), outputTokens: expect.any(Number), estimated: false });

    expect(attempts).toHaveLength(1);
    const [attempt] = attempts;
    expect(attempt!.events).toEqual(SUCCEEDED);
    expect(attempt!.message['request']).toBe(request.message);
    expectAttemptStart(attempt!, played, { group: 'plain', deployment: 'plain-a', provider: 'openai', kind: 'first', model: 'normal', stream });
    expect(attempt!.final).toMatchObject({ outcome: 'success', latencyMs: expect.any(Number), usage: request.final['usage'], responseModel: 'normal' });
    if (stream) expect(attempt!.final['timeToFirstChunkMs']).toBeLessThanOrEqual(attempt!.final['latencyMs'] as number);
    else expect(attempt!.final['timeToFirstChunkMs']).toBeUndefined();
    expect(guardrails).toEqual([]);
    expectNoContent(played);
  });

  it('a retry: the failed attempt publishes error, the retry succeeds', async () => {
    const played = await play('retry', stream);
    expect(played.outcome.status).toBe(200);
    const [first, retry, ...rest] = played.attempts;
    expect(rest).toEqual([]);
    expect(first!.events).toEqual(FAILED);
    expectAttemptStart(first!, played, { group: 'retry', deployment: 'retry-a', provider: 'openai', kind: 'first', model: 'error-503', stream });
    expect(first!.final).toMatchObject({ outcome: 'error', status: 503, errorType: played.summary.attempts[0]!.errorType });
    expect(first!.final['error']).toMatchObject({ name: 'TracedFailure', message: first!.final['errorType'], type: first!.final['errorType'], status: 503 });
    expect(retry!.events).toEqual(SUCCEEDED);
    expectAttemptStart(retry!, played, { group: 'retry', deployment: 'retry-b', provider: 'openai', kind: 'retry', model: 'normal', stream });
    expect(retry!.final).toMatchObject({ outcome: 'success' });
    expect(played.request.events).toEqual(SUCCEEDED);
    expect(played.request.final).toMatchObject({ status: 200, attempts: 2, retries: 1, fallbacks: 0 });
    expectNoContent(played);
  });

  it('a content-policy refusal falls back to another provider', async () => {
    const played = await play('policy', stream);
    expect(played.outcome.status).toBe(200);
    const [refused, fallback, ...rest] = played.attempts;
    expect(rest).toEqual([]);
    expect(refused!.events).toEqual(FAILED);
    expect(refused!.final).toMatchObject({ group: 'policy', kind: 'first', outcome: 'error', errorType: 'content_policy_violation' });
    expect(fallback!.events).toEqual(SUCCEEDED);
    expectAttemptStart(fallback!, played, { group: 'backup', deployment: 'backup-a', provider: 'anthropic', kind: 'fallback', model: 'normal', stream });
    expect(fallback!.final).toMatchObject({ outcome: 'success', usage: { estimated: false } });
    expect(played.request.final).toMatchObject({ status: 200, attempts: 2, retries: 0, fallbacks: 1 });
    expectNoContent(played);
  });

  it('a guardrail block after commit: guardrail calls traced, the request ends with guardrail_violation', async () => {
    const played = await play('guarded', stream);
    if (stream) expect(played.outcome).toMatchObject({ status: 200, inBand: true });
    else expect(played.outcome.status).toBe(400);
    const { guardrails, request, attempts } = played;
    expect(guardrails.length).toBe(played.summary.guardrails.length);
    expect(guardrails.length).toBeGreaterThanOrEqual(stream ? 2 : 1);
    for (const call of guardrails) {
      expect(call.events).toEqual(SUCCEEDED);
      expect(call.message['request']).toBe(request.message);
      expect(call.start).toEqual({ request: 'request-message', requestId: played.requestId, guardrail: 'bedrock-guard', source: 'OUTPUT', texts: 1 });
    }
    expect(guardrails.map((g) => g.final['action'])).toEqual(played.summary.guardrails.map((g) => g.action));
    expect(guardrails.at(-1)!.final).toMatchObject({ action: 'BLOCKED', units: expect.any(Number), latencyMs: expect.any(Number) });
    if (stream) expect(guardrails[0]!.final['action']).toBe('NONE');
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.final).toMatchObject({ outcome: 'error', errorType: 'guardrail_violation' });
    expect(request.events).toEqual(FAILED);
    expect(request.final).toMatchObject({ status: stream ? 200 : 400, errorType: 'guardrail_violation', committed: true, guardrailCalls: guardrails.length });
    expect(request.final['error']).toMatchObject({ type: 'guardrail_violation' });
    expectNoContent(played);
  });

  it('a client abort: the attempt ends aborted, the request 499 client_disconnected, with estimated usage', async () => {
    const played = await play('abort', stream);
    expect(played.outcome.complete).toBe(false);
    const [attempt] = played.attempts;
    expect(attempt!.events).toEqual(FAILED);
    expect(attempt!.final).toMatchObject({ outcome: 'aborted', errorType: 'client_disconnected', usage: { estimated: true } });
    expect(played.request.events).toEqual(FAILED);
    expect(played.request.final).toMatchObject({ status: 499, clientAborted: true, errorType: 'client_disconnected', committed: stream, usage: { estimated: true } });
    expectNoContent(played);
  });
});

describe('without subscribers', () => {
  it('nothing is published and the channels say so', async () => {
    for (const [name, event, handler] of handlers) tracingChannel(name)[event].unsubscribe(handler);
    try {
      expect([requestChannel.hasSubscribers, attemptChannel.hasSubscribers, guardrailChannel.hasSubscribers]).toEqual([false, false, false]);
      const before = seen.length;
      const played = await gateway.play('guarded', true);
      expect(played.summary.attempts).toHaveLength(1);
      expect(seen.length).toBe(before);
    } finally {
      for (const [name, event, handler] of handlers) tracingChannel(name)[event].subscribe(handler);
    }
  });
});
