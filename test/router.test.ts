import { startMockOpenAI, startMockAnthropic, type MockServer } from '../lib/testing/index.js';
import type { ModelGroupOptions, RouterOptions } from '../lib/router-config.js';
import { GatewayConfigError } from '../lib/index.js';
import { createRouter } from '../lib/router.js';
import { MemoryStore } from '../lib/store.js';
import { chat, chatBoth, parityView } from './helpers/chat.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';
import { EXPRESS_MAJOR } from './helpers/express.js';
import { startBlackhole } from './helpers/blackhole.js';

const ask = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'Hi there' }], ...extra });

let mockA: MockServer;
let mockB: MockServer;
let anthropic: MockServer;
let gateways: TestGateway[] = [];

beforeAll(async () => {
  [mockA, mockB, anthropic] = await Promise.all([startMockOpenAI({ name: 'mock-a' }), startMockOpenAI({ name: 'mock-b' }), startMockAnthropic()]);
});
afterAll(async () => {
  await Promise.all([mockA.close(), mockB.close(), anthropic.close()]);
});
beforeEach(() => {
  mockA.reset();
  mockB.reset();
  anthropic.reset();
});
afterEach(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  gateways = [];
});

async function gateway(models: ModelGroupOptions[], options: Partial<RouterOptions> = {}): Promise<TestGateway> {
  const g = await startGateway({ models, retries: { backoff: { initialMs: 1, maxMs: 5 } }, ...options });
  gateways.push(g);
  return g;
}

const openai = (server: MockServer, model: string, extra: Record<string, unknown> = {}) => ({ provider: 'openai' as const, baseUrl: `${server.url}/v1`, model, apiKey: 'sk-test', ...extra });
/** Deployment A is tried first: its weight makes B's chance of going first one in a billion. */
const firstA = { weight: 1 };
const thenB = { weight: 1e-9 };

