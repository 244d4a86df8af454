/**
 * Issue #8 item 5: fuzzing the error frame (invariants 2 and 5). Random errors of every taxonomy class, with
 * hostile messages (newlines, `\r`, `data:` lines, quotes, unicode, fake keys and URLs, very long) and random
 * `param`s, in both body forms, thrown after commit by a route streaming through the context's writer: the
 * output is always well-formed `data: <json>\n\n` frames, exactly one error frame, then exactly one
 * `data: [DONE]`, on a complete response, with no key or URL leaked. Thrown before commit, the same error is
 * the JSON body with its status, and the very same error object.
 *
 * Reproduce a failure with `FC_SEED=<seed printed by fast-check> npx jest test/fuzz-error-frames`.
 */
import fc from 'fast-check';
import path from 'node:path';
import type { NextFunction, Request, Response } from 'express';
import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  GuardrailUnavailableError,
  GuardrailViolationError,
  InternalError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  TimeoutError,
  UpstreamError,
  gatewayContext,
  getContext,
  silentLogger,
  sseErrorWriter,
  type ErrorBodyForm,
  type GatewayError,
} from '../lib/index.js';
import { toGatewayError } from '../lib/errors.js';
import type { ChatCompletionChunk } from '../lib/types.js';
import { EXPRESS_MAJOR, createApp } from './helpers/express.js';
import { listen, rawRequest, sseData, type RawResponse, type RunningServer } from './helpers/http.js';

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 20_240_508;
// A run stopped by the time limit (a loaded CI machine, or a slow shrink) still reports any failure it found.
const fcOptions = <T>(numRuns: number): fc.Parameters<T> => ({ seed: SEED, numRuns, interruptAfterTimeLimit: 40_000 });
const REPO_ROOT = path.resolve(__dirname, '..');

// ---------------------------------------------------------------------------------------------
// Random errors

/** Something that must never reach a client, and the exact text to look for in the output. */
interface Secret {
  text: string;
  needle: string;
}

const token = (min: number, max: number): fc.Arbitrary<string> => fc.stringMatching(new RegExp(`^[A-Za-z0-9]{${min},${max}}$`));

const secret: fc.Arbitrary<Secret> = fc.oneof(
  token(20, 40).map((t) => ({ text: `sk-${t}`, needle: t })),
  token(20, 40).map((t) => ({ text: `sk-proj-${t}`, needle: t })),
  token(16, 30).map((t) => ({ text: `Bearer ${t}`, needle: t })),
  fc.stringMatching(/^[A-Z0-9]{16}$/).map((t) => ({ text: `AKIA${t}`, needle: `AKIA${t}` })),
  token(12, 30).map((t) => ({ text: `api_key=${t}`, needle: t })),
  token(12, 30).map((t) => ({ text: `"x-api-key": "${t}"`, needle: t })),
  fc
    .tuple(fc.constantFrom('http', 'https'), fc.stringMatching(/^[a-z0-9-]{6,20}$/), fc.stringMatching(/^[a-z0-9/]{0,20}$/))
    .map(([scheme, host, p]) => ({ text: `${scheme}://${host}.internal.example:8443/${p}?key=abc`, needle: `${host}.internal.example` })),
);

const HOSTILE = ['\n', '\r', '\r\n', '\n\n', 'data: ', 'data: [DONE]\n\n', '"', "'", '\\', '}', '{"error":1}', '\u2028', '\u0000', '😀', '漢字', 'é', '\ud800', ': ping', 'event: error'];

const messagePiece: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 15 }),
  fc.constantFrom(...HOSTILE),
);

/** A message (pieces, some hostile) with secrets inserted between spaces, as providers echo them. */
const message: fc.Arbitrary<{ text: string; secrets: Secret[] }> = fc
  .tuple(
    fc.array(messagePiece, { maxLength: 8 }),
    fc.array(secret, { maxLength: 3 }),
    fc.option(fc.integer({ min: 10_000, max: 200_000 }), { nil: undefined, freq: 8 }),
  )
  .map(([pieces, secrets, longBy]) => {
    const parts = [...pieces];
    secrets.forEach((s, i) => parts.splice((i * 3) % (parts.length + 1), 0, ` ${s.text} `));
    let text = parts.join('');
    if (longBy !== undefined) text += 'x\n'.repeat(longBy / 2);
    return { text, secrets };
  });

