/**
 * Issue #5 (Bedrock guardrail), "Done when", end to end through the REAL pipeline:
 * `gatewayContext()` → `bedrockGuardrail()` → `createRouter()` → `fallbackHandler()` → `sseErrorWriter()`
 * (and once through `createGateway(config)`), with the real `@aws-sdk/client-bedrock-runtime` client over
 * loopback HTTP against the ApplyGuardrail emulator, the real OpenAI adapter against the mock OpenAI server,
 * and an Anthropic mock as the fallback group. Responses are read as raw bytes with receive times.
 *
 * Scripted answers are made of 8-character tokens (`word017 `) sent one delta each, so with
 * `windowSize: 64, overlap: 0` every output window is exactly 8 deltas: window 1 = tokens 0–7,
 * window 2 = 8–15, window 3 = 16–23, …
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import OpenAI from 'openai';
import { bedrockGuardrail, type BedrockGuardrailOptions } from '../lib/bedrock-guardrail.js';
import { createGateway, silentLogger, type Gateway, type GatewayOptions } from '../lib/index.js';
import {
  DEFAULT_GUARDRAIL,
  evaluateGuardrail,
  startBedrockEmulator,
  startMockAnthropic,
  startMockOpenAI,
  type BedrockEmulator,
  type EmulatorCall,
  type FaultSpec,
  type MockCall,
  type MockScenarioSpec,
  type MockServer,
} from '../lib/testing/index.js';
import { chat, chatBoth, parityView, type ChatOutcome } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';
import { listen, rawRequest, sseData, type RunningServer } from './helpers/http.js';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' };
const VIOLATION = { error: { message: 'Violated guardrail policy', code: 400, type: 'guardrail_violation' } };
const VIOLATION_BODY = '{"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}';
/** The exact tail of a stream ended by a post-commit block (the seed bytes). */
const VIOLATION_TAIL = 'data: {"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}\n\ndata: [DONE]\n\n';
const INPUT_BLOCKED = DEFAULT_GUARDRAIL.blockedInputMessaging;
const OUTPUT_BLOCKED = DEFAULT_GUARDRAIL.blockedOutputsMessaging;
/** The model name the `main` deployment sends upstream; each test scripts its answer with `setScenario`. */
const UPSTREAM = 'gw-main';
const WINDOW = { windowSize: 64, overlap: 0 };
const BACKUP_ANSWER = 'Hello! This is a mock answer from backup.';

let emulator: BedrockEmulator;
let model: MockServer;
let backup: MockServer;
const gateways: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  [emulator, model, backup] = await Promise.all([startBedrockEmulator(), startMockOpenAI({ name: 'primary' }), startMockAnthropic({ name: 'backup' })]);
});
afterAll(async () => {
  await Promise.all([emulator.close(), model.close(), backup.close()]);
});
beforeEach(() => {
  emulator.reset();
  model.reset();
  backup.reset();
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

// ---- the pipeline ----

function guardrailOptions(overrides: Partial<BedrockGuardrailOptions>, target: BedrockEmulator = emulator): BedrockGuardrailOptions {
  return {
    guardrailIdentifier: DEFAULT_GUARDRAIL.id,
    guardrailVersion: DEFAULT_GUARDRAIL.version,
    region: 'us-east-1',
    endpoint: target.url,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    logger: silentLogger,
    ...overrides,
  };
}

/**
 * context → guardrail → real router → fallback handler (main → backup for every kind) → SSE error writer.
 * `main` is the OpenAI mock (scripted per test), `backup` the Anthropic mock.
 */
async function gateway(overrides: Partial<BedrockGuardrailOptions>, target: BedrockEmulator = emulator): Promise<TestGateway> {
  const g = await startGateway(
    {
      models: [
        { name: 'main', deployments: [{ provider: 'openai', baseUrl: `${model.url}/v1`, model: UPSTREAM, apiKey: 'k' }] },
        { name: 'backup', deployments: [{ provider: 'anthropic', baseUrl: backup.url, model: 'normal', apiKey: 'k' }] },
      ],
      retries: { maxRetries: 0 },
      cooldown: { failureThreshold: 1000 },
    },
    {
      before: [bedrockGuardrail(guardrailOptions(overrides, target))],
      fallbacks: { fallbacks: { main: ['backup'] }, contentPolicyFallbacks: { main: ['backup'] } },
    },
  );
  gateways.push(g);
  return g;
}

const ask = (content = 'Tell me a story.', extra: Record<string, unknown> = {}) => ({ model: 'main', messages: [{ role: 'user', content }], ...extra });

// ---- scripted answers ----

/** Token i: 8 characters, unique, triggers nothing in the default guardrail. */
function token(i: number): string {
  return `word${String(i).padStart(3, '0')} `;
}

/** `count` tokens; `replace` puts other 8-character tokens at given positions (e.g. `{ 18: 'BLOCKME ' }`). */
function tokens(count: number, replace: Record<number, string> = {}): string[] {
  return Array.from({ length: count }, (_, i) => replace[i] ?? token(i));
}

/** The mock answers with exactly these deltas (one token each), `chunkDelayMs` apart. */
function script(parts: readonly string[], chunkDelayMs = 0): MockScenarioSpec {
  return { scenario: 'normal', text: parts.join(''), chunks: parts.length, chunkDelayMs };
}

/** Window `n` (1-based) of a token list: 8 tokens. */
function windowText(parts: readonly string[], n: number): string {
  return parts.slice((n - 1) * 8, n * 8).join('');
}

/** 32 tokens with BLOCKME as token 18: windows 1–2 clean, window 3 blocks. */
const BLOCKED_IN_WINDOW_3 = tokens(32, { 18: 'BLOCKME ' });

// ---- reading responses ----

interface Received {
  at: number;
  bytes: string;
}

interface TimedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  complete: boolean;
  error?: Error;
  firstByteAt: number | undefined;
  received: Received[];
}

/** A POST whose every received piece is time-stamped; `destroy()` disconnects the client at will. */
function openRequest(baseUrl: string, body: object): { destroy(): void; response: Promise<TimedResponse> } {
  const req = http.request(new URL('/v1/chat/completions', baseUrl), { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } });
  const response = new Promise<TimedResponse>((resolve) => {
    req.on('error', (error) => resolve({ status: 0, headers: {}, text: '', complete: false, error, firstByteAt: undefined, received: [] }));
    req.on('response', (res) => {
      const received: Received[] = [];
      let error: Error | undefined;
      res.setEncoding('utf8');
      res.on('data', (bytes: string) => received.push({ at: Date.now(), bytes }));
      res.on('error', (e) => (error = e));
      res.on('aborted', () => (error ??= new Error('aborted')));
      res.on('close', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: received.map((r) => r.bytes).join(''),
          complete: res.complete,
          firstByteAt: received[0]?.at,
          received,
          ...(error ? { error } : {}),
        }),
      );
    });
  });
  req.end(JSON.stringify(body));
  return { destroy: () => req.destroy(), response };
}

