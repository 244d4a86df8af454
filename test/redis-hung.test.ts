/**
 * A hung Redis: the server is SIGSTOPped, so connections stay open (the kernel still accepts and buffers)
 * but nothing answers. Under load, the store must not pile up the commands it gave up on (the client's
 * queue stays small, the heap flat), every request keeps being answered from local state, and once the
 * server is SIGCONTed state flows to Redis again, with one warn line when it stopped answering and one
 * when it answers again.
 */
import { randomUUID } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Redis, type RedisOptions } from 'ioredis';
import { createGateway, type Logger } from '../lib/index.js';
import { RedisStore } from '../lib/redis-store.js';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { chat } from './helpers/chat.js';
import { createApp } from './helpers/express.js';
import { listen } from './helpers/http.js';
import { describeWithRedis, startRedisServer, type RedisServer } from './helpers/redis.js';

const MB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `global.gc`, exposed at run time when jest was not started with --expose-gc. */
function gcFunction(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

const collect = gcFunction();

function heapUsed(): number {
  collect();
  collect();
  return process.memoryUsage().heapUsed;
}

/** ioredis keeps a command in `commandQueue` from its write until its answer, in `offlineQueue` until connected. */
function queued(client: Redis): number {
  const internals = client as unknown as { commandQueue: { length: number }; offlineQueue: { length: number } };
  return internals.commandQueue.length + internals.offlineQueue.length;
}

interface CapturedLog {
  warn: string[];
  info: string[];
}

function capturingLogger(): { logger: Logger; log: CapturedLog } {
  const log: CapturedLog = { warn: [], info: [] };
  const noop = (): void => {};
  return { log, logger: { debug: noop, info: (_o, msg) => log.info.push(String(msg)), warn: (_o, msg) => log.warn.push(String(msg)), error: noop } };
}

/** Store lines only: a gateway logs other things too. */
const storeLines = (lines: string[]): string[] => lines.filter((line) => line.startsWith('Redis store:'));

async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`not within ${timeoutMs} ms: ${what}`);
}

