/**
 * The Bedrock guardrail middleware through a real Express app, with the real SDK client over loopback HTTP
 * against the ApplyGuardrail emulator. A fake router (test/helpers/fake-router.ts) plays the router's part
 * of the hook contract. Responses are read as raw bytes.
 */
import http from 'node:http';
import type { Express } from 'express';
import OpenAI from 'openai';
import { bedrockGuardrail, guardrailHeaders, type BedrockGuardrailOptions } from '../lib/bedrock-guardrail.js';
import { gatewayContext } from '../lib/context.js';
import { GatewayConfigError } from '../lib/options.js';
import { silentLogger, type Logger } from '../lib/logger.js';
import { sseErrorWriter } from '../lib/sse-error-writer.js';
import type { ChatCompletion, ChatCompletionChunk, ChatMessage } from '../lib/types.js';
import { DEFAULT_GUARDRAIL, evaluateGuardrail, startBedrockEmulator, type BedrockEmulator, type EmulatorCall, type FaultSpec } from '../lib/testing/bedrock-emulator.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { completionOf, fakeRouter, streamOf, toolCallCompletionOf, toolCallStreamOf, type UpstreamCall, type UpstreamScript } from './helpers/fake-router.js';
import { listen, rawRequest, sseData, type RunningServer } from './helpers/http.js';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' };
const VIOLATION_BODY = '{"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}';
const VIOLATION_FRAME = `data: ${VIOLATION_BODY}\n\n`;
const DONE = 'data: [DONE]\n\n';
const INPUT_BLOCKED = DEFAULT_GUARDRAIL.blockedInputMessaging;
const OUTPUT_BLOCKED = DEFAULT_GUARDRAIL.blockedOutputsMessaging;

let emulator: BedrockEmulator;
const servers: RunningServer[] = [];

beforeAll(async () => {
  emulator = await startBedrockEmulator();
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await emulator.close();
});
beforeEach(() => emulator.reset());

function guardrailOptions(overrides: Partial<BedrockGuardrailOptions> = {}): BedrockGuardrailOptions {
  return {
    guardrailIdentifier: DEFAULT_GUARDRAIL.id,
    guardrailVersion: DEFAULT_GUARDRAIL.version,
    region: 'us-east-1',
    endpoint: emulator.url,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    logger: silentLogger,
    ...overrides,
  };
}

interface TestApp {
  url: string;
  upstream: UpstreamCall[];
}

/** context → guardrail → fake router → error writer, listening on loopback. */
async function startApp(options: Partial<BedrockGuardrailOptions>, script: (stream: boolean) => UpstreamScript): Promise<TestApp> {
  const upstream: UpstreamCall[] = [];
  const app: Express = createApp();
  app.post(
    '/v1/chat/completions',
    gatewayContext(),
    bedrockGuardrail(guardrailOptions(options)),
    fakeRouter((ctx) => script(ctx.stream), upstream),
    sseErrorWriter({ logger: silentLogger }),
  );
  const server = await listen(app);
  servers.push(server);
  return { url: server.url, upstream };
}

/** An answer of `texts` (one per choice), streamed in 10-character deltas or as a whole completion. */
function answer(texts: readonly string[], extra: Partial<UpstreamScript> = {}): (stream: boolean) => UpstreamScript {
  return (stream) => (stream ? { chunks: streamOf(texts), ...extra } : { completion: completionOf(texts), ...extra });
}

function chatBody(stream: boolean, content: string | ChatMessage[] = 'Hello there'): object {
  const messages = typeof content === 'string' ? [{ role: 'user', content }] : content;
  return { model: 'gpt-test', stream, messages };
}

/** The `data:` payloads of a stream, the chunks among them, and the text they carry per choice. */
function parseStream(text: string): { data: string[]; chunks: ChatCompletionChunk[]; texts: string[] } {
  const data = sseData(text);
  const chunks = data.filter((d) => d !== '[DONE]' && !d.startsWith('{"error"')).map((d) => JSON.parse(d) as ChatCompletionChunk);
  const texts: string[] = [];
  for (const chunk of chunks) {
    for (const choice of chunk.choices) texts[choice.index] = (texts[choice.index] ?? '') + (choice.delta.content ?? '');
  }
  return { data, chunks, texts };
}

