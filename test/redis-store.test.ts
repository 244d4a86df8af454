/**
 * RedisStore on a real redis-server: options, the data layout and its TTLs, two instances (two clients)
 * sharing state, and outages: Redis slow or killed must cost a request at most `timeoutMs`, and the store
 * must use Redis again once ioredis has reconnected. The Store semantics themselves are in
 * store-contract.test.ts.
 */
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { Redis, type Cluster, type RedisOptions } from 'ioredis';
import { GatewayConfigError } from '../lib/options.js';
import { RedisStore, type RedisStoreOptions } from '../lib/redis-store.js';
import { describeWithRedis, startRedisServer, type RedisServer } from './helpers/redis.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function recordingLogger(): { debug: jest.Mock; info: jest.Mock; warn: jest.Mock; error: jest.Mock } {
  return { debug: jest.fn(), info: jest.fn(), warn: jest.fn(), error: jest.fn() };
}

/** The client options the RedisStore docs recommend, with a short reconnect delay to keep tests fast. */
function recommendedClient(port: number, overrides: RedisOptions = {}): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => 50,
    ...overrides,
  });
  // Connection errors during the outage tests are expected; ioredis would print them otherwise.
  client.on('error', () => {});
  return client;
}

async function ready(client: Redis): Promise<void> {
  if (client.status !== 'ready') await once(client, 'ready');
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

describe('RedisStore options', () => {
  const fakeClient = { isCluster: false, options: {} } as unknown as Redis;

  it('requires a client', () => {
    expect(() => new RedisStore({} as RedisStoreOptions)).toThrow(GatewayConfigError);
    expect(() => new RedisStore({} as RedisStoreOptions)).toThrow("'redisStore.client'");
  });

  it('rejects a timeout that is not positive, and unknown options', () => {
    expect(() => new RedisStore({ client: fakeClient, timeoutMs: 0 })).toThrow("'redisStore.timeoutMs'");
    expect(() => new RedisStore({ client: fakeClient, prefx: 'x' } as RedisStoreOptions)).toThrow("'redisStore.prefx'");
  });

  it('recommends client options that time commands out with the store and drop a silent connection', () => {
    expect(RedisStore.clientOptions()).toEqual({ enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 50, socketTimeout: 1_000 });
    expect(RedisStore.clientOptions(250)).toEqual({ enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 250, socketTimeout: 5_000 });
  });

  it('asks for a hash tag in the prefix with a Redis Cluster', () => {
    const cluster = { isCluster: true, options: {} } as unknown as Cluster;
    expect(() => new RedisStore({ client: cluster })).toThrow("put a hash tag in the prefix (e.g. '{llm-gateway}:')");
    expect(() => new RedisStore({ client: cluster, prefix: '{}gw:' })).toThrow(GatewayConfigError);
    expect(() => new RedisStore({ client: cluster, prefix: '{gw}:' })).not.toThrow();
    const tagged = { isCluster: true, options: { keyPrefix: '{app}:' } } as unknown as Cluster;
    expect(() => new RedisStore({ client: tagged })).not.toThrow();
  });
});

describeWithRedis('RedisStore on a real Redis', () => {
  let server: RedisServer;
  let admin: Redis;
  let clientA: Redis;
  let clientB: Redis;
  let prefix: string;
  /** Two gateway instances: their own client each, the same prefix. */
  let a: RedisStore;
  let b: RedisStore;

  beforeAll(async () => {
    server = await startRedisServer();
    admin = recommendedClient(server.port);
    clientA = recommendedClient(server.port);
    clientB = recommendedClient(server.port);
    await Promise.all([admin.connect(), clientA.connect(), clientB.connect()]);
  });

  afterAll(async () => {
    for (const client of [admin, clientA, clientB]) client.disconnect();
    await server.stop();
  });

  beforeEach(() => {
    prefix = `test:${randomUUID()}:`;
    // A generous timeout: these tests are about what lands in Redis, which a loaded machine must not turn
    // into a fallback to local state.
    a = new RedisStore({ client: clientA, prefix, timeoutMs: 5_000, logger: recordingLogger() });
    b = new RedisStore({ client: clientB, prefix, timeoutMs: 5_000, logger: recordingLogger() });
  });

  describe('data layout', () => {
    it('keeps a cooldown as its deadline under <prefix>cooldown:<group/id>, expiring at the deadline', async () => {
      const until = Date.now() + 10_000;
      await a.setCooldown('gpt/east', until);
      const key = `${prefix}cooldown:gpt/east`;
      expect(await admin.get(key)).toBe(String(until));
      const ttl = await admin.pttl(key);
      expect(ttl).toBeGreaterThan(9_000);
      expect(ttl).toBeLessThanOrEqual(10_000);
    });

    it('keeps failures in a sorted set scored by time, expiring one window after the last', async () => {
      const now = Date.now();
      await a.recordFailure('gpt/east', 30_000, now);
      await b.recordFailure('gpt/east', 30_000, now);
      const key = `${prefix}failures:gpt/east`;
      expect(await admin.type(key)).toBe('zset');
      expect(await admin.zrange(key, 0, -1, 'WITHSCORES')).toEqual([
        expect.stringMatching(new RegExp(`^${now}:`)),
        String(now),
        expect.stringMatching(new RegExp(`^${now}:`)),
        String(now),
      ]);
      expect(await admin.pttl(key)).toBeGreaterThan(29_000);
    });

    it('keeps the latency average in a string for 24 hours', async () => {
      await a.recordLatency('gpt/east', 120);
      const key = `${prefix}latency:gpt/east`;
      expect(await admin.get(key)).toBe('120');
      expect(await admin.pttl(key)).toBeGreaterThan(23 * 3_600_000);
    });

    it('counts usage per minute in two integer counters that outlive their minute by one', async () => {
      const now = Date.now();
      const minute = Math.floor(now / 60_000);
      await a.addUsage('gpt/east', 1, 0, now);
      await a.addUsage('gpt/east', 0, 250, now);
      const requestsKey = `${prefix}usage:gpt/east:${minute}:requests`;
      const tokensKey = `${prefix}usage:gpt/east:${minute}:tokens`;
      expect(await admin.mget(requestsKey, tokensKey)).toEqual(['1', '250']);
      expect(await admin.pttl(requestsKey)).toBeGreaterThan(110_000);
      expect(await admin.pttl(requestsKey)).toBeLessThanOrEqual(120_000);
    });

    it('creates no key for a zero add, nor for a deadline already passed', async () => {
      await a.addUsage('gpt/east', 1, 0, Date.now());
      await a.setCooldown('gpt/east', Date.now() - 10);
      expect((await admin.keys(`${prefix}*`)).sort()).toEqual([expect.stringMatching(/:requests$/)]);
    });

    it('lets Redis expire cooldowns and failures on their own', async () => {
      await a.setCooldown('gpt/east', Date.now() + 400);
      await a.recordFailure('gpt/east', 400, Date.now());
      expect(await admin.exists(`${prefix}cooldown:gpt/east`, `${prefix}failures:gpt/east`)).toBe(2);
      await sleep(600);
      expect(await admin.exists(`${prefix}cooldown:gpt/east`, `${prefix}failures:gpt/east`)).toBe(0);
    });
  });

  describe('two instances', () => {
    it('share cooldowns: a 429 seen by one cools the deployment down for the other', async () => {
      const until = Date.now() + 5_000;
      await a.setCooldown('gpt/east', until);
      expect(await b.getCooldowns(['gpt/west', 'gpt/east'], Date.now())).toEqual([undefined, until]);
    });

    it('extend a cooldown only to a later deadline, whichever instance sets it', async () => {
      const now = Date.now();
      await a.setCooldown('gpt/east', now + 2_000);
      await b.setCooldown('gpt/east', now + 6_000);
      await a.setCooldown('gpt/east', now + 4_000);
      expect(await a.getCooldowns(['gpt/east'], now)).toEqual([now + 6_000]);
      expect(await admin.pttl(`${prefix}cooldown:gpt/east`)).toBeGreaterThan(5_000);
    });

    it('keep the latest deadline when both set cooldowns at once', async () => {
      const now = Date.now();
      const deadlines = Array.from({ length: 40 }, (_, i) => now + 1_000 + ((i * 7919) % 40) * 100);
      await Promise.all(deadlines.map((until, i) => (i % 2 === 0 ? a : b).setCooldown('gpt/east', until)));
      const latest = Math.max(...deadlines);
      expect(await admin.get(`${prefix}cooldown:gpt/east`)).toBe(String(latest));
    });

    it('count failures together', async () => {
      const now = Date.now();
      expect(await a.recordFailure('gpt/east', 10_000, now)).toBe(1);
      expect(await b.recordFailure('gpt/east', 10_000, now)).toBe(2);
      const counts = await Promise.all([a.recordFailure('gpt/east', 10_000, now + 1), b.recordFailure('gpt/east', 10_000, now + 1)]);
      expect(counts.sort()).toEqual([3, 4]);
      await b.resetFailures('gpt/east');
      expect(await a.recordFailure('gpt/east', 10_000, now + 2)).toBe(1);
    });

    it('add up usage', async () => {
      const now = Date.now();
      await a.addUsage('gpt/east', 1, 0, now);
      await b.addUsage('gpt/east', 1, 0, now);
      await b.addUsage('gpt/east', 0, 40, now);
      const expected = [{ requests: 2, tokens: 40 }];
      expect(await a.getUsage(['gpt/east'], now)).toEqual(expected);
      expect(await b.getUsage(['gpt/east'], now)).toEqual(expected);
    });

    it('share one latency average', async () => {
      await a.recordLatency('gpt/east', 100);
      await b.recordLatency('gpt/east', 200);
      const [fromA] = await a.getLatencies(['gpt/east']);
      const [fromB] = await b.getLatencies(['gpt/east']);
      expect(fromA).toBeCloseTo(130, 9);
      expect(fromB).toBeCloseTo(130, 9);
    });

    it('share nothing across prefixes', async () => {
      const other = new RedisStore({ client: clientB, prefix: `${prefix}other:`, timeoutMs: 5_000, logger: recordingLogger() });
      await a.setCooldown('gpt/east', Date.now() + 5_000);
      expect(await other.getCooldowns(['gpt/east'], Date.now())).toEqual([undefined]);
    });
  });
});

describeWithRedis('RedisStore when Redis is slow or down', () => {
  /** Larger than the 50 ms default, so a loaded CI machine does not time out the commands meant to succeed. */
  const timeoutMs = 250;
  /** The timeout plus room for a loaded machine; without the bound, the calls would wait for the pause or the restart. */
  const bound = timeoutMs + 250;
  let server: RedisServer;
  let admin: Redis;
  let failFast: Redis;
  let queueing: Redis;
  let loggerA: ReturnType<typeof recordingLogger>;
  let loggerB: ReturnType<typeof recordingLogger>;
  /** Instance A's client fails commands at once while disconnected; B's queues them (the ioredis default). */
  let a: RedisStore;
  let b: RedisStore;

  beforeAll(async () => {
    server = await startRedisServer();
    admin = recommendedClient(server.port);
    failFast = recommendedClient(server.port);
    queueing = recommendedClient(server.port, { enableOfflineQueue: true, maxRetriesPerRequest: 20 });
    await Promise.all([admin.connect(), failFast.connect(), queueing.connect()]);
  });

  afterAll(async () => {
    for (const client of [admin, failFast, queueing]) client.disconnect();
    await server.stop();
  });

  beforeEach(() => {
    const prefix = `test:${randomUUID()}:`;
    loggerA = recordingLogger();
    loggerB = recordingLogger();
    a = new RedisStore({ client: failFast, prefix, timeoutMs, logger: loggerA });
    b = new RedisStore({ client: queueing, prefix, timeoutMs, logger: loggerB });
  });

  it('answers from local state within timeoutMs while Redis is slow, warns once, and says when it recovers', async () => {
    const until = Date.now() + 10_000;
    await a.setCooldown('gpt/east', until);
    // Redis holds every client's commands for 1.5 s: connected, but not answering.
    await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');

    const fromA = await timed(() => a.getCooldowns(['gpt/east'], Date.now()));
    expect(fromA.value).toEqual([until]);
    expect(fromA.ms).toBeLessThan(bound);
    // B never saw the cooldown itself, and cannot reach the shared one in time.
    const fromB = await timed(() => b.getCooldowns(['gpt/east'], Date.now()));
    expect(fromB.value).toEqual([undefined]);
    expect(fromB.ms).toBeLessThan(bound);
    const write = await timed(() => a.recordFailure('gpt/east', 10_000, Date.now()));
    expect(write.value).toBe(1);
    expect(write.ms).toBeLessThan(bound);
    expect(loggerA.warn).toHaveBeenCalledTimes(1);
    expect(loggerA.warn).toHaveBeenCalledWith({ err: `Redis did not answer within ${timeoutMs} ms` }, expect.stringContaining('unavailable'));

    await sleep(1_600);
    expect(await b.getCooldowns(['gpt/east'], Date.now())).toEqual([until]);
    // Recovery is a warn too: the default console logger drops info, and operators must see both.
    expect(loggerB.warn).toHaveBeenCalledTimes(2);
    expect(loggerB.warn).toHaveBeenLastCalledWith({}, expect.stringContaining('answers again'));
    expect(loggerB.info).not.toHaveBeenCalled();
  });

  it('keeps working on local state while Redis is down, and shares again once ioredis has reconnected', async () => {
    const before = Date.now() + 10_000;
    await a.setCooldown('gpt/east', before);
    expect(await b.getCooldowns(['gpt/east'], Date.now())).toEqual([before]);

    await server.kill();
    try {
      const during = Date.now() + 20_000;
      // One instant for usage writes and reads: usage windows are wall-clock minutes, and a write at :59.9
      // read at :00.0 would (rightly) read an empty window.
      const now = Date.now();
      for (const store of [a, b]) {
        const calls = await timed(() =>
          Promise.all([
            store.setCooldown('gpt/west', during),
            store.recordFailure('gpt/north', 10_000, Date.now()),
            store.resetFailures('gpt/south'),
            store.recordLatency('gpt/west', 80),
            store.addUsage('gpt/west', 1, 10, now),
          ]),
        );
        expect(calls.value[1]).toBe(1);
        expect(calls.ms).toBeLessThan(bound);
        const reads = await timed(async () => ({
          cooldowns: await store.getCooldowns(['gpt/west'], Date.now()),
          usage: await store.getUsage(['gpt/west'], now),
          latencies: await store.getLatencies(['gpt/west']),
        }));
        expect(reads.value).toEqual({ cooldowns: [during], usage: [{ requests: 1, tokens: 10 }], latencies: [80] });
        // Three reads in a row, each bounded by the timeout: what a request pays at most while Redis is down.
        expect(reads.ms).toBeLessThan(3 * bound);
      }
      // A set its cooldown on gpt/east itself before the outage; that stays in force for A.
      expect(await a.getCooldowns(['gpt/east'], Date.now())).toEqual([before]);
      expect(await b.getCooldowns(['gpt/east'], Date.now())).toEqual([undefined]);
      expect(loggerA.warn).toHaveBeenCalledTimes(1);
      expect(loggerB.warn).toHaveBeenCalledTimes(1);
      expect(loggerA.info).not.toHaveBeenCalled();
    } finally {
      await server.restart();
    }

    await Promise.all([ready(failFast), ready(queueing)]);
    // The restarted Redis is empty (and knows none of the scripts): shared state starts over.
    const after = Date.now() + 30_000;
    await a.setCooldown('gpt/north', after);
    expect(await b.getCooldowns(['gpt/north'], Date.now())).toEqual([after]);
    const now = Date.now();
    await b.addUsage('gpt/north', 2, 0, now);
    expect(await a.getUsage(['gpt/north'], now)).toEqual([{ requests: 2, tokens: 0 }]);
    for (const logger of [loggerA, loggerB]) {
      expect(logger.warn).toHaveBeenCalledTimes(2);
      expect(logger.warn).toHaveBeenLastCalledWith({}, expect.stringContaining('answers again'));
      expect(logger.info).not.toHaveBeenCalled();
    }
  });
});
