import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, GatewayConfigError, loadGatewayConfig, parseGatewayConfig, silentLogger, type Gateway, type GatewayOptions } from '../lib/index.js';
import { startBedrockEmulator, startMockBedrock, startMockOpenAI, type BedrockEmulator, type MockServer } from '../lib/testing/index.js';
import { chat, chatBoth, parityView } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, rawRequest, type RunningServer } from './helpers/http.js';

let mock: MockServer;
let emulator: BedrockEmulator;
const running: { server: RunningServer; gateway: Gateway }[] = [];

beforeAll(async () => {
  [mock, emulator] = await Promise.all([startMockOpenAI({ name: 'mock' }), startBedrockEmulator()]);
});
afterAll(() => Promise.all([mock.close(), emulator.close()]));
afterEach(async () => {
  for (const { server, gateway } of running.splice(0)) {
    await server.close();
    await gateway.close();
  }
  mock.reset();
  emulator.reset();
});

function baseConfig(): GatewayOptions {
  return {
    models: [
      { name: 'main', deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: 'content-policy-dashscope', apiKey: 'sk-main' }] },
      { name: 'backup', aliases: ['spare'], deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: 'echo', apiKey: 'sk-backup' }] },
    ],
    router: { retries: { maxRetries: 0 } },
    fallbacks: { contentPolicy: { main: ['backup'] } },
    logger: silentLogger,
  };
}

async function serve(options: GatewayOptions): Promise<string> {
  const gateway = createGateway(options);
  const app = createApp();
  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });
  app.use(gateway);
  const server = await listen(app);
  running.push({ server, gateway });
  return server.url;
}

const ask = (model: string, content = 'Hello there') => ({ model, messages: [{ role: 'user', content }] });