type Make = (message: string, param: string | undefined) => unknown;

const CLASSES: [string, Make][] = [
  ['BadRequestError', (m, param) => new BadRequestError(m, param === undefined ? {} : { param })],
  ['AuthenticationError', (m) => new AuthenticationError(m, { upstreamStatus: 401 })],
  ['PermissionDeniedError', (m) => new PermissionDeniedError(m)],
  ['NotFoundError', (m, param) => new NotFoundError(m, param === undefined ? {} : { param })],
  ['ContextWindowExceededError', (m, param) => new ContextWindowExceededError(m, param === undefined ? {} : { param })],
  ['ContentPolicyViolationError', (m) => new ContentPolicyViolationError(m)],
  ['GuardrailViolationError', (m) => new GuardrailViolationError(m)],
  ['GuardrailUnavailableError', (m) => new GuardrailUnavailableError(m, { cause: new Error(m) })],
  ['RateLimitError', (m) => new RateLimitError(m, { retryAfterMs: 1000 })],
  ['TimeoutError', (m) => new TimeoutError(m)],
  ['UpstreamError 502', (m) => new UpstreamError(m, { status: 502 })],
  ['UpstreamError 503', (m) => new UpstreamError(m, { upstreamStatus: 503 })],
  ['ConnectionError', (m) => new ConnectionError(m, { cause: Object.assign(new Error(m), { code: 'ECONNRESET' }) })],
  ['InternalError', (m) => new InternalError(m)],
  // Not classified: must become an InternalError that shows none of it.
  ['Error', (m) => new Error(m)],
  ['TypeError with a stack', (m) => new TypeError(`${m}\n    at secret (${__filename}:1:1)`)],
  ['thrown string', (m) => `${m} `],
  ['thrown object', (m) => ({ message: m, stack: `at ${__filename}` })],
];

const param = fc.option(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('messages[0].content', 'body', "it's", 'a\nb', '😀')), { nil: undefined });

const chunkText = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.constantFrom(...HOSTILE));

function chunkOf(i: number, content: string): ChatCompletionChunk {
  return { id: `chatcmpl-fuzz`, object: 'chat.completion.chunk', created: 1_700_000_000, model: 'fuzz', choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content } : { content }, finish_reason: null }] };
}

interface Case {
  name: string;
  error: unknown;
  secrets: Secret[];
  /** The original message, which an unclassified error must not show. */
  original: string;
  chunks: ChatCompletionChunk[];
  form: ErrorBodyForm;
}

const errorCase: fc.Arbitrary<Case> = fc
  .record({
    cls: fc.constantFrom(...CLASSES),
    message,
    param,
    contents: fc.array(chunkText, { minLength: 1, maxLength: 5 }),
    form: fc.constantFrom<ErrorBodyForm>('gateway', 'openai'),
  })
  .map(({ cls: [name, make], message: { text, secrets }, param: p, contents, form }) => ({
    name,
    error: make(text, p),
    secrets,
    original: text,
    chunks: contents.map((c, i) => chunkOf(i, c)),
    form,
  }));

// ---------------------------------------------------------------------------------------------
// The app: context → a route that streams the case's chunks (or none) then fails → the error writer

const cases = new Map<string, { kase: Case; commit: boolean }>();
let nextId = 0;
const servers: Partial<Record<ErrorBodyForm, RunningServer>> = {};

function route(req: Request, res: Response, next: NextFunction): void {
  const entry = cases.get(String(req.headers['x-case']));
  if (!entry) return next(new Error('unknown case'));
  const ctx = getContext(req);
  void (async () => {
    if (entry.commit) for (const chunk of entry.kase.chunks) await ctx.writer.send(chunk);
    next(entry.kase.error);
  })();
}

beforeAll(async () => {
  for (const form of ['gateway', 'openai'] as const) {
    const app = createApp();
    app.post('/v1/chat/completions', gatewayContext({ logger: silentLogger }), route, sseErrorWriter({ errorBodyForm: form, logger: silentLogger }));
    servers[form] = await listen(app);
  }
});

afterAll(async () => {
  await Promise.all(Object.values(servers).map((s) => s.close()));
});