function timedRequest(baseUrl: string, body: object): Promise<TimedResponse> {
  return openRequest(baseUrl, body).response;
}

/** SSE frames with the time the first byte of each arrived. */
function timedFrames(received: readonly Received[]): { at: number; data: string }[] {
  const frames: { at: number; data: string }[] = [];
  let buffer = '';
  let startedAt = 0;
  for (const { at, bytes } of received) {
    if (buffer === '') startedAt = at;
    buffer += bytes;
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      expect(frame.startsWith('data: ')).toBe(true);
      frames.push({ at: startedAt, data: frame.slice('data: '.length) });
      buffer = buffer.slice(end + 2);
      startedAt = at;
    }
  }
  expect(buffer).toBe('');
  return frames;
}

/** The content text a frame carries (choice 0), '' for [DONE], error frames and chunks without text. */
function contentOf(data: string): string {
  if (data === '[DONE]') return '';
  const parsed = JSON.parse(data) as { choices?: { index: number; delta?: { content?: string | null } }[] };
  return (parsed.choices ?? []).filter((c) => c.index === 0).map((c) => c.delta?.content ?? '').join('');
}

/** The streamed text of a raw SSE body. */
function streamedText(body: string): string {
  return sseData(body).map(contentOf).join('');
}

function outputCalls(from: BedrockEmulator = emulator): EmulatorCall[] {
  return from.calls.filter((c) => c.source === 'OUTPUT');
}

function upstreamCalls(): MockCall[] {
  return model.calls.filter((c) => c.model === UPSTREAM);
}

/** Text units of one emulator call as the gateway bills them (every text policy's counter). */
function unitsOf(call: EmulatorCall | undefined): number {
  const u = call?.usage;
  if (!u) return 0;
  return u.topicPolicyUnits + u.contentPolicyUnits + u.wordPolicyUnits + u.sensitiveInformationPolicyUnits + u.sensitiveInformationPolicyFreeUnits + u.contextualGroundingPolicyUnits;
}

/** Stream and non-stream outcomes agree on status, error object, text and finish reason. */
function expectAgree(plain: ChatOutcome, streamed: ChatOutcome): void {
  expect(parityView(streamed)).toEqual(parityView(plain));
}

