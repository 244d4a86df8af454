/**
 * Issue #16: the Bedrock guardrail on the two new inbound protocols, OpenAI Responses (`POST /v1/responses`)
 * and Anthropic Messages (`POST /v1/messages`), with chat completions alongside for comparison. The real
 * pipeline (context for the protocol → bedrockGuardrail → router → error writer, test/helpers/gateway.ts),
 * the real `@aws-sdk/client-bedrock-runtime` over loopback against the ApplyGuardrail emulator, the OpenAI
 * mock as the model. Every answer is read from the raw wire (test/helpers/guardrail-protocol-wire.ts).
 *
 * The item: "A streamed Responses and a streamed Messages answer through a post_call window
 * guardrail block after the first window: the client has the released text, then exactly the terminal
 * error event, then the end of the stream; the blocked window never leaves; the non-streaming form is a
 * 400 with the same error."
 *
 * Scripted answers are 8-character tokens (`word017 `), one delta each: with `windowSize: 64, overlap: 0`
 * window 1 = tokens 0–7, window 2 = 8–15, window 3 = 16–23.
 */
import { bedrockGuardrail, type BedrockGuardrailOptions } from '../lib/bedrock-guardrail.js';
import { silentLogger } from '../lib/index.js';
import { DEFAULT_GUARDRAIL, evaluateGuardrail, startBedrockEmulator, startMockOpenAI, type BedrockEmulator, type MockScenarioSpec, type MockServer } from '../lib/testing/index.js';
import { EXPRESS_MAJOR } from './helpers/express.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';
import { agreement, eventNames, expectTerminalError, wire, wireBoth, type Wire } from './helpers/guardrail-protocol-wire.js';
import { ask as askProtocol, type WireProtocol } from './helpers/protocols.js';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' };
const VIOLATION = { message: 'Violated guardrail policy', type: 'guardrail_violation' };
const INPUT_BLOCKED = DEFAULT_GUARDRAIL.blockedInputMessaging;
const OUTPUT_BLOCKED = DEFAULT_GUARDRAIL.blockedOutputsMessaging;
const UPSTREAM = 'gw-main';
const WINDOW = { windowSize: 64, overlap: 0 };
const PROTOCOLS: WireProtocol[] = ['chat', 'responses', 'messages'];
const NEW_PROTOCOLS: WireProtocol[] = ['responses', 'messages'];

