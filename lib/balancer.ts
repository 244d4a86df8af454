/**
 * Choosing a deployment inside a model group: skip the ones in cooldown or over their rpm/tpm (and the ones
 * this request must not use again), prefer the ones it has not tried yet, then apply the routing strategy.
 */
import type { ModelGroup, ResolvedRouterConfig } from './router-config.js';
import type { Deployment } from './providers/types.js';

/** The store key of a deployment: unique across groups. */
export function deploymentKey(deployment: Deployment): string {
  return `${deployment.group}/${deployment.id}`;
}

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

  /** `excluded`: deployments this request must not use again (they timed out). */
  async choose(group: ModelGroup, tried: ReadonlySet<string>, now: number, excluded?: ReadonlySet<string>): Promise<Choice | Unavailable> {
    const deployments = group.deployments;
    const keys = deployments.map(deploymentKey);
    const cooldowns = await this.config.store.getCooldowns(keys, now);
    const overLimit = await this.overLimit(deployments, keys, now);
    const healthy: Deployment[] = [];
    let cooldownEndsAt: number | undefined;
    deployments.forEach((deployment, i) => {
      const until = cooldowns[i];
      if (until !== undefined) cooldownEndsAt = Math.min(cooldownEndsAt ?? until, until);
      if (until === undefined && !overLimit[i] && !excluded?.has(keys[i]!)) healthy.push(deployment);
    });
    if (healthy.length === 0) {
      // A group with one deployment may have nowhere else to go: offered, not chosen (see `lastResort`).
      const only = deployments.length === 1 && cooldowns[0] !== undefined && !overLimit[0] && !excluded?.has(keys[0]!) ? deployments[0] : undefined;
      return only ? { cooldownEndsAt, lastResort: only } : { cooldownEndsAt };
    }
    const untried = healthy.filter((d) => !tried.has(deploymentKey(d)));
    const pool = untried.length > 0 ? untried : healthy;
    return { deployment: await this.pick(pool), untried: untried.length > 0 };
  }

  /** Marks a call as started; returns the function that marks it finished. */
  track(deployment: Deployment): () => void {
    const key = deploymentKey(deployment);
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    return () => {
      const n = (this.inFlight.get(key) ?? 1) - 1;
      if (n <= 0) this.inFlight.delete(key);
      else this.inFlight.set(key, n);
    };
  }

  private async overLimit(deployments: Deployment[], keys: string[], now: number): Promise<boolean[]> {
    const limited = deployments.some((d) => d.rpm !== undefined || d.tpm !== undefined);
    if (!limited) return deployments.map(() => false);
    const usage = await this.config.store.getUsage(keys, now);
    return deployments.map((d, i) => {
      const u = usage[i];
      if (!u) return false;
      return (d.rpm !== undefined && u.requests >= d.rpm) || (d.tpm !== undefined && u.tokens >= d.tpm);
    });
  }

  private async pick(pool: Deployment[]): Promise<Deployment> {
    if (pool.length === 1) return pool[0]!;
    switch (this.config.strategy) {
      case 'least-busy':
        return pickLeastBusy(pool, this.inFlight);
      case 'lowest-latency':
        return pickLowestLatency(pool, await this.config.store.getLatencies(pool.map(deploymentKey)));
      case 'ordered':
        // The pool keeps the configured order (it is only ever filtered): the first is the preferred one.
        return pool[0]!;
      default:
        return pickWeighted(pool);
    }
  }
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
