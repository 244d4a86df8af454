/**
 * The gateway's own credentials (issue 11, "a missing key is silent"): a keyed deployment without a key
 * fails at start-up naming its path; `apiKey: false` sends no auth header; an upstream that refuses the
 * gateway's key is a 502 naming the deployment (never the client's 401, never the key), which cools the
 * deployment down and moves on to another deployment or the fallback group, the same in both modes.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGateway, createRouter, GatewayConfigError, parseGatewayConfig, silentLogger, type Gateway, type GatewayOptions } from '../lib/index.js';
import type { DeploymentOptions } from '../lib/providers/types.js';
import { startMockAnthropic, startMockBedrock, startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { chat, chatBoth, parityView, type ChatOutcome } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, type RunningServer } from './helpers/http.js';

const RIGHT_KEY = 'sk-right-key-0123456789';
/** The key the gateway is (wrongly) configured with: it must never reach a client. */
const WRONG_KEY = 'sk-wrong-key-9876543210';

let openai: MockServer;
let anthropic: MockServer;
/** Answers everything, with the right key. */
let backup: MockServer;
const running: { server: RunningServer; gateway: Gateway }[] = [];

beforeAll(async () => {
  [openai, anthropic, backup] = await Promise.all([
    startMockOpenAI({ name: 'mock-openai', requireAuth: RIGHT_KEY }),
    startMockAnthropic({ name: 'mock-anthropic', requireAuth: RIGHT_KEY }),
    startMockOpenAI({ name: 'mock-backup', requireAuth: RIGHT_KEY }),
  ]);
});
afterAll(() => Promise.all([openai.close(), anthropic.close(), backup.close()]));
afterEach(async () => {
  for (const { server, gateway } of running.splice(0)) {
    await server.close();
    await gateway.close();
  }
  for (const mock of [openai, anthropic, backup]) mock.reset();
});

async function serve(options: GatewayOptions): Promise<string> {
  const gateway = createGateway({ logger: silentLogger, ...options });
  const app = createApp();
  app.use(gateway);
  const server = await listen(app);
  running.push({ server, gateway });
  return server.url;
}

const ask = (model: string) => ({ model, messages: [{ role: 'user', content: 'Hi there' }] });

/**
 * Each mode against a gateway of its own: after the first request the refused deployment is cooling
 * down (on purpose), so a second request to the same gateway would not start from the same state.
 */
async function bothModesFresh(options: () => GatewayOptions, model: string): Promise<[ChatOutcome, ChatOutcome]> {
  const plain = await chat(await serve(options()), { ...ask(model), stream: false });
  const streamed = await chat(await serve(options()), { ...ask(model), stream: true });
  return [plain, streamed];
}

/** What a client could ever read: the status line's body and every header value. */
function everythingSent(outcome: ChatOutcome): string {
  return JSON.stringify({ error: outcome.error, text: outcome.text, frames: outcome.frames, headers: outcome.headers });
}

const deployments = {
  openai: (key: DeploymentOptions['apiKey'], model = 'normal'): DeploymentOptions => ({ provider: 'openai', baseUrl: `${openai.url}/v1`, model, apiKey: key }),
  azure: (key: DeploymentOptions['apiKey'], model = 'normal'): DeploymentOptions => ({ provider: 'azure', baseUrl: openai.url, model, apiKey: key }),
  anthropic: (key: DeploymentOptions['apiKey'], model = 'normal'): DeploymentOptions => ({ provider: 'anthropic', baseUrl: anthropic.url, model, apiKey: key }),
};
const backupDeployment = (): DeploymentOptions => ({ id: 'backup', provider: 'openai', baseUrl: `${backup.url}/v1`, model: 'normal', apiKey: RIGHT_KEY });

