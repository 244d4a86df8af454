/**
 * The parity matrix of the chat path (test/fallback.test.ts), run for every protocol (issue 16): each
 * fallback and error scenario, without and with streaming, in `/v1/chat/completions`, `/v1/responses` and
 * `/v1/messages`, through one gateway built from the same pieces. Within a protocol the two modes must
 * agree (status, error, text, finish reason, attempt headers, upstream calls); across protocols the same
 * scenario must give the same answer (text, status, error message, attempt log), each in its own form.
 */
import { randomUUID } from 'node:crypto';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { createGateway, silentLogger, type FallbackHandlerOptions, type Gateway, type RequestSummary } from '../lib/index.js';
import type { ModelGroupOptions } from '../lib/router-config.js';
import { fallbackFixture } from './helpers/fallback-fixture.js';
import { ATTEMPT_HEADERS } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, rawRequest, type RunningServer } from './helpers/http.js';
import type { TestGateway } from './helpers/gateway.js';
import { ask, namedEvents, PROTOCOL_PATHS, WIRE_PROTOCOLS, type ProtocolOutcome, type WireProtocol } from './helpers/protocols.js';

const question = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'Hi there' }], ...extra });

const fixture = fallbackFixture();
const { openai } = fixture;
const gateway = fixture.gateway;
const counts = fixture.counts;
let primary: MockServer;
let backup: MockServer;
let claude: MockServer;
beforeAll(() => ({ primary, backup, claude } = fixture));
const diff = (a: number[], b: number[]) => a.map((v, i) => v - b[i]!);

/** What must agree between the two modes of one protocol. */
function modeView(outcome: ProtocolOutcome): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const h of [...ATTEMPT_HEADERS, 'x-gateway-attempt-log']) headers[h] = outcome.headers[h];
  return { status: outcome.status, error: outcome.error, text: outcome.text, finishReason: outcome.error ? undefined : outcome.finishReason, headers };
}

/** What must agree between protocols: everything but the error's protocol-specific type and shape. */
function protocolView(outcome: ProtocolOutcome): Record<string, unknown> {
  const { error, ...rest } = modeView(outcome);
  return { ...rest, message: (error as { message?: unknown } | undefined)?.message };
}

/**
 * Runs the request in every protocol and both modes; asserts mode parity per protocol (and the same upstream
 * calls per mode) and the same answer across protocols. Returns the chat path's non-streaming outcome.
 */
async function expectParity(g: TestGateway, body = question('main')): Promise<Record<WireProtocol, [ProtocolOutcome, ProtocolOutcome]>> {
  const all = {} as Record<WireProtocol, [ProtocolOutcome, ProtocolOutcome]>;
  for (const protocol of WIRE_PROTOCOLS) {
    const before = counts();
    const plain = await ask(protocol, g.url, { ...body, stream: false });
    const mid = counts();
    const streamed = await ask(protocol, g.url, { ...body, stream: true });
    const after = counts();
    expect({ protocol, ...modeView(streamed) }).toEqual({ protocol, ...modeView(plain) });
    expect({ protocol, calls: diff(after, mid) }).toEqual({ protocol, calls: diff(mid, before) });
    // A stream that answered ends with its protocol's terminal event, never cut.
    if (streamed.status === 200) expect({ protocol, ending: streamed.ending }).toEqual({ protocol, ending: 'completed' });
    all[protocol] = [plain, streamed];
  }
  for (const protocol of WIRE_PROTOCOLS) expect({ protocol, ...protocolView(all[protocol][0]) }).toEqual({ protocol, ...protocolView(all.chat[0]) });
  return all;
}

const general = { fallbacks: { main: ['backup'] } };
const policy = { contentPolicyFallbacks: { main: ['other'] }, fallbacks: { main: ['backup'] } };

