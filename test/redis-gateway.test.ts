import Redis from 'ioredis';
import { silentLogger, type Logger } from '../lib/index.js';
import { RedisStore } from '../lib/redis.js';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import type { RouterOptions } from '../lib/router-config.js';
import { chat, chatBoth, parityView } from './helpers/chat.js';
import { startGateway, type TestGateway } from './helpers/gateway.js';
import { describeWithRedis, startRedisServer, type RedisServer } from './helpers/redis.js';

/**
 * Two gateway instances (two apps, two ioredis clients, one real redis-server), as behind a load
 * balancer: what one learns about a deployment, the other acts on.
 */
describeWithRedis('several instances sharing Redis', () => {
  let redis: RedisServer;
  let limited: MockServer;
  let healthy: MockServer;
  const clients: Redis[] = [];
  const gateways: TestGateway[] = [];

  beforeAll(async () => {
    [redis, limited, healthy] = await Promise.all([startRedisServer(), startMockOpenAI({ name: 'limited' }), startMockOpenAI({ name: 'healthy' })]);
  });
  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    clients.forEach((c) => c.disconnect());
    await Promise.all([redis.stop(), limited.close(), healthy.close()]);
  });

  async function instance(options: Partial<RouterOptions> = {}, logger: Logger = silentLogger): Promise<TestGateway> {
    const client = new Redis({ port: redis.port, host: '127.0.0.1', enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false });
    client.on('error', () => {});
    await new Promise<void>((resolve) => (client.status === 'ready' ? resolve() : client.once('ready', () => resolve())));
    clients.push(client);
    const gateway = await startGateway({
      models: [
        {
          name: 'chat',
          deployments: [
            // `a` goes first (a one-in-a-billion chance otherwise) unless it is cooling down.
            { id: 'a', provider: 'openai', baseUrl: `${limited.url}/v1`, model: 'rate-limit:30', apiKey: 'k', weight: 1 },
            { id: 'b', provider: 'openai', baseUrl: `${healthy.url}/v1`, model: 'normal', apiKey: 'k', weight: 1e-9 },
          ],
        },
      ],
      store: new RedisStore({ client, logger, prefix: 'test-shared:' }),
      retries: { maxRetries: 1, backoff: { initialMs: 1, maxMs: 2 } },
      ...options,
    });
    gateways.push(gateway);
    return gateway;
  }

  it('a 429 on instance A puts the deployment in cooldown for instance B, in both modes', async () => {
    const a = await instance();
    const b = await instance();
    const first = await chat(a.url, { model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
    expect(first.status).toBe(200);
    expect(first.headers['x-gateway-attempt-log']).toBe('chat/a:429:rate_limit_exceeded, chat/b:200');
    expect(limited.callCount()).toBe(1);
    const [plain, streamed] = await chatBoth(b.url, { model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
    expect(plain.headers['x-gateway-attempt-log']).toBe('chat/b:200');
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(limited.callCount()).toBe(1); // instance B never called the cooled-down deployment
  });

  it('an rpm limit is enforced across instances: requests on A count against B', async () => {
    const shared = { weight: 1 };
    const models = [
      {
        name: 'limited',
        deployments: [
          { id: 'capped', provider: 'openai' as const, baseUrl: `${healthy.url}/v1`, model: 'normal', apiKey: 'k', rpm: 3, ...shared },
          { id: 'spare', provider: 'openai' as const, baseUrl: `${limited.url}/v1`, model: 'normal', apiKey: 'k', weight: 1e-9 },
        ],
      },
    ];
    const a = await instance({ models });
    const b = await instance({ models });
    const ask = { model: 'limited', messages: [{ role: 'user', content: 'hi' }] };
    const onA = await Promise.all([chat(a.url, ask), chat(a.url, ask), chat(a.url, { ...ask, stream: true })]);
    expect(onA.map((r) => r.headers['x-gateway-deployment'])).toEqual(['capped', 'capped', 'capped']);
    const onB = await chatBoth(b.url, ask);
    expect(onB.map((r) => r.headers['x-gateway-deployment'])).toEqual(['spare', 'spare']);
  });

  it('Redis killed mid-test: no request fails (streamed or not), and the outage is logged once', async () => {
    const warnings: object[] = [];
    const logger: Logger = { ...silentLogger, warn: (o) => warnings.push(o) };
    const a = await instance({}, logger);
    await redis.kill();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => chat(a.url, { model: 'chat', stream: i % 2 === 0, messages: [{ role: 'user', content: 'hi' }] })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(results.every((r) => r.error === undefined)).toBe(true);
    expect(warnings.length).toBe(1);
    await redis.restart();
  });
});
