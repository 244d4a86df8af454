/**
 * The fallback scenarios' world, shared by the chat path's parity matrix (test/fallback.test.ts) and the
 * protocols' (test/protocol-parity.test.ts): three mock upstreams (`primary` and `backup`, OpenAI; `claude`,
 * Anthropic), and a gateway whose group `main` is the scenario under test, `backup` a normal OpenAI answer
 * and `other` a normal Anthropic answer. Registers its own jest hooks: call it at the top of a test file.
 */
import { startMockAnthropic, startMockOpenAI, type MockServer } from '../../lib/testing/index.js';
import type { FallbackHandlerOptions } from '../../lib/index.js';
import type { ModelGroupOptions } from '../../lib/router-config.js';
import { startGateway, type TestGateway } from './gateway.js';

export type Deployment = ModelGroupOptions['deployments'][number];

export interface FallbackFixture {
  readonly primary: MockServer;
  readonly backup: MockServer;
  readonly claude: MockServer;
  /** An OpenAI deployment of `server` answering with `model` (a mock scenario). */
  openai(server: MockServer, model: string, timeouts?: Record<string, number>): Deployment;
  /** A gateway (closed after the test) with `main` on `mainDeployment` and these fallbacks. */
  gateway(mainDeployment: Deployment, fallbacks: Omit<FallbackHandlerOptions, 'router'>, extraGroups?: ModelGroupOptions[]): Promise<TestGateway>;
  /** Calls received so far: [primary, backup, claude]. */
  counts(): number[];
}

export function fallbackFixture(): FallbackFixture {
  const servers: { primary?: MockServer; backup?: MockServer; claude?: MockServer } = {};
  let gateways: TestGateway[] = [];
  const get = (name: keyof typeof servers): MockServer => servers[name]!;
  beforeAll(async () => {
    [servers.primary, servers.backup, servers.claude] = await Promise.all([startMockOpenAI({ name: 'primary' }), startMockOpenAI({ name: 'backup' }), startMockAnthropic({ name: 'claude' })]);
  });
  afterAll(() => Promise.all([get('primary').close(), get('backup').close(), get('claude').close()]));
  beforeEach(() => [get('primary'), get('backup'), get('claude')].forEach((m) => m.reset()));
  afterEach(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    gateways = [];
  });

  const openai = (server: MockServer, model: string, timeouts?: Record<string, number>): Deployment => ({ provider: 'openai' as const, baseUrl: `${server.url}/v1`, model, apiKey: 'k', ...(timeouts ? { timeouts } : {}) });
  return {
    get primary() {
      return get('primary');
    },
    get backup() {
      return get('backup');
    },
    get claude() {
      return get('claude');
    },
    openai,
    async gateway(mainDeployment, fallbacks, extraGroups = []) {
      const g = await startGateway(
        {
          models: [
            { name: 'main', deployments: [mainDeployment] },
            { name: 'backup', deployments: [openai(get('backup'), 'normal')] },
            { name: 'other', deployments: [{ provider: 'anthropic', baseUrl: get('claude').url, model: 'normal', apiKey: 'k' }] },
            ...extraGroups,
          ],
          retries: { maxRetries: 0 },
          cooldown: { failureThreshold: 1000 },
        },
        { fallbacks },
      );
      gateways.push(g);
      return g;
    },
    counts: () => [get('primary').callCount(), get('backup').callCount(), get('claude').callCount()],
  };
}