describe(`every protocol (Express ${EXPRESS_MAJOR}): each fallback and error scenario, streaming and not, asserted to agree`, () => {
  it.each<[string, ModelGroupOptions['deployments'][number] | ((s: MockServer) => ModelGroupOptions['deployments'][number]), Omit<FallbackHandlerOptions, 'router'>, string]>([
    ['primary 500 → general fallback', (s) => openai(s, 'error-500'), general, 'backup'],
    ['OpenAI content-policy 400 → content-policy fallback', (s) => openai(s, 'content-policy'), policy, 'other'],
    ['Azure content-policy 400 → content-policy fallback', (s) => openai(s, 'content-policy-azure'), policy, 'other'],
    ['DashScope "inappropriate content" 400 → content-policy fallback', (s) => openai(s, 'content-policy-dashscope'), policy, 'other'],
    ['context-window 400 → context-window fallback', (s) => openai(s, 'context-window'), { contextWindowFallbacks: { main: ['other'] }, fallbacks: { main: ['backup'] } }, 'other'],
    ['in-band 500 as the first event → fallback', (s) => openai(s, 'stream-error:error-500'), general, 'backup'],
    ['in-band content policy as the first event → content-policy fallback', (s) => openai(s, 'stream-error:content-policy-dashscope'), policy, 'other'],
    ['in-band context window as the first event → context-window fallback', (s) => openai(s, 'stream-error:context-window'), { contextWindowFallbacks: { main: ['other'] } }, 'other'],
    ['empty answer → fallback', (s) => openai(s, 'empty-stream'), general, 'backup'],
    ['content_filter before content → content-policy fallback', (s) => openai(s, 'content-filter-first'), policy, 'other'],
    ['first-token timeout → fallback', (s) => openai(s, 'hang', { firstTokenMs: 150, totalMs: 150 }), general, 'backup'],
  ])('%s', async (_name, deployment, options, group) => {
    const g = await gateway(typeof deployment === 'function' ? deployment(primary) : deployment, options);
    const all = await expectParity(g);
    for (const protocol of WIRE_PROTOCOLS) {
      const [plain] = all[protocol];
      expect({ protocol, status: plain.status, group: plain.headers['x-gateway-model-group'] }).toEqual({ protocol, status: 200, group });
      expect(plain.text).toMatch(/^Hello! This is a mock answer from (backup|claude)\.$/);
    }
  });

  it('Anthropic content-filtering 400 and its in-band overloaded error → fallback', async () => {
    const g = await gateway({ provider: 'anthropic', baseUrl: claude.url, model: 'content-policy', apiKey: 'k' }, { contentPolicyFallbacks: { main: ['backup'] } });
    const all = await expectParity(g);
    expect(all.messages[0].text).toBe('Hello! This is a mock answer from backup.');
    const g2 = await gateway({ provider: 'anthropic', baseUrl: claude.url, model: 'stream-error:overloaded', apiKey: 'k' }, general);
    const all2 = await expectParity(g2);
    expect(all2.responses[1].headers['x-gateway-model-group']).toBe('backup');
  });

  it('all fallbacks failing → the last error with its status in every protocol, the attempt list in the header', async () => {
    const g = await gateway(openai(primary, 'error-500'), { fallbacks: { main: ['dead'], dead: ['dead2'] } }, [
      { name: 'dead', deployments: [openai(backup, 'rate-limit:0')] },
      { name: 'dead2', deployments: [openai(backup, 'error-503')] },
    ]);
    const all = await expectParity(g);
    const message = 'The engine is currently overloaded, please try again later.';
    expect(all.chat[0].error).toMatchObject({ message, code: 503, type: 'upstream_error' });
    expect(all.responses[0].error).toMatchObject({ message, code: 503, type: 'upstream_error' });
    expect(all.messages[0].error).toMatchObject({ message });
    for (const protocol of WIRE_PROTOCOLS) {
      expect(all[protocol][0].status).toBe(503);
      expect(all[protocol][1].headers['x-gateway-attempt-log']).toBe('main/openai/error-500:502:upstream_error, dead/openai/rate-limit:0:429:rate_limit_exceeded, dead2/openai/error-503:503:upstream_error');
    }
  });

  it('a plain 400 never falls back, and is the same 400 in both modes of every protocol', async () => {
    const g = await gateway(openai(primary, 'bad-request'), { ...policy, contextWindowFallbacks: { '*': ['backup'] } });
    const all = await expectParity(g);
    expect(all.chat[0].error).toMatchObject({ code: 400, type: 'invalid_request_error' });
    expect(all.responses[0].error).toMatchObject({ code: 400, type: 'invalid_request_error' });
    expect(all.messages[0].error).toMatchObject({ type: 'invalid_request_error' });
    expect(counts()).toEqual([6, 0, 0]);
  });

  it('fallbacks disabled by header: the primary error in every protocol and mode', async () => {
    const g = await gateway(openai(primary, 'content-policy-dashscope'), policy);
    for (const protocol of WIRE_PROTOCOLS) {
      const headers = { 'x-gateway-disable-fallbacks': 'true' };
      const plain = await ask(protocol, g.url, question('main', { stream: false }), { headers });
      const streamed = await ask(protocol, g.url, question('main', { stream: true }), { headers });
      expect(modeView(streamed)).toEqual(modeView(plain));
      expect(plain.status).toBe(400);
    }
    expect(counts()).toEqual([6, 0, 0]);
  });

  describe('after the first byte', () => {
    it.each(WIRE_PROTOCOLS)('%s: a mid-stream failure after content ends with the one terminal error, no duplicated content, no fallback call', async (protocol) => {
      const g = await gateway(openai(primary, 'midstream-error'), general);
      const res = await ask(protocol, g.url, question('main', { stream: true }));
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.ending).toBe('error');
      expect(res.error?.['message']).toEqual(expect.any(String));
      expect(res.events.filter((e) => e.event === 'error' || e.data['error'] !== undefined && e.event === undefined)).toHaveLength(1);
      expect(res.text.length).toBeGreaterThan(0);
      expect('Hello! This is a mock answer from primary.'.startsWith(res.text)).toBe(true);
      expect(backup.callCount()).toBe(0);
    });

    it('the mid-stream error is the same error in every protocol (message; type where the protocol keeps it)', async () => {
      const g = await gateway(openai(primary, 'midstream-error'), general);
      const outcomes = await Promise.all(WIRE_PROTOCOLS.map((p) => ask(p, g.url, question('main', { stream: true }))));
      const [chatOutcome, responses, messages] = outcomes;
      expect(responses!.error).toEqual(chatOutcome!.error);
      expect(messages!.error?.['message']).toBe(chatOutcome!.error?.['message']);
      expect(outcomes.map((o) => o.text)).toEqual([chatOutcome!.text, chatOutcome!.text, chatOutcome!.text]);
    });

    it.each(WIRE_PROTOCOLS)('%s: with continuation on, the stream continues on a continuation group with no repeated text', async (protocol) => {
      backup.setScenario('normal', ({ body }) => {
        const messages = (body as { messages: { role: string; content: string }[] }).messages;
        const partial = messages.at(-2)?.role === 'assistant' ? messages.at(-2)!.content : '';
        return { scenario: 'normal', text: `${partial.slice(-8)} and then the rest of the answer.`, chunks: 3 };
      });
      const g = await gateway(openai(primary, 'midstream-error'), { ...general, continuation: { groups: ['backup'] } });
      const res = await ask(protocol, g.url, question('main', { stream: true }));
      expect(res.error).toBeUndefined();
      expect(res.ending).toBe('completed');
      expect(res.finishReason).toBe('stop');
      const sent = backup.calls[0]!.body as { messages: { role: string; content: string }[] };
      const partial = sent.messages.at(-2)!.content;
      expect('Hello! This is a mock answer from primary.'.startsWith(partial)).toBe(true);
      expect(res.text).toBe(`${partial.trimEnd()} and then the rest of the answer.`);
    });
  });
});