let emulator: BedrockEmulator;
let model: MockServer;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  [emulator, model] = await Promise.all([startBedrockEmulator(), startMockOpenAI({ name: 'primary' })]);
});
afterAll(async () => {
  await Promise.all([emulator.close(), model.close()]);
});
beforeEach(() => {
  emulator.reset();
  model.reset();
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

async function gateway(overrides: Partial<BedrockGuardrailOptions>, target: BedrockEmulator = emulator): Promise<TestGateway> {
  const g = await startGateway(
    {
      models: [{ name: 'main', deployments: [{ provider: 'openai', baseUrl: `${model.url}/v1`, model: UPSTREAM, apiKey: 'k' }] }],
      retries: { maxRetries: 0 },
      cooldown: { failureThreshold: 1000 },
    },
    {
      before: [
        bedrockGuardrail({
          guardrailIdentifier: DEFAULT_GUARDRAIL.id,
          guardrailVersion: DEFAULT_GUARDRAIL.version,
          region: 'us-east-1',
          endpoint: target.url,
          credentials: CREDENTIALS,
          maxAttempts: 1,
          logger: silentLogger,
          ...overrides,
        }),
      ],
    },
  );
  gateways.push(g);
  return g;
}

const chatBody = (content = 'Tell me a story.', extra: Record<string, unknown> = {}) => ({ model: 'main', messages: [{ role: 'user', content }], ...extra });

function token(i: number): string {
  return `word${String(i).padStart(3, '0')} `;
}

function tokens(count: number, replace: Record<number, string> = {}): string[] {
  return Array.from({ length: count }, (_, i) => replace[i] ?? token(i));
}

function script(parts: readonly string[], chunkDelayMs = 0): MockScenarioSpec {
  return { scenario: 'normal', text: parts.join(''), chunks: parts.length, chunkDelayMs };
}

function windowText(parts: readonly string[], n: number): string {
  return parts.slice((n - 1) * 8, n * 8).join('');
}

/** 32 tokens with BLOCKME as token 18: windows 1–2 clean, window 3 blocks. */
const BLOCKED_IN_WINDOW_3 = tokens(32, { 18: 'BLOCKME ' });
const RELEASED = windowText(BLOCKED_IN_WINDOW_3, 1) + windowText(BLOCKED_IN_WINDOW_3, 2);

/** No byte of the blocked window (the word, nor its clean neighbours, nor anything after) left. */
function expectBlockedWindowNeverLeft(w: Wire, parts: readonly string[] = BLOCKED_IN_WINDOW_3, from = 16): void {
  expect(w.raw).not.toContain('BLOCKME');
  for (const t of parts.slice(from)) expect(w.raw).not.toContain(t.trim());
}

/** A JSON error answer in the protocol's own shape. */
function expectJsonError(w: Wire, status: number, error: { message: string; type: string }): void {
  expect(w.status).toBe(status);
  expect(w.stream).toBe(false);
  expect(w.headers['content-type']).toMatch(/^application\/json/);
  expect(w.error).toMatchObject(error);
  if (w.protocol === 'messages') expect(w.errorWire).toEqual({ type: 'error', error });
  else expect(w.errorWire).toEqual({ error: { ...error, code: status } });
}

/** A normal answer ending (stream or JSON) with `finish` in chat terms, as each protocol writes it. */
function expectNormalEnd(w: Wire, text: string, finish: 'stop' | 'content_filter'): void {
  expect(w.status).toBe(200);
  expect(w.complete).toBe(true);
  expect(w.error).toBeUndefined();
  expect(w.text).toBe(text);
  expect(w.finish).toBe(finish);
  if (w.stream) {
    expect(w.ending).toBe('completed');
    expect(eventNames(w)).not.toContain('error');
  }
  if (w.protocol === 'responses') {
    expect(w.protocolStop).toBe(finish === 'stop' ? 'completed' : 'incomplete');
    expect(w.incompleteReason).toBe(finish === 'stop' ? undefined : 'content_filter');
    if (w.stream) expect(eventNames(w).at(-1)).toBe(finish === 'stop' ? 'response.completed' : 'response.incomplete');
  }
  if (w.protocol === 'messages') {
    expect(w.protocolStop).toBe(finish === 'stop' ? 'end_turn' : 'refusal');
    if (w.stream) expect(eventNames(w).slice(-2)).toEqual(['message_delta', 'message_stop']);
  }
  if (w.protocol === 'chat' && w.stream) expect(w.raw.endsWith('data: [DONE]\n\n')).toBe(true);
}

function upstreamCalls() {
  return model.calls.filter((c) => c.model === UPSTREAM);
}

describe(`Bedrock guardrail on every inbound protocol (Express ${EXPRESS_MAJOR})`, () => {
  // ---- the item ----
  describe.each(PROTOCOLS)('%s: post_call window block after the first windows', (protocol) => {
    it.each([
      ['post_call', ['post_call']],
      ['during_call + post_call', ['during_call', 'post_call']],
    ] as [string, BedrockGuardrailOptions['hooks']][])(
      '%s: stream = windows 1–2, exactly one terminal error, the end; never the blocked window; non-streaming: 400 with the same error',
      async (_name, hooks) => {
        const g = await gateway({ hooks, streaming: WINDOW });
        model.setScenario(UPSTREAM, script(BLOCKED_IN_WINDOW_3));
        const [plain, streamed] = await wireBoth(protocol, g.url, chatBody());

        expectTerminalError(streamed, VIOLATION);
        expect(streamed.text).toBe(RELEASED);
        expectBlockedWindowNeverLeft(streamed);

        expectJsonError(plain, 400, VIOLATION);
        expect(plain.raw).not.toContain('BLOCKME');
        // The same error in both forms: message and type (and the status, where the stream carries it).
        expect(streamed.error).toEqual(plain.error);

        const input = hooks!.includes('during_call') ? ['INPUT:NONE'] : [];
        expect(emulator.calls.map((c) => `${c.source}:${c.action}`)).toEqual([
          ...input,
          'OUTPUT:GUARDRAIL_INTERVENED', // the whole answer, without streaming
          ...input,
          'OUTPUT:NONE',
          'OUTPUT:NONE',
          'OUTPUT:GUARDRAIL_INTERVENED',
        ]);
        expect(emulator.calls.at(-1)!.texts).toEqual([windowText(BLOCKED_IN_WINDOW_3, 3)]);

        // The lead's reader (test/helpers/protocols.ts) sees the same outcome.
        const again = await askProtocol(protocol, g.url, chatBody('Tell me a story.', { stream: true }));
        expect(again).toMatchObject({ status: 200, ending: 'error', inBand: true, text: RELEASED });
        expect(again.error).toEqual(streamed.error);
      },
    );
  });

  // ---- pre_call block on input ----
  describe('pre_call block on input: the protocol\'s JSON error, with the chat path\'s status, type and message', () => {
    it.each(NEW_PROTOCOLS)('%s', async (protocol) => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const [chatPlain, chatStreamed] = await wireBoth('chat', g.url, chatBody('Any stock tips for today?'));
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody('Any stock tips for today?'));
      for (const w of [chatPlain, chatStreamed, plain, streamed]) expectJsonError(w, 400, VIOLATION);
      expect(agreement(streamed)).toEqual(agreement(plain));
      expect(agreement(plain)).toEqual(agreement(chatPlain));
      expect(model.callCount()).toBe(0);
      expect(emulator.calls.map((c) => `${c.source}:${c.action}`)).toEqual(Array(4).fill('INPUT:GUARDRAIL_INTERVENED'));
    });

    it.each(NEW_PROTOCOLS)('%s: during_call: the same 400 in both modes, nothing sent before the verdict', async (protocol) => {
      model.setScenario(UPSTREAM, script(tokens(40), 10));
      const g = await gateway({ hooks: ['during_call', 'post_call'] });
      const [chatPlain] = await wireBoth('chat', g.url, chatBody('Give me some stock tips'));
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody('Give me some stock tips'));
      for (const w of [chatPlain, plain, streamed]) {
        expectJsonError(w, 400, VIOLATION);
        expect(w.raw).not.toContain('word000');
      }
      expect(agreement(streamed)).toEqual(agreement(plain));
      expect(agreement(plain)).toEqual(agreement(chatPlain));
    });

    it.each(NEW_PROTOCOLS)('%s: the blocked text is in the system prompt (instructions / system)', async (protocol) => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const body = { model: 'main', messages: [{ role: 'system', content: 'Always give stock tips.' }, { role: 'user', content: 'Hello' }] };
      const [plain, streamed] = await wireBoth(protocol, g.url, body);
      for (const w of [plain, streamed]) expectJsonError(w, 400, VIOLATION);
      expect(model.callCount()).toBe(0);
    });
  });

  // ---- masking ----
  describe('masking (ANONYMIZED)', () => {
    it.each(PROTOCOLS)('%s: input with pre_call: the model only ever sees {EMAIL}; both modes answer alike', async (protocol) => {
      model.setScenario(UPSTREAM, 'echo');
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody('My address is jane.doe@example.com, reply there.'));
      for (const w of [plain, streamed]) {
        expectNormalEnd(w, 'My address is {EMAIL}, reply there.', 'stop');
        expect(w.raw).not.toContain('jane.doe');
        expect(w.headers['x-gateway-guardrail']).toBe('gr1default=INPUT:MASKED;gr1default=OUTPUT:NONE');
      }
      expect(agreement(streamed)).toEqual(agreement(plain));
      expect(upstreamCalls()).toHaveLength(2);
      for (const call of upstreamCalls()) {
        const messages = (call.body as { messages: { role: string; content: unknown }[] }).messages;
        const user = messages.filter((m) => m.role === 'user');
        expect(user).toHaveLength(1);
        const content = user[0]!.content;
        const text = typeof content === 'string' ? content : (content as { text?: string }[]).map((p) => p.text ?? '').join('');
        expect(text).toBe('My address is {EMAIL}, reply there.');
        expect(JSON.stringify(call.body)).not.toContain('jane.doe');
      }
    });

    it.each(NEW_PROTOCOLS)('%s: input in the system prompt is masked too', async (protocol) => {
      model.setScenario(UPSTREAM, script(tokens(4)));
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const body = { model: 'main', messages: [{ role: 'system', content: 'The user is jane.doe@example.com.' }, { role: 'user', content: 'Hello' }] };
      const [plain, streamed] = await wireBoth(protocol, g.url, body);
      for (const w of [plain, streamed]) expectNormalEnd(w, tokens(4).join(''), 'stop');
      for (const call of upstreamCalls()) {
        expect(JSON.stringify(call.body)).not.toContain('jane.doe');
        expect(JSON.stringify(call.body)).toContain('The user is {EMAIL}.');
      }
    });

    describe.each([
      ['window 64/16', { windowSize: 64, overlap: 16 }],
      ['buffer', { mode: 'buffer' as const }],
    ])('output, %s', (_name, streaming) => {
      it.each(PROTOCOLS)('%s: the client gets the masked text in both modes; no byte of the originals', async (protocol) => {
        const parts = [...tokens(6), 'write to ', 'jane.doe@example.com ', 'or ask ', token(6), 'so ', 'John ', 'Smith ', 'today. ', ...tokens(30).slice(20), 'Bye.'];
        const text = parts.join('');
        const expected = evaluateGuardrail(DEFAULT_GUARDRAIL, 'OUTPUT', [{ text: { text } }]).outputs[0]?.text;
        expect(expected).toContain('write to {EMAIL} or ask word006 so {NAME} today.');
        model.setScenario(UPSTREAM, script(parts));
        const g = await gateway({ hooks: ['post_call'], streaming });
        const [plain, streamed] = await wireBoth(protocol, g.url, chatBody());
        for (const w of [plain, streamed]) {
          expectNormalEnd(w, expected!, 'stop');
          expect(w.raw).not.toMatch(/jane\.doe|John|Smith/);
        }
        expect(streamed.stream).toBe(true);
        expect(agreement(streamed)).toEqual(agreement(plain));
        expect(plain.headers['x-gateway-guardrail']).toBe('gr1default=OUTPUT:MASKED');
      });
    });
  });

  // ---- buffer and async modes ----
  describe('buffer mode: a block anywhere is known before anything leaves', () => {
    it.each(PROTOCOLS)('%s: 400 JSON in both modes, the same error; no byte of the answer', async (protocol) => {
      model.setScenario(UPSTREAM, script(BLOCKED_IN_WINDOW_3));
      const g = await gateway({ hooks: ['post_call'], streaming: { mode: 'buffer' } });
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody());
      for (const w of [plain, streamed]) {
        expectJsonError(w, 400, VIOLATION);
        expectBlockedWindowNeverLeft(w, BLOCKED_IN_WINDOW_3, 0);
      }
      expect(agreement(streamed)).toEqual(agreement(plain));
    });
  });

  describe('async mode: text leaks by design, but the stream still ends with exactly one terminal error', () => {
    let slow: BedrockEmulator;
    beforeAll(async () => {
      slow = await startBedrockEmulator({ latencyMs: 100 });
    });
    afterAll(() => slow.close());
    beforeEach(() => slow.reset());

    it.each(PROTOCOLS)('%s', async (protocol) => {
      // 64 tokens, 5 ms apart: the answer is out (or nearly) before the check of window 3 answers.
      const parts = tokens(64, { 18: 'BLOCKME ' });
      model.setScenario(UPSTREAM, script(parts, 5));
      const g = await gateway({ hooks: ['post_call'], streaming: { mode: 'async', windowSize: 64, overlap: 16 } }, slow);
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody());
      expectTerminalError(streamed, VIOLATION);
      expect(parts.join('').startsWith(streamed.text)).toBe(true);
      expect(streamed.text.length).toBeGreaterThanOrEqual(RELEASED.length);
      expectJsonError(plain, 400, VIOLATION);
      expect(streamed.error).toEqual(plain.error);
    });
  });

  // ---- guardrail unavailable (fail closed) ----
  it.each(PROTOCOLS)('%s: guardrail unavailable after commit (fail closed): windows 1–2, the terminal error; a 503 with the same error without streaming', async (protocol) => {
    const parts = tokens(32);
    model.setScenario(UPSTREAM, script(parts, 5));
    const g = await gateway({ hooks: ['post_call'], timeoutMs: 3000, streaming: WINDOW });
    // Windows 1–2 pass; from window 3 on the guardrail answers with a 5xx.
    const armed = emulator.waitFor((calls) => {
      if (calls.filter((c) => c.source === 'OUTPUT' && c.respondedAt !== undefined).length < 2) return false;
      emulator.setFault({ kind: 'InternalServerException' });
      return true;
    }, 5000);
    const streamed = await wire(protocol, g.url, chatBody('Tell me a story.', { stream: true }));
    await armed;
    // Anthropic's taxonomy has no guardrail_unavailable: a 503 is overloaded_error there (lib/protocols/messages/answer.ts).
    const unavailable = { message: "Guardrail 'gr1default' failed.", type: protocol === 'messages' ? 'overloaded_error' : 'guardrail_unavailable' };
    expectTerminalError(streamed, unavailable);
    expect(streamed.text).toBe(windowText(parts, 1) + windowText(parts, 2));
    expect(streamed.raw).not.toContain('word016');
    const plain = await wire(protocol, g.url, chatBody('Tell me a story.', { stream: false }));
    expectJsonError(plain, 503, unavailable);
    expect(plain.error).toEqual(streamed.error);
  });

  // ---- soft block ----
  describe('soft block (softBlock: true): the guardrail\'s message as a normal answer stopped by the content filter', () => {
    it.each(PROTOCOLS)('%s: pre_call: the message in both modes; the model is never called', async (protocol) => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'], softBlock: true });
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody('Which stocks should I buy?'));
      expectNormalEnd(plain, INPUT_BLOCKED, 'content_filter');
      expectNormalEnd(streamed, INPUT_BLOCKED, 'content_filter');
      expect(streamed.stream).toBe(true);
      expect(agreement(streamed)).toEqual(agreement(plain));
      expect(model.callCount()).toBe(0);
    });

    it.each(PROTOCOLS)('%s: output before commit (window 1): identical answers in both modes', async (protocol) => {
      model.setScenario(UPSTREAM, script(tokens(32, { 3: 'BLOCKME ' })));
      const g = await gateway({ hooks: ['post_call'], softBlock: true, streaming: WINDOW });
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody());
      expectNormalEnd(plain, OUTPUT_BLOCKED, 'content_filter');
      expectNormalEnd(streamed, OUTPUT_BLOCKED, 'content_filter');
      expect(agreement(streamed)).toEqual(agreement(plain));
      expect(streamed.stream).toBe(true);
      for (const w of [plain, streamed]) expect(w.raw).not.toMatch(/BLOCKME|word000/);
    });

    it.each(PROTOCOLS)('%s: output after commit (window 3): windows 1–2, then the message, then the normal content-filter ending', async (protocol) => {
      model.setScenario(UPSTREAM, script(BLOCKED_IN_WINDOW_3));
      const g = await gateway({ hooks: ['during_call', 'post_call'], softBlock: true, streaming: WINDOW });
      const [plain, streamed] = await wireBoth(protocol, g.url, chatBody());
      expectNormalEnd(plain, OUTPUT_BLOCKED, 'content_filter');
      expectNormalEnd(streamed, RELEASED + OUTPUT_BLOCKED, 'content_filter');
      expect(streamed.stream).toBe(true);
      expectBlockedWindowNeverLeft(streamed);
      if (protocol === 'responses') {
        // One message item whose text is the released windows and the message, closed as incomplete.
        const final = streamed.events.at(-1)!.data['response'] as { output: { status: string; content: { text: string }[] }[] };
        expect(final.output).toHaveLength(1);
        expect(final.output[0]!.status).toBe('incomplete');
        expect(final.output[0]!.content.map((c) => c.text).join('')).toBe(RELEASED + OUTPUT_BLOCKED);
      }
      if (protocol === 'messages') {
        const delta = streamed.events.find((e) => e.event === 'message_delta')!.data;
        expect(delta['delta']).toEqual({ stop_reason: 'refusal', stop_sequence: null });
      }
    });
  });
});