describe(`Bedrock guardrail through the real router (Express ${EXPRESS_MAJOR})`, () => {
  // ---- 1 & 2: the seed paths ----
  describe.each([
    ['(a) during_call + post_call', ['during_call', 'post_call']],
    ['(b) post_call only', ['post_call']],
  ] as [string, BedrockGuardrailOptions['hooks']][])('seed path %s', (_name, hooks) => {
    it('stream: a block after commit ends the raw bytes with exactly the error frame and [DONE]; no blocked text leaves', async () => {
      const g = await gateway({ hooks, streaming: WINDOW });
      model.setScenario(UPSTREAM, script(BLOCKED_IN_WINDOW_3));
      const res = await rawRequest(g.url, { body: ask('Tell me a story.', { stream: true }) });

      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(res.complete).toBe(true);
      expect(res.error).toBeUndefined();
      expect(res.text.endsWith(VIOLATION_TAIL)).toBe(true);
      expect(res.text.split('"error"')).toHaveLength(2); // exactly one error frame
      // Windows 1–2 went out whole; nothing of window 3 (the blocked word nor its clean neighbours).
      const delivered = streamedText(res.text);
      expect(delivered).toBe(windowText(BLOCKED_IN_WINDOW_3, 1) + windowText(BLOCKED_IN_WINDOW_3, 2));
      expect(res.text).not.toContain('BLOCKME');
      for (const t of BLOCKED_IN_WINDOW_3.slice(16)) expect(res.text).not.toContain(t.trim());

      const sources = emulator.calls.map((c) => `${c.source}:${c.action}`);
      const input = hooks!.includes('during_call') ? ['INPUT:NONE'] : [];
      expect(sources).toEqual([...input, 'OUTPUT:NONE', 'OUTPUT:NONE', 'OUTPUT:GUARDRAIL_INTERVENED']);
      expect(outputCalls()[2]?.texts).toEqual([windowText(BLOCKED_IN_WINDOW_3, 3)]);
      expect(backup.callCount()).toBe(0);
    });

    it('stream: false gives a 400 with the identical error object', async () => {
      const g = await gateway({ hooks, streaming: WINDOW });
      model.setScenario(UPSTREAM, script(BLOCKED_IN_WINDOW_3));
      const streamed = await rawRequest(g.url, { body: ask('Tell me a story.', { stream: true }) });
      const plain = await rawRequest(g.url, { body: ask('Tell me a story.', { stream: false }) });
      expect(plain.status).toBe(400);
      expect(plain.headers['content-type']).toMatch(/^application\/json/);
      expect(plain.text).toBe(VIOLATION_BODY);
      const frame = sseData(streamed.text).at(-2)!;
      expect(JSON.parse(frame)).toEqual(JSON.parse(plain.text));
      expect(JSON.parse(plain.text)).toEqual(VIOLATION);
      expect(upstreamCalls()).toHaveLength(2);
      expect(backup.callCount()).toBe(0);
    });
  });

  // ---- 3 ----
  it('pre_call block: 400 JSON in both modes, the model is never called', async () => {
    const g = await gateway({ hooks: ['pre_call', 'post_call'] });
    const [plain, streamed] = await chatBoth(g.url, ask('Any stock tips for today?'));
    for (const res of [plain, streamed]) {
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect({ error: res.error }).toEqual(VIOLATION);
    }
    expectAgree(plain, streamed);
    expect(model.callCount()).toBe(0);
    expect(backup.callCount()).toBe(0);
    expect(emulator.calls.map((c) => `${c.source}:${c.action}`)).toEqual(['INPUT:GUARDRAIL_INTERVENED', 'INPUT:GUARDRAIL_INTERVENED']);
  });

  // ---- 4 ----
  it.each([false, true])('during_call block on input aborts the running upstream call; no output byte before the verdict (stream: %p)', async (stream) => {
    // The verdict comes 200 ms late; the model starts answering at once and would take ~2 s.
    emulator.setFault({ kind: 'delay', delayMs: 200, times: 1 });
    model.setScenario(UPSTREAM, script(tokens(40), 50));
    const g = await gateway({ hooks: ['during_call'] });
    const res = await timedRequest(g.url, ask('Give me some stock tips', { stream }));

    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.text).toBe(VIOLATION_BODY);
    const verdict = emulator.calls[0]!;
    expect(verdict.action).toBe('GUARDRAIL_INTERVENED');
    expect(res.firstByteAt).toBeGreaterThanOrEqual(verdict.respondedAt!);
    const call = await model.waitForCall((c) => c.model === UPSTREAM && c.closedAt !== undefined, 1000);
    if (stream) expect(call.respondedAt).toBeLessThan(verdict.respondedAt!); // the model was already streaming
    expect(call.receivedAt).toBeLessThan(verdict.respondedAt!); // ran alongside the check
    expect(call.clientAborted).toBe(true);
    expect(call.closedAt! - verdict.respondedAt!).toBeLessThan(500);
    expect(backup.callCount()).toBe(0);
  });

  // ---- 5 ----
  it('window mode: a block in window 3 delivers windows 1–2, then the frame, and closes the model socket promptly', async () => {
    // 160 tokens 15 ms apart: the whole answer would take ~2.4 s; window 3 is complete after ~350 ms.
    const parts = tokens(160, { 18: 'BLOCKME ' });
    model.setScenario(UPSTREAM, script(parts, 15));
    const g = await gateway({ hooks: ['post_call'], streaming: WINDOW });
    const res = await timedRequest(g.url, ask('Tell me a story.', { stream: true }));

    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.text.endsWith(VIOLATION_TAIL)).toBe(true);
    expect(streamedText(res.text)).toBe(windowText(parts, 1) + windowText(parts, 2));
    const blockedAt = outputCalls()[2]!;
    expect(blockedAt.action).toBe('GUARDRAIL_INTERVENED');
    const call = await model.waitForCall((c) => c.model === UPSTREAM && c.closedAt !== undefined, 1000);
    expect(call.clientAborted).toBe(true);
    expect(call.finishedAt).toBeUndefined();
    expect(call.closedAt! - blockedAt.respondedAt!).toBeLessThan(500);
    expect(call.closedAt! - call.receivedAt).toBeLessThan(1500); // long before the stream would have ended
    expect(outputCalls()).toHaveLength(3); // nothing checked after the block
  });

  // ---- 6 ----
  describe('no output text leaves before a check covering it has answered', () => {
    /** Every received character must lie inside an OUTPUT text the emulator answered (NONE) before it arrived. */
    function uncheckedCharacters(full: string, res: TimedResponse, calls: readonly EmulatorCall[]): { offset: number; at: number }[] {
      const windows = calls
        .filter((c) => c.source === 'OUTPUT' && c.action === 'NONE' && c.respondedAt !== undefined)
        .map((c) => {
          const text = c.texts[0] ?? '';
          const start = full.indexOf(text);
          expect(start).toBeGreaterThanOrEqual(0);
          return { start, end: start + text.length, at: c.respondedAt! };
        });
      const leaks: { offset: number; at: number }[] = [];
      let offset = 0;
      for (const frame of timedFrames(res.received)) {
        for (const _char of contentOf(frame.data)) {
          if (!windows.some((w) => w.at <= frame.at && w.start <= offset && offset < w.end)) leaks.push({ offset, at: frame.at });
          offset++;
        }
      }
      return leaks;
    }

    let slow: BedrockEmulator;
    beforeAll(async () => {
      slow = await startBedrockEmulator({ latencyMs: 25 });
    });
    afterAll(() => slow.close());
    beforeEach(() => slow.reset());

    it('window mode (with hold-back): every character was inside an answered window before it arrived', async () => {
      const parts = tokens(48);
      const full = parts.join('');
      model.setScenario(UPSTREAM, script(parts, 3));
      const g = await gateway({ hooks: ['post_call'], streaming: { windowSize: 64, overlap: 16 } }, slow);
      const res = await timedRequest(g.url, ask('Tell me a story.', { stream: true }));
      expect(res.status).toBe(200);
      expect(streamedText(res.text)).toBe(full);
      expect(outputCalls(slow).length).toBeGreaterThanOrEqual(4);
      expect(uncheckedCharacters(full, res, slow.calls)).toEqual([]);
    });

    it('control: the same assertion catches async mode, which releases text before its check', async () => {
      const parts = tokens(48);
      const full = parts.join('');
      model.setScenario(UPSTREAM, script(parts, 3));
      const slower = await startBedrockEmulator({ latencyMs: 200 });
      try {
        const g = await gateway({ hooks: ['post_call'], streaming: { mode: 'async', windowSize: 64, overlap: 16 } }, slower);
        const res = await timedRequest(g.url, ask('Tell me a story.', { stream: true }));
        expect(res.status).toBe(200);
        expect(streamedText(res.text)).toBe(full);
        expect(uncheckedCharacters(full, res, slower.calls).length).toBeGreaterThan(0);
      } finally {
        await slower.close();
      }
    });
  });

  // ---- 7 ----
  describe('masking gives identical text in stream and non-stream', () => {
    it('output: an email and a name in the answer, the name cut by a check-window edge', async () => {
      // With windowSize 64 / overlap 16, window 2 is checked up to "… so John " (the name cut at its edge);
      // the held-back tail is checked again with the next window, which sees "John Smith" whole.
      const parts = [...tokens(6), 'write to ', 'jane.doe@example.com ', 'or ask ', token(6), 'so ', 'John ', 'Smith ', 'today. ', ...tokens(30).slice(20), 'Bye.'];
      const text = parts.join('');
      const expected = evaluateGuardrail(DEFAULT_GUARDRAIL, 'OUTPUT', [{ text: { text } }]).outputs[0]?.text;
      expect(expected).toContain('write to {EMAIL} or ask word006 so {NAME} today.');
      model.setScenario(UPSTREAM, script(parts));
      for (const streaming of [{ windowSize: 64, overlap: 16 }, {}, { mode: 'buffer' as const }]) {
        emulator.reset();
        const g = await gateway({ hooks: ['post_call'], streaming });
        const [plain, streamed] = await chatBoth(g.url, ask());
        expect(plain.status).toBe(200);
        expect(plain.text).toBe(expected);
        expect(streamed.text).toBe(expected);
        expectAgree(plain, streamed);
        for (const res of [plain, streamed]) expect(JSON.stringify(res.frames) + res.text).not.toMatch(/jane\.doe|John|Smith/);
        expect(plain.headers['x-gateway-guardrail']).toBe('gr1default=OUTPUT:MASKED');
        // Streamed headers go out at commit: with 64-character windows the clean window 1 decided it.
        expect(streamed.headers['x-gateway-guardrail']).toBe(`gr1default=OUTPUT:${'windowSize' in streaming ? 'NONE' : 'MASKED'}`);
        if ('windowSize' in streaming) expect(outputCalls().some((c) => c.texts[0]?.endsWith(' so John '))).toBe(true);
      }
    });

    it('input with pre_call: the model only ever sees {EMAIL}, and both modes answer alike', async () => {
      model.setScenario(UPSTREAM, 'echo');
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const [plain, streamed] = await chatBoth(g.url, ask('My address is jane.doe@example.com, reply there.'));
      expect(plain.status).toBe(200);
      expect(plain.text).toBe('My address is {EMAIL}, reply there.');
      expectAgree(plain, streamed);
      expect(upstreamCalls()).toHaveLength(2);
      for (const call of upstreamCalls()) {
        expect((call.body as { messages: unknown }).messages).toEqual([{ role: 'user', content: 'My address is {EMAIL}, reply there.' }]);
        expect(JSON.stringify(call.body)).not.toContain('jane.doe');
      }
    });
  });

  // ---- 8 ----
  describe('soft block', () => {
    function expectSoftStream(res: ChatOutcome, text: string): void {
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(res.error).toBeUndefined();
      expect(res.frames.some((f) => f.includes('"error"'))).toBe(false);
      expect(res.frames.at(-1)).toBe('[DONE]');
      expect(JSON.parse(res.frames.at(-2)!).choices[0].finish_reason).toBe('content_filter');
      expect(res.text).toBe(text);
    }

    function expectSoftJson(res: ChatOutcome, text: string): void {
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.finishReason).toBe('content_filter');
      expect(res.text).toBe(text);
    }

    it('pre_call: the guardrail message as a normal answer in both modes; the model is never called', async () => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'], softBlock: true });
      const [plain, streamed] = await chatBoth(g.url, ask('Which stocks should I buy?'));
      expectSoftJson(plain, INPUT_BLOCKED);
      expectSoftStream(streamed, INPUT_BLOCKED);
      expectAgree(plain, streamed);
      expect(model.callCount()).toBe(0);
      expect(backup.callCount()).toBe(0);
    });

    it('output before commit (window 1): identical answers in both modes', async () => {
      model.setScenario(UPSTREAM, script(tokens(32, { 3: 'BLOCKME ' })));
      const g = await gateway({ hooks: ['post_call'], softBlock: true, streaming: WINDOW });
      const [plain, streamed] = await chatBoth(g.url, ask());
      expectSoftJson(plain, OUTPUT_BLOCKED);
      expectSoftStream(streamed, OUTPUT_BLOCKED);
      expectAgree(plain, streamed);
      expect(JSON.stringify(streamed.frames)).not.toContain('BLOCKME');
      expect(backup.callCount()).toBe(0);
    });

    it('output after commit (window 3): windows 1–2 then the message, a well-formed content_filter stream', async () => {
      model.setScenario(UPSTREAM, script(BLOCKED_IN_WINDOW_3));
      const g = await gateway({ hooks: ['during_call', 'post_call'], softBlock: true, streaming: WINDOW });
      const [plain, streamed] = await chatBoth(g.url, ask());
      expectSoftJson(plain, OUTPUT_BLOCKED);
      expectSoftStream(streamed, windowText(BLOCKED_IN_WINDOW_3, 1) + windowText(BLOCKED_IN_WINDOW_3, 2) + OUTPUT_BLOCKED);
      expect(JSON.stringify(streamed.frames)).not.toMatch(/BLOCKME|word016|word023/);
      expect(backup.callCount()).toBe(0);
    });
  });

  // ---- 9 ----
  describe('guardrail failures: fail closed (503 guardrail_unavailable) or open, never a raw 500 or a truncated stream', () => {
    // timeoutMs: generous where the timeout plays no part; for the delay, short enough to keep the run quick.
    const faults: [string, FaultSpec, number, string][] = [
      ['throttled', { kind: 'ThrottlingException' }, 3000, 'failed.'],
      ['a 5xx', { kind: 'InternalServerException' }, 3000, 'failed.'],
      ['slow past its timeout', { kind: 'delay', delayMs: 5000 }, 400, 'did not answer within 400 ms.'],
      ['a non-JSON answer', { kind: 'non-json' }, 3000, 'failed.'],
    ];

    function expectWellFormed(res: ChatOutcome): void {
      expect(res.status).not.toBe(500);
      expect(res.complete).toBe(true);
      if (res.headers['content-type']?.startsWith('text/event-stream')) expect(res.frames.at(-1)).toBe('[DONE]');
    }

    /** Sets `fault` the moment the second OUTPUT check has answered (so windows 1–2 pass, later ones fail). */
    function faultFromWindow3(fault: FaultSpec): Promise<void> {
      return emulator.waitFor((calls) => {
        if (calls.filter((c) => c.source === 'OUTPUT' && c.respondedAt !== undefined).length < 2) return false;
        emulator.setFault(fault);
        return true;
      }, 5000);
    }

    describe.each(faults)('%s', (_name, fault, timeoutMs, reason) => {
      const unavailable = { message: `Guardrail 'gr1default' ${reason}`, code: 503, type: 'guardrail_unavailable' };

      it('fail closed before commit (input check): 503 JSON in both modes, the model is never called', async () => {
        emulator.setFault(fault);
        model.setScenario(UPSTREAM, script(tokens(16)));
        const g = await gateway({ timeoutMs });
        const [plain, streamed] = await chatBoth(g.url, ask());
        for (const res of [plain, streamed]) {
          expectWellFormed(res);
          expect(res.status).toBe(503);
          expect(res.headers['content-type']).toMatch(/^application\/json/);
          expect(res.error).toEqual(unavailable);
        }
        expectAgree(plain, streamed);
        expect(model.callCount()).toBe(0);
        expect(backup.callCount()).toBe(0);
        expect(emulator.calls.every((c) => c.fault === fault.kind)).toBe(true);
      });

      it('fail open before commit: the whole answer goes through in both modes', async () => {
        emulator.setFault(fault);
        const parts = tokens(16);
        model.setScenario(UPSTREAM, script(parts));
        const g = await gateway({ timeoutMs, failOpen: true, streaming: WINDOW });
        const [plain, streamed] = await chatBoth(g.url, ask());
        for (const res of [plain, streamed]) {
          expectWellFormed(res);
          expect(res.status).toBe(200);
          expect(res.text).toBe(parts.join(''));
          expect(res.error).toBeUndefined();
          expect(res.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:ERROR;gr1default=OUTPUT:ERROR');
        }
        expectAgree(plain, streamed);
        expect(emulator.calls.length).toBeGreaterThanOrEqual(4);
        expect(emulator.calls.every((c) => c.fault === fault.kind)).toBe(true);
      });

      it('fail closed after commit (window 3): the in-band frame and [DONE]; 503 JSON with the same object without streaming', async () => {
        model.setScenario(UPSTREAM, script(tokens(32), 5));
        const g = await gateway({ hooks: ['post_call'], timeoutMs, streaming: WINDOW });
        const armed = faultFromWindow3(fault);
        const streamed = await chat(g.url, ask('Tell me a story.', { stream: true }));
        await armed;
        expectWellFormed(streamed);
        expect(streamed.status).toBe(200);
        expect(streamed.inBand).toBe(true);
        expect(streamed.error).toEqual(unavailable);
        expect(streamed.frames.slice(-2)).toEqual([JSON.stringify({ error: unavailable }), '[DONE]']);
        expect(streamed.text).toBe(windowText(tokens(32), 1) + windowText(tokens(32), 2));
        expect(outputCalls()[2]?.fault).toBe(fault.kind);

        emulator.setFault(fault);
        const plain = await chat(g.url, ask('Tell me a story.', { stream: false }));
        expectWellFormed(plain);
        expect(plain.status).toBe(503);
        expect(plain.error).toEqual(streamed.error);
        expect(backup.callCount()).toBe(0);
      });

      it('fail open after commit (window 3): the whole answer goes through in both modes', async () => {
        const parts = tokens(32);
        model.setScenario(UPSTREAM, script(parts, 5));
        const g = await gateway({ hooks: ['post_call'], timeoutMs, failOpen: true, streaming: WINDOW });
        const armed = faultFromWindow3(fault);
        const streamed = await chat(g.url, ask('Tell me a story.', { stream: true }));
        await armed;
        emulator.setFault(fault);
        const plain = await chat(g.url, ask('Tell me a story.', { stream: false }));
        for (const res of [plain, streamed]) {
          expectWellFormed(res);
          expect(res.status).toBe(200);
          expect(res.error).toBeUndefined();
          expect(res.text).toBe(parts.join(''));
          expect(res.finishReason).toBe('stop');
        }
        expectAgree(plain, streamed);
        expect(outputCalls().map((c) => c.fault)).toEqual([undefined, undefined, fault.kind, fault.kind, fault.kind]);
      });
    });
  });

  // ---- 10 ----
  describe('the real openai v6 client, through createGateway(config)', () => {
    let server: RunningServer;
    let gw: Gateway;
    let config: GatewayOptions;

    beforeEach(async () => {
      config = {
        models: [
          { name: 'main', deployments: [{ provider: 'openai', baseUrl: `${model.url}/v1`, model: UPSTREAM, apiKey: 'k' }] },
          { name: 'backup', deployments: [{ provider: 'anthropic', baseUrl: backup.url, model: 'normal', apiKey: 'k' }] },
        ],
        router: { retries: { maxRetries: 0 } },
        fallbacks: { general: { main: ['backup'] }, contentPolicy: { main: ['backup'] } },
        guardrails: [
          {
            guardrailIdentifier: DEFAULT_GUARDRAIL.id,
            guardrailVersion: DEFAULT_GUARDRAIL.version,
            region: 'us-east-1',
            endpoint: emulator.url,
            credentials: CREDENTIALS,
            maxAttempts: 1,
            hooks: ['during_call', 'post_call'],
            streaming: WINDOW,
          },
        ],
        logger: silentLogger,
      };
      gw = createGateway(config);
      const app = createApp();
      app.use(gw);
      server = await listen(app);
      gateways.push({
        close: async () => {
          await server.close();
          await gw.close();
        },
      });
    });

    it('surfaces the post-commit block as an APIError (message, code 400, type) after yielding windows 1–2', async () => {
      model.setScenario(UPSTREAM, script(BLOCKED_IN_WINDOW_3));
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test', maxRetries: 0 });
      const stream = await client.chat.completions.create({ model: 'main', stream: true, messages: [{ role: 'user', content: 'Tell me a story.' }] });
      let received = '';
      let chunksBeforeError = 0;
      let caught: unknown;
      try {
        for await (const chunk of stream) {
          received += chunk.choices[0]?.delta.content ?? '';
          chunksBeforeError++;
        }
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(OpenAI.APIError);
      expect(caught).toMatchObject({ message: 'Violated guardrail policy', code: 400, type: 'guardrail_violation' });
      expect((caught as InstanceType<typeof OpenAI.APIError>).error).toEqual(VIOLATION.error);
      expect(received).toBe(windowText(BLOCKED_IN_WINDOW_3, 1) + windowText(BLOCKED_IN_WINDOW_3, 2));
      expect(chunksBeforeError).toBeGreaterThanOrEqual(16);

      // Without streaming the same client gets a BadRequestError carrying the same error object.
      let plainError: unknown;
      await client.chat.completions.create({ model: 'main', messages: [{ role: 'user', content: 'Tell me a story.' }] }).catch((err: unknown) => (plainError = err));
      expect(plainError).toBeInstanceOf(OpenAI.BadRequestError);
      expect(plainError).toMatchObject({ status: 400, code: 400, type: 'guardrail_violation' });
      expect(backup.callCount()).toBe(0);
    });

    it('leaves the config untouched, so the same config builds a gateway again after serving (regression)', async () => {
      model.setScenario(UPSTREAM, script(tokens(8)));
      const before = JSON.stringify(config);
      const res = await chat(server.url, ask());
      expect(res.status).toBe(200);
      expect(res.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:NONE;gr1default=OUTPUT:NONE');
      // The AWS SDK tags the credentials object it is given with `$source` on first use.
      expect(JSON.stringify(config)).toBe(before);
      const again = createGateway(config);
      await again.close();
    });
  });

  // ---- 11 ----
  describe('client disconnect during an output check aborts the ApplyGuardrail call in flight', () => {
    it('stream: while window 2 is being checked (after commit)', async () => {
      model.setScenario(UPSTREAM, script(tokens(96), 20)); // ~1.9 s; window 2 is checked after ~320 ms
      const g = await gateway({ hooks: ['post_call'], timeoutMs: 10_000, streaming: WINDOW });
      const hung = emulator.waitFor((calls) => {
        if (calls.filter((c) => c.source === 'OUTPUT' && c.respondedAt !== undefined).length < 1) return false;
        emulator.setFault({ kind: 'hang' });
        return true;
      });
      const request = openRequest(g.url, ask('Tell me a story.', { stream: true }));
      await hung;
      await emulator.waitFor((calls) => calls.filter((c) => c.source === 'OUTPUT').length >= 2);
      const disconnectedAt = Date.now();
      request.destroy();
      const res = await request.response;
      expect(res.complete).toBe(false);
      await emulator.waitFor(() => outputCalls()[1]?.abortedAt !== undefined, 1000);
      const check = outputCalls()[1]!;
      expect(check.fault).toBe('hang');
      expect(check.abortedAt! - disconnectedAt).toBeLessThan(500);
      // The upstream model call was dropped too, before it finished.
      const call = await model.waitForCall((c) => c.model === UPSTREAM && c.closedAt !== undefined, 1000);
      expect(call.clientAborted).toBe(true);
      expect(call.closedAt! - disconnectedAt).toBeLessThan(500);
    });

    it('stream: false, while the whole answer is being checked', async () => {
      model.setScenario(UPSTREAM, script(tokens(16)));
      emulator.setFault({ kind: 'hang' });
      const g = await gateway({ hooks: ['post_call'], timeoutMs: 10_000 });
      const request = openRequest(g.url, ask('Tell me a story.', { stream: false }));
      await emulator.waitFor((calls) => calls.some((c) => c.source === 'OUTPUT'));
      const disconnectedAt = Date.now();
      request.destroy();
      await request.response;
      await emulator.waitFor((calls) => calls[0]?.abortedAt !== undefined, 1000);
      expect(emulator.calls[0]!.abortedAt! - disconnectedAt).toBeLessThan(500);
    });
  });

  // ---- 12 ----
  describe('a guardrail block never triggers a fallback (fallbacks configured for main → backup)', () => {
    const cases: [string, Partial<BedrockGuardrailOptions>, string, MockScenarioSpec | undefined][] = [
      ['pre_call input block', { hooks: ['pre_call', 'post_call'] }, 'Any stock tips?', undefined],
      ['during_call input block', { hooks: ['during_call', 'post_call'] }, 'Any stock tips?', script(tokens(16), 20)],
      ['output block in window 1 (before commit)', { hooks: ['post_call'], streaming: WINDOW }, 'Hello', script(tokens(16, { 2: 'BLOCKME ' }))],
      ['output block in window 3 (after commit)', { hooks: ['post_call'], streaming: WINDOW }, 'Hello', script(BLOCKED_IN_WINDOW_3)],
      ['soft block on output', { hooks: ['post_call'], softBlock: true, streaming: WINDOW }, 'Hello', script(BLOCKED_IN_WINDOW_3)],
    ];

    it.each(cases)('%s', async (_name, options, prompt, answer) => {
      if (answer) model.setScenario(UPSTREAM, answer);
      const g = await gateway(options);
      const [plain, streamed] = await chatBoth(g.url, ask(prompt));
      for (const res of [plain, streamed]) {
        // No attempt at all for a pre_call block (no attempt headers); otherwise only main's.
        expect(res.headers['x-gateway-model-group'] ?? 'main').toBe('main');
        expect(res.headers['x-gateway-fallbacks'] ?? '0').toBe('0');
        if (!options.softBlock) expect(res.error).toEqual(VIOLATION.error);
      }
      expect(backup.callCount()).toBe(0);
      for (const ctx of g.contexts) expect(ctx.attempts.every((a) => a.group === 'main')).toBe(true);
    });

    it('guardrail unavailable (fail closed) does not fall back either', async () => {
      emulator.setFault({ kind: 'InternalServerException' });
      const g = await gateway({ hooks: ['during_call', 'post_call'] });
      model.setScenario(UPSTREAM, script(tokens(16)));
      const [plain, streamed] = await chatBoth(g.url, ask());
      for (const res of [plain, streamed]) expect(res).toMatchObject({ status: 503, error: { type: 'guardrail_unavailable' } });
      expect(backup.callCount()).toBe(0);
    });

    it('control: a provider 503 does fall back, and the fallback answer is checked by the guardrail too', async () => {
      model.setScenario(UPSTREAM, 'error-503');
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const [plain, streamed] = await chatBoth(g.url, ask());
      for (const res of [plain, streamed]) {
        expect(res.status).toBe(200);
        expect(res.text).toBe(BACKUP_ANSWER);
        expect(res.headers['x-gateway-model-group']).toBe('backup');
      }
      expectAgree(plain, streamed);
      expect(backup.callCount()).toBe(2);
      expect(outputCalls().map((c) => c.texts.join(''))).toEqual([BACKUP_ANSWER, BACKUP_ANSWER]);
    });
  });

  // ---- 13 ----
  describe('x-gateway-guardrail / x-gateway-guardrail-units', () => {
    it('on a non-streamed answer: every check; on a streamed one: the checks made before the first byte', async () => {
      const parts = tokens(24);
      model.setScenario(UPSTREAM, script(parts));
      const g = await gateway({ hooks: ['pre_call', 'post_call'], streaming: WINDOW });
      const prompt = 'Reply to jane.doe@example.com please.';

      const plain = await chat(g.url, ask(prompt, { stream: false }));
      expect(plain.status).toBe(200);
      expect(plain.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:MASKED;gr1default=OUTPUT:NONE');
      const plainCalls = emulator.calls.slice();
      expect(plainCalls.map((c) => c.source)).toEqual(['INPUT', 'OUTPUT']);
      expect(plain.headers['x-gateway-guardrail-units']).toBe(String(unitsOf(plainCalls[0]) + unitsOf(plainCalls[1])));

      emulator.reset();
      const streamed = await chat(g.url, ask(prompt, { stream: true }));
      expect(streamed.status).toBe(200);
      expect(streamed.text).toBe(parts.join(''));
      expect(streamed.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:MASKED;gr1default=OUTPUT:NONE');
      // Headers go out at commit: after the input check and window 1, before windows 2 and 3.
      const calls = emulator.calls;
      expect(calls.map((c) => c.source)).toEqual(['INPUT', 'OUTPUT', 'OUTPUT', 'OUTPUT']);
      expect(calls[1]?.texts).toEqual([windowText(parts, 1)]);
      expect(streamed.headers['x-gateway-guardrail-units']).toBe(String(unitsOf(calls[0]) + unitsOf(calls[1])));
      expect(Number(streamed.headers['x-gateway-guardrail-units'])).toBeGreaterThan(0);
    });

    it('during_call: the input verdict is in the headers of both modes', async () => {
      model.setScenario(UPSTREAM, script(tokens(8)));
      const g = await gateway({ hooks: ['during_call', 'post_call'], streaming: WINDOW });
      const [plain, streamed] = await chatBoth(g.url, ask());
      for (const res of [plain, streamed]) {
        expect(res.status).toBe(200);
        expect(res.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:NONE;gr1default=OUTPUT:NONE');
        expect(Number(res.headers['x-gateway-guardrail-units'])).toBeGreaterThan(0);
      }
      expect(streamed.headers['x-gateway-guardrail-units']).toBe(plain.headers['x-gateway-guardrail-units']);
      expectAgree(plain, streamed);
    });
  });
});
