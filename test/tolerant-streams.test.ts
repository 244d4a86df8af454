/**
 * Issue 13, item 1: frames that carry nothing for the client (keep-alives, SSE comments, `event: ping`,
 * unknown event types, metadata objects without `choices`) never end a stream, with or without an output
 * guardrail, for every provider; a real protocol violation ends it (`router.malformedChunks: 'error'`, the
 * default) or is skipped, warned about once per request and counted (`'skip'`).
 *
 * Everything goes through `createGateway` over loopback HTTP: the mock OpenAI (also on Azure routes),
 * Anthropic and Bedrock servers, the real Bedrock SDK against the ApplyGuardrail emulator for the output
 * guardrail, and a raw SSE server for frames no mock sends.
 */
import { createGateway, type Gateway, type GatewayOptions } from '../lib/create-gateway.js';
import { GatewayConfigError } from '../lib/options.js';
import { parseGatewayConfig } from '../lib/gateway-config.js';
import { readSseBatches } from '../lib/providers/sse.js';
import { createRouter } from '../lib/router.js';
import type { Logger } from '../lib/logger.js';
import {
  DEFAULT_GUARDRAIL,
  startBedrockEmulator,
  startMockAnthropic,
  startMockBedrock,
  startMockOpenAI,
  type BedrockEmulator,
  type MockBedrock,
  type MockScenarioSpec,
  type MockServer,
} from '../lib/testing/index.js';
import { chat, chatBoth, type ChatOutcome } from './helpers/chat.js';
import { createApp } from './helpers/express.js';
import { listen, type RunningServer } from './helpers/http.js';

const AWS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' };
/** 24 tokens of 8 characters, one delta each: three 64-character guardrail windows, nothing the guardrail minds. */
const TOKENS = Array.from({ length: 24 }, (_, i) => `word${String(i).padStart(3, '0')} `);
const TEXT = TOKENS.join('');
const BEDROCK_TEXT = 'Hello! This is a mock answer from mock-bedrock.';

let openai: MockServer;
let anthropic: MockServer;
let bedrock: MockBedrock;
let emulator: BedrockEmulator;
let raw: RunningServer;
/** What the raw SSE server sends next: whole SSE text. */
let rawBody = '';

beforeAll(async () => {
  [openai, anthropic, bedrock, emulator, raw] = await Promise.all([
    startMockOpenAI(),
    startMockAnthropic(),
    startMockBedrock({ chunks: 8 }),
    startBedrockEmulator(),
    listen((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(rawBody);
      });
    }),
  ]);
});

afterAll(async () => {
  await Promise.all([openai.close(), anthropic.close(), bedrock.close(), emulator.close(), raw.close()]);
});

beforeEach(() => {
  openai.reset();
  anthropic.reset();
  bedrock.reset();
  emulator.reset();
});

// ---- the gateway under test ----

type OutputGuard = 'none' | 'window' | 'buffer';

interface Running {
  url: string;
  gateway: Gateway;
  warnings: { obj: Record<string, unknown>; msg: string | undefined }[];
  close(): Promise<void>;
}

const running: Running[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

function deployments(): GatewayOptions['models'] {
  return [
    { name: 'openai', deployments: [{ provider: 'openai', baseUrl: `${openai.url}/v1`, model: 'up', apiKey: 'k' }] },
    { name: 'azure', deployments: [{ provider: 'azure', baseUrl: openai.url, model: 'az', apiKey: 'k' }] },
    { name: 'anthropic', deployments: [{ provider: 'anthropic', baseUrl: anthropic.url, model: 'up', apiKey: 'k' }] },
    { name: 'bedrock', deployments: [{ provider: 'bedrock', baseUrl: bedrock.url, model: 'pings', awsCredentials: AWS }] },
    { name: 'raw', deployments: [{ provider: 'openai', baseUrl: `${raw.url}/v1`, model: 'raw', apiKey: 'k' }] },
  ];
}

async function start(router: GatewayOptions['router'] = {}, guard: OutputGuard = 'none'): Promise<Running> {
  const warnings: Running['warnings'] = [];
  const noop = (): void => {};
  const logger: Logger = { debug: noop, info: noop, error: noop, warn: (obj, msg) => warnings.push({ obj: obj as Record<string, unknown>, msg }) };
  const guardrails: GatewayOptions['guardrails'] =
    guard === 'none'
      ? []
      : [
          {
            name: 'output',
            guardrailIdentifier: DEFAULT_GUARDRAIL.id,
            guardrailVersion: DEFAULT_GUARDRAIL.version,
            endpoint: emulator.url,
            region: 'us-east-1',
            credentials: AWS,
            maxAttempts: 1,
            hooks: ['post_call'],
            streaming: guard === 'window' ? { mode: 'window', windowSize: 64, overlap: 0 } : { mode: 'buffer' },
          },
        ];
  const gateway = createGateway({
    models: deployments(),
    router: { retries: { maxRetries: 0 }, cooldown: { failureThreshold: 1000 }, ...router },
    guardrails,
    logger,
    metrics: true,
  });
  const app = createApp();
  app.use(gateway);
  const server = await listen(app);
  const r: Running = {
    url: server.url,
    gateway,
    warnings,
    close: async () => {
      await server.close();
      await gateway.close();
    },
  };
  running.push(r);
  return r;
}

function ask(model: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model, messages: [{ role: 'user', content: 'Count for me.' }], ...extra };
}

