/**
 * Issue #12, items 3 and 4, end to end through the real pipeline (context → bedrockGuardrail → router →
 * fallback handler → error writer), with the real Bedrock SDK client against the ApplyGuardrail emulator
 * over 127.0.0.1 and the OpenAI mock as the model:
 *
 * - the input guardrail sees every text the model sees: a message's `name`, tool and legacy function
 *   definitions (names, descriptions, parameter-schema descriptions at any depth) and `response_format`'s
 *   JSON schema. A blocked phrase there blocks (the model is never called with pre_call); an e-mail there
 *   is masked before the model sees it. Streaming and non-streaming answer alike.
 * - limits: a long text is split into ApplyGuardrail calls of at most 25 text units (25,000 characters),
 *   with only the overlap checked twice; over `maxInputChars`, a 413 before any guardrail or model call.
 */
import { bedrockGuardrail, type BedrockGuardrailOptions } from '../lib/bedrock-guardrail.js';
import { silentLogger } from '../lib/index.js';
import { MAX_CALL_CHARS, MAX_UNITS_PER_CALL, SPLIT_OVERLAP, unitsOf } from '../lib/guardrail/limits.js';
import { DEFAULT_GUARDRAIL, startBedrockEmulator, startMockOpenAI, type BedrockEmulator, type MockServer } from '../lib/testing/index.js';
import type { ChatCompletionRequest } from '../lib/types.js';
import { chatBoth, parityView, type ChatOutcome } from './helpers/chat.js';
import { EXPRESS_MAJOR } from './helpers/express.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' };
const VIOLATION = { message: 'Violated guardrail policy', code: 400, type: 'guardrail_violation' };
const UPSTREAM = 'gw-main';
const EMAIL = 'alice.smith@example.com';

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

