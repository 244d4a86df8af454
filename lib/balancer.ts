/**
 * Choosing a deployment inside a model group: skip the ones in cooldown or over their rpm/tpm (and the ones
 * this request must not use again), prefer the ones it has not tried yet, then apply the routing strategy.
 */
import type { ModelGroup, ResolvedRouterConfig } from './router-config.js';
import type { Deployment } from './providers/types.js';
import { type MaybePromise, type UsageWindow, isPending } from './store.js';

/** The store key of a deployment: unique across groups. */
export function deploymentKey(deployment: Deployment): string {
  let key = deploymentKeys.get(deployment);
  if (key === undefined) {
    key = `${deployment.group}/${deployment.id}`;
    deploymentKeys.set(deployment, key);
  }
  return key;
}

/** Deployments are configuration: each key is made once (and its hash computed once, for the maps it keys). */
const deploymentKeys = new WeakMap<Deployment, string>();

export interface Choice {
  deployment: Deployment;
  /** False when every healthy deployment was already tried by this request (the caller backs off first). */
  untried: boolean;
}

export interface Unavailable {
  /** When the first cooldown ends (epoch ms), if cooldowns are what blocks the group. */
  cooldownEndsAt: number | undefined;
  /**
   * A group with one deployment, cooling down (not over its rpm/tpm): the deployment to try anyway when
   * nothing else can serve the request. The router decides (it asks whether a fallback exists).
   */
  lastResort?: Deployment;
}

export class Balancer {
  /** Requests in flight per deployment key, on this instance (for `least-busy`). */
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly config: ResolvedRouterConfig) {}

  /**
   * `excluded`: deployments this request must not use again (they timed out). Answers synchronously when the
   * store does (the in-memory one): no promise and no microtask per request then.
   */
  choose(group: ModelGroup, tried: ReadonlySet<string>, now: number, excluded?: ReadonlySet<string>): MaybePromise<Choice | Unavailable> {
    const keys = keysOf(group);
    const cooldowns = this.config.store.getCooldowns(keys, now);
    if (isPending(cooldowns)) return cooldowns.then((c) => this.withCooldowns(group, keys, c, tried, now, excluded));
    return this.withCooldowns(group, keys, cooldowns, tried, now, excluded);
  }

  private withCooldowns(
    group: ModelGroup,
    keys: readonly string[],
    cooldowns: readonly (number | undefined)[],
    tried: ReadonlySet<string>,
    now: number,
    excluded: ReadonlySet<string> | undefined,
  ): MaybePromise<Choice | Unavailable> {
    if (!isLimited(group)) return this.decide(group, keys, cooldowns, undefined, tried, excluded);
    const usage = this.config.store.getUsage(keys, now);
    if (isPending(usage)) return usage.then((u) => this.decide(group, keys, cooldowns, u, tried, excluded));
    return this.decide(group, keys, cooldowns, usage, tried, excluded);
  }

  private decide(
    group: ModelGroup,
    keys: readonly string[],
    cooldowns: readonly (number | undefined)[],
    usage: readonly UsageWindow[] | undefined,
    tried: ReadonlySet<string>,
    excluded: ReadonlySet<string> | undefined,
  ): MaybePromise<Choice | Unavailable> {
    const deployments = group.deployments;
    const healthy: Deployment[] = [];
    let untried: Deployment[] | undefined;
    let cooldownEndsAt: number | undefined;
    for (let i = 0; i < deployments.length; i++) {
      const deployment = deployments[i]!;
      const until = cooldowns[i];
      if (until !== undefined) cooldownEndsAt = Math.min(cooldownEndsAt ?? until, until);
      if (until === undefined && !overLimit(deployment, usage?.[i]) && !excluded?.has(keys[i]!)) {
        healthy.push(deployment);
        if (!tried.has(keys[i]!)) (untried ??= []).push(deployment);
      }
    }
    if (healthy.length === 0) {
      // A group with one deployment may have nowhere else to go: offered, not chosen (see `lastResort`).
      const only =
        deployments.length === 1 && cooldowns[0] !== undefined && !overLimit(deployments[0]!, usage?.[0]) && !excluded?.has(keys[0]!) ? deployments[0] : undefined;
      return only ? { cooldownEndsAt, lastResort: only } : { cooldownEndsAt };
    }
    const pool = untried ?? healthy;
    const fresh = untried !== undefined;
    const picked = this.pick(pool);
    if (isPending(picked)) return picked.then((deployment) => ({ deployment, untried: fresh }));
    return { deployment: picked, untried: fresh };
  }

  /** Marks a call to the deployment (`deploymentKey`) as started; counted for `least-busy` only, which reads it. */
  callStarted(key: string): void {
    if (this.config.strategy !== 'least-busy') return;
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
  }

  /** Marks a call started with `callStarted` as finished. */
  callFinished(key: string): void {
    if (this.config.strategy !== 'least-busy') return;
    const n = (this.inFlight.get(key) ?? 1) - 1;
    if (n <= 0) this.inFlight.delete(key);
    else this.inFlight.set(key, n);
  }

  private pick(pool: Deployment[]): MaybePromise<Deployment> {
    if (pool.length === 1) return pool[0]!;
    switch (this.config.strategy) {
      case 'least-busy':
        return pickLeastBusy(pool, this.inFlight);
      case 'lowest-latency': {
        const latencies = this.config.store.getLatencies(pool.map(deploymentKey));
        return isPending(latencies) ? latencies.then((l) => pickLowestLatency(pool, l)) : pickLowestLatency(pool, latencies);
      }
      case 'ordered':
        // The pool keeps the configured order (it is only ever filtered): the first is the preferred one.
        return pool[0]!;
      default:
        return pickWeighted(pool);
    }
  }
}