async function run(kase: Case, commit: boolean): Promise<RawResponse> {
  const id = String(nextId++);
  cases.set(id, { kase, commit });
  try {
    const server = servers[kase.form] as RunningServer;
    return await rawRequest(server.url, {
      headers: { 'x-case': id },
      body: { model: 'fuzz', stream: true, messages: [{ role: 'user', content: 'hi' }] },
    });
  } finally {
    cases.delete(id);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks

/** The error object as it must be on the wire, for either form. */
function checkErrorObject(error: Record<string, unknown>, expected: GatewayError, form: ErrorBodyForm): void {
  expect(typeof error['message']).toBe('string');
  expect((error['message'] as string).length).toBeGreaterThan(0);
  expect(typeof error['type']).toBe('string');
  expect(error['type']).toBe(expected.type);
  if (form === 'gateway') {
    expect(error['code']).toBe(expected.status);
    expect(Object.keys(error).sort()).toEqual(['code', 'message', 'type']);
  } else {
    expect(error['code']).toBe(String(expected.status));
    expect(error['code']).toMatch(/^\d{3}$/);
    expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(error['param']).toBe(expected.param ?? null);
  }
}

const GENERIC_INTERNAL_MESSAGE = new InternalError().message;

function checkNoLeak(res: RawResponse, kase: Case, error: Record<string, unknown>): void {
  for (const s of kase.secrets) expect(res.text).not.toContain(s.needle);
  expect(res.text).not.toContain(REPO_ROOT);
  expect(res.text).not.toMatch(/\bsk-[A-Za-z0-9]{8,}/);
  expect(res.text).not.toMatch(/https?:\/\//);
  // An unclassified error (a bug) shows nothing of itself: not its message, not its stack.
  if (!(kase.error instanceof Error && 'status' in kase.error)) expect(error['message']).toBe(GENERIC_INTERNAL_MESSAGE);
}

describe(`fuzz: error frames (Express ${EXPRESS_MAJOR}, seed ${SEED})`, () => {
  it('after commit: well-formed frames, exactly one error frame then exactly one [DONE], complete, nothing leaked', async () => {
    await fc.assert(
      fc.asyncProperty(errorCase, async (kase) => {
        const expected = toGatewayError(kase.error);
        const res = await run(kase, true);
        expect(res.error).toBeUndefined();
        expect(res.complete).toBe(true);
        expect(res.status).toBe(200);
        expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
        // Only `data: <one line>\n\n` frames (sseData throws on anything else).
        const frames = sseData(res.text);
        expect(res.text).toBe(frames.map((f) => `data: ${f}\n\n`).join(''));
        expect(frames.at(-1)).toBe('[DONE]');
        expect(frames.filter((f) => f === '[DONE]')).toHaveLength(1);
        const payloads = frames.slice(0, -1).map((f) => JSON.parse(f) as Record<string, unknown>);
        // The content the route sent, untouched, then the one error frame.
        expect(payloads.slice(0, -1)).toEqual(JSON.parse(JSON.stringify(kase.chunks)));
        const errorFrames = payloads.filter((p) => 'error' in p);
        expect(errorFrames).toHaveLength(1);
        const last = payloads.at(-1) as Record<string, unknown>;
        expect(Object.keys(last)).toEqual(['error']);
        checkErrorObject(last['error'] as Record<string, unknown>, expected, kase.form);
        expect(last).toEqual(JSON.parse(JSON.stringify(expected.toBody(kase.form))));
        checkNoLeak(res, kase, last['error'] as Record<string, unknown>);
      }),
      fcOptions(250),
    );
  }, 60_000);

  it('before commit: JSON with the status and the identical error object', async () => {
    await fc.assert(
      fc.asyncProperty(errorCase, async (kase) => {
        const expected = toGatewayError(kase.error);
        const [before, after] = await Promise.all([run(kase, false), run(kase, true)]);
        expect(before.complete).toBe(true);
        expect(before.status).toBe(expected.status);
        expect(before.headers['content-type']).toMatch(/^application\/json/);
        const body = JSON.parse(before.text) as Record<string, unknown>;
        expect(Object.keys(body)).toEqual(['error']);
        checkErrorObject(body['error'] as Record<string, unknown>, expected, kase.form);
        checkNoLeak(before, kase, body['error'] as Record<string, unknown>);
        // Invariant 5: the same failure, the same error object, whichever side of the commit.
        const frames = sseData(after.text);
        expect(JSON.parse(frames.at(-2) as string)).toEqual(body);
      }),
      fcOptions(150),
    );
  }, 60_000);
});
