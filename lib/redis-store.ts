/**
 * A `Store` shared by several gateway instances through Redis (ioredis), so a 429 seen by one instance
 * cools the deployment down for all of them.
 *
 * Redis is an optimisation, never a dependency of a request: every write also goes to a local
 * `MemoryStore`, every read is bounded by `timeoutMs` and merged with the local state, so while Redis is
 * down or slow the instance keeps routing on what it saw itself. Reconnecting is left to ioredis.
 *
 * While Redis is unavailable (from a failed or timed-out command until one succeeds), the store sends one
 * command at a time as a probe and answers every other call from local state at once: a hung Redis
 * (connected but not answering) would otherwise collect every abandoned command in the client's queue,
 * and the heap would grow with the load for as long as the outage lasts. After a probe timed out on a
 * connected client, the next one waits `max(timeoutMs, 1 s)` (or until the late answer comes); after a
 * probe failed fast or was queued while disconnected, the next call on a connected client probes again.
 *
 * Data layout (`<p>` is the prefix, `<key>` the deployment key `group/id`):
 * - `<p>cooldown:<key>`: string, the cooldown deadline (epoch ms); expires (PX) at that deadline.
 * - `<p>failures:<key>`: sorted set of failures scored by time (epoch ms); expires a window after the last.
 * - `<p>latency:<key>`: string, the moving-average latency (ms); expires 24 h after the last sample.
 * - `<p>usage:<key>:<minute>:requests` and `...:tokens`: integer counters of one minute (epoch ms / 60 000);
 *   expire 2 minutes after the last increment.
 * Each write is one Lua script (or a DEL), so it is atomic across instances; each read is one MGET.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from './logger.js';
import { consoleLogger } from './logger.js';
import { GatewayConfigError, definedOnly, optionsValidator } from './options.js';
import type { Store, UsageWindow } from './store.js';
import { LATENCY_ALPHA, MemoryStore } from './store.js';

export interface RedisStoreOptions {
  /**
   * The ioredis client (`Redis` or `Cluster`); the store never creates one. Recommended client options
   * (`RedisStore.clientOptions(timeoutMs)` returns them): `enableOfflineQueue: false` (commands fail at once
   * while disconnected instead of queueing until `timeoutMs`), `maxRetriesPerRequest: 0` (a command cut by
   * a disconnect is not replayed: the store stopped waiting for it long before), `commandTimeout` equal to
   * `timeoutMs` and a `socketTimeout` (a connection that stops answering is dropped and reconnected, which
   * frees the commands abandoned on it), the default `retryStrategy` (reconnects forever, backing off to
   * 2 s), and an `'error'` listener (ioredis prints unhandled connection errors to the console otherwise).
   * Without them the store still bounds what it leaves behind on a hung connection (one probe at a time).
   * With a Cluster, give the prefix a hash tag (`'{llm-gateway}:'`): batch reads and scripts need every key
   * in one slot.
   */
  client: Redis | Cluster;
  /**
   * Prepended to every key (after the client's own `keyPrefix`, if any). Instances that share state must
   * use the same prefix.
   * @default 'llm-gateway:'
   */
  prefix?: string;
  /**
   * How long a Redis command may take before the store answers from its local state instead. Reads are
   * on the request path, so keep this small.
   * @default 50
   */
  timeoutMs?: number;
  /**
   * Told once when Redis becomes unavailable and once when it answers again, both at `warn`.
   * @default consoleLogger
   */
  logger?: Logger;
}

/** The store's default `timeoutMs`. */
export const DEFAULT_REDIS_TIMEOUT_MS = 50;

/** ioredis options for a store's client (`RedisStore.clientOptions()`); the gateway builds its own client with them. */
export interface RedisClientOptions {
  enableOfflineQueue: false;
  maxRetriesPerRequest: 0;
  commandTimeout: number;
  socketTimeout: number;
}

function clientOptionsFor(timeoutMs: number): RedisClientOptions {
  return {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // The promise of a command the store gave up on is settled (rejected) too, not left pending.
    commandTimeout: timeoutMs,
    // Commands sent on a connection stay in the client's queue until answered, timed out or not: only
    // dropping a connection that went silent frees them. Long enough not to drop a merely slow Redis.
    socketTimeout: Math.max(SOCKET_TIMEOUT_MIN_MS, 20 * timeoutMs),
  };
}