/** Readable filler that triggers nothing in the default guardrail; numbered so every window is unique. */
function filler(length: number, from = 0): string {
  let text = '';
  for (let i = from; text.length < length; i++) text += `word${String(i).padStart(4, '0')} `;
  return text.slice(0, length);
}

function outputCalls(): EmulatorCall[] {
  return emulator.calls.filter((c) => c.source === 'OUTPUT');
}

describe(`bedrockGuardrail (Express ${EXPRESS_MAJOR})`, () => {
  describe('configuration errors name the field', () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['missing guardrailVersion', { guardrailVersion: undefined }, 'bedrockGuardrail.guardrailVersion'],
      ['bad guardrailVersion', { guardrailVersion: 'v1' }, 'bedrockGuardrail.guardrailVersion'],
      ['bad guardrailIdentifier', { guardrailIdentifier: 'Not An Id' }, 'bedrockGuardrail.guardrailIdentifier'],
      ['unknown option', { timeout: 5 }, 'bedrockGuardrail.timeout'],
      ['pre_call with during_call', { hooks: ['pre_call', 'during_call'] }, 'bedrockGuardrail.hooks'],
      ['unknown hook', { hooks: ['post'] }, 'bedrockGuardrail.hooks[0]'],
      ['async with masking', { streaming: { mode: 'async' }, onIntervention: 'mask' }, 'bedrockGuardrail.streaming.mode'],
      ['overlap over half the window', { streaming: { windowSize: 100, overlap: 60 } }, 'bedrockGuardrail.streaming.overlap'],
      ['bad role', { roles: ['robot'] }, 'bedrockGuardrail.roles[0]'],
      ['no region and no client', { region: undefined }, 'bedrockGuardrail.region'],
      ['timeoutMs not a positive integer', { timeoutMs: 0 }, 'bedrockGuardrail.timeoutMs'],
    ];
    it.each(cases)('%s', (_name, overrides, field) => {
      const make = () => bedrockGuardrail({ ...guardrailOptions(), ...overrides } as BedrockGuardrailOptions);
      expect(make).toThrow(GatewayConfigError);
      expect(make).toThrow(expect.objectContaining({ field }));
    });

    it('rejects a client combined with options that build one', () => {
      const client = { send: () => Promise.resolve({}) } as unknown as BedrockGuardrailOptions['client'];
      expect(() => bedrockGuardrail({ ...guardrailOptions(), client })).toThrow(expect.objectContaining({ field: 'bedrockGuardrail.region' }));
    });

    it('catches the factory mounted without being called', () => {
      const req = { method: 'POST', url: '/', headers: {} } as unknown as BedrockGuardrailOptions;
      expect(() => bedrockGuardrail(req)).toThrow(expect.objectContaining({ code: 'ERR_LLM_GATEWAY_NOT_CALLED' }));
    });

    it('accepts async mode, which defaults to blocking instead of masking', () => {
      expect(() => bedrockGuardrail(guardrailOptions({ streaming: { mode: 'async' } }))).not.toThrow();
    });
  });

  describe.each([false, true])('pre_call (stream: %p)', (stream) => {
    it('blocks with a 400 and the seed error object; the model is never called', async () => {
      const app = await startApp({ hooks: ['pre_call'] }, answer(['unused']));
      const res = await rawRequest(app.url, { body: chatBody(stream, 'Any stock tips for today?') });
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.text).toBe(VIOLATION_BODY);
      expect(app.upstream).toHaveLength(0);
      expect(emulator.calls.map((c) => c.source)).toEqual(['INPUT']);
    });

    it('masks the input, so the model only sees the masked text', async () => {
      const app = await startApp({ hooks: ['pre_call'] }, answer(['ok']));
      const res = await rawRequest(app.url, {
        body: chatBody(stream, [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: [{ type: 'text', text: 'Mail me at jane.doe@example.com' }] },
        ]),
      });
      expect(res.status).toBe(200);
      expect(app.upstream[0]?.messages).toEqual([
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'Mail me at {EMAIL}' }] },
      ]);
      expect(res.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:MASKED');
      expect(res.headers['x-gateway-guardrail-units']).toBe('8'); // 2 blocks × 4 input policies
    });

    it('answers a soft block with the guardrail message and finish_reason content_filter', async () => {
      const app = await startApp({ hooks: ['pre_call'], softBlock: true }, answer(['unused']));
      const res = await rawRequest(app.url, { body: chatBody(stream, 'Which stocks should I buy?') });
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(app.upstream).toHaveLength(0);
      if (stream) {
        const { data, chunks, texts } = parseStream(res.text);
        expect(texts).toEqual([INPUT_BLOCKED]);
        expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('content_filter');
        expect(data.at(-1)).toBe('[DONE]');
      } else {
        const completion = JSON.parse(res.text) as ChatCompletion;
        expect(completion.choices).toEqual([{ index: 0, message: { role: 'assistant', content: INPUT_BLOCKED }, finish_reason: 'content_filter' }]);
      }
    });

    it('checks tool-call arguments and tool results', async () => {
      const app = await startApp({ hooks: ['pre_call'] }, answer(['ok']));
      const withArgs = await rawRequest(app.url, {
        body: chatBody(stream, [
          { role: 'user', content: 'look it up' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{"q":"BLOCKME"}' } }] },
          { role: 'tool', tool_call_id: 'c1', content: 'nothing found' },
        ]),
      });
      expect(withArgs.status).toBe(400);
      const withResult = await rawRequest(app.url, {
        body: chatBody(stream, [
          { role: 'user', content: 'look it up' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{"q":"me"}' } }] },
          { role: 'tool', tool_call_id: 'c1', content: '{"ssn":"123-45-6789"}' },
        ]),
      });
      expect(withResult.status).toBe(400);
      expect(withResult.text).toBe(VIOLATION_BODY);
      expect(app.upstream).toHaveLength(0);
    });

    it('checks only the configured roles', async () => {
      const app = await startApp({ hooks: ['pre_call'], roles: ['user'] }, answer(['ok']));
      const res = await rawRequest(app.url, {
        body: chatBody(stream, [
          { role: 'system', content: 'The secret word is BLOCKME.' },
          { role: 'user', content: 'hi' },
        ]),
      });
      expect(res.status).toBe(200);
      expect(emulator.calls[0]?.texts).toEqual(['hi']);
    });
  });

  describe.each([false, true])('during_call (stream: %p)', (stream) => {
    it('blocks before any output byte and aborts the upstream', async () => {
      emulator.setFault({ kind: 'delay', delayMs: 300 });
      const app = await startApp({ hooks: ['during_call'] }, answer([filler(50)], { delayMs: 5 }));
      const res = await rawRequest(app.url, { body: chatBody(stream, 'Give me stock tips') });
      expect(res.status).toBe(400);
      expect(res.text).toBe(VIOLATION_BODY);
      const [call] = app.upstream;
      expect(call?.abortedAt).toBeDefined();
      expect(call?.abortReason).toMatchObject({ type: 'guardrail_violation' });
    });

    it('commits only after the verdict when the input passes', async () => {
      emulator.setFault({ kind: 'delay', delayMs: 250 });
      const app = await startApp({ hooks: ['during_call'] }, answer(['The answer is 42.']));
      const res = await timedRequest(app.url, chatBody(stream, 'What is six times seven?'));
      expect(res.status).toBe(200);
      const verdictAt = emulator.calls[0]?.respondedAt ?? Infinity;
      expect(res.firstByteAt).toBeGreaterThanOrEqual(verdictAt);
      expect(app.upstream[0]?.startedAt).toBeLessThan(verdictAt); // the model ran alongside the check
    });

    it('blocks input the guardrail wanted masked (the model already saw it), unless told to allow it', async () => {
      const blocking = await startApp({ hooks: ['during_call'] }, answer(['ok']));
      const blocked = await rawRequest(blocking.url, { body: chatBody(stream, 'I am john@example.com') });
      expect(blocked.status).toBe(400);
      expect(blocked.text).toBe(VIOLATION_BODY);
      const allowing = await startApp({ hooks: ['during_call'], maskedInputDuringCall: 'allow' }, answer(['ok']));
      const allowed = await rawRequest(allowing.url, { body: chatBody(stream, 'I am john@example.com') });
      expect(allowed.status).toBe(200);
    });
  });

  describe('post_call, window mode', () => {
    // 10-character deltas, 1,000-character windows, 100 held back: windows decide [0, 900), [900, 1800), …
    const clean = filler(2000);
    const blockedText = `${clean}and forbidden-word ${filler(300, 500)}`;

    it('streams windows 1–2, then the error frame and [DONE] for a block in window 3', async () => {
      const app = await startApp({ hooks: ['post_call'] }, answer([blockedText]));
      const res = await rawRequest(app.url, { body: chatBody(true) });
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.error).toBeUndefined();
      const { texts } = parseStream(res.text);
      expect(texts[0]).toBe(blockedText.slice(0, 1800));
      expect(res.text.endsWith(VIOLATION_FRAME + DONE)).toBe(true);
      expect(res.text.split(VIOLATION_FRAME)).toHaveLength(2); // exactly one error frame
      expect(res.text).not.toContain('forbidden');
      expect(outputCalls().map((c) => c.action)).toEqual(['NONE', 'NONE', 'GUARDRAIL_INTERVENED']);
      expect(app.upstream[0]?.abortReason).toMatchObject({ type: 'guardrail_violation' });
    });

    it('gives the same error object before commit without streaming', async () => {
      const app = await startApp({ hooks: ['post_call'] }, answer([blockedText]));
      const res = await rawRequest(app.url, { body: chatBody(false) });
      expect(res.status).toBe(400);
      expect(res.text).toBe(VIOLATION_BODY);
    });

    it('fails before commit (plain JSON 400) when the first window blocks', async () => {
      const app = await startApp({ hooks: ['post_call'] }, answer(['BLOCKME right away']));
      const res = await rawRequest(app.url, { body: chatBody(true) });
      expect(res.status).toBe(400);
      expect(res.text).toBe(VIOLATION_BODY);
    });

    it('releases no text before a check covering it has answered', async () => {
      const emulatorWithLatency = await startBedrockEmulator({ latencyMs: 40 });
      try {
        const full = filler(3000);
        const app = await startApp({ hooks: ['post_call'], endpoint: emulatorWithLatency.url }, answer([full]));
        const res = await timedRequest(app.url, chatBody(true));
        const leaks = uncheckedReleases(full, res.frames, emulatorWithLatency.calls);
        expect(leaks).toEqual([]);
        expect(res.frames.map((f) => f.text).join('')).toBe(full);
      } finally {
        await emulatorWithLatency.close();
      }
    });

    it('masks identically streamed, buffered and whole, an entity across a window edge included', async () => {
      // Window 1 checks [0, 1000) and releases up to 900: the first email straddles 900 (the release
      // edge), the second 1000 (the check edge: window 1 sees only "bob@exa"); the name spans two deltas.
      const text = `${filler(885)} mail jane@example.org ${filler(85, 300)}bob@example.net ${filler(400, 400)} and John Smith said hi. ${filler(700, 600)}`;
      const expected = evaluateGuardrail(DEFAULT_GUARDRAIL, 'OUTPUT', [{ text: { text } }]).outputs[0]?.text;
      expect(expected).toContain('{EMAIL}');
      expect(expected).toContain('{NAME}');
      const windowed = await startApp({ hooks: ['post_call'] }, answer([text]));
      const buffered = await startApp({ hooks: ['post_call'], streaming: { mode: 'buffer' } }, answer([text]));
      const streamedWindow = parseStream((await rawRequest(windowed.url, { body: chatBody(true) })).text).texts[0];
      const streamedBuffer = parseStream((await rawRequest(buffered.url, { body: chatBody(true) })).text).texts[0];
      const whole = JSON.parse((await rawRequest(windowed.url, { body: chatBody(false) })).text) as ChatCompletion;
      expect(streamedWindow).toBe(expected);
      expect(streamedBuffer).toBe(expected);
      expect(whole.choices[0]?.message.content).toBe(expected);
    });

    it('ends a soft block after commit as a well-formed content_filter stream', async () => {
      const app = await startApp({ hooks: ['post_call'], softBlock: true }, answer([blockedText]));
      const res = await rawRequest(app.url, { body: chatBody(true) });
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      const { data, chunks, texts } = parseStream(res.text);
      expect(texts[0]).toBe(blockedText.slice(0, 1800) + OUTPUT_BLOCKED);
      expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('content_filter');
      expect(data.at(-1)).toBe('[DONE]');
      expect(data.some((d) => d.startsWith('{"error"'))).toBe(false);
      expect(res.text).not.toContain('forbidden');

      const whole = await rawRequest(app.url, { body: chatBody(false) });
      expect(whole.status).toBe(200);
      expect((JSON.parse(whole.text) as ChatCompletion).choices[0]).toMatchObject({
        message: { content: OUTPUT_BLOCKED },
        finish_reason: 'content_filter',
      });
    });

    it('holds the role chunk and keeps finish and usage chunks in order', async () => {
      const app = await startApp({ hooks: ['post_call'] }, answer(['Short and clean.']));
      const res = await rawRequest(app.url, { body: chatBody(true) });
      const { data, chunks } = parseStream(res.text);
      expect(chunks.map((c) => (c.usage ? 'usage' : (c.choices[0]?.finish_reason ?? 'text')))).toEqual(['text', 'text', 'text', 'stop', 'usage']);
      expect(data.at(-1)).toBe('[DONE]');
      expect(res.headers['x-gateway-guardrail']).toBe('gr1default=OUTPUT:NONE');
      expect(res.headers['x-gateway-guardrail-units']).toBe('3'); // 1 block × 3 output policies
    });

    describe.each([false, true])('n > 1 (stream: %p)', (stream) => {
      it('blocks on any choice', async () => {
        const app = await startApp({ hooks: ['post_call'] }, answer(['All good here.', 'But BLOCKME here.']));
        const res = await rawRequest(app.url, { body: chatBody(stream) });
        expect(res.status).toBe(400);
        expect(res.text).toBe(VIOLATION_BODY);
      });

      it('masks every choice', async () => {
        const app = await startApp({ hooks: ['post_call'] }, answer(['Ask Maria.', 'Write to a@example.com now.']));
        const res = await rawRequest(app.url, { body: chatBody(stream) });
        const texts = stream ? parseStream(res.text).texts : (JSON.parse(res.text) as ChatCompletion).choices.map((c) => c.message.content);
        expect(texts).toEqual(['Ask {NAME}.', 'Write to {EMAIL} now.']);
      });
    });

    it.each([false, true])('checks tool-call arguments (stream: %p)', async (stream) => {
      const args = '{"query":"forbidden-word","limit":3}';
      const app = await startApp({ hooks: ['post_call'] }, (s) => (s ? { chunks: toolCallStreamOf(args, 6) } : { completion: toolCallCompletionOf(args) }));
      const res = await rawRequest(app.url, { body: chatBody(stream) });
      expect(res.status).toBe(400);
      expect(res.text).toBe(VIOLATION_BODY);
    });
  });

  describe('post_call, buffer and async modes', () => {
    it('buffer: checks once, releases nothing before the verdict', async () => {
      const full = filler(2500);
      const app = await startApp({ hooks: ['post_call'], streaming: { mode: 'buffer' } }, answer([full]));
      const res = await timedRequest(app.url, chatBody(true));
      expect(outputCalls()).toHaveLength(1);
      expect(outputCalls()[0]?.texts).toEqual([full]);
      expect(res.firstByteAt).toBeGreaterThanOrEqual(outputCalls()[0]?.respondedAt ?? Infinity);
      expect(res.frames.map((f) => f.text).join('')).toBe(full);
    });

    it('async: streams at once, then stops promptly with the error frame on a block', async () => {
      const text = `${filler(300)} BLOCKME ${filler(2000, 100)}`;
      const app = await startApp({ hooks: ['post_call'], streaming: { mode: 'async', windowSize: 200, overlap: 20 } }, () => ({
        chunks: streamOf([text]),
        delayMs: 5,
      }));
      const startedAt = Date.now();
      const res = await rawRequest(app.url, { body: chatBody(true) });
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.text.endsWith(VIOLATION_FRAME + DONE)).toBe(true);
      const { texts } = parseStream(res.text);
      expect(texts[0]?.length).toBeGreaterThan(0); // text went out before the check (by design)
      expect(texts[0]?.length).toBeLessThan(text.length);
      const call = app.upstream[0];
      expect(call?.abortReason).toMatchObject({ type: 'guardrail_violation' });
      expect(call?.chunksProduced).toBeLessThan(streamOf([text]).length); // stopped early
      expect(Date.now() - startedAt).toBeLessThan(1000);
    });

    it('async: lets text out before it is checked (the leak the window mode prevents)', async () => {
      const slow = await startBedrockEmulator({ latencyMs: 40 });
      try {
        const full = filler(3000);
        const app = await startApp({ hooks: ['post_call'], endpoint: slow.url, streaming: { mode: 'async' } }, answer([full]));
        const res = await timedRequest(app.url, chatBody(true));
        expect(uncheckedReleases(full, res.frames, slow.calls).length).toBeGreaterThan(0);
        expect(res.frames.map((f) => f.text).join('')).toBe(full);
        expect(slow.calls.filter((c) => c.source === 'OUTPUT').map((c) => c.action)).toEqual(['NONE', 'NONE', 'NONE', 'NONE']);
      } finally {
        await slow.close();
      }
    });
  });

  describe('failures: fail closed or open, never a raw 500 or a truncated stream', () => {
    const faults: [string, FaultSpec][] = [
      ['throttled', { kind: 'ThrottlingException' }],
      ['a 5xx', { kind: 'InternalServerException' }],
      ['a 503', { kind: 'ServiceUnavailableException' }],
      ['slow past timeoutMs', { kind: 'delay', delayMs: 2000 }],
      ['a non-JSON answer', { kind: 'non-json' }],
    ];

    describe.each(faults)('%s', (_name, fault) => {
      it.each([false, true])('fails closed with 503 guardrail_unavailable before commit (stream: %p)', async (stream) => {
        emulator.setFault(fault);
        const app = await startApp({ timeoutMs: 300 }, answer(['fine']));
        const res = await rawRequest(app.url, { body: chatBody(stream) });
        expect(res.status).toBe(503);
        expect(JSON.parse(res.text)).toEqual({ error: { message: "Guardrail 'gr1default' " + (fault.kind === 'delay' ? 'did not answer within 300 ms.' : 'failed.'), code: 503, type: 'guardrail_unavailable' } });
        expect(app.upstream).toHaveLength(0);
      });

      it('fails closed in-band after commit, ending with [DONE]', async () => {
        // Window 1 is checked and released when delta 101 arrives; the fault starts once it has answered.
        const chunks = streamOf([filler(1500)]);
        const app = await startApp({ hooks: ['post_call'], timeoutMs: 300 }, () => ({ chunks: [...chunks.slice(0, 102), 150, ...chunks.slice(102)] }));
        void emulator.waitFor((calls) => calls[0]?.respondedAt !== undefined).then(() => emulator.setFault(fault));
        const res = await rawRequest(app.url, { body: chatBody(true) });
        expect(res.status).toBe(200);
        expect(res.complete).toBe(true);
        const { data } = parseStream(res.text);
        expect(data.slice(-2)).toEqual([`{"error":{"message":"${"Guardrail 'gr1default' " + (fault.kind === 'delay' ? 'did not answer within 300 ms.' : 'failed.')}","code":503,"type":"guardrail_unavailable"}}`, '[DONE]']);
      });

      it.each([false, true])('fails open: the answer goes through, one warning per outage (stream: %p)', async (stream) => {
        emulator.setFault(fault);
        const warn = jest.fn();
        const logger: Logger = { ...silentLogger, warn };
        const app = await startApp({ failOpen: true, timeoutMs: 300, logger }, answer(['fine answer']));
        const first = await rawRequest(app.url, { body: chatBody(stream) });
        const second = await rawRequest(app.url, { body: chatBody(stream) });
        for (const res of [first, second]) {
          expect(res.status).toBe(200);
          expect(stream ? parseStream(res.text).texts : [(JSON.parse(res.text) as ChatCompletion).choices[0]?.message.content]).toEqual(['fine answer']);
        }
        expect(first.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:ERROR;gr1default=OUTPUT:ERROR');
        expect(warn).toHaveBeenCalledTimes(1);
      });
    });

    it('aborts a slow call at timeoutMs', async () => {
      emulator.setFault({ kind: 'hang' });
      const app = await startApp({ hooks: ['pre_call'], timeoutMs: 200 }, answer(['fine']));
      const startedAt = Date.now();
      const res = await rawRequest(app.url, { body: chatBody(false) });
      expect(res.status).toBe(503);
      expect(Date.now() - startedAt).toBeLessThan(1000);
      await emulator.waitFor((calls) => calls[0]?.abortedAt !== undefined);
    });
  });

  describe('client disconnects abort the guardrail call in flight', () => {
    it.each([
      ['pre_call', { hooks: ['pre_call'] }],
      ['during_call', { hooks: ['during_call'] }],
      ['post_call', { hooks: ['post_call'] }],
    ] as [string, Partial<BedrockGuardrailOptions>][])('%s', async (_name, options) => {
      emulator.setFault({ kind: 'hang' });
      const app = await startApp({ ...options, timeoutMs: 10_000 }, answer(['fine']));
      const res = await rawRequest(app.url, { body: chatBody(true), abortAfterMs: 150 });
      expect(res.complete).toBe(false);
      await emulator.waitFor((calls) => calls[0]?.abortedAt !== undefined, 1000);
      const call = emulator.calls[0];
      expect((call?.abortedAt ?? Infinity) - (call?.receivedAt ?? 0)).toBeLessThan(1000);
    });
  });

  it('openai v6 surfaces a post-commit block as an APIError with the seed fields', async () => {
    const text = `${filler(2000)} forbidden-word ${filler(200)}`;
    const app = await startApp({ hooks: ['post_call'] }, answer([text]));
    const client = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: 'test', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'gpt-test', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let received = '';
    let caught: unknown;
    try {
      for await (const chunk of stream) received += chunk.choices[0]?.delta.content ?? '';
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(OpenAI.APIError);
    expect(caught).toMatchObject({ message: 'Violated guardrail policy', code: 400, type: 'guardrail_violation' });
    expect(received).toBe(text.slice(0, 1800));
  });
});