/** The mocks that take `setScenario` answer `scenario` with TEXT, one token a delta. */
function script(scenario: string): MockScenarioSpec {
  return { scenario, text: TEXT, chunks: TOKENS.length };
}

/** `malformed_chunks_total` by `group/deployment`, once the requests' summaries are in (they come on close). */
async function malformedCounts(r: Running, expectedTotal: number): Promise<Record<string, number>> {
  const metric = r.gateway.metrics!.registry.getSingleMetric('llm_gateway_malformed_chunks_total')!;
  const read = async (): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {};
    for (const { labels, value } of (await metric.get()).values) counts[`${String(labels.group)}/${String(labels.deployment)}`] = value;
    return counts;
  };
  const until = Date.now() + 2000;
  for (;;) {
    const counts = await read();
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    if (total >= expectedTotal || Date.now() > until) return counts;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A stream that ended the one proper way: a finish chunk, no error frame, `[DONE]` last. */
function expectFinished(outcome: ChatOutcome, text: string): void {
  expect(outcome).toMatchObject({ status: 200, text, finishReason: 'stop', error: undefined, complete: true });
  if (outcome.frames.length > 0) expect(outcome.frames.at(-1)).toBe('[DONE]');
}

/** A committed stream ended by exactly one error frame and `[DONE]`. */
function expectInBandError(outcome: ChatOutcome): void {
  expect(outcome.status).toBe(200);
  expect(outcome.inBand).toBe(true);
  expect(outcome.error).toMatchObject({ type: 'upstream_error' });
  expect(String(outcome.error?.['message'])).toMatch(/malformed chunk/);
  expect(outcome.frames.slice(-2, -1)[0]).toMatch(/^\{"error":/);
  expect(outcome.frames.at(-1)).toBe('[DONE]');
  expect(outcome.complete).toBe(true);
}

// ---- harmless frames ----

describe.each<OutputGuard>(['none', 'window', 'buffer'])('harmless frames mid-stream, output guardrail: %s', (guard) => {
  const cases: [string, string, () => void][] = [
    ['openai', TEXT, () => openai.setScenario('up', script('pings'))],
    ['azure', TEXT, () => openai.setScenario('az', script('pings'))],
    ['anthropic', TEXT, () => anthropic.setScenario('up', script('pings'))],
    ['bedrock', BEDROCK_TEXT, () => {}],
  ];

  it.each(cases)('%s: the whole answer, the same in both modes, nothing counted or logged', async (group, text, arrange) => {
    arrange();
    const r = await start({}, guard);
    const [plain, streamed] = await chatBoth(r.url, ask(group));
    expectFinished(plain, text);
    expectFinished(streamed, text);
    expect(streamed.text).toBe(plain.text);
    // The frames really were there (the mock sent them) and none reached the client.
    expect(streamed.frames.every((frame) => frame === '[DONE]' || 'choices' in (JSON.parse(frame) as object))).toBe(true);
    if (guard !== 'none') expect(emulator.calls.filter((c) => c.source === 'OUTPUT').length).toBeGreaterThan(0);
    expect(r.warnings).toEqual([]);
    expect(await malformedCounts(r, 0)).toEqual({});
  });
});

it('the mocks do send the harmless frames the adapters skip', async () => {
  openai.setScenario('up', script('pings'));
  const res = await fetch(`${openai.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
    body: JSON.stringify({ model: 'up', messages: [{ role: 'user', content: 'hi' }], stream: true }),
  });
  const body = await res.text();
  for (const frame of [': keep-alive\n\n', 'data:\n\n', 'data: {}\n\n', 'event: ping\ndata: {}\n\n', 'data: {"type":"metadata"']) expect(body).toContain(frame);
  anthropic.setScenario('up', script('pings'));
  const messages = await fetch(`${anthropic.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': 'k', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'up', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], stream: true }),
  });
  const events = await messages.text();
  expect(events.match(/event: ping\n/g)!.length).toBeGreaterThan(TOKENS.length);
  expect(events).toContain('event: content_block_annotation\n');
  expect(events).toContain('event: server_heartbeat\ndata: still here\n');
});

// ---- malformed frames ----

describe("router.malformedChunks: 'error' (the default)", () => {
  it('a non-JSON frame after commit: the content so far, one in-band error frame, [DONE]; counted', async () => {
    openai.setScenario('up', script('midstream-malformed-chunk'));
    const r = await start();
    const outcome = await chat(r.url, ask('openai', { stream: true }));
    expectInBandError(outcome);
    expect(outcome.text).toBe(TOKENS.slice(0, TOKENS.length / 2).join(''));
    expect(await malformedCounts(r, 1)).toEqual({ 'openai/openai/up': 1 });
    // The failure is logged where failures are; the skip warning is for skipped frames only.
    expect(r.warnings.filter((w) => String(w.msg).includes('malformed'))).toEqual([]);
  });

  it('a non-JSON frame before any content: a JSON 502 before commit, as the same failure without streaming', async () => {
    openai.setScenario('up', script('malformed-chunk'));
    const r = await start();
    const [plain, streamed] = await chatBoth(r.url, ask('openai'));
    for (const outcome of [plain, streamed]) {
      expect(outcome.status).toBe(502);
      expect(outcome.inBand).toBe(false);
      expect(outcome.error).toMatchObject({ type: 'upstream_error' });
    }
    expect(String(streamed.error?.['message'])).toMatch(/malformed chunk \(not JSON\)/);
  });

  it('Anthropic: a broken known event after commit ends with the in-band frame', async () => {
    anthropic.setScenario('up', script('midstream-malformed-chunk'));
    const r = await start();
    const outcome = await chat(r.url, ask('anthropic', { stream: true }));
    expectInBandError(outcome);
    expect(outcome.text).toBe(TOKENS.slice(0, TOKENS.length / 2).join(''));
  });

  it('a shape that breaks the protocol (choices not an array, a choice that is not an object) ends the stream too', async () => {
    for (const bad of ['{"choices":"nope"}', '{"choices":[null]}', '[1,2]', '{"choices":[{"index":0,"delta":"x"}]}']) {
      rawBody = rawStream([bad]);
      const r = await start();
      const outcome = await chat(r.url, ask('raw', { stream: true }));
      expectInBandError(outcome);
      expect(outcome.text).toBe('alpha ');
      await r.close();
    }
  });
});

describe("router.malformedChunks: 'skip'", () => {
  it.each(['openai', 'anthropic'])('%s: a non-JSON frame mid-stream is skipped: the whole answer, one warning, counted', async (group) => {
    (group === 'openai' ? openai : anthropic).setScenario('up', script('midstream-malformed-chunk'));
    const r = await start({ malformedChunks: 'skip' });
    const outcome = await chat(r.url, ask(group, { stream: true }));
    expectFinished(outcome, TEXT);
    expect(await malformedCounts(r, 1)).toEqual({ [`${group}/${group}/up`]: 1 });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]!.obj).toMatchObject({ group, deployment: `${group}/up`, reason: 'not JSON' });
    expect(r.warnings[0]!.obj['requestId']).toBe(outcome.headers['x-request-id']);
  });

  it('before any content too, and with a buffering output guardrail (once a 502)', async () => {
    openai.setScenario('up', script('malformed-chunk'));
    const r = await start({ malformedChunks: 'skip' }, 'buffer');
    expectFinished(await chat(r.url, ask('openai', { stream: true })), TEXT);
    expect(await malformedCounts(r, 1)).toEqual({ 'openai/openai/up': 1 });
  });

  it('many broken frames in one request: one warning without any of their content, every frame counted', async () => {
    rawBody = rawStream(['not json {"content":"SECRET-ish"}', '[1,2]', '{"choices":"nope"}', '{"choices":[null]}', '{"choices":[{"index":0,"delta":"x"}]}']);
    const r = await start({ malformedChunks: 'skip' });
    const outcome = await chat(r.url, ask('raw', { stream: true }));
    expectFinished(outcome, 'alpha beta ');
    expect(await malformedCounts(r, 5)).toEqual({ 'raw/openai/raw': 5 });
    expect(r.warnings).toHaveLength(1);
    expect(JSON.stringify(r.warnings[0])).not.toContain('SECRET');
    // A second request warns again: once per request, not once per process.
    await chat(r.url, ask('raw', { stream: true }));
    expect(r.warnings).toHaveLength(2);
    expect(await malformedCounts(r, 10)).toEqual({ 'raw/openai/raw': 10 });
  });

  it('harmless frames are still not malformed: nothing counted, nothing logged', async () => {
    openai.setScenario('up', script('pings'));
    const r = await start({ malformedChunks: 'skip' }, 'window');
    expectFinished(await chat(r.url, ask('openai', { stream: true })), TEXT);
    expect(r.warnings).toEqual([]);
    expect(await malformedCounts(r, 0)).toEqual({});
  });
});