describe(`router (Express ${EXPRESS_MAJOR})`, () => {
  it('answers the same text in both modes, with the attempt headers on both', async () => {
    const g = await gateway([{ name: 'chat', aliases: ['chat-alias'], deployments: [openai(mockA, 'normal', { id: 'a' })] }]);
    const [plain, streamed] = await chatBoth(g.url, ask('chat'));
    expect(plain.status).toBe(200);
    expect(plain.text).toBe('Hello! This is a mock answer from mock-a.');
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(streamed.frames.at(-1)).toBe('[DONE]');
    expect(plain.headers).toMatchObject({ 'x-gateway-model-group': 'chat', 'x-gateway-deployment': 'a', 'x-gateway-attempts': '1', 'x-gateway-retries': '0', 'x-gateway-fallbacks': '0' });
    expect(plain.headers['x-request-id']).toBeDefined();
    const alias = await chat(g.url, ask('chat-alias'));
    expect(alias.status).toBe(200);
    expect(mockA.calls.every((c) => (c.body as { model: string }).model === 'normal')).toBe(true);
  });

  it('an unknown model is a 404 naming the model field, in both modes, with no upstream call', async () => {
    const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'normal')] }]);
    const [plain, streamed] = await chatBoth(g.url, ask('nope'));
    expect(plain.status).toBe(404);
    expect(plain.error).toEqual({ message: "The model 'nope' does not exist on this gateway.", code: 404, type: 'not_found_error' });
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(mockA.callCount()).toBe(0);
  });

  it("the wildcard group serves every other model, forwarding the client's model name", async () => {
    const g = await gateway([{ name: '*', deployments: [openai(mockA, '*')] }]);
    const res = await chat(g.url, ask('echo', { messages: [{ role: 'user', content: 'say this back' }] }));
    expect(res.text).toBe('say this back');
    expect((mockA.calls[0]!.body as { model: string }).model).toBe('echo');
  });

  it('GET /v1/models lists the groups and aliases', async () => {
    const g = await gateway([{ name: 'chat', aliases: ['c'], deployments: [openai(mockA, 'normal')] }]);
    const res = await fetch(`${g.url}/v1/models`);
    expect(await res.json()).toEqual({
      object: 'list',
      data: [
        { id: 'chat', object: 'model', created: 0, owned_by: 'express-llm-gateway' },
        { id: 'c', object: 'model', created: 0, owned_by: 'express-llm-gateway' },
      ],
    });
  });

  describe('retries', () => {
    it.each(['error-500', 'error-503', 'rate-limit:0', 'stream-error:error-500', 'hang'])(
      "retries a %s on the other deployment at once, identically in both modes",
      async (scenario) => {
        const g = await gateway([
          { name: 'chat', deployments: [openai(mockA, scenario, { id: 'a', ...firstA, timeouts: { firstTokenMs: 300, totalMs: 300 } }), openai(mockB, 'normal', { id: 'b', ...thenB })] },
        ], { cooldown: { failureThreshold: 100 } });
        const [plain, streamed] = await chatBoth(g.url, ask('chat'));
        expect(plain.status).toBe(200);
        expect(plain.text).toBe('Hello! This is a mock answer from mock-b.');
        expect(parityView(streamed)).toEqual(parityView(plain));
        expect(plain.headers).toMatchObject({ 'x-gateway-deployment': 'b', 'x-gateway-attempts': '2', 'x-gateway-retries': '1' });
        expect([mockA.callCount(), mockB.callCount()]).toEqual([2, 2]); // one per mode each
        expect(g.contexts[0]!.attempts.map((a) => [a.deployment, a.kind, a.outcome])).toEqual([['a', 'first', 'error'], ['b', 'retry', 'success']]);
        expect(g.contexts[1]!.attempts.map((a) => [a.deployment, a.outcome, a.status, a.errorType])).toEqual(
          g.contexts[0]!.attempts.map((a) => [a.deployment, a.outcome, a.status, a.errorType]),
        );
      },
    );

    it.each([
      ['bad-request', 400, 'invalid_request_error'],
      ['not-found', 404, 'not_found_error'],
      ['context-window', 400, 'context_window_exceeded'],
      ['content-policy', 400, 'content_policy_violation'],
      ['content-policy-azure', 400, 'content_policy_violation'],
      ['content-policy-dashscope', 400, 'content_policy_violation'],
      ['stream-error:content-policy-dashscope', 400, 'content_policy_violation'],
      ['stream-error:context-window', 400, 'context_window_exceeded'],
    ])('never retries a deterministic %s: exactly one call per mode, the same error in both', async (scenario, status, type) => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, scenario, { ...firstA }), openai(mockB, 'normal', { ...thenB })] }]);
      const [plain, streamed] = await chatBoth(g.url, ask('chat'));
      expect(plain.status).toBe(status);
      expect(plain.error?.['type']).toBe(type);
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect([mockA.callCount(), mockB.callCount()]).toEqual([2, 0]);
    });

    it('gives up after maxRetries with the last error and its status', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'error-503')] }], { retries: { maxRetries: 2, backoff: { initialMs: 1, maxMs: 2 } }, cooldown: { failureThreshold: 100 } });
      const [plain, streamed] = await chatBoth(g.url, ask('chat'));
      expect(plain.status).toBe(503);
      expect(plain.error).toMatchObject({ code: 503, type: 'upstream_error' });
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(mockA.callCount()).toBe(6);
      expect(plain.headers['x-gateway-attempts']).toBe('3');
    });
  });

  describe('lazy commit: failures before the first content are handled as without streaming', () => {
    it.each([
      ['empty-stream', 502],
      ['malformed-chunk', 502],
      ['stream-error:error-500', 502],
      ['content-filter-first', 400],
    ])('%s → a JSON error with its real status, nothing committed', async (scenario, status) => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, scenario)] }], { retries: { maxRetries: 0 } });
      const res = await chat(g.url, ask('chat', { stream: true }));
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.frames).toEqual([]);
    });

    it('content_filter before any content is a content-policy violation in both modes', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'content-filter-first')] }]);
      const [plain, streamed] = await chatBoth(g.url, ask('chat'));
      expect(plain.error).toMatchObject({ code: 400, type: 'content_policy_violation' });
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(mockA.callCount()).toBe(2);
    });

    it('a failure after content ends the stream with one error frame and [DONE]; no retry', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'midstream-error', firstA), openai(mockB, 'normal', thenB)] }]);
      const res = await chat(g.url, ask('chat', { stream: true }));
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.text.length).toBeGreaterThan(0);
      expect(res.error).toMatchObject({ code: 502, type: 'upstream_error' });
      expect(res.frames.at(-1)).toBe('[DONE]');
      expect(res.frames.filter((f) => f.startsWith('{"error"'))).toHaveLength(1);
      expect(mockB.callCount()).toBe(0);
    });

    it.each(['midstream-drop', 'no-done'])('%s after content ends with the error frame, never a truncated or silently ended stream', async (scenario) => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, scenario)] }]);
      const res = await chat(g.url, ask('chat', { stream: true }));
      expect(res.complete).toBe(true);
      expect(res.inBand).toBe(true);
      expect(res.frames.at(-1)).toBe('[DONE]');
    });
  });

  describe('cooldowns', () => {
    it('a 429 with Retry-After takes the deployment out of rotation for later requests, in both modes', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'rate-limit:30', { id: 'a', ...firstA }), openai(mockB, 'normal', { id: 'b', ...thenB })] }]);
      const first = await chat(g.url, ask('chat'));
      expect(first.headers['x-gateway-attempts']).toBe('2');
      const [plain, streamed] = await chatBoth(g.url, ask('chat'));
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(plain.headers).toMatchObject({ 'x-gateway-deployment': 'b', 'x-gateway-attempts': '1' });
      expect(mockA.callCount()).toBe(1);
    });

    it('a second 429 extends the cooldown deadline (Retry-After honoured)', async () => {
      const store = new MemoryStore();
      const g = await gateway([{ name: 'solo', deployments: [openai(mockA, 'rate-limit:5', { id: 'a' })] }], { store, retries: { maxRetries: 0 } });
      const before = Date.now();
      const [plain, streamed] = await chatBoth(g.url, ask('solo'));
      expect(plain.status).toBe(429);
      expect(parityView(streamed)).toEqual(parityView(plain));
      const [first] = store.getCooldowns(['solo/a'], Date.now());
      expect(first! - before).toBeGreaterThanOrEqual(4_900);
      expect(first! - before).toBeLessThan(6_000);
      // A single-deployment group is still tried while cooling down; its next 429 asks for longer.
      mockA.setScenario('rate-limit:5', 'rate-limit:60');
      await chat(g.url, ask('solo'));
      const [second] = store.getCooldowns(['solo/a'], Date.now());
      expect(second! - first!).toBeGreaterThan(50_000);
      // A shorter deadline never shortens a running cooldown.
      store.setCooldown('solo/a', Date.now() + 1_000);
      expect(store.getCooldowns(['solo/a'], Date.now())[0]).toBe(second);
    });

    it('N failures in the window cool a deployment down; a single-deployment group is still tried', async () => {
      const g = await gateway([{ name: 'solo', deployments: [openai(mockA, 'error-500', { id: 'a' })] }], { retries: { maxRetries: 0 }, cooldown: { failureThreshold: 2, durationMs: 60_000 } });
      for (let i = 0; i < 3; i++) await chat(g.url, ask('solo'));
      expect(mockA.callCount()).toBe(3); // cooling down after two, yet still tried: nowhere else to go
      const g2 = await gateway([{ name: 'pair', deployments: [openai(mockA, 'error-500', { id: 'a', ...firstA }), openai(mockB, 'normal', { id: 'b', ...thenB })] }], { retries: { maxRetries: 1 }, cooldown: { failureThreshold: 2, durationMs: 60_000 } });
      mockA.reset();
      await chat(g2.url, ask('pair'));
      await chat(g2.url, ask('pair'));
      await chat(g2.url, ask('pair'));
      expect(mockA.callCount()).toBe(2);
    });
  });

  describe('timeouts', () => {
    it('a first-token timeout before commit is a retryable 504, the same in both modes', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'hang', { timeouts: { firstTokenMs: 150, totalMs: 150 } })] }], { retries: { maxRetries: 0 } });
      const [plain, streamed] = await chatBoth(g.url, ask('chat'));
      expect(plain.status).toBe(504);
      expect(plain.error).toMatchObject({ code: 504, type: 'timeout' });
      expect(parityView(streamed)).toEqual(parityView(plain));
    });

    it('a connect timeout is a retryable 504: the next deployment answers, the same in both modes', async () => {
      const hole = await startBlackhole();
      try {
        const g = await gateway([
          { name: 'chat', deployments: [{ ...openai(mockA, 'normal', { id: 'unreachable', ...firstA }), baseUrl: `http://127.0.0.1:${hole.port}/v1`, timeouts: { connectMs: 150 } }, openai(mockB, 'normal', { id: 'b', ...thenB })] },
        ], { cooldown: { failureThreshold: 100 } });
        const started = Date.now();
        const [plain, streamed] = await chatBoth(g.url, ask('chat'));
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(plain.headers['x-gateway-attempt-log']).toBe('chat/unreachable:504:timeout, chat/b:200');
        expect(parityView(streamed)).toEqual(parityView(plain));
      } finally {
        hole.close();
      }
    });

    it('an idle timeout after commit ends the stream with the timeout frame and [DONE]', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'hang-after-first', { timeouts: { idleMs: 150 } })] }]);
      const res = await chat(g.url, ask('chat', { stream: true }));
      expect(res.status).toBe(200);
      expect(res.text.length).toBeGreaterThan(0);
      expect(res.error).toMatchObject({ code: 504, type: 'timeout' });
      expect(res.frames.at(-1)).toBe('[DONE]');
      expect(res.complete).toBe(true);
    });

    it('the total timeout bounds a slow stream', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'slow:100', { timeouts: { totalMs: 250 } })] }]);
      const res = await chat(g.url, ask('chat', { stream: true }));
      expect(res.error).toMatchObject({ type: 'timeout' });
    });
  });

  describe('cancellation', () => {
    it.each([true, false])('stream: %p — the upstream socket closes within 100 ms of the client leaving; usage recorded', async (stream) => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, stream ? 'slow:200' : 'hang')] }]);
      const res = await chat(g.url, ask('chat', { stream }), { abortAfterMs: 300 });
      expect(res.complete).toBe(false);
      const call = await mockA.waitForCall((c) => c.closedAt !== undefined, 2000);
      expect(call.clientAborted).toBe(true);
      expect(call.closedAt! - res.abortedAt!).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 20));
      const ctx = g.contexts[0]!;
      expect(ctx.attempts[0]!.outcome).toBe('aborted');
      if (stream) expect(ctx.usage).toMatchObject({ estimated: true });
    });
  });

  describe('strategies', () => {
    it('least-busy sends concurrent requests to different deployments', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'slow:100', { id: 'a' }), openai(mockB, 'slow:100', { id: 'b' })] }], { strategy: 'least-busy' });
      const results = await Promise.all([1, 2, 3, 4].map(() => chat(g.url, ask('chat'))));
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect([mockA.callCount(), mockB.callCount()]).toEqual([2, 2]);
    });

    it('lowest-latency prefers the faster deployment once measured', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'slow-headers:80', { id: 'slow' }), openai(mockB, 'normal', { id: 'fast' })] }], { strategy: 'lowest-latency' });
      for (let i = 0; i < 12; i++) await chat(g.url, ask('chat'));
      expect(mockA.callCount()).toBeLessThanOrEqual(2);
      expect(mockB.callCount()).toBeGreaterThanOrEqual(10);
    });

    it('weighted spreads by weight', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'normal', { weight: 3 }), openai(mockB, 'normal', { weight: 1 })] }]);
      for (let i = 0; i < 80; i++) await chat(g.url, ask('chat'));
      expect(mockA.callCount()).toBeGreaterThan(mockB.callCount());
      expect(mockB.callCount()).toBeGreaterThan(0);
    });

    it('a deployment over its rpm is skipped like one in cooldown', async () => {
      const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'normal', { id: 'a', rpm: 2, ...firstA }), openai(mockB, 'normal', { id: 'b', ...thenB })] }]);
      for (let i = 0; i < 4; i++) await chat(g.url, ask('chat'));
      expect([mockA.callCount(), mockB.callCount()]).toEqual([2, 2]);
    });
  });

  it('honours stream_options.include_usage, and records usage on the context either way', async () => {
    const g = await gateway([{ name: 'chat', deployments: [openai(mockA, 'normal')] }]);
    const without = await chat(g.url, ask('chat', { stream: true }));
    expect(without.usage).toBeUndefined();
    const withUsage = await chat(g.url, ask('chat', { stream: true, stream_options: { include_usage: true } }));
    expect(withUsage.usage).toMatchObject({ total_tokens: expect.any(Number) });
    expect(g.contexts[0]!.usage).toMatchObject({ total_tokens: expect.any(Number) });
  });

  it('routes to Anthropic with the same answer and errors in both modes', async () => {
    const g = await gateway([{ name: 'claude', deployments: [{ provider: 'anthropic', baseUrl: anthropic.url, model: 'echo', apiKey: 'k' }] }]);
    const [plain, streamed] = await chatBoth(g.url, ask('claude', { messages: [{ role: 'system', content: 'be nice' }, { role: 'user', content: 'repeat me' }] }));
    expect(plain.text).toBe('repeat me');
    expect(parityView(streamed)).toEqual(parityView(plain));
    const g2 = await gateway([{ name: 'claude', deployments: [{ provider: 'anthropic', baseUrl: anthropic.url, model: 'context-window', apiKey: 'k' }] }]);
    const [p2, s2] = await chatBoth(g2.url, ask('claude'));
    expect(p2.error).toMatchObject({ type: 'context_window_exceeded' });
    expect(parityView(s2)).toEqual(parityView(p2));
  });

  describe('configuration errors name the field', () => {
    it.each([
      [{ models: [] }, /'router.models'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'nope', model: 'm' }] }] }, /'router.models\[0\].deployments\[0\].provider'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'azure', model: 'm' }] }] }, /'router.models\[0\].deployments\[0\].baseUrl'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'openai' }] }] }, /'router.models\[0\].deployments\[0\].model'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'openai', model: 'm', weight: 0 }] }] }, /'router.models\[0\].deployments\[0\].weight'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'openai', model: 'm', apiKey: 'k' }] }, { name: 'x', deployments: [{ provider: 'openai', model: 'm', apiKey: 'k' }] }] }, /'router.models\[1\].name'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'openai', model: 'm' }] }], strategy: 'random' }, /'router.strategy'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'openai', model: 'm', timeouts: { idleMs: -1 } }] }] }, /'router.models\[0\].deployments\[0\].timeouts.idleMs'/],
      [{ models: [{ name: 'x', deployments: [{ provider: 'openai', model: 'm' }] }], retries: { retryOn: ['bad_request'] } }, /'router.retries.retryOn\[0\]'/],
    ])('%j', (options, field) => {
      expect(() => createRouter(options as never)).toThrow(GatewayConfigError);
      expect(() => createRouter(options as never)).toThrow(field);
    });
  });
});