describe(`every protocol through createGateway (Express ${EXPRESS_MAJOR}): usage and client aborts as on the chat path`, () => {
  let openaiMock: MockServer;
  let server: RunningServer;
  let gw: Gateway;
  const summaries = new Map<string, RequestSummary>();

  beforeAll(async () => {
    openaiMock = await startMockOpenAI({ name: 'usage' });
    gw = createGateway({
      models: [
        { name: 'normal', deployments: [{ provider: 'openai', baseUrl: `${openaiMock.url}/v1`, model: 'normal', apiKey: 'k' }] },
        { name: 'slow', deployments: [{ provider: 'openai', baseUrl: `${openaiMock.url}/v1`, model: 'slow:200', apiKey: 'k' }] },
        { name: 'midstream', deployments: [{ provider: 'openai', baseUrl: `${openaiMock.url}/v1`, model: 'midstream-error', apiKey: 'k' }] },
      ],
      router: { retries: { maxRetries: 0 } },
      logger: silentLogger,
      events: { onRequestEnd: (s) => summaries.set(s.requestId, s) },
    });
    const app = createApp();
    app.use(gw);
    server = await listen(app);
  });
  afterAll(async () => {
    await server.close();
    await gw.close();
    await openaiMock.close();
  });

  async function run(protocol: WireProtocol, model: string, stream: boolean, abortAfterMs?: number): Promise<{ outcome: ProtocolOutcome; summary: RequestSummary }> {
    const id = randomUUID();
    const outcome = await ask(protocol, server.url, question(model, { stream }), { headers: { 'x-request-id': id }, ...(abortAfterMs === undefined ? {} : { abortAfterMs }) });
    for (let i = 0; i < 300 && !summaries.has(id); i++) await new Promise((r) => setTimeout(r, 10));
    const summary = summaries.get(id);
    if (!summary) throw new Error(`no summary for ${protocol} ${model}`);
    return { outcome, summary };
  }

  it.each(WIRE_PROTOCOLS)('%s: a normal answer reports the upstream usage in both modes, in the summary and in the protocol answer', async (protocol) => {
    for (const stream of [false, true]) {
      const { outcome, summary } = await run(protocol, 'normal', stream);
      expect(summary).toMatchObject({ protocol, stream, status: 200, clientAborted: false });
      expect(summary.usage).toMatchObject({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) });
      expect(summary.usage!['estimated']).toBeUndefined();
      if (protocol === 'chat' && stream) continue; // chat streams carry usage only when the client asked for it
      const usage = outcome.usage as Record<string, number>;
      const output = protocol === 'chat' ? usage['completion_tokens'] : usage['output_tokens'];
      expect({ protocol, stream, output }).toEqual({ protocol, stream, output: summary.usage!.completion_tokens });
    }
  });

  it.each(WIRE_PROTOCOLS)('%s: a client that leaves mid-stream gives a 499 summary with estimated usage', async (protocol) => {
    const { outcome, summary } = await run(protocol, 'slow', true, 250);
    expect(outcome.abortedAt).toBeDefined();
    expect(summary).toMatchObject({ protocol, status: 499, httpStatus: 200, errorType: 'client_disconnected', clientAborted: true });
    expect(summary.usage).toMatchObject({ estimated: true });
  });

  it.each(WIRE_PROTOCOLS)('%s: a failure mid-stream keeps the attempt usage and ends with the protocol terminal error', async (protocol) => {
    const { outcome, summary } = await run(protocol, 'midstream', true);
    expect(outcome.ending).toBe('error');
    // The summary speaks the gateway's taxonomy whatever the protocol's wire type.
    expect(summary).toMatchObject({ protocol, status: 200, committed: true, errorType: 'upstream_error' });
    expect(summary.usage).toBeDefined();
  });

  it('a Responses answer repeats the request settings (instructions, tools, temperature, metadata), in both modes', async () => {
    const body = {
      model: 'normal',
      instructions: 'Be brief.',
      input: 'Hi there',
      temperature: 0.3,
      metadata: { ticket: 'T-1' },
      tools: [{ type: 'function', name: 'lookup', description: 'Looks up', parameters: { type: 'object', properties: {} } }],
    };
    const plain = await rawRequest(server.url, { path: PROTOCOL_PATHS.responses, body });
    const streamed = await rawRequest(server.url, { path: PROTOCOL_PATHS.responses, body: { ...body, stream: true } });
    const final = namedEvents(streamed.text).find((e) => e.event === 'response.completed')!.data['response'] as Record<string, unknown>;
    for (const response of [JSON.parse(plain.text) as Record<string, unknown>, final]) {
      expect(response).toMatchObject({ instructions: 'Be brief.', temperature: 0.3, metadata: { ticket: 'T-1' }, tools: [expect.objectContaining({ type: 'function', name: 'lookup' })] });
    }
  });

  it('each protocol can be switched off: its path then goes on to the host app', async () => {
    const only = createGateway({ models: [{ name: 'normal', deployments: [{ provider: 'openai', baseUrl: `${openaiMock.url}/v1`, model: 'normal', apiKey: 'k' }] }], protocols: { responses: false }, logger: silentLogger });
    const app = createApp();
    app.use(only);
    app.post('/v1/responses', (_req, res) => void res.status(418).json({ host: true }));
    const s = await listen(app);
    try {
      const res = await ask('responses', s.url, question('normal'));
      expect(res.status).toBe(418);
      const messages = await ask('messages', s.url, question('normal'));
      expect(messages.status).toBe(200);
    } finally {
      await s.close();
      await only.close();
    }
    const models = [{ name: 'normal', deployments: [{ provider: 'openai' as const, baseUrl: `${openaiMock.url}/v1`, model: 'normal', apiKey: 'k' }] }];
    expect(() => createGateway({ models, protocols: { grpc: true } as never })).toThrow(/'protocols.grpc'/);
    expect(() => createGateway({ models, protocols: { responses: 'no' } as never })).toThrow(/'protocols.responses'/);
  });
});
