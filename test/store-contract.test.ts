/**
 * The `Store` contract, run against every store: the in-memory default and the Redis store on a real
 * redis-server. Times are real (short) where a store relies on TTLs.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisStore } from '../lib/redis-store.js';
import { MemoryStore, type Store } from '../lib/store.js';
import { silentLogger } from '../lib/logger.js';
import { describeWithRedis, startRedisServer, type RedisServer } from './helpers/redis.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A time inside a minute, far from its edges, so usage windows do not roll over during a test. */
function midMinute(): number {
  return Math.floor(Date.now() / 60_000) * 60_000 + 30_000;
}

function storeContract(createStore: () => Store): void {
  let store: Store;
  beforeEach(() => {
    store = createStore();
  });

  describe('cooldowns', () => {
    it('reports no cooldown for unknown keys, and an empty answer for no keys', async () => {
      expect(await store.getCooldowns(['g/a', 'g/b'], Date.now())).toEqual([undefined, undefined]);
      expect(await store.getCooldowns([], Date.now())).toEqual([]);
    });

    it('reports a running cooldown per key, in the order asked', async () => {
      const until = Date.now() + 10_000;
      await store.setCooldown('g/b', until);
      expect(await store.getCooldowns(['g/a', 'g/b'], Date.now())).toEqual([undefined, until]);
    });

    it('only ever extends a cooldown', async () => {
      const now = Date.now();
      await store.setCooldown('g/a', now + 5_000);
      await store.setCooldown('g/a', now + 1_000);
      expect(await store.getCooldowns(['g/a'], now)).toEqual([now + 5_000]);
      await store.setCooldown('g/a', now + 8_000);
      expect(await store.getCooldowns(['g/a'], now)).toEqual([now + 8_000]);
    });

    it('ends a cooldown at its deadline', async () => {
      const until = Date.now() + 400;
      await store.setCooldown('g/a', until);
      expect(await store.getCooldowns(['g/a'], until - 400)).toEqual([until]);
      expect(await store.getCooldowns(['g/a'], until)).toEqual([undefined]);
      await sleep(500);
      expect(await store.getCooldowns(['g/a'], Date.now())).toEqual([undefined]);
    });

    it('ignores a deadline already passed', async () => {
      await store.setCooldown('g/a', Date.now() - 1);
      expect(await store.getCooldowns(['g/a'], Date.now())).toEqual([undefined]);
    });
  });

  describe('failures', () => {
    it('counts the failures inside a sliding window', async () => {
      const now = Date.now();
      expect(await store.recordFailure('g/a', 10_000, now)).toBe(1);
      expect(await store.recordFailure('g/a', 10_000, now + 4_000)).toBe(2);
      expect(await store.recordFailure('g/a', 10_000, now + 4_000)).toBe(3);
      // The first failure (at `now`) is exactly one window old: out.
      expect(await store.recordFailure('g/a', 10_000, now + 10_000)).toBe(3);
      expect(await store.recordFailure('g/a', 10_000, now + 15_000)).toBe(2);
      expect(await store.recordFailure('g/b', 10_000, now + 15_000)).toBe(1);
    });

    it('forgets the failures of a key on reset, and only of that key', async () => {
      const now = Date.now();
      await store.recordFailure('g/a', 10_000, now);
      await store.recordFailure('g/a', 10_000, now);
      await store.recordFailure('g/b', 10_000, now);
      await store.resetFailures('g/a');
      expect(await store.recordFailure('g/a', 10_000, now)).toBe(1);
      expect(await store.recordFailure('g/b', 10_000, now)).toBe(2);
    });
  });

  describe('latencies', () => {
    it('keeps an exponentially weighted moving average per key', async () => {
      await store.recordLatency('g/a', 100);
      expect(await store.getLatencies(['g/a', 'g/b'])).toEqual([100, undefined]);
      await store.recordLatency('g/a', 200);
      await store.recordLatency('g/b', 50.5);
      const [a, b] = await store.getLatencies(['g/a', 'g/b']);
      expect(a).toBeCloseTo(130, 9);
      expect(b).toBeCloseTo(50.5, 9);
      expect(await store.getLatencies([])).toEqual([]);
    });
  });

  describe('usage', () => {
    it('adds requests and tokens within the current minute', async () => {
      const now = midMinute();
      await store.addUsage('g/a', 1, 0, now);
      await store.addUsage('g/a', 0, 120, now + 1_000);
      await store.addUsage('g/a', 1, 30, now + 2_000);
      expect(await store.getUsage(['g/a', 'g/b'], now + 3_000)).toEqual([
        { requests: 2, tokens: 150 },
        { requests: 0, tokens: 0 },
      ]);
      expect(await store.getUsage([], now)).toEqual([]);
    });

    it('starts from zero in the next minute', async () => {
      const now = midMinute();
      await store.addUsage('g/a', 3, 300, now);
      expect(await store.getUsage(['g/a'], now + 60_000)).toEqual([{ requests: 0, tokens: 0 }]);
      await store.addUsage('g/a', 1, 10, now + 60_000);
      expect(await store.getUsage(['g/a'], now + 60_000)).toEqual([{ requests: 1, tokens: 10 }]);
    });
  });
}

describe('MemoryStore', () => {
  storeContract(() => new MemoryStore());
});

describeWithRedis('RedisStore', () => {
  let server: RedisServer;
  let client: Redis;

  beforeAll(async () => {
    server = await startRedisServer();
    client = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true, enableOfflineQueue: false });
    await client.connect();
  });

  afterAll(async () => {
    client.disconnect();
    await server.stop();
  });

  // The local fallback alone would pass the contract too: a warning would mean Redis was not used. The
  // timeout is generous for the same reason: a loaded test machine must not push a read to the fallback.
  const logger = { ...silentLogger, warn: jest.fn() };
  afterEach(() => {
    expect(logger.warn).not.toHaveBeenCalled();
  });

  // A fresh prefix per test: the same Redis, but no state carried over.
  storeContract(() => new RedisStore({ client, prefix: `contract:${randomUUID()}:`, timeoutMs: 5_000, logger }));
});