const SOCKET_TIMEOUT_MIN_MS = 1_000;
/** While Redis is unavailable and the last probe timed out, the next probe waits at least this long. */
const PROBE_INTERVAL_MS = 1_000;

interface ResolvedRedisStoreConfig {
  client: Redis | Cluster;
  prefix: string;
  timeoutMs: number;
  logger: Logger;
}

const MINUTE = 60_000;
/** A usage counter outlives its minute a little, for instances whose clocks disagree slightly. */
const USAGE_TTL_MS = 2 * MINUTE;
/** Latency stats of deployments no longer called (or removed from the config) do not stay forever. */
const LATENCY_TTL_MS = 24 * 60 * MINUTE;

interface LuaScript {
  source: string;
  sha: string;
}

function luaScript(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/** KEYS: cooldown. ARGV: deadline (epoch ms), its TTL (ms). A cooldown is only ever extended. */
const EXTEND_COOLDOWN = luaScript(`
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current >= tonumber(ARGV[1]) then return end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
`);

/** KEYS: failures. ARGV: now, window start (inclusive, dropped), unique member, window (ms). Returns the count. */
const RECORD_FAILURE = luaScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1])
`);

/** KEYS: latency. ARGV: sample (ms), alpha, TTL (ms). */
const RECORD_LATENCY = luaScript(`
local sample = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]))
local average = sample
if current then average = current + tonumber(ARGV[2]) * (sample - current) end
redis.call('SET', KEYS[1], tostring(average), 'PX', ARGV[3])
`);

/** KEYS: requests counter, tokens counter. ARGV: requests, tokens, TTL (ms). Zero adds create no key. */
const ADD_USAGE = luaScript(`
for i = 1, 2 do
  local n = tonumber(ARGV[i])
  if n ~= 0 then
    redis.call('INCRBY', KEYS[i], n)
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
`);

const validateOptions = optionsValidator(
  {
    type: 'object',
    additionalProperties: false,
    required: ['client'],
    properties: {
      client: { type: 'object' },
      prefix: { type: 'string' },
      timeoutMs: { type: 'number', exclusiveMinimum: 0 },
      logger: { type: 'object' },
    },
  },
  'redisStore',
);

/** The shared store for several gateway instances. See the module comment for the data layout. */
export class RedisStore implements Store {
  private readonly config: ResolvedRedisStoreConfig;
  /** This instance's own view: written always, read when Redis does not answer, merged otherwise. */
  private readonly local = new MemoryStore();
  /** False from the first failed command until the next one that succeeds: warn and recover once each. */
  private redisAvailable = true;
  /** While unavailable: the last probe sent, until the client settles it. */
  private probe: { sentReady: boolean } | undefined;
  /** While unavailable: no probe before this time (epoch ms); set after a probe that timed out. */
  private nextProbeAt = 0;
  /**
   * Counts changes of `redisAvailable`. Only a command sent in the current state can change it: an answer
   * to a command sent before the outage was seen is no recovery, a late failure after one is no outage.
   */
  private generation = 0;

  /**
   * The ioredis options the store wants its client to have, for a store with this `timeoutMs` (see
   * `RedisStoreOptions.client`): `new Redis(url, { ...RedisStore.clientOptions(), ...yours })`.
   */
  static clientOptions(timeoutMs: number = DEFAULT_REDIS_TIMEOUT_MS): RedisClientOptions {
    return clientOptionsFor(timeoutMs);
  }

  constructor(options: RedisStoreOptions) {
    this.config = parseRedisStoreOptions(options);
  }

  async getCooldowns(keys: readonly string[], now: number): Promise<(number | undefined)[]> {
    const local = this.local.getCooldowns(keys, now);
    const shared = await this.mget(keys.map((key) => this.cooldownKey(key)));
    return keys.map((_, i) => laterDeadline(local[i], runningDeadline(shared?.[i], now)));
  }

  async setCooldown(key: string, untilMs: number): Promise<void> {
    this.local.setCooldown(key, untilMs);
    // Redis wants a TTL, and a deadline already passed needs no key.
    const ttlMs = Math.ceil(untilMs - Date.now());
    if (ttlMs <= 0) return;
    await this.run(EXTEND_COOLDOWN, [this.cooldownKey(key)], [untilMs, ttlMs]);
  }

  async recordFailure(key: string, windowMs: number, now: number): Promise<number> {
    const local = this.local.recordFailure(key, windowMs, now);
    // Two instances may fail in the same millisecond: the member must be unique, the score is the time.
    const member = `${now}:${randomUUID()}`;
    const shared = await this.run(RECORD_FAILURE, [this.failuresKey(key)], [now, now - windowMs, member, windowMs]);
    // Not the higher of the two, unlike cooldowns and usage: a success on another instance resets the count.
    return typeof shared === 'number' ? shared : local;
  }

  async resetFailures(key: string): Promise<void> {
    this.local.resetFailures(key);
    await this.command(() => this.config.client.del(this.failuresKey(key)));
  }

  async recordLatency(key: string, ms: number): Promise<void> {
    this.local.recordLatency(key, ms);
    await this.run(RECORD_LATENCY, [this.latencyKey(key)], [ms, LATENCY_ALPHA, LATENCY_TTL_MS]);
  }

  async getLatencies(keys: readonly string[]): Promise<(number | undefined)[]> {
    const local = this.local.getLatencies(keys);
    const shared = await this.mget(keys.map((key) => this.latencyKey(key)));
    // The shared average covers every instance's samples, so it wins whenever there is one.
    return keys.map((_, i) => parseNumber(shared?.[i]) ?? local[i]);
  }

  async addUsage(key: string, requests: number, tokens: number, now: number): Promise<void> {
    this.local.addUsage(key, requests, tokens, now);
    const [requestsKey, tokensKey] = this.usageKeys(key, now);
    await this.run(ADD_USAGE, [requestsKey, tokensKey], [requests, tokens, USAGE_TTL_MS]);
  }

  async getUsage(keys: readonly string[], now: number): Promise<UsageWindow[]> {
    const local = this.local.getUsage(keys, now);
    const shared = await this.mget(keys.flatMap((key) => this.usageKeys(key, now)));
    return keys.map((_, i) => higherUsage(local[i], shared?.[2 * i], shared?.[2 * i + 1]));
  }

  private cooldownKey(key: string): string {
    return `${this.config.prefix}cooldown:${key}`;
  }

  private failuresKey(key: string): string {
    return `${this.config.prefix}failures:${key}`;
  }

  private latencyKey(key: string): string {
    return `${this.config.prefix}latency:${key}`;
  }

  private usageKeys(key: string, now: number): [requests: string, tokens: string] {
    const window = `${this.config.prefix}usage:${key}:${Math.floor(now / MINUTE)}`;
    return [`${window}:requests`, `${window}:tokens`];
  }

  /** One round trip for all keys; `undefined` when Redis did not answer in time. */
  private async mget(keys: string[]): Promise<(string | null)[] | undefined> {
    if (keys.length === 0) return [];
    return this.command(() => this.config.client.mget(keys));
  }

  /** Runs a script by its hash, sending the source only when Redis does not know it yet (or lost it in a restart). */
  private run(script: LuaScript, keys: string[], args: (string | number)[]): Promise<unknown> {
    const { client } = this.config;
    return this.command(async () => {
      try {
        return await client.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (err) {
        if (!isNoScriptError(err)) throw err;
        return client.eval(script.source, keys.length, ...keys, ...args);
      }
    });
  }

  /**
   * A Redis command bounded by `timeoutMs`: its result, or `undefined` (logged once per outage) on failure.
   * While Redis is unavailable, only a probe is sent (see the module comment); other calls get `undefined`
   * at once.
   */
  private async command<T>(send: () => Promise<T>): Promise<T | undefined> {
    const generation = this.generation;
    const ready = this.config.client.status === 'ready';
    let probe: { sentReady: boolean } | undefined;
    if (!this.redisAvailable) {
      // A probe the client queued while disconnected does not hold back one on the new connection.
      if ((this.probe && (this.probe.sentReady || !ready)) || Date.now() < this.nextProbeAt) return undefined;
      probe = { sentReady: ready };
      this.probe = probe;
    }
    let sent: Promise<T>;
    try {
      sent = send();
    } catch (err) {
      sent = Promise.reject(err);
    }
    if (probe) {
      // Released when the client settles the command (answer, error, its own commandTimeout, or a flush on
      // disconnect), not when the store stops waiting: a client without timeouts holds one probe at most.
      // A late answer shows Redis answers again: the next call may probe at once.
      const settled = (answered: boolean) => {
        if (this.probe === probe) this.probe = undefined;
        if (answered) this.nextProbeAt = 0;
      };
      sent.then(
        () => settled(true),
        () => settled(false),
      );
    }
    try {
      const result = await withTimeout(sent, this.config.timeoutMs);
      if (generation === this.generation) this.markAvailable();
      return result;
    } catch (err) {
      // A connection that took the probe and did not answer: wait before the next one sits in its queue too.
      if (probe && ready && isTimeout(err)) this.nextProbeAt = Date.now() + Math.max(PROBE_INTERVAL_MS, this.config.timeoutMs);
      if (generation === this.generation) this.markUnavailable(err);
      return undefined;
    }
  }

  private markAvailable(): void {
    if (this.redisAvailable) return;
    this.redisAvailable = true;
    this.generation += 1;
    this.nextProbeAt = 0;
    this.config.logger.warn({}, 'Redis store: Redis answers again, sharing state with other instances');
  }

  private markUnavailable(err: unknown): void {
    if (!this.redisAvailable) return;
    this.redisAvailable = false;
    this.generation += 1;
    this.config.logger.warn(
      { err: err instanceof Error ? err.message : String(err) },
      'Redis store: Redis is unavailable, using local state until it answers again',
    );
  }
}

function parseRedisStoreOptions(options: RedisStoreOptions): ResolvedRedisStoreConfig {
  const given = definedOnly(options);
  validateOptions(given);
  const client = given.client!;
  const prefix = given.prefix ?? 'llm-gateway:';
  if (client.isCluster && !hasHashTag((client.options.keyPrefix ?? '') + prefix)) {
    throw new GatewayConfigError(
      'redisStore.prefix',
      `with a Redis Cluster, put a hash tag in the prefix (e.g. '{${prefix.replace(/:$/, '')}}:') so every key lands in one slot.`,
    );
  }
  return { client, prefix, timeoutMs: given.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS, logger: given.logger ?? consoleLogger };
}

/** Redis Cluster hashes only the part between the first `{` and the next `}`, when it is not empty. */
function hasHashTag(prefix: string): boolean {
  return /^[^{]*\{[^}]+\}/.test(prefix);
}

function isNoScriptError(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

class RedisTimeoutError extends Error {}

/** The store's own deadline, or the client's `commandTimeout`: the command may still sit in the client's queue. */
function isTimeout(err: unknown): boolean {
  return err instanceof RedisTimeoutError || (err instanceof Error && err.message === 'Command timed out');
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    // Unref'd: a pending timeout must not keep the process alive.
    timer = setTimeout(() => reject(new RedisTimeoutError(`Redis did not answer within ${ms} ms`)), ms).unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function parseNumber(value: string | null | undefined): number | undefined {
  if (value === null || value === undefined) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** The key's TTL removes a past deadline, but clocks differ slightly between instances and Redis. */
function runningDeadline(value: string | null | undefined, now: number): number | undefined {
  const until = parseNumber(value);
  return until !== undefined && until > now ? until : undefined;
}

/** Cooldowns only grow, so the later of this instance's and the shared deadline holds. */
function laterDeadline(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

/** Counters only grow within a minute, so the higher count holds (this instance's own, after Redis lost its data). */
function higherUsage(local: UsageWindow | undefined, requests: string | null | undefined, tokens: string | null | undefined): UsageWindow {
  return {
    requests: Math.max(local?.requests ?? 0, parseNumber(requests) ?? 0),
    tokens: Math.max(local?.tokens ?? 0, parseNumber(tokens) ?? 0),
  };
}