/** Over its rpm or tpm in the current window. */
function overLimit(deployment: Deployment, usage: UsageWindow | undefined): boolean {
  if (!usage) return false;
  return (deployment.rpm !== undefined && usage.requests >= deployment.rpm) || (deployment.tpm !== undefined && usage.tokens >= deployment.tpm);
}

/** The store keys of a group's deployments, worked out once per group. */
const groupKeys = new WeakMap<ModelGroup, readonly string[]>();
function keysOf(group: ModelGroup): readonly string[] {
  let keys = groupKeys.get(group);
  if (keys === undefined) {
    keys = group.deployments.map(deploymentKey);
    groupKeys.set(group, keys);
  }
  return keys;
}

/** Whether any deployment of the group has an rpm or tpm limit (then usage is read), once per group. */
const limitedGroups = new WeakMap<ModelGroup, boolean>();
function isLimited(group: ModelGroup): boolean {
  let limited = limitedGroups.get(group);
  if (limited === undefined) {
    limited = group.deployments.some((d) => d.rpm !== undefined || d.tpm !== undefined);
    limitedGroups.set(group, limited);
  }
  return limited;
}

export function pickWeighted(pool: readonly Deployment[], random: number = Math.random()): Deployment {
  let total = 0;
  for (const d of pool) total += d.weight;
  let point = random * total;
  for (const d of pool) {
    point -= d.weight;
    if (point < 0) return d;
  }
  return pool[pool.length - 1]!;
}

function pickLeastBusy(pool: readonly Deployment[], inFlight: ReadonlyMap<string, number>): Deployment {
  return pickMin(pool, (d) => inFlight.get(deploymentKey(d)) ?? 0);
}

/** Deployments with no latency sample yet count as fastest, so each gets measured. */
function pickLowestLatency(pool: readonly Deployment[], latencies: readonly (number | undefined)[]): Deployment {
  return pickMin(pool, (_d, i) => latencies[i] ?? 0);
}

/** The deployment with the lowest score; ties broken at random so equal deployments share the load. */
function pickMin(pool: readonly Deployment[], score: (d: Deployment, i: number) => number): Deployment {
  let best: Deployment[] = [];
  let bestScore = Infinity;
  pool.forEach((d, i) => {
    const s = score(d, i);
    if (s < bestScore) {
      best = [d];
      bestScore = s;
    } else if (s === bestScore) {
      best.push(d);
    }
  });
  return best[Math.floor(Math.random() * best.length)]!;
}
