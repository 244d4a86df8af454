/**
 * The retry policy as clients see it, over real HTTP against the mock providers, in both modes:
 * `Retry-After` and `x-should-retry` on every final error kind, openai-node sending exactly one request on
 * a final 5xx, a silent deployment left at once for the fallback, a flapping single-deployment group
 * sending its traffic to the fallback while it cools down and back after, and the `ordered` strategy.
 */
import OpenAI from 'openai';
import { createGateway, GatewayConfigError, parseGatewayConfig, silentLogger, type Gateway, type GatewayOptions } from '../lib/index.js';
import { MemoryStore } from '../lib/store.js';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { chat, chatBoth, parityView, type ChatOutcome } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, type RunningServer } from './helpers/http.js';

let primary: MockServer;
let backup: MockServer;
const running: { server: RunningServer; gateway: Gateway }[] = [];

beforeAll(async () => {
  [primary, backup] = await Promise.all([startMockOpenAI({ name: 'primary' }), startMockOpenAI({ name: 'backup' })]);
});
afterAll(() => Promise.all([primary.close(), backup.close()]));
afterEach(async () => {
  for (const { server, gateway } of running.splice(0)) {
    await server.close();
    await gateway.close();
  }
  primary.reset();
  backup.reset();
});

const deployment = (server: MockServer, model: string, extra: Record<string, unknown> = {}) => ({ provider: 'openai' as const, baseUrl: `${server.url}/v1`, model, apiKey: 'sk-test', ...extra });
const ask = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [{ role: 'user', content: 'Hi there' }], ...extra });

interface Served {
  url: string;
  gateway: Gateway;
  /** Chat requests that reached the gateway (what a client library's retries add to). */
  requests(): number;
}

async function serve(options: Omit<GatewayOptions, 'logger'>): Promise<Served> {
  const gateway = createGateway({ logger: silentLogger, ...options });
  const app = createApp();
  let requests = 0;
  app.use((req, _res, next) => {
    if (req.method === 'POST' && req.path === '/v1/chat/completions') requests++;
    next();
  });
  app.use(gateway);
  const server = await listen(app);
  running.push({ server, gateway });
  return { url: server.url, gateway, requests: () => requests };
}

/** The two headers this file is about, as a client sees them. */
const advice = (res: ChatOutcome) => ({ retryAfter: res.headers['retry-after'], shouldRetry: res.headers['x-should-retry'] });

