/**
 * The README's resilient profile, run as written: the YAML block between the `resilient-profile` markers
 * is loaded with `parseGatewayConfig` (its `${…}` references pointed at local mocks), only its timeouts are
 * shortened so the test takes seconds, and each failure it is meant to absorb is played by the mocks, in
 * both modes. Every mock answers with the same text, so a recovered answer must be exactly that text:
 * nothing repeated, nothing missing, no error.
 */
import { createGateway, parseGatewayConfig, silentLogger, type Gateway, type GatewayFileConfig } from '../lib/index.js';
import { startMockAnthropic, startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { chat, type ChatOutcome } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, type RunningServer } from './helpers/http.js';
import { readmeBlock } from './helpers/readme.js';

const ANSWER = 'Hello! This is a mock answer from mock.';
const MODEL = 'gpt-4o-mini';
const profileYaml = (): string => readmeBlock('resilient-profile', 'yaml');

let primary: MockServer;
let standby: MockServer;
let claude: MockServer;
const running: { server: RunningServer; gateway: Gateway }[] = [];

beforeAll(async () => {
  [primary, standby, claude] = await Promise.all([startMockOpenAI({ name: 'mock' }), startMockOpenAI({ name: 'mock' }), startMockAnthropic({ name: 'mock' })]);
});
afterAll(() => Promise.all([primary.close(), standby.close(), claude.close()]));
afterEach(async () => {
  for (const { server, gateway } of running.splice(0)) {
    await server.close();
    await gateway.close();
  }
  for (const mock of [primary, standby, claude]) {
    mock.setScenario(MODEL, undefined);
    mock.reset();
  }
});

const TIMEOUTS = { connectMs: 1000, firstTokenMs: 400, idleMs: 400, totalMs: 1200 };

function profile(): GatewayFileConfig {
  const config = parseGatewayConfig(profileYaml(), 'yaml', {
    env: {
      OPENAI_BASE_URL: `${primary.url}/v1`,
      OPENAI_API_KEY: 'sk-primary',
      AZURE_BASE_URL: standby.url,
      AZURE_API_KEY: 'azure-standby',
      ANTHROPIC_BASE_URL: claude.url,
      ANTHROPIC_API_KEY: 'sk-ant-backup',
    },
  });
  return { ...config, router: { ...config.router, timeouts: TIMEOUTS } };
}

async function serve(): Promise<string> {
  const gateway = createGateway({ ...profile(), logger: silentLogger });
  const app = createApp();
  app.use(gateway);
  const server = await listen(app);
  running.push({ server, gateway });
  return server.url;
}

const ask = (stream: boolean) => ({ model: 'chat', stream, messages: [{ role: 'user', content: 'Hi there' }] });

/** A recovered answer: the whole text once, a normal finish, no error of either kind. */
function expectWholeAnswer(res: ChatOutcome): void {
  expect(res.status).toBe(200);
  expect(res.error).toBeUndefined();
  expect(res.text).toBe(ANSWER);
  expect(res.finishReason).toBe('stop');
  expect(res.complete).toBe(true);
  if (res.frames.length > 0) expect(res.frames[res.frames.length - 1]).toBe('[DONE]');
}

describe(`the README's resilient profile (Express ${EXPRESS_MAJOR})`, () => {
  it('loads as written, with the defaults it relies on', () => {
    const config = parseGatewayConfig(profileYaml(), 'yaml', {
      env: { OPENAI_API_KEY: 'a', AZURE_BASE_URL: 'https://example.openai.azure.com', AZURE_API_KEY: 'b', ANTHROPIC_API_KEY: 'c' },
    });
    expect(config.router?.strategy).toBe('ordered');
    expect(config.fallbacks?.continuation?.groups).toEqual(['backup']);
    expect(config.fallbacks?.generalForSpecific).toBeUndefined();
    expect(config.models[0]!.deployments[0]!.baseUrl).toBe('https://api.openai.com/v1');
  });

  it.each([false, true])('healthy: the primary serves, the standby and the backup are not called (stream: %s)', async (stream) => {
    const url = await serve();
    const res = await chat(url, ask(stream));
    expectWholeAnswer(res);
    expect(res.headers['x-gateway-deployment']).toBe('primary');
    expect(standby.callCount() + claude.callCount()).toBe(0);
  });

  it.each([false, true])('a silent primary: the standby answers after one timeout, and the primary is not called again (stream: %s)', async (stream) => {
    primary.setScenario(MODEL, 'hang');
    const url = await serve();
    const started = Date.now();
    const res = await chat(url, ask(stream));
    const elapsed = Date.now() - started;
    expectWholeAnswer(res);
    expect(res.headers['x-gateway-attempt-log']).toBe('chat/primary:504:timeout, chat/standby:200');
    // One first-token timeout streaming, one total timeout without streaming: never one per retry.
    expect(elapsed).toBeLessThan((stream ? TIMEOUTS.firstTokenMs : TIMEOUTS.totalMs) + 800);
    expect(primary.callCount()).toBe(1);
  });

  it.each([false, true])('a primary cut mid-answer: the client still gets the whole answer once (stream: %s)', async (stream) => {
    primary.setScenario(MODEL, 'midstream-drop');
    const url = await serve();
    const res = await chat(url, ask(stream));
    expectWholeAnswer(res);
    // Without streaming the cut happens before anything is sent: the standby answers. Streaming, the
    // client already has half the answer: the backup finishes it by continuation, the restart dropped.
    expect(res.headers['x-gateway-attempt-log']).toBe(stream ? 'chat/primary:200' : 'chat/primary:502:connection_error, chat/standby:200');
    if (stream) {
      expect(claude.callCount()).toBe(1);
      expect(JSON.stringify(claude.calls[0]!.body)).toContain('Hello! This is');
    }
  });

  it.each([false, true])('a primary that stalls after its first chunk: the idle bound, then the same whole answer (stream: %s)', async (stream) => {
    primary.setScenario(MODEL, 'hang-after-first');
    const url = await serve();
    const res = await chat(url, ask(stream));
    expectWholeAnswer(res);
    expect(stream ? claude.callCount() : standby.callCount()).toBe(1);
  });

  it.each([false, true])('a broken frame in a healthy stream is skipped, not the answer (stream: %s)', async (stream) => {
    primary.setScenario(MODEL, 'midstream-malformed-chunk');
    const url = await serve();
    const res = await chat(url, ask(stream));
    expectWholeAnswer(res);
    // Without streaming the whole body is not JSON: a failure, and the standby answers.
    expect(res.headers['x-gateway-deployment']).toBe(stream ? 'primary' : 'standby');
  });
});