describe(`a keyed deployment needs its key at start-up (Express ${EXPRESS_MAJOR})`, () => {
  const blanks: [string, unknown][] = [
    ['an unset environment variable', process.env['LLM_GATEWAY_TEST_SURELY_UNSET_KEY']],
    ['null', null],
    ['an empty string', ''],
    ['a blank string', '   '],
  ];

  for (const provider of ['openai', 'azure', 'anthropic'] as const) {
    it.each(blanks)(`createGateway: ${provider} with %s throws naming models[0].deployments[1].apiKey`, (_label, apiKey) => {
      const config: GatewayOptions = {
        models: [{ name: 'chat', deployments: [backupDeployment(), { ...deployments[provider](RIGHT_KEY), apiKey: apiKey as string }] }],
        logger: silentLogger,
      };
      let thrown: unknown;
      try {
        createGateway(config);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(GatewayConfigError);
      expect(thrown).toMatchObject({ field: 'models[0].deployments[1].apiKey', code: 'ERR_LLM_GATEWAY_CONFIG' });
      expect((thrown as Error).message).toMatch(/^express-llm-gateway: invalid option 'models\[0\]\.deployments\[1\]\.apiKey': is required for provider/);
      expect((thrown as Error).message).toContain('apiKey: false');
    });
  }

  it('createRouter names router.models[i].deployments[j].apiKey', () => {
    expect(() => createRouter({ models: [{ name: 'a', deployments: [backupDeployment()] }, { name: 'b', deployments: [{ provider: 'openai', model: 'm' }] }], logger: silentLogger })).toThrow(
      /'router\.models\[1\]\.deployments\[0\]\.apiKey': is required for provider 'openai'/,
    );
  });

  it('a key that is neither a string, a function nor false is refused', () => {
    for (const apiKey of [true, 42, { key: 'x' }]) {
      expect(() => createGateway({ models: [{ name: 'a', deployments: [{ ...backupDeployment(), apiKey: apiKey as unknown as string }] }], logger: silentLogger })).toThrow(
        /'models\[0\]\.deployments\[0\]\.apiKey': expected a string, a function returning one, or false/,
      );
    }
  });

  it('a config file accepts apiKey: false; an empty ${VAR} key fails when the gateway is created, naming the path', () => {
    const yaml = (key: string) => `
models:
  - name: local
    deployments:
      - provider: openai
        baseUrl: http://127.0.0.1:1/v1
        model: llama
        apiKey: ${key}
`;
    const keyless = parseGatewayConfig(yaml('false'), 'yaml');
    expect(keyless.models[0]!.deployments[0]!.apiKey).toBe(false);
    expect(() => createGateway({ ...keyless, logger: silentLogger })).not.toThrow();
    const empty = parseGatewayConfig(yaml('"${OPENAI_API_KEY}"'), 'yaml', { env: { OPENAI_API_KEY: '' } });
    expect(() => createGateway({ ...empty, logger: silentLogger })).toThrow(/'models\[0\]\.deployments\[0\]\.apiKey': is required/);
  });

  it('Bedrock signs with AWS credentials: no apiKey needed', () => {
    expect(() => createGateway({ models: [{ name: 'b', deployments: [{ provider: 'bedrock', model: 'anthropic.claude-3-haiku' }] }], logger: silentLogger })).not.toThrow();
  });
});

/** A local upstream that records the headers it got and answers every request in its provider's format. */
async function startRecordingUpstream(): Promise<{ url: string; headers: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const headers: IncomingHttpHeaders[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      headers.push(req.headers);
      const body = JSON.parse(text) as { stream?: boolean };
      if (req.url?.startsWith('/v1/messages')) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [{ type: 'text', text: 'keyless answer' }], stop_reason: 'end_turn', usage: { input_tokens: 1, output_tokens: 2 } }));
        return;
      }
      const base = { id: 'c1', created: 0, model: 'm' };
      if (body.stream) {
        res.setHeader('content-type', 'text/event-stream');
        const chunk = { ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: 'keyless answer' }, finish_reason: 'stop' }] };
        res.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'keyless answer' }, finish_reason: 'stop' }] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, headers, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe(`apiKey: false, a keyless server (Express ${EXPRESS_MAJOR})`, () => {
  it('sends no Authorization, api-key or x-api-key header, in both modes', async () => {
    const upstream = await startRecordingUpstream();
    try {
      const url = await serve({
        models: [
          { name: 'vllm', deployments: [{ provider: 'openai', baseUrl: `${upstream.url}/v1`, model: 'llama', apiKey: false }] },
          { name: 'azure-local', deployments: [{ provider: 'azure', baseUrl: upstream.url, model: 'llama', apiKey: false }] },
          { name: 'claude-local', deployments: [{ provider: 'anthropic', baseUrl: upstream.url, model: 'claude', apiKey: false }] },
        ],
      });
      for (const group of ['vllm', 'azure-local']) {
        const [plain, streamed] = await chatBoth(url, ask(group));
        expect(plain).toMatchObject({ status: 200, text: 'keyless answer' });
        expect(parityView(streamed)).toEqual(parityView(plain));
      }
      expect(await chat(url, ask('claude-local'))).toMatchObject({ status: 200, text: 'keyless answer' });
      expect(upstream.headers).toHaveLength(5);
      for (const seen of upstream.headers) {
        expect(seen['authorization']).toBeUndefined();
        expect(seen['api-key']).toBeUndefined();
        expect(seen['x-api-key']).toBeUndefined();
      }
    } finally {
      await upstream.close();
    }
  });
});