describe('guardrailHeaders', () => {
  it('reports the strongest action per guardrail and side, and the units', () => {
    expect(
      guardrailHeaders([
        { guardrail: 'pii', source: 'INPUT', action: 'MASKED', units: 4, latencyMs: 3 },
        { guardrail: 'pii', source: 'OUTPUT', action: 'NONE', units: 3, latencyMs: 3 },
        { guardrail: 'pii', source: 'OUTPUT', action: 'BLOCKED', units: 3, latencyMs: 3 },
        { guardrail: 'a;b=c', source: 'INPUT', action: 'ERROR', units: 0, latencyMs: 3 },
      ]),
    ).toEqual({ 'x-gateway-guardrail': 'pii=INPUT:MASKED;pii=OUTPUT:BLOCKED;a_b_c=INPUT:ERROR', 'x-gateway-guardrail-units': '10' });
    expect(guardrailHeaders([])).toEqual({});
  });
});

// ---- timing helpers ----

interface TimedFrame {
  at: number;
  /** The content text of the frame (all choices). */
  text: string;
}

interface TimedResponse {
  status: number;
  firstByteAt: number;
  frames: TimedFrame[];
}

/** Reads a response, noting when each SSE frame (or the JSON body) arrived. */
function timedRequest(baseUrl: string, body: object): Promise<TimedResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL('/v1/chat/completions', baseUrl), { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } });
    req.on('error', reject);
    req.on('response', (res) => {
      let firstByteAt = 0;
      let buffer = '';
      const frames: TimedFrame[] = [];
      res.setEncoding('utf8');
      res.on('data', (data: string) => {
        const at = Date.now();
        firstByteAt ||= at;
        buffer += data;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          frames.push({ at, text: frameText(frame) });
        }
      });
      res.on('end', () => {
        if (buffer !== '') frames.push({ at: Date.now(), text: frameText(`data: ${buffer}`) });
        resolve({ status: res.statusCode ?? 0, firstByteAt, frames });
      });
    });
    req.end(JSON.stringify(body));
  });
}

