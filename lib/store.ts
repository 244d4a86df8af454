/**
 * The state the router shares between requests (and, with a shared store, between gateway instances):
 * cooldowns, failure counts, rpm/tpm usage and latency stats. Nothing else is shared.
 *
 * Methods may answer synchronously or with a promise, so the in-memory store costs no extra promise on
 * the hot path while a networked store (Redis) stays possible.
 */

export type MaybePromise<T> = T | Promise<T>;

export interface UsageWindow {
  requests: number;
  tokens: number;
}

export interface Store {
  /** Cooldown deadlines (epoch ms) for the keys, `undefined` where none is running. */
  getCooldowns(keys: readonly string[], now: number): MaybePromise<readonly (number | undefined)[]>;
  /** Puts `key` in cooldown until `untilMs`; an existing later deadline is kept (cooldowns only grow). */
  setCooldown(key: string, untilMs: number): MaybePromise<void>;
  /** Counts a failure; resolves with the failures counted inside the last `windowMs`. */
  recordFailure(key: string, windowMs: number, now: number): MaybePromise<number>;
  /** Forgets the failures of `key` (it just succeeded). */
  resetFailures(key: string): MaybePromise<void>;
  /** Adds a latency sample (ms) to a moving average. */
  recordLatency(key: string, ms: number): MaybePromise<void>;
  /** Moving-average latencies, `undefined` for keys with no sample yet. */
  getLatencies(keys: readonly string[]): MaybePromise<readonly (number | undefined)[]>;
  /** Adds requests and tokens to the current one-minute window of `key`. */
  addUsage(key: string, requests: number, tokens: number, now: number): MaybePromise<void>;
  /** Usage of the current one-minute window per key. */
  getUsage(keys: readonly string[], now: number): MaybePromise<readonly UsageWindow[]>;
}

/** Whether a store's answer is still to come (a promise, or any thenable) rather than the value itself. */
export function isPending<T>(value: MaybePromise<T>): value is PromiseLike<T> & Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** Weight of a new latency sample in the moving average. */
export const LATENCY_ALPHA = 0.3;
const MINUTE = 60_000;

interface UsageEntry extends UsageWindow {
  minute: number;
}

/** The default store: plain maps in this process. Answers synchronously. */
export class MemoryStore implements Store {
  private readonly cooldowns = new Map<string, number>();
  private readonly failures = new Map<string, number[]>();
  private readonly latencies = new Map<string, number>();
  private readonly usage = new Map<string, UsageEntry>();

  getCooldowns(keys: readonly string[], now: number): (number | undefined)[] {
    return keys.map((key) => {
      const until = this.cooldowns.get(key);
      if (until === undefined) return undefined;
      if (until > now) return until;
      this.cooldowns.delete(key);
      return undefined;
    });
  }

  setCooldown(key: string, untilMs: number): void {
    const current = this.cooldowns.get(key);
    if (current === undefined || untilMs > current) this.cooldowns.set(key, untilMs);
  }

  recordFailure(key: string, windowMs: number, now: number): number {
    const since = now - windowMs;
    const times = (this.failures.get(key) ?? []).filter((t) => t > since);
    times.push(now);
    this.failures.set(key, times);
    return times.length;
  }

  resetFailures(key: string): void {
    this.failures.delete(key);
  }

  recordLatency(key: string, ms: number): void {
    const current = this.latencies.get(key);
    this.latencies.set(key, current === undefined ? ms : current + LATENCY_ALPHA * (ms - current));
  }

  getLatencies(keys: readonly string[]): (number | undefined)[] {
    return keys.map((key) => this.latencies.get(key));
  }

  addUsage(key: string, requests: number, tokens: number, now: number): void {
    const minute = Math.floor(now / MINUTE);
    const entry = this.usage.get(key);
    if (entry && entry.minute === minute) {
      entry.requests += requests;
      entry.tokens += tokens;
    } else {
      this.usage.set(key, { minute, requests, tokens });
    }
  }

  getUsage(keys: readonly string[], now: number): UsageWindow[] {
    const minute = Math.floor(now / MINUTE);
    return keys.map((key) => {
      const entry = this.usage.get(key);
      return entry && entry.minute === minute ? { requests: entry.requests, tokens: entry.tokens } : { requests: 0, tokens: 0 };
    });
  }
}