/** An OpenAI stream from the raw server: role, "alpha ", the given data lines, "beta ", finish, [DONE]. */
function rawStream(dataLines: string[]): string {
  const chunk = (delta: object, finish: string | null = null): string =>
    `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'raw', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  return (
    chunk({ role: 'assistant', content: '' }) +
    chunk({ content: 'alpha ' }) +
    dataLines.map((line) => `data: ${line}\n\n`).join('') +
    chunk({ content: 'beta ' }) +
    chunk({}, 'stop') +
    'data: [DONE]\n\n'
  );
}

// ---- configuration ----

describe('configuration', () => {
  it('createRouter: a bad malformedChunks throws naming the field', () => {
    const models = [{ name: 'm', deployments: [{ provider: 'openai' as const, model: 'x', apiKey: 'k' }] }];
    expect(() => createRouter({ models, malformedChunks: 'drop' as never })).toThrow(GatewayConfigError);
    expect(() => createRouter({ models, malformedChunks: 'drop' as never })).toThrow(/router\.malformedChunks/);
  });

  it('the config file takes router.malformedChunks and names it when it is wrong', () => {
    const yaml = (value: string) => `models:\n  - name: m\n    deployments:\n      - { provider: openai, model: x, apiKey: k }\nrouter:\n  malformedChunks: ${value}\n`;
    expect(parseGatewayConfig(yaml('skip'), 'yaml').router?.malformedChunks).toBe('skip');
    expect(() => parseGatewayConfig(yaml('sometimes'), 'yaml')).toThrow(/router\.malformedChunks/);
  });
});

describe('a leading byte-order mark (readSseBatches)', () => {
  async function* reads(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
    for (const part of parts) yield part;
  }
  async function datas(parts: Uint8Array[]): Promise<string[]> {
    const out: string[] = [];
    for await (const batch of readSseBatches(reads(parts), new AbortController().signal)) for (const event of batch) out.push(event.data);
    return out;
  }
  const bom = Buffer.from([0xef, 0xbb, 0xbf]);
  const body = Buffer.from('data: {"a":1}\n\ndata: [DONE]\n\n');
  const whole = Buffer.concat([bom, body]);

  it('is dropped whether it comes with the first event, alone, or split byte by byte across reads', async () => {
    const expected = ['{"a":1}', '[DONE]'];
    expect(await datas([whole])).toEqual(expected);
    expect(await datas([bom, body])).toEqual(expected);
    expect(await datas([bom.subarray(0, 1), bom.subarray(1, 2), bom.subarray(2), body])).toEqual(expected);
    expect(await datas([...whole].map((byte) => Uint8Array.of(byte)))).toEqual(expected);
  });

  it('only the leading one: a second mark, or one inside an event, is data', async () => {
    // As the SSE spec says: one leading mark is stripped; a second one makes the first line's field
    // '\ufeffdata', which no one knows, so that line is ignored.
    expect(await datas([Buffer.concat([bom, bom, body])])).toEqual(['[DONE]']);
    const inside = Buffer.concat([bom, Buffer.from('data: \ufeffx\n\n')]);
    expect(await datas([inside])).toEqual(['\ufeffx']);
  });
});