describe(`createGateway (Express ${EXPRESS_MAJOR})`, () => {
  it('mounts context → router → fallback handler → error writer: the streaming content-policy fallback works in both modes', async () => {
    const url = await serve(baseConfig());
    const [plain, streamed] = await chatBoth(url, ask('main', 'echo me'));
    expect(plain.status).toBe(200);
    expect(plain.text).toBe('echo me');
    expect(plain.headers['x-gateway-model-group']).toBe('backup');
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(streamed.frames.at(-1)).toBe('[DONE]');
    const health = await fetch(`${url}/health`);
    expect(await health.json()).toEqual({ ok: true });
  });

  it('serves GET /v1/models and answers bad bodies with a 400 naming the field', async () => {
    const url = await serve(baseConfig());
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(['main', 'backup', 'spare']);
    const bad = await rawRequest(url, { body: { model: 'main', messages: [{ role: 'robot', content: 'x' }] } });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.text).error.message).toContain("'messages[0].role'");
  });

  it('applies a guardrail to the groups it names only (aliases count), and the error body form everywhere', async () => {
    const config: GatewayOptions = {
      ...baseConfig(),
      errors: { bodyForm: 'openai' },
      guardrails: [
        {
          guardrailIdentifier: 'gr1default',
          guardrailVersion: '1',
          region: 'us-east-1',
          endpoint: emulator.url,
          credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
          maxAttempts: 1,
          hooks: ['pre_call'],
          groups: ['spare'],
        },
      ],
    };
    const url = await serve(config);
    const [plain, streamed] = await chatBoth(url, ask('backup', 'give me stock tips please'));
    expect(plain.status).toBe(400);
    expect(plain.error).toEqual({ message: 'Violated guardrail policy', type: 'guardrail_violation', param: null, code: '400' });
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(mock.callCount()).toBe(0);
    const unguarded = mock.callCount();
    const other = await chat(url, { ...ask('main', 'give me stock tips please'), stream: false });
    expect(other.status).toBe(200); // 'main' has no guardrail (its fallback 'backup' answers)
    expect(mock.callCount()).toBe(unguarded + 2);
  });

  it('passes other paths through to the configured upstream with its key and the request id', async () => {
    const url = await serve({ ...baseConfig(), passthrough: { target: mock.url, apiKey: 'sk-upstream' } });
    const res = await fetch(`${url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer client-key', 'x-request-id': 'pt-1' },
      body: JSON.stringify({ model: 'e', input: 'hi' }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('pt-1');
    const call = mock.calls.at(-1)!;
    expect(call.path).toBe('/v1/embeddings');
    expect(call.headers['authorization']).toBe('Bearer sk-upstream');
    expect(call.headers['x-request-id']).toBe('pt-1');
  });

  it('a pass-through upstream that is down gets the gateway error shape', async () => {
    const url = await serve({ ...baseConfig(), passthrough: { target: 'http://127.0.0.1:9' } });
    const res = await rawRequest(url, { path: '/v1/embeddings', body: { model: 'e', input: 'x' } });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.text)).toEqual({ error: { message: 'The upstream could not be reached.', code: 502, type: 'connection_error' } });
  });

  describe('bad configuration fails at start-up naming the path', () => {
    const bad: [string, (c: GatewayOptions) => unknown, RegExp][] = [
      ['wrong type', (c) => ({ ...c, router: { retries: { maxRetries: 'two' } } }), /'router.retries.maxRetries'/],
      ['unknown provider', (c) => ({ ...c, models: [{ name: 'x', deployments: [{ provider: 'openia', model: 'm' }] }] }), /'models\[0\].deployments\[0\].provider'/],
      ['fallback to an unknown group', (c) => ({ ...c, fallbacks: { general: { main: ['ghost'] } } }), /'fallbacks.general.main\[0\]'/],
      ['missing guardrail version', (c) => ({ ...c, guardrails: [{ guardrailIdentifier: 'gr1default', region: 'us-east-1' }] }), /'guardrails\[0\].guardrailVersion'/],
      ['guardrail on an unknown group', (c) => ({ ...c, guardrails: [{ guardrailIdentifier: 'g', guardrailVersion: '1', region: 'us-east-1', groups: ['ghost'] }] }), /'guardrails\[0\].groups\[0\]'/],
      ['unknown top-level key', (c) => ({ ...c, model: [] }), /'model': unknown option/],
      ['redis store without url', (c) => ({ ...c, store: { type: 'redis' } }), /'store.url'/],
    ];
    it.each(bad)('%s', (_name, mutate, field) => {
      expect(() => createGateway(mutate(baseConfig()) as GatewayOptions)).toThrow(GatewayConfigError);
      expect(() => createGateway(mutate(baseConfig()) as GatewayOptions)).toThrow(field);
    });
  });

  describe('config files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-config-'));
    const yaml = `
models:
  - name: main
    deployments:
      - provider: openai
        baseUrl: \${UPSTREAM_URL}
        model: normal
        apiKey: \${OPENAI_KEY}
router:
  strategy: least-busy
  timeouts:
    firstTokenMs: \${FIRST_TOKEN_MS:-5000}
errors:
  bodyForm: openai
`;

    it('loads YAML with ${ENV} substitution from the environment passed in', () => {
      const file = join(dir, 'gateway.yaml');
      writeFileSync(file, yaml);
      const config = loadGatewayConfig(file, { env: { UPSTREAM_URL: 'http://127.0.0.1:1/v1', OPENAI_KEY: 'sk-x' } });
      expect(config.models[0]!.deployments[0]).toMatchObject({ baseUrl: 'http://127.0.0.1:1/v1', apiKey: 'sk-x' });
      expect(config.router?.timeouts?.firstTokenMs).toBe(5000); // the default, coerced to the number the schema wants
      expect(config.router?.strategy).toBe('least-busy');
    });

    it('an unset variable without a default names the path', () => {
      expect(() => parseGatewayConfig(yaml, 'yaml', { env: { UPSTREAM_URL: 'http://x' } })).toThrow(/'models\[0\].deployments\[0\].apiKey': references \$\{OPENAI_KEY\}/);
    });

    it('JSON files validate the same way, and errors name the path', () => {
      const file = join(dir, 'gateway.json');
      writeFileSync(file, JSON.stringify({ models: [{ name: 'm', deployments: [{ provider: 'openai', model: 'x', weight: 'heavy' }] }] }));
      expect(() => loadGatewayConfig(file)).toThrow(/'models\[0\].deployments\[0\].weight': must be number/);
      expect(() => parseGatewayConfig('models: [', 'yaml')).toThrow(/not valid YAML/);
    });
  });
});

describe('a config object can be used again', () => {
  it('createGateway twice with the same object (Bedrock credentials included) works, and the object is unchanged', async () => {
    const bedrock = await startMockBedrock();
    try {
      const config: GatewayOptions = {
        models: [{ name: 'b', deployments: [{ provider: 'bedrock', baseUrl: bedrock.url, model: 'normal', awsCredentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' } }] }],
        logger: silentLogger,
      };
      const snapshot = JSON.stringify(config);
      for (let i = 0; i < 2; i++) {
        const url = await serve(config);
        const res = await chat(url, { model: 'b', messages: [{ role: 'user', content: 'hi' }] });
        expect(res.status).toBe(200);
      }
      expect(JSON.stringify(config)).toBe(snapshot);
    } finally {
      await bedrock.close();
    }
  });
});