describeWithRedis('a hung Redis (SIGSTOP) under load', () => {
  let server: RedisServer;
  let admin: Redis;
  let paused = false;

  const pause = (): void => {
    server.pause();
    paused = true;
  };
  const resume = (): void => {
    if (!paused) return;
    paused = false;
    server.resume();
  };

  beforeAll(async () => {
    server = await startRedisServer();
    admin = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true, enableOfflineQueue: false });
    admin.on('error', () => {});
    await admin.connect();
  });

  afterEach(() => resume());

  afterAll(async () => {
    resume();
    admin.disconnect();
    await server.stop();
  });

  const clients: [string, RedisOptions][] = [
    ['the client the gateway builds (RedisStore.clientOptions())', RedisStore.clientOptions()],
    ['a client without timeouts', { enableOfflineQueue: false, maxRetriesPerRequest: 1 }],
    ['an ioredis default client (offline queue, 20 retries)', {}],
  ];

  it.each(clients)('%s: 20,000 reads leave no queue and no heap behind, then state flows again', async (_label, options) => {
    const client = new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true, ...options });
    client.on('error', () => {});
    await client.connect();
    const prefix = `test:${randomUUID()}:`;
    const { logger, log } = capturingLogger();
    const store = new RedisStore({ client, prefix, logger }); // the default timeoutMs (50 ms)
    try {
      const until = Date.now() + 60_000;
      await store.setCooldown('gpt/east', until);
      for (let i = 0; i < 200; i++) await store.getCooldowns(['gpt/east', 'gpt/west'], Date.now());
      expect(log.warn).toEqual([]);
      const before = heapUsed();

      pause();
      const started = Date.now();
      for (let round = 0; round < 100; round++) {
        const answers = await Promise.all(Array.from({ length: 200 }, () => store.getCooldowns(['gpt/east', 'gpt/west'], Date.now())));
        // This instance's own cooldown, from local state.
        expect(answers.every((a) => a[0] === until && a[1] === undefined)).toBe(true);
      }
      const elapsed = Date.now() - started;
      const queue = queued(client);
      const growth = heapUsed() - before;
      // What was in flight when the server stopped (one round of 200) plus probes, not 20,000 commands.
      expect(queue).toBeLessThanOrEqual(250);
      expect(growth).toBeLessThan(8 * MB);
      // While Redis is unavailable, calls do not wait for it: 100 rounds take far less than 100 × 50 ms.
      expect(elapsed).toBeLessThan(3_000);
      expect(storeLines(log.warn)).toEqual([expect.stringContaining('unavailable')]);

      resume();
      const after = Date.now() + 120_000;
      await eventually(
        async () => {
          await store.setCooldown('gpt/north', after);
          return (await admin.get(`${prefix}cooldown:gpt/north`)) === String(after);
        },
        5_000,
        'a cooldown written after SIGCONT reaches Redis',
      );
      expect(await store.getCooldowns(['gpt/east'], Date.now())).toEqual([until]);
      expect(storeLines(log.warn)).toEqual([expect.stringContaining('unavailable'), expect.stringContaining('answers again')]);
      expect(log.info).toEqual([]);
      // eslint-disable-next-line no-console
      console.log(`${_label}: ${elapsed} ms for 20,000 reads while stopped; queue ${queue}; heap ${(growth / MB).toFixed(1)} MB`);
    } finally {
      client.disconnect();
    }
  });

  describe('through createGateway with a Redis store config', () => {
    let upstream: MockServer;

    beforeAll(async () => {
      upstream = await startMockOpenAI({ name: 'upstream' });
    });
    afterAll(async () => {
      await upstream.close();
    });

    /** Commands Redis has executed so far (the admin's own INFO calls included). */
    async function commandsProcessed(): Promise<number> {
      const info = await admin.info('stats');
      return Number(/total_commands_processed:(\d+)/.exec(info)?.[1]);
    }

    async function usageInRedis(prefix: string): Promise<number> {
      const keys = await admin.keys(`${prefix}usage:*:requests`);
      if (keys.length === 0) return 0;
      return (await admin.mget(keys)).reduce((sum, v) => sum + Number(v ?? 0), 0);
    }

    it('answers every request while Redis is stopped, sends it almost nothing meanwhile, and shares stats again after SIGCONT', async () => {
      const { logger, log } = capturingLogger();
      const prefix = `test:${randomUUID()}:`;
      const gateway = createGateway({
        // rpm/tpm and lowest-latency: every store call a request can make (cooldowns, usage, latencies, writes).
        models: [{ name: 'chat', deployments: [{ id: 'a', provider: 'openai', baseUrl: `${upstream.url}/v1`, model: 'normal', apiKey: 'k', rpm: 1e9, tpm: 1e12 }] }],
        router: { strategy: 'lowest-latency' },
        store: { type: 'redis', url: `redis://127.0.0.1:${server.port}`, prefix },
        logger,
      });
      const app = createApp();
      app.use(gateway);
      const http = await listen(app);
      const ask = (i: number) => chat(http.url, { model: 'chat', stream: i % 2 === 0, messages: [{ role: 'user', content: 'hi' }] });
      try {
        await eventually(async () => (await ask(0)).status === 200 && (await usageInRedis(prefix)) > 0, 5_000, 'usage reaches Redis');
        // A request that beats the client's first connection sees Redis unavailable for a moment; start afresh.
        log.warn.length = 0;
        const before = heapUsed();
        const processedBefore = await commandsProcessed();

        pause();
        const statuses = new Map<number, number>();
        let failed = 0;
        const total = 2_000;
        let next = 0;
        await Promise.all(
          Array.from({ length: 20 }, async () => {
            while (next < total) {
              const outcome = await ask(next++);
              statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
              if (outcome.error || !outcome.complete) failed++;
            }
          }),
        );
        const growth = heapUsed() - before;
        expect(Object.fromEntries(statuses)).toEqual({ 200: total });
        expect(failed).toBe(0);
        expect(growth).toBeLessThan(8 * MB);
        expect(storeLines(log.warn)).toEqual([expect.stringContaining('unavailable')]);

        resume();
        await sleep(300); // Redis works through what was buffered on its connections
        const usageBefore = await usageInRedis(prefix);
        // Everything the gateway sent while Redis was stopped, now executed (or dropped with its connection):
        // a few requests' worth when it hung plus probes, not the ~10 commands × 2,000 requests of before.
        const sentWhileStopped = (await commandsProcessed()) - processedBefore;
        expect(sentWhileStopped).toBeLessThan(500);
        await eventually(async () => (await ask(1)).status === 200 && (await usageInRedis(prefix)) > usageBefore, 5_000, 'usage reaches Redis again');
        expect(storeLines(log.warn)).toEqual([expect.stringContaining('unavailable'), expect.stringContaining('answers again')]);
        expect(storeLines(log.info)).toEqual([]);
        // eslint-disable-next-line no-console
        console.log(`gateway: ${total} requests while stopped; ${sentWhileStopped} Redis commands; heap ${(growth / MB).toFixed(1)} MB`);
      } finally {
        await http.close();
        await gateway.close();
      }
    });
  });
});