describe(`an upstream refusing the gateway's key is a 502 naming the deployment (Express ${EXPRESS_MAJOR})`, () => {
  const cases = [
    ['OpenAI-compatible', 'openai', 'openai/normal'],
    ['Azure', 'azure', 'azure/normal'],
    ['Anthropic', 'anthropic', 'anthropic/normal'],
  ] as const;

  describe.each(cases)('%s', (_label, provider, id) => {
    const refused = () => deployments[provider](WRONG_KEY);
    // The mocks start in beforeAll, after describe.each has run: look them up when the test runs.
    const mockOf = () => (provider === 'anthropic' ? anthropic : openai);

    it('alone in its group: the same 502 in both modes, with the attempt headers, and no key', async () => {
      const [plain, streamed] = await bothModesFresh(() => ({ models: [{ name: 'chat', deployments: [refused()] }] }), 'chat');
      expect(mockOf().calls.map((call) => call.status)).toEqual([401, 401]);
      expect(plain.status).toBe(502);
      expect(plain.error).toEqual({ message: `The upstream rejected the gateway's credentials for deployment '${id}' (401).`, code: 502, type: 'upstream_error' });
      expect(plain.headers).toMatchObject({ 'x-gateway-deployment': id, 'x-gateway-attempts': '1', 'x-gateway-fallbacks': '0' });
      expect(streamed.inBand).toBe(false);
      expect(parityView(streamed)).toEqual(parityView(plain));
      for (const outcome of [plain, streamed]) expect(everythingSent(outcome)).not.toContain(WRONG_KEY);
    });

    it('with a general fallback group: the fallback answers (200) in both modes', async () => {
      const config = (): GatewayOptions => ({
        models: [
          { name: 'chat', deployments: [refused()] },
          { name: 'spare', deployments: [backupDeployment()] },
        ],
        fallbacks: { general: { chat: ['spare'] } },
      });
      const [plain, streamed] = await bothModesFresh(config, 'chat');
      expect(plain).toMatchObject({ status: 200, text: 'Hello! This is a mock answer from mock-backup.' });
      expect(plain.headers).toMatchObject({ 'x-gateway-model-group': 'spare', 'x-gateway-deployment': 'backup', 'x-gateway-fallbacks': '1' });
      expect(parityView(streamed)).toEqual(parityView(plain));
      expect(backup.callCount()).toBe(2);
    });

    it('a second deployment of the group answers; the refused one cools down, so the next request goes straight there', async () => {
      const config = (): GatewayOptions => ({
        // The refused deployment is tried first: the other's weight gives it a one-in-a-billion chance.
        models: [{ name: 'chat', deployments: [{ ...refused(), weight: 1 }, { ...backupDeployment(), weight: 1e-9 }] }],
        router: { retries: { backoff: { initialMs: 1, maxMs: 2 } } },
      });
      const [plain, streamed] = await bothModesFresh(config, 'chat');
      expect(plain).toMatchObject({ status: 200, text: 'Hello! This is a mock answer from mock-backup.' });
      expect(plain.headers).toMatchObject({ 'x-gateway-deployment': 'backup', 'x-gateway-attempts': '2', 'x-gateway-retries': '1' });
      expect(parityView(streamed)).toEqual(parityView(plain));

      // One gateway, two requests: one refusal takes the deployment out of rotation (no failure count to reach).
      const url = await serve(config());
      mockOf().reset();
      const first = await chat(url, { ...ask('chat'), stream: true });
      const second = await chat(url, { ...ask('chat'), stream: false });
      expect(first.headers['x-gateway-attempts']).toBe('2');
      expect(second).toMatchObject({ status: 200, text: 'Hello! This is a mock answer from mock-backup.' });
      expect(second.headers).toMatchObject({ 'x-gateway-deployment': 'backup', 'x-gateway-attempts': '1' });
      expect(mockOf().callCount()).toBe(1);
    });
  });

  it('Bedrock: a refused AWS identity is the same 502 naming the deployment', async () => {
    const bedrock = await startMockBedrock();
    try {
      const config = (): GatewayOptions => ({
        models: [{ name: 'b', deployments: [{ provider: 'bedrock', baseUrl: bedrock.url, model: 'auth', awsCredentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' } }] }],
      });
      const [plain, streamed] = await bothModesFresh(config, 'b');
      expect(plain.status).toBe(502);
      expect(plain.error).toEqual({ message: "The upstream rejected the gateway's credentials for deployment 'bedrock/auth' (403).", code: 502, type: 'upstream_error' });
      expect(parityView(streamed)).toEqual(parityView(plain));
    } finally {
      await bedrock.close();
    }
  });
});

/** An upstream that refuses every key and echoes it back, the way some providers (and proxies) do. */
async function startEchoingRefuser(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (chunk: Buffer) => (text += chunk.toString()));
    req.on('end', () => {
      const { model } = JSON.parse(text) as { model: string };
      const key = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
      const status = model === 'says-500' ? 500 : model === 'says-403' ? 403 : 401;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${key} (from ${req.socket.localAddress}).`, type: 'invalid_request_error', code: 'invalid_api_key' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe(`nothing of the key or the upstream's text reaches the client (Express ${EXPRESS_MAJOR})`, () => {
  it.each([
    ['a 401', 'says-401', 401],
    ['a 403', 'says-403', 403],
    ['a 500 saying "Incorrect API key"', 'says-500', 500],
  ])('%s that echoes the key is a 502 naming the deployment, in both modes', async (_label, model, status) => {
    const refuser = await startEchoingRefuser();
    try {
      const key = 'gateway-secret-abc123';
      const [plain, streamed] = await bothModesFresh(() => ({ models: [{ name: 'chat', deployments: [{ id: 'echoing', provider: 'openai', baseUrl: `${refuser.url}/v1`, model, apiKey: key }] }] }), 'chat');
      expect(plain.status).toBe(502);
      expect(plain.error).toEqual({ message: `The upstream rejected the gateway's credentials for deployment 'echoing' (${status}).`, code: 502, type: 'upstream_error' });
      expect(parityView(streamed)).toEqual(parityView(plain));
      for (const outcome of [plain, streamed]) {
        expect(everythingSent(outcome)).not.toContain(key);
        expect(everythingSent(outcome)).not.toContain('127.0.0.1');
      }
    } finally {
      await refuser.close();
    }
  });
});

describe(`a key function that returns no key (Express ${EXPRESS_MAJOR})`, () => {
  it.each([
    ['an empty string', () => ''],
    ['undefined', () => undefined as unknown as string],
    ['a rejected promise', () => Promise.reject(new Error(`vault at https://vault.internal said no to ${RIGHT_KEY}`))],
  ])('%s: a 502 naming the deployment, no upstream call, and the next deployment answers', async (_label, apiKey) => {
    const alone = (): GatewayOptions => ({ models: [{ name: 'chat', deployments: [{ id: 'rotating', provider: 'openai', baseUrl: `${openai.url}/v1`, model: 'normal', apiKey }] }] });
    const [plain, streamed] = await bothModesFresh(alone, 'chat');
    expect(plain.status).toBe(502);
    expect(plain.error).toMatchObject({ code: 502, type: 'upstream_error' });
    expect(plain.error?.['message']).toMatch(/^The gateway has no API key for deployment 'rotating': its key function (returned none|failed)\.$/);
    expect(parityView(streamed)).toEqual(parityView(plain));
    expect(openai.callCount()).toBe(0);

    const withSpare = await serve({
      models: [{ name: 'chat', deployments: [{ id: 'rotating', provider: 'openai', baseUrl: `${openai.url}/v1`, model: 'normal', apiKey, weight: 1 }, { ...backupDeployment(), weight: 1e-9 }] }],
      router: { retries: { backoff: { initialMs: 1, maxMs: 2 } } },
    });
    expect(await chat(withSpare, ask('chat'))).toMatchObject({ status: 200, text: 'Hello! This is a mock answer from mock-backup.' });
  });
});