describe(`retry policy (Express ${EXPRESS_MAJOR})`, () => {
  describe('Retry-After and x-should-retry on each final error kind, the same in both modes', () => {
    it('429, every deployment cooling down: Retry-After = the first cooldown end, x-should-retry true (nothing was tried)', async () => {
      const store = new MemoryStore();
      const g = await serve({
        models: [{ name: 'pair', deployments: [deployment(primary, 'normal', { id: 'a' }), deployment(primary, 'normal', { id: 'b' })] }],
        store,
      });
      store.setCooldown('pair/a', Date.now() + 20_000);
      store.setCooldown('pair/b', Date.now() + 40_000);
      const [plain, streamed] = await chatBoth(g.url, ask('pair'));
      expect(plain.status).toBe(429);
      expect(plain.error).toMatchObject({ code: 429, type: 'rate_limit_exceeded' });
      expect(Number(plain.headers['retry-after'])).toBeGreaterThanOrEqual(19);
      expect(Number(plain.headers['retry-after'])).toBeLessThanOrEqual(20);
      expect(plain.headers['x-should-retry']).toBe('true');
      // Before commit, a stream's failure is a JSON answer: the headers reach the client the same way.
      expect(streamed.headers['content-type']).toMatch(/^application\/json/);
      expect(advice(streamed)).toEqual(advice(plain));
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(primary.callCount()).toBe(0);
    });

    it("429 from the upstream after the gateway's attempts: the upstream's Retry-After, x-should-retry false", async () => {
      const g = await serve({ models: [{ name: 'solo', deployments: [deployment(primary, 'rate-limit:7')] }], router: { retries: { maxRetries: 0 } } });
      const [plain, streamed] = await chatBoth(g.url, ask('solo'));
      expect(plain.status).toBe(429);
      expect(advice(plain)).toEqual({ retryAfter: '7', shouldRetry: 'false' });
      expect(advice(streamed)).toEqual(advice(plain));
      expect(parityView(streamed)).toEqual(parityView(plain));
    });

    it('503 on a drain: Retry-After 1, x-should-retry true, Connection: close, and no fallback is started', async () => {
      const g = await serve({
        models: [{ name: 'main', deployments: [deployment(primary, 'normal')] }, { name: 'backup', deployments: [deployment(backup, 'normal')] }],
        fallbacks: { general: { main: ['backup'] } },
      });
      await g.gateway.drain(1_000);
      const [plain, streamed] = await chatBoth(g.url, ask('main'));
      expect(plain.status).toBe(503);
      expect(plain.error).toMatchObject({ type: 'service_unavailable' });
      expect(advice(plain)).toEqual({ retryAfter: '1', shouldRetry: 'true' });
      expect(plain.headers['connection']).toBe('close');
      expect(advice(streamed)).toEqual(advice(plain));
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect([primary.callCount(), backup.callCount()]).toEqual([0, 0]);
    });

    it('502 after retries and fallbacks are exhausted: x-should-retry false, no Retry-After', async () => {
      const g = await serve({
        models: [
          { name: 'main', deployments: [deployment(primary, 'error-500')] },
          { name: 'backup', deployments: [deployment(backup, 'error-500')] },
        ],
        router: { retries: { maxRetries: 1, backoff: { initialMs: 1, maxMs: 2 } }, cooldown: { failureThreshold: 100 } },
        fallbacks: { general: { main: ['backup'] } },
      });
      const [plain, streamed] = await chatBoth(g.url, ask('main'));
      expect(plain.status).toBe(502);
      expect(plain.headers['x-gateway-attempts']).toBe('4');
      expect(advice(plain)).toEqual({ retryAfter: undefined, shouldRetry: 'false' });
      expect(advice(streamed)).toEqual(advice(plain));
      expect(parityView(streamed)).toEqual(parityView(plain));
    });

    it.each([
      ['an upstream 400', { model: 'main' }, 400, 'invalid_request_error'],
      ['a content-policy 400', { model: 'policy' }, 400, 'content_policy_violation'],
      ['a request the gateway refuses (no upstream call)', { model: 'main', temperature: 'hot' }, 400, 'invalid_request_error'],
      ['an unknown model', { model: 'nope' }, 404, 'not_found_error'],
    ])('a deterministic failure, %s: x-should-retry false, no Retry-After', async (_name, body, status, type) => {
      const g = await serve({
        models: [{ name: 'main', deployments: [deployment(primary, 'bad-request')] }, { name: 'policy', deployments: [deployment(primary, 'content-policy')] }],
      });
      const [plain, streamed] = await chatBoth(g.url, { messages: [{ role: 'user', content: 'Hi there' }], ...body });
      expect(plain.status).toBe(status);
      expect(plain.error?.['type']).toBe(type);
      expect(advice(plain)).toEqual({ retryAfter: undefined, shouldRetry: 'false' });
      expect(advice(streamed)).toEqual(advice(plain));
      expect(parityView(streamed)).toEqual(parityView(plain));
    });

    it('504 after a timeout: x-should-retry false, no Retry-After', async () => {
      const g = await serve({ models: [{ name: 'main', deployments: [deployment(primary, 'hang', { timeouts: { firstTokenMs: 200, totalMs: 200 } })] }] });
      const [plain, streamed] = await chatBoth(g.url, ask('main'));
      expect(plain.status).toBe(504);
      expect(advice(plain)).toEqual({ retryAfter: undefined, shouldRetry: 'false' });
      expect(advice(streamed)).toEqual(advice(plain));
      expect(parityView(streamed)).toEqual(parityView(plain));
      // Not retried on the silent deployment (one call per mode), though two retries were allowed.
      expect(primary.callCount()).toBe(2);
    });

    it('after commit there are no headers: the mid-stream error frame keeps the one error shape', async () => {
      const g = await serve({ models: [{ name: 'main', deployments: [deployment(primary, 'midstream-error')] }] });
      const res = await chat(g.url, ask('main', { stream: true }));
      expect(res.status).toBe(200);
      expect(res.headers['x-should-retry']).toBeUndefined();
      expect(res.error).toEqual({ message: expect.any(String), code: 502, type: 'upstream_error' });
      expect(res.frames.at(-1)).toBe('[DONE]');
    });
  });

  describe('openai-node makes exactly one request on a final 5xx', () => {
    it.each([false, true])('stream: %s', async (stream) => {
      const g = await serve({
        models: [{ name: 'main', deployments: [deployment(primary, 'error-500')] }, { name: 'backup', deployments: [deployment(backup, 'error-500')] }],
        router: { retries: { maxRetries: 1, backoff: { initialMs: 1, maxMs: 2 } }, cooldown: { failureThreshold: 100 } },
        fallbacks: { general: { main: ['backup'] } },
      });
      // maxRetries 2 is openai-node's default, spelled out: without the header it would send 3 requests.
      const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'sk-client', maxRetries: 2 });
      const call = stream
        ? client.chat.completions.create({ model: 'main', messages: [{ role: 'user', content: 'Hi' }], stream: true })
        : client.chat.completions.create({ model: 'main', messages: [{ role: 'user', content: 'Hi' }] });
      const error = await call.then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
      expect(g.requests()).toBe(1);
      expect([primary.callCount(), backup.callCount()]).toEqual([2, 2]);
    });

    it('and retries a drain, which another instance can answer (x-should-retry true)', async () => {
      const g = await serve({ models: [{ name: 'main', deployments: [deployment(primary, 'normal')] }] });
      await g.gateway.drain(1_000);
      const client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'sk-client', maxRetries: 1 });
      await expect(client.chat.completions.create({ model: 'main', messages: [{ role: 'user', content: 'Hi' }] })).rejects.toMatchObject({ status: 503 });
      expect(g.requests()).toBe(2);
    });
  });

  describe('smarter retries', () => {
    it('a silent primary falls back at once: total time ≈ one first-token timeout, in both modes', async () => {
      const g = await serve({
        models: [
          // Without streaming there is no first token: the total timeout is the matching bound there.
          { name: 'main', deployments: [deployment(primary, 'hang', { timeouts: { firstTokenMs: 500, totalMs: 600 } })] },
          { name: 'backup', deployments: [deployment(backup, 'normal')] },
        ],
        router: { retries: { maxRetries: 2 } },
        fallbacks: { general: { main: ['backup'] } },
      });
      const timed = async (stream: boolean): Promise<[ChatOutcome, number]> => {
        const started = Date.now();
        const res = await chat(g.url, ask('main', { stream }));
        return [res, Date.now() - started];
      };
      const [plain, plainMs] = await timed(false);
      const [streamed, streamedMs] = await timed(true);
      expect(plain.status).toBe(200);
      expect(plain.text).toBe('Hello! This is a mock answer from backup.');
      expect(plain.headers['x-gateway-attempt-log']).toBe('main/openai/hang:504:timeout, backup/openai/normal:200');
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(streamedMs).toBeGreaterThanOrEqual(450);
      expect(streamedMs).toBeLessThan(1_500);
      expect(plainMs).toBeLessThan(1_500);
      expect(primary.callCount()).toBe(2); // once per mode
    });

    it('a timeout moves on to another deployment of the group; retryTimeoutsOnSameDeployment brings back the old behaviour', async () => {
      const silent = { timeouts: { firstTokenMs: 150, totalMs: 150 } };
      const g = await serve({
        models: [{ name: 'pair', deployments: [deployment(primary, 'hang', { id: 'a', ...silent }), deployment(backup, 'normal', { id: 'b' })] }],
        router: { strategy: 'ordered', retries: { maxRetries: 2 }, cooldown: { failureThreshold: 100 } },
      });
      const [plain, streamed] = await chatBoth(g.url, ask('pair'));
      expect(plain.headers['x-gateway-attempt-log']).toBe('pair/a:504:timeout, pair/b:200');
      expect(parityView(streamed)).toEqual(parityView(plain));

      const old = await serve({
        models: [{ name: 'solo', deployments: [deployment(primary, 'hang', { id: 'a', ...silent })] }],
        router: { retries: { maxRetries: 2, retryTimeoutsOnSameDeployment: true, backoff: { initialMs: 1, maxMs: 2 } }, cooldown: { failureThreshold: 100 } },
      });
      primary.reset();
      const [p2, s2] = await chatBoth(old.url, ask('solo'));
      expect(p2.headers['x-gateway-attempts']).toBe('3');
      expect(parityView(s2)).toEqual(parityView(p2));
      expect(primary.callCount()).toBe(6);
    });

    it('a refused connection is still retried with backoff on the same deployment', async () => {
      const closed = await listen(createApp());
      const url = closed.url;
      await closed.close(); // nothing listens there any more: connections are refused
      const g = await serve({
        models: [{ name: 'solo', deployments: [{ ...deployment(primary, 'normal', { id: 'gone' }), baseUrl: `${url}/v1` }] }],
        router: { retries: { maxRetries: 2, backoff: { initialMs: 1, maxMs: 2 } }, cooldown: { failureThreshold: 100 } },
      });
      const [plain, streamed] = await chatBoth(g.url, ask('solo'));
      expect(plain.status).toBe(502);
      expect(plain.error).toMatchObject({ type: 'connection_error' });
      expect(plain.headers['x-gateway-attempts']).toBe('3');
      expect(parityView(streamed)).toEqual(parityView(plain));
    });

    it('a flapping single-deployment primary: traffic goes to the fallback while it cools down, and back after', async () => {
      const cooldownMs = 800;
      /** One mode's run of the outage: which group answered each request, and how often the primary was called. */
      const run = async (stream: boolean): Promise<[string, number][]> => {
        primary.setScenario('flappy', 'normal');
        const g = await serve({
          models: [{ name: 'main', deployments: [deployment(primary, 'flappy')] }, { name: 'backup', deployments: [deployment(backup, 'normal')] }],
          router: { retries: { maxRetries: 2, backoff: { initialMs: 1, maxMs: 2 } }, cooldown: { failureThreshold: 1, durationMs: cooldownMs } },
          fallbacks: { general: { main: ['backup'] } },
        });
        const trace: [string, number][] = [];
        const step = async (): Promise<void> => {
          const before = primary.callCount('flappy');
          const res = await chat(g.url, ask('main', { stream }));
          expect(res.status).toBe(200);
          trace.push([String(res.headers['x-gateway-model-group']), primary.callCount('flappy') - before]);
        };
        await step(); // healthy
        primary.setScenario('flappy', 'error-500');
        const outage = Date.now();
        await step(); // fails once, cools down, falls back (no retry on the cooling primary)
        for (let i = 0; i < 5; i++) await step(); // cooling: the primary is not called at all
        primary.setScenario('flappy', 'normal');
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, outage + cooldownMs + 50 - Date.now())));
        await step(); // the cooldown is over: back to the primary
        await step();
        return trace;
      };
      const plain = await run(false);
      const streamed = await run(true);
      expect(plain).toEqual([
        ['main', 1],
        ['backup', 1],
        ['backup', 0],
        ['backup', 0],
        ['backup', 0],
        ['backup', 0],
        ['backup', 0],
        ['main', 1],
        ['main', 1],
      ]);
      expect(streamed).toEqual(plain);
    });

    it('without a fallback, a cooling single-deployment group is still tried: nothing else is left', async () => {
      const g = await serve({
        models: [{ name: 'solo', deployments: [deployment(primary, 'error-500')] }],
        router: { retries: { maxRetries: 0 }, cooldown: { failureThreshold: 1, durationMs: 60_000 } },
      });
      const [plain, streamed] = await chatBoth(g.url, ask('solo'));
      expect(plain.status).toBe(502);
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(primary.callCount()).toBe(2);
    });

    it('fallbacks disabled by header: the cooling group is tried as the last resort', async () => {
      const g = await serve({
        models: [{ name: 'main', deployments: [deployment(primary, 'error-500')] }, { name: 'backup', deployments: [deployment(backup, 'normal')] }],
        router: { retries: { maxRetries: 0 }, cooldown: { failureThreshold: 1, durationMs: 60_000 } },
        fallbacks: { general: { main: ['backup'] } },
      });
      await chat(g.url, ask('main')); // cools main down, answered by backup
      const headers = { 'x-gateway-disable-fallbacks': 'true' };
      const [plain, streamed] = await Promise.all([chat(g.url, ask('main'), { headers }), chat(g.url, ask('main', { stream: true }), { headers })]);
      expect(plain.status).toBe(502);
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(primary.callCount()).toBe(3);
    });
  });

  describe("router.strategy: 'ordered'", () => {
    it('picks the first healthy deployment in the order given, in both modes', async () => {
      const store = new MemoryStore();
      const g = await serve({
        models: [{ name: 'chain', deployments: [deployment(primary, 'normal', { id: 'first' }), deployment(primary, 'normal', { id: 'second' }), deployment(backup, 'normal', { id: 'third' })] }],
        router: { strategy: 'ordered' },
        store,
      });
      for (let i = 0; i < 3; i++) {
        const [plain, streamed] = await chatBoth(g.url, ask('chain'));
        expect(plain.headers['x-gateway-deployment']).toBe('first');
        expect(parityView(streamed)).toEqual(parityView(plain));
      }
      store.setCooldown('chain/first', Date.now() + 60_000);
      const [plain, streamed] = await chatBoth(g.url, ask('chain'));
      expect(plain.headers['x-gateway-deployment']).toBe('second');
      expect(parityView(streamed)).toEqual(parityView(plain));
    });

    it('a failing first deployment hands over to the next one in order', async () => {
      const g = await serve({
        models: [{ name: 'chain', deployments: [deployment(primary, 'error-500', { id: 'first' }), deployment(primary, 'normal', { id: 'second' }), deployment(backup, 'normal', { id: 'third' })] }],
        router: { strategy: 'ordered', cooldown: { failureThreshold: 100 } },
      });
      const [plain, streamed] = await chatBoth(g.url, ask('chain'));
      expect(plain.headers['x-gateway-attempt-log']).toBe('chain/first:502:upstream_error, chain/second:200');
      expect(parityView(streamed)).toEqual(parityView(plain));
    });

    it('is accepted by the config file; an unknown strategy or retry option fails naming the field', () => {
      const yaml = (router: string) => `models:\n  - name: m\n    deployments:\n      - { provider: openai, model: x, apiKey: k }\nrouter:\n${router}`;
      expect(parseGatewayConfig(yaml('  strategy: ordered\n  retries: { retryTimeoutsOnSameDeployment: true }\n'), 'yaml').router).toEqual({
        strategy: 'ordered',
        retries: { retryTimeoutsOnSameDeployment: true },
      });
      expect(() => parseGatewayConfig(yaml('  strategy: priority\n'), 'yaml')).toThrow(GatewayConfigError);
      expect(() => parseGatewayConfig(yaml('  strategy: priority\n'), 'yaml')).toThrow(/router\.strategy/);
      expect(() => createGateway({ models: [{ name: 'm', deployments: [deployment(primary, 'x')] }], router: { retries: { retryTimeoutsOnSameDeployment: 'yes' as unknown as boolean } }, logger: silentLogger })).toThrow(
        /router\.retries\.retryTimeoutsOnSameDeployment/,
      );
    });
  });

  describe('fallbacks.generalForSpecific defaults to false', () => {
    it('a content-policy refusal follows only its own list; generalForSpecific: true restores the general list for it', async () => {
      const models = [{ name: 'main', deployments: [deployment(primary, 'content-policy')] }, { name: 'backup', deployments: [deployment(backup, 'normal')] }];
      const strict = await serve({ models, fallbacks: { general: { main: ['backup'] } } });
      const [plain, streamed] = await chatBoth(strict.url, ask('main'));
      expect(plain.status).toBe(400);
      expect(plain.error?.['type']).toBe('content_policy_violation');
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(backup.callCount()).toBe(0);
      const litellm = await serve({ models, fallbacks: { general: { main: ['backup'] }, generalForSpecific: true } });
      const [p2, s2] = await chatBoth(litellm.url, ask('main'));
      expect(p2.headers['x-gateway-model-group']).toBe('backup');
      expect(parityView(s2)).toEqual(parityView(p2));
    });
  });
});