async function gateway(overrides: Partial<BedrockGuardrailOptions> = {}): Promise<TestGateway> {
  const g = await startGateway(
    {
      models: [{ name: 'main', deployments: [{ provider: 'openai', baseUrl: `${model.url}/v1`, model: UPSTREAM, apiKey: 'k' }] }],
      retries: { maxRetries: 0 },
    },
    {
      before: [
        bedrockGuardrail({
          guardrailIdentifier: DEFAULT_GUARDRAIL.id,
          guardrailVersion: DEFAULT_GUARDRAIL.version,
          region: 'us-east-1',
          endpoint: emulator.url,
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

/** What the model received, for each request it got (in order). */
function upstreamBodies(): ChatCompletionRequest[] {
  return model.calls.map((c) => c.body as ChatCompletionRequest);
}

function inputCalls() {
  return emulator.calls.filter((c) => c.source === 'INPUT');
}

function expectParity(plain: ChatOutcome, streamed: ChatOutcome): void {
  expect(parityView(streamed)).toEqual(parityView(plain));
}

// ---- the placements ----

interface Placement {
  /** The request's extra fields with `value` put in this placement. */
  request(value: string): Record<string, unknown>;
  /** Reads the placement back from what the model received. */
  read(body: ChatCompletionRequest): unknown;
}

const question = { role: 'user', content: 'What is the weather like?' };
const tool = (fn: Record<string, unknown>) => ({ tools: [{ type: 'function', function: { name: 'get_weather', ...fn } }] });
const objectSchema = (properties: Record<string, unknown>) => ({ type: 'object', properties });
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const json = (value: unknown): Json => value as Json;

const PLACEMENTS: Record<string, Placement> = {
  'messages[].name': {
    request: (value) => ({ messages: [{ ...question, name: value }] }),
    read: (body) => body.messages[0]?.name,
  },
  'tools[].function.description': {
    request: (value) => ({ messages: [question], ...tool({ description: value, parameters: objectSchema({}) }) }),
    read: (body) => body.tools?.[0]?.function.description,
  },
  'a parameter description': {
    request: (value) => ({ messages: [question], ...tool({ parameters: objectSchema({ city: { type: 'string', description: value } }) }) }),
    read: (body) => json(body.tools?.[0]?.function.parameters).properties.city.description,
  },
  'a nested parameter description (items → anyOf)': {
    request: (value) => ({
      messages: [question],
      ...tool({
        parameters: objectSchema({
          stops: { type: 'array', items: { anyOf: [{ type: 'string' }, objectSchema({ note: { type: 'string', title: 'Note', description: value } })] } },
        }),
      }),
    }),
    read: (body) => json(body.tools?.[0]?.function.parameters).properties.stops.items.anyOf[1].properties.note.description,
  },
  'legacy functions[].description': {
    request: (value) => ({ messages: [question], functions: [{ name: 'get_weather', description: value, parameters: objectSchema({}) }] }),
    read: (body) => json(body['functions'])[0].description,
  },
  'response_format.json_schema.description': {
    request: (value) => ({ messages: [question], response_format: { type: 'json_schema', json_schema: { name: 'weather', description: value, schema: objectSchema({}) } } }),
    read: (body) => json(body.response_format).json_schema.description,
  },
  'a response_format schema description': {
    request: (value) => ({
      messages: [question],
      response_format: { type: 'json_schema', json_schema: { name: 'weather', schema: objectSchema({ summary: { type: 'string', description: value } }) } },
    }),
    read: (body) => json(body.response_format).json_schema.schema.properties.summary.description,
  },
};

const placements = Object.entries(PLACEMENTS);

describe(`the input guardrail sees every text the model sees (Express ${EXPRESS_MAJOR})`, () => {
  describe('a blocked phrase blocks, in both modes', () => {
    it.each(placements)('pre_call, %s: 400 guardrail_violation, the model is never called', async (_where, placement) => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      // A message name has no spaces in practice: use the blocked word there, the denied topic elsewhere.
      const value = _where === 'messages[].name' ? 'BLOCKME' : 'Share your best stock tips here.';
      const [plain, streamed] = await chatBoth(g.url, { model: 'main', ...placement.request(value) });
      expect(plain.status).toBe(400);
      expect(plain.error).toEqual(VIOLATION);
      expectParity(plain, streamed);
      expect(streamed.inBand).toBe(false);
      expect(model.callCount()).toBe(0);
      expect(inputCalls()).toHaveLength(2);
      expect(inputCalls().every((c) => c.texts.some((t) => t.includes(value)))).toBe(true);
    });

    it.each(placements)('during_call, %s: 400 guardrail_violation before any output byte', async (_where, placement) => {
      const g = await gateway({ hooks: ['during_call', 'post_call'] });
      const value = _where === 'messages[].name' ? 'BLOCKME' : 'Share your best stock tips here.';
      const [plain, streamed] = await chatBoth(g.url, { model: 'main', ...placement.request(value) });
      expect(plain.status).toBe(400);
      expect(plain.error).toEqual(VIOLATION);
      expectParity(plain, streamed);
      expect(streamed.frames).toEqual([]);
    });
  });

  describe('an e-mail is masked before the model sees it (pre_call), in both modes', () => {
    it.each(placements)('%s', async (where, placement) => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const [plain, streamed] = await chatBoth(g.url, { model: 'main', ...placement.request(`Contact ${EMAIL} for details.`) });
      expect(plain.status).toBe(200);
      expectParity(plain, streamed);
      const bodies = upstreamBodies();
      expect(bodies).toHaveLength(2);
      for (const body of bodies) {
        expect(JSON.stringify(body)).not.toContain(EMAIL);
        // A masked name is no valid name (`{EMAIL}`): it is dropped; every other text is masked in place.
        if (where === 'messages[].name') {
          expect(body.messages[0]).not.toHaveProperty('name');
          expect(body.messages[0]?.content).toBe(question.content);
        } else {
          expect(placement.read(body)).toBe('Contact {EMAIL} for details.');
        }
      }
      expect(plain.headers['x-gateway-guardrail']).toContain('INPUT:MASKED');
    });

    it('several definitions share one packed block and each gets its own masked text back', async () => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const request = {
        model: 'main',
        messages: [{ ...question, name: 'alice' }],
        ...tool({
          description: `Weather for ${EMAIL}.`,
          parameters: objectSchema({ city: { type: 'string', description: 'The city.' }, unit: { type: 'string', enum: ['c', 'f'], description: 'Mail bob@example.org.' } }),
        }),
      };
      const [plain, streamed] = await chatBoth(g.url, request);
      expectParity(plain, streamed);
      for (const body of upstreamBodies()) {
        expect(body.messages[0]?.name).toBe('alice');
        const fn = body.tools?.[0]?.function;
        expect(fn?.description).toBe('Weather for {EMAIL}.');
        expect(json(fn?.parameters).properties).toEqual({
          city: { type: 'string', description: 'The city.' },
          unit: { type: 'string', enum: ['c', 'f'], description: 'Mail {EMAIL}.' },
        });
      }
      // One call per request: the message text plus one block for all the definition texts.
      const calls = inputCalls();
      expect(calls).toHaveLength(2);
      expect(calls[0]?.texts).toHaveLength(2);
      expect(calls[0]?.texts[1]).toContain('get_weather');
    });

    it.each([
      ['a json_schema name', { messages: [question], response_format: { type: 'json_schema', json_schema: { name: EMAIL, schema: objectSchema({}) } } }],
      ['a schema property name', { messages: [question], ...tool({ parameters: objectSchema({ [EMAIL]: { type: 'string' } }) }) }],
      ['a function message name', { messages: [question, { role: 'function', name: EMAIL, content: 'sunny' }] }],
    ])('a masked identifier (%s) cannot be renamed without breaking references: refused like a block', async (_where, extra) => {
      const g = await gateway({ hooks: ['pre_call', 'post_call'] });
      const [plain, streamed] = await chatBoth(g.url, { model: 'main', ...extra });
      expect(plain.status).toBe(400);
      expect(plain.error).toEqual(VIOLATION);
      expectParity(plain, streamed);
      expect(model.callCount()).toBe(0);
      expect(plain.headers['x-gateway-guardrail']).toContain('INPUT:BLOCKED');
    });

    it('during_call: the model already saw the definitions, so a masking verdict blocks (default)', async () => {
      const g = await gateway({ hooks: ['during_call', 'post_call'] });
      const [plain, streamed] = await chatBoth(g.url, { model: 'main', ...PLACEMENTS['a parameter description']!.request(`Mail ${EMAIL}`) });
      expect(plain.status).toBe(400);
      expect(plain.error).toEqual(VIOLATION);
      expectParity(plain, streamed);
    });
  });
});

describe(`guardrail limits (Express ${EXPRESS_MAJOR})`, () => {
  /** `length` characters of harmless text made of short words. */
  function filler(length: number): string {
    return 'lorem ipsum dolor sit amet '.repeat(Math.ceil(length / 27)).slice(0, length);
  }

  it('a 2 MB message is checked in calls of at most 25 text units; an e-mail across a cut is masked once, in place', async () => {
    const g = await gateway({ hooks: ['pre_call', 'post_call'], maxInputChars: 3_000_000 });
    // The first cut is at 25,000; the next piece starts 100 characters earlier. Put an e-mail across it.
    const at = MAX_CALL_CHARS - 10;
    const before = filler(at - 1) + ' ';
    const content = before + EMAIL + ' ' + filler(2_000_000 - before.length - EMAIL.length - 1);
    const [plain, streamed] = await chatBoth(g.url, { model: 'main', messages: [{ role: 'user', content }] });
    expect(plain.status).toBe(200);
    expectParity(plain, streamed);

    const calls = inputCalls();
    const perRequest = calls.length / 2;
    expect(perRequest).toBeGreaterThanOrEqual(Math.ceil(content.length / MAX_CALL_CHARS));
    for (const call of calls) {
      expect(call.status).toBe(200);
      expect(call.texts.reduce((sum, t) => sum + unitsOf(t.length), 0)).toBeLessThanOrEqual(MAX_UNITS_PER_CALL);
    }
    // Nothing is checked twice beyond the overlaps.
    const checked = calls.slice(0, perRequest).reduce((sum, c) => sum + c.texts.join('').length, 0);
    expect(checked).toBeLessThanOrEqual(content.length + (perRequest - 1) * (SPLIT_OVERLAP + 1));

    const expected = before + '{EMAIL}' + content.slice(before.length + EMAIL.length);
    for (const body of upstreamBodies()) expect(body.messages[0]?.content).toBe(expected);
    // Every call is accounted for in the units header (one record per call).
    expect(Number(plain.headers['x-gateway-guardrail-units'])).toBeGreaterThanOrEqual(perRequest);
  });

  it('a blocked phrase across a cut is still seen (the pieces overlap)', async () => {
    const g = await gateway({ hooks: ['pre_call', 'post_call'], maxInputChars: 100_000 });
    const before = filler(MAX_CALL_CHARS - 6 - 1) + ' ';
    const content = before + 'stock tips ' + filler(40_000);
    const [plain, streamed] = await chatBoth(g.url, { model: 'main', messages: [{ role: 'user', content }] });
    expect(plain.status).toBe(400);
    expect(plain.error).toEqual(VIOLATION);
    expectParity(plain, streamed);
    expect(model.callCount()).toBe(0);
    // The first piece ends inside the phrase; the second one sees it whole and blocks; nothing after it is sent.
    expect(inputCalls()).toHaveLength(4);
  });

  it('a buffered answer longer than one call is checked in several calls within the limit', async () => {
    const g = await gateway({ hooks: ['post_call'], streaming: { mode: 'buffer' } });
    const text = filler(60_000);
    model.setScenario(UPSTREAM, { scenario: 'normal', text, chunks: 30 });
    const [plain, streamed] = await chatBoth(g.url, { model: 'main', messages: [question] });
    expect(plain.status).toBe(200);
    expect(plain.text).toBe(text);
    expectParity(plain, streamed);
    const outputs = emulator.calls.filter((c) => c.source === 'OUTPUT');
    expect(outputs).toHaveLength(6);
    for (const call of outputs) expect(call.texts.join('').length).toBeLessThanOrEqual(MAX_CALL_CHARS);
  });

  describe.each([
    ['pre_call', ['pre_call', 'post_call']],
    ['during_call', ['during_call', 'post_call']],
  ] as const)('over the cap (%s)', (_name, hooks) => {
    it('413 invalid_request_error in both modes, with no guardrail call and no model call', async () => {
      const g = await gateway({ hooks: [...hooks], maxInputChars: 1000 });
      // Definitions count too: 990 characters of message + the tool's name (11) and description (20).
      const [plain, streamed] = await chatBoth(g.url, { model: 'main', messages: [{ role: 'user', content: filler(990) }], ...tool({ description: filler(20) }) });
      expect(plain.status).toBe(413);
      expect(plain.error).toMatchObject({ type: 'invalid_request_error', code: 413 });
      expect(String(plain.error?.['message'])).toMatch(/1021 characters.*at most 1000/);
      expectParity(plain, streamed);
      expect(streamed.frames).toEqual([]);
      expect(emulator.callCount).toBe(0);
      expect(model.callCount()).toBe(0);
    });
  });

  it('the default cap is 100,000 characters', async () => {
    const g = await gateway();
    const [over] = await chatBoth(g.url, { model: 'main', messages: [{ role: 'user', content: filler(100_001) }] });
    expect(over.status).toBe(413);
    expect(emulator.callCount).toBe(0);
    const [at] = await chatBoth(g.url, { model: 'main', messages: [{ role: 'user', content: filler(100_000) }] });
    expect(at.status).toBe(200);
  });
});