function frameText(frame: string): string {
  const data = frame.replace(/^data: /, '');
  if (data === '[DONE]' || data.startsWith('{"error"')) return '';
  const parsed = JSON.parse(data) as { choices?: { message?: { content?: string | null }; delta?: { content?: string | null } }[] };
  return parsed.choices?.map((c) => c.message?.content ?? c.delta?.content ?? '').join('') ?? '';
}

/**
 * Frames whose text reached the client before an OUTPUT check covering it had answered: for each frame,
 * the text released so far must lie within the checked windows answered before the frame arrived.
 */
function uncheckedReleases(full: string, frames: readonly TimedFrame[], calls: readonly EmulatorCall[]): TimedFrame[] {
  const windows = calls
    .filter((c) => c.source === 'OUTPUT' && c.respondedAt !== undefined)
    .map((c) => {
      const text = c.texts[0] ?? '';
      return { end: full.indexOf(text) + text.length, at: c.respondedAt ?? Infinity };
    });
  let released = 0;
  const leaks: TimedFrame[] = [];
  for (const frame of frames) {
    released += frame.text.length;
    const checkedTo = Math.max(0, ...windows.filter((w) => w.at <= frame.at).map((w) => w.end));
    if (released > checkedTo) leaks.push(frame);
  }
  return leaks;
}
