/**
 * The balancer answers synchronously when the store does (issue 14: no promise or microtask per request with
 * the in-memory store) and the same as before with a store that answers with promises (Redis): cooldowns,
 * rpm limits, tried deployments, the last resort and lowest-latency all decide the same way either way.
 */
import { Balancer, type Choice, type Unavailable } from '../lib/balancer.js';
import { parseRouterOptions, type RouterOptions } from '../lib/router-config.js';
import { MemoryStore, type Store } from '../lib/store.js';

/** The memory store's answers, each behind a promise (the shape of a networked store). */
function asyncStore(inner: MemoryStore): Store {
  return new Proxy(inner, {
    get: (target, name) => {
      const value = Reflect.get(target, name) as unknown;
      return typeof value === 'function' ? (...args: unknown[]) => Promise.resolve((value as (...a: unknown[]) => unknown).apply(target, args)) : value;
    },
  }) as Store;
}

function balancerWith(store: Store, strategy: RouterOptions['strategy'] = 'ordered', rpm?: number): { balancer: Balancer; group: ReturnType<typeof parseRouterOptions>['byName'] extends Map<string, infer G> ? G : never } {
  const deployment = (id: string) => ({ id, provider: 'openai' as const, model: 'm', apiKey: 'k', baseUrl: 'http://127.0.0.1:9', ...(rpm === undefined ? {} : { rpm }) });
  const config = parseRouterOptions({ models: [{ name: 'g', deployments: [deployment('a'), deployment('b')] }], strategy, store });
  return { balancer: new Balancer(config), group: config.byName.get('g')! };
}

const idOf = (found: Choice | Unavailable): string => ('deployment' in found ? `${found.deployment.id}${found.untried ? '' : ' (tried)'}` : `none${found.lastResort ? ` last resort ${found.lastResort.id}` : ''}`);

describe.each([
  ['memory (synchronous)', false],
  ['promise-answering', true],
])('Balancer with a %s store', (_name, async) => {
  async function scenario(strategy: RouterOptions['strategy'], rpm: number | undefined, prepare: (store: MemoryStore) => void, tried: string[], excluded: string[] = []): Promise<string> {
    const memory = new MemoryStore();
    prepare(memory);
    const { balancer, group } = balancerWith(async ? asyncStore(memory) : memory, strategy, rpm);
    const found = balancer.choose(group, new Set(tried), Date.now(), new Set(excluded));
    expect(found instanceof Promise).toBe(async);
    return idOf(await found);
  }

  it('prefers an untried healthy deployment, in order', async () => {
    expect(await scenario('ordered', undefined, () => undefined, [])).toBe('a');
    expect(await scenario('ordered', undefined, () => undefined, ['g/a'])).toBe('b');
    expect(await scenario('ordered', undefined, () => undefined, ['g/a', 'g/b'])).toBe('a (tried)');
  });

  it('skips cooling, excluded and over-limit deployments; nothing left is unavailable', async () => {
    const later = Date.now() + 60_000;
    expect(await scenario('ordered', undefined, (s) => s.setCooldown('g/a', later), [])).toBe('b');
    expect(await scenario('ordered', undefined, () => undefined, [], ['g/a'])).toBe('b');
    expect(await scenario('ordered', 1, (s) => s.addUsage('g/a', 1, 0, Date.now()), [])).toBe('b');
    expect(await scenario('ordered', undefined, (s) => (s.setCooldown('g/a', later), s.setCooldown('g/b', later)), [])).toBe('none');
  });

  it('lowest-latency picks the faster deployment', async () => {
    expect(
      await scenario('lowest-latency', undefined, (s) => {
        s.recordLatency('g/a', 90);
        s.recordLatency('g/b', 10);
      }, []),
    ).toBe('b');
  });
});
