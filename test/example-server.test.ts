/**
 * The example server (`example-server/`), run as users run it: a child process with the default config
 * and its embedded mocks, every walkthrough step over real HTTP (in both streaming modes where the step
 * is a chat, Responses or Messages request), API keys, a graceful shutdown with a stream open, and start-up failures on bad
 * config. The child runs the real Express 5 whatever EXPRESS_MAJOR says; only this file's imports follow it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGateway, loadGatewayConfig, silentLogger } from '../lib/index.js';
import {
  API_KEY_VARIABLE,
  GUARDRAIL_FRAME,
  MESSAGES_GUARDRAIL_EVENT,
  RESPONSES_GUARDRAIL_ERROR,
  SHUTDOWN_FRAME,
  WALKTHROUGH,
  walkthroughText,
  type WalkthroughId,
  type WalkthroughStep,
} from '../example-server/walkthrough.js';
import { chat, chatBoth, parityView, type ChatOutcome } from './helpers/chat.js';
import { openStream, spawnExampleServer, startExampleServer, waitForOutput, type ExampleServer, type ExampleServerProcess } from './helpers/example-server.js';
import { agreement, eventNames, expectTerminalError, wireRequest, type Wire } from './helpers/guardrail-protocol-wire.js';
import { rawRequest, sseData } from './helpers/http.js';
import type { WireProtocol } from './helpers/protocols.js';

const EXAMPLE_DIR = join(__dirname, '..', 'example-server');
const DEFAULT_CONFIG = join(EXAMPLE_DIR, 'gateway.yaml');
const API_KEY = 'test-key-2';
const DONE = 'data: [DONE]\n\n';

interface BrokenConfig {
  name: string;
  edit: (yaml: string) => string;
  /** The config path the start-up error must name. */
  path: string;
  viaArgument?: boolean;
}

const BROKEN_CONFIGS: BrokenConfig[] = [
  { name: 'a wrong type', edit: (yaml) => replaceOnce(yaml, 'maxRetries: 1', 'maxRetries: lots'), path: 'router.retries.maxRetries' },
  { name: 'an unknown provider', edit: (yaml) => replaceOnce(yaml, 'provider: openai', 'provider: openia'), path: 'models[0].deployments[0].provider' },
  { name: 'an empty API key', edit: (yaml) => replaceOnce(yaml, 'apiKey: sk-ant-mock', 'apiKey: ""'), path: 'models[1].deployments[0].apiKey' },
  { name: 'a fallback to an unknown group', edit: (yaml) => replaceOnce(yaml, 'flaky: [gpt-4o-mini]', 'flaky: [gpt-5-turbo]'), path: 'fallbacks.general.flaky[0]' },
  {
    name: 'a guardrail without a version (given with --config)',
    edit: (yaml) => replaceOnce(yaml, '    guardrailVersion: "1"\n', ''),
    path: 'guardrails[0].guardrailVersion',
    viaArgument: true,
  },
];

/** A start-up takes about 1.5 s of CPU (loading the AWS SDK, compiling schemas): generous on a busy machine. */
const START_UP_TIMEOUT_MS = 90_000;

/** Most tests share this one. */
let server: ExampleServer;
/** With GATEWAY_API_KEYS and a short shutdown deadline; the last test stops it with a SIGTERM. */
let secured: ExampleServer;

beforeAll(async () => {
  [server, secured] = await Promise.all([
    startExampleServer({}, [], START_UP_TIMEOUT_MS),
    startExampleServer({ GATEWAY_API_KEYS: `test-key-1, ${API_KEY}`, SHUTDOWN_DEADLINE_MS: '300' }, [], START_UP_TIMEOUT_MS),
  ]);
}, START_UP_TIMEOUT_MS + 5_000);
afterAll(() => Promise.all([server?.kill(), secured?.kill()]));

/** The step's request as its curl command sends it, with `stream` set to `mode` (chat steps only). */
function request(step: WalkthroughStep, target: ExampleServer, mode?: boolean) {
  const body = step.body && mode !== undefined ? { ...step.body, stream: mode } : step.body;
  return rawRequest(target.url, { method: step.method, path: step.path, ...(body ? { body } : {}) });
}

/** A chat step that answers in both modes: the documented text and headers, the same in both. */
async function expectAnswer(step: WalkthroughStep): Promise<{ plain: ChatOutcome; streamed: ChatOutcome }> {
  const [plain, streamed] = await chatBoth(server.url, { ...step.body });
  for (const outcome of [plain, streamed]) {
    expect(outcome.status).toBe(200);
    expect(outcome.text).toBe(step.answer);
    expect(outcome.finishReason).toBe('stop');
    for (const [name, value] of Object.entries(step.headers ?? {})) expect(outcome.headers[name]).toBe(value);
  }
  expect(parityView(streamed)).toEqual(parityView(plain));
  expect(streamed.frames.filter((frame) => frame !== '[DONE]').length).toBeGreaterThan(2); // really streamed
  expect(streamed.frames.at(-1)).toBe('[DONE]');
  return { plain, streamed };
}

/** A JSON error body, the same whether or not the request asked for a stream (nothing was sent yet). */
async function expectJsonError(step: WalkthroughStep, status: number, error: unknown): Promise<void> {
  for (const mode of [false, true]) {
    const res = await request(step, server, mode);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(res.text)).toEqual(error);
  }
}

const guardrailError = JSON.parse(GUARDRAIL_FRAME.slice('data: '.length)) as unknown;
const messagesGuardrailError = JSON.parse(MESSAGES_GUARDRAIL_EVENT.split('\n')[1]!.slice('data: '.length)) as Record<string, unknown>;

/** The inbound protocol of a Responses or Messages step, by its path. */
function protocolOf(step: WalkthroughStep): WireProtocol {
  if (step.path === '/v1/responses') return 'responses';
  if (step.path === '/v1/messages') return 'messages';
  throw new Error(`step ${step.id} is not a Responses or Messages step`);
}

/** A Responses or Messages step, sent as its curl command sends it with `stream` set to `mode`, read from the wire. */
function protocolRequest(step: WalkthroughStep, mode: boolean): Promise<Wire> {
  return wireRequest(protocolOf(step), server.url, { ...step.body, stream: mode }, { path: step.path });
}

/**
 * A Responses or Messages step that answers in both modes: the documented text and headers, the same in both,
 * the stream a well-formed event sequence with the protocol's normal ending.
 */
async function expectProtocolAnswer(step: WalkthroughStep): Promise<{ plain: Wire; streamed: Wire }> {
  const plain = await protocolRequest(step, false);
  const streamed = await protocolRequest(step, true);
  for (const outcome of [plain, streamed]) {
    expect(outcome.status).toBe(200);
    expect(outcome.complete).toBe(true);
    expect(outcome.error).toBeUndefined();
    expect(outcome.text).toBe(step.answer);
    expect(outcome.finish).toBe('stop');
    for (const [name, value] of Object.entries(step.headers ?? {})) expect(outcome.headers[name]).toBe(value);
  }
  expect(plain.headers['content-type']).toMatch(/^application\/json/);
  expect(streamed.headers['content-type']).toMatch(/^text\/event-stream/);
  expect(agreement(streamed)).toEqual(agreement(plain));
  expect(streamed.ending).toBe('completed');
  const names = eventNames(streamed);
  if (streamed.protocol === 'responses') {
    expect(plain.protocolStop).toBe('completed');
    expect(names.slice(0, 2)).toEqual(['response.created', 'response.in_progress']);
    expect(names.at(-1)).toBe('response.completed');
    expect(names.filter((n) => n === 'response.output_text.delta').length).toBeGreaterThan(1); // really streamed
  } else {
    expect(plain.protocolStop).toBe('end_turn');
    expect(names[0]).toBe('message_start');
    expect(names.slice(-2)).toEqual(['message_delta', 'message_stop']);
    expect(names.filter((n) => n === 'content_block_delta').length).toBeGreaterThan(1);
  }
  for (const [name, value] of Object.entries(step.headers ?? {})) expect(step.expected).toContain(`${name}: ${value}`);
  return { plain, streamed };
}

/** A Responses or Messages step whose stream a guardrail blocks after its first windows. */
async function expectProtocolBlockedStream(step: WalkthroughStep): Promise<void> {
  const streamed = await protocolRequest(step, true);
  expectTerminalError(streamed, { message: 'Violated guardrail policy', type: 'guardrail_violation' });
  expect(streamed.text).toBe(step.answer); // the first windows, before the error event
  expect(streamed.raw).not.toContain('BLOCKME');
  const plain = await protocolRequest(step, false);
  expect(plain.status).toBe(400);
  expect(plain.raw).not.toContain('BLOCKME');
  expect(plain.error).toEqual(streamed.error);
  if (streamed.protocol === 'responses') {
    const { sequence_number: _sequence, ...event } = streamed.errorWire!;
    expect(event).toEqual(RESPONSES_GUARDRAIL_ERROR);
    expect(JSON.parse(plain.raw)).toEqual(guardrailError);
  } else {
    expect(streamed.raw.endsWith(MESSAGES_GUARDRAIL_EVENT)).toBe(true);
    expect(JSON.parse(plain.raw)).toEqual(messagesGuardrailError);
    expect(step.expected).toContain(MESSAGES_GUARDRAIL_EVENT.trim().replace('\n', ' '));
  }
}

/** What each walkthrough step must answer; a step without an entry here does not compile. */
const checks: Record<WalkthroughId, (step: WalkthroughStep) => Promise<unknown>> = {
  health: async (step) => {
    const res = await request(step, server);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual(JSON.parse(step.expected));
  },
  models: async (step) => {
    const res = await request(step, server);
    expect(res.status).toBe(200);
    const ids = (JSON.parse(res.text) as { data: { id: string }[] }).data.map((model) => model.id);
    const config = loadGatewayConfig(DEFAULT_CONFIG, { env: dummyMockEnv() });
    expect(ids).toEqual(config.models.flatMap((group) => [group.name, ...(group.aliases ?? [])]));
    expect(step.expected).toContain(ids.join(', '));
  },
  chat: expectAnswer,
  stream: expectAnswer,
  slow: async (step) => {
    const started = Date.now();
    await expectAnswer(step);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 3 * 450); // 3 gaps of 500 ms, in each mode
  },
  flaky: expectAnswer,
  'rate-limited': expectAnswer,
  moderated: async (step) => {
    // The seed reproduction: with `stream: true` the content-policy fallback answers with a normal stream.
    const { streamed } = await expectAnswer(step);
    expect(streamed.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(streamed.inBand).toBe(false);
  },
  'long-context': expectAnswer,
  masked: expectAnswer,
  'blocked-input': async (step) => {
    await expectJsonError(step, 400, guardrailError);
  },
  'blocked-stream': async (step) => {
    const res = await request(step, server, true);
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.text.endsWith(GUARDRAIL_FRAME + DONE)).toBe(true);
    const frames = sseData(res.text);
    const content = frames.slice(0, -2).map((frame) => JSON.parse(frame) as { choices: { delta: { content?: string } }[] });
    const released = content.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    expect(released).toBe(step.answer); // the first windows, before the error frame
    expect(res.text.split('"error"')).toHaveLength(2);
    expect(res.text).not.toContain('BLOCKME');

    const plain = await request(step, server, false);
    expect(plain.status).toBe(400);
    expect(JSON.parse(plain.text)).toEqual(guardrailError);
  },
  responses: expectProtocolAnswer,
  'responses-moderated': expectProtocolAnswer,
  'responses-masked': expectProtocolAnswer,
  'responses-blocked-stream': expectProtocolBlockedStream,
  messages: expectProtocolAnswer,
  'messages-moderated': expectProtocolAnswer,
  'messages-masked': expectProtocolAnswer,
  'messages-blocked-stream': expectProtocolBlockedStream,
  passthrough: async (step) => {
    const res = await request(step, server);
    expect(res.status).toBe(200);
    const body = JSON.parse(res.text) as { object: string; model: string; data: { embedding: number[] }[] };
    expect(body).toMatchObject({ object: 'list', model: 'text-embedding-3-small' });
    expect(body.data[0]!.embedding).toHaveLength(8);
  },
  unauthorized: async (step) => {
    const res = await request(step, secured);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer');
    expect(res.text).toBe(step.expected.replace(/^HTTP 401 /, ''));
  },
};

describe('example server: the walkthrough', () => {
  it('prints its URL and the walkthrough as curl commands', () => {
    expect(server.stdout()).toContain(walkthroughText(server.url));
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('documents what it checks: each step quotes its answer and headers', () => {
    for (const step of WALKTHROUGH as readonly WalkthroughStep[]) {
      if (step.answer !== undefined) expect(step.expected).toContain(step.answer);
      for (const [name, value] of Object.entries(step.headers ?? {})) expect(step.expected).toContain(`${name}: ${value}`);
    }
  });

  for (const step of WALKTHROUGH) {
    it(`${step.id}: ${step.title}`, () => checks[step.id](step));
  }

  it('exposes Prometheus metrics of the walkthrough requests at /metrics', async () => {
    const res = await rawRequest(server.url, { method: 'GET', path: '/metrics' });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toMatch(/^llm_gateway_requests_total\{model="gpt-4o-mini",stream="false",status="2xx",error_type="none"\} [1-9]/m);
    expect(res.text).toMatch(/^llm_gateway_fallbacks_total\{group="claude",reason="content_policy_violation"\} [1-9]/m);
  });
});

describe('example server: API keys (GATEWAY_API_KEYS)', () => {
  const models = { method: 'GET', path: '/v1/models' } as const;

  it('accepts any configured key and rejects a wrong one in the gateway error shape', async () => {
    const ok = await rawRequest(secured.url, { ...models, headers: { authorization: `Bearer ${API_KEY}` } });
    expect(ok.status).toBe(200);
    const wrong = await rawRequest(secured.url, { ...models, headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.text)).toEqual({ error: { message: 'Invalid API key.', code: 401, type: 'authentication_error' } });
    const answer = await chat(secured.url, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true }, { headers: { authorization: `Bearer ${API_KEY}` } });
    expect(answer.status).toBe(200);
    expect(answer.frames.at(-1)).toBe('[DONE]');
  });

  it('leaves /health open and prints curl commands that send the key from a shell variable', async () => {
    const health = await rawRequest(secured.url, { method: 'GET', path: '/health' });
    expect(health.status).toBe(200);
    expect(secured.stdout()).toContain(walkthroughText(secured.url, { withApiKey: true }));
    expect(secured.stdout()).toContain(`-H "authorization: Bearer $${API_KEY_VARIABLE}"`);
    expect(secured.stdout()).not.toContain(API_KEY);
  });
});

describe('example server: configuration', () => {
  it('gateway.yaml and gateway.real.example.yaml load and build a gateway', async () => {
    const realEnv = {
      OPENAI_API_KEY: 'sk-dummy',
      AZURE_OPENAI_RESOURCE: 'dummy-resource',
      AZURE_OPENAI_API_KEY: 'azure-dummy',
      ANTHROPIC_API_KEY: 'sk-ant-dummy',
      DASHSCOPE_API_KEY: 'sk-dashscope-dummy',
      BEDROCK_GUARDRAIL_ID: 'gr1dummy',
    };
    for (const [file, env] of [
      [DEFAULT_CONFIG, dummyMockEnv()],
      [join(EXAMPLE_DIR, 'gateway.real.example.yaml'), realEnv],
    ] as const) {
      const gateway = createGateway({ ...loadGatewayConfig(file, { env }), logger: silentLogger });
      await gateway.close();
    }
  });

  describe('a broken config stops the server at start-up, naming the path', () => {
    const broken = new Map<string, ExampleServerProcess>();
    let tempDir: string;
    // All at once, while the other servers are idle.
    beforeAll(() => {
      tempDir = mkdtempSync(join(tmpdir(), 'example-server-'));
      const defaults = readFileSync(DEFAULT_CONFIG, 'utf8');
      BROKEN_CONFIGS.forEach(({ name, edit, viaArgument }, i) => {
        const file = join(tempDir, `broken-${i}.yaml`);
        writeFileSync(file, edit(defaults));
        broken.set(name, viaArgument ? spawnExampleServer({}, ['--config', file]) : spawnExampleServer({ GATEWAY_CONFIG: file }));
      });
    });
    afterAll(async () => {
      await Promise.all([...broken.values()].map((child) => child.kill()));
      rmSync(tempDir, { recursive: true, force: true });
    });

    it.each(BROKEN_CONFIGS)(
      '$name',
      async ({ name, path }) => {
        const child = broken.get(name)!;
        expect(await child.exited).toBe(1);
        expect(child.stderr()).toContain(`invalid option '${path}'`);
        expect(child.stdout()).not.toContain('listening');
      },
      START_UP_TIMEOUT_MS,
    );
  });
});

// Last: it stops the shared `secured` server.
describe('example server: graceful shutdown', () => {
  it('on SIGTERM stops accepting, ends an open stream with the shutdown frame and [DONE] at the deadline, and exits 0', async () => {
    const slow = WALKTHROUGH.find((step) => step.id === 'slow')!;
    const stream = openStream(secured.url, slow.path, slow.body, { authorization: `Bearer ${API_KEY}` });
    expect(await stream.firstData).toMatch(/^data: /);
    secured.child.kill('SIGTERM');
    await waitForOutput(secured, /SIGTERM: finishing 1 request/);
    // Refused, or reset when it reached the backlog of the listening socket being closed: never served.
    const refused = await rawRequest(secured.url, { method: 'GET', path: '/health' });
    expect(refused.status).toBe(0);
    expect(['ECONNREFUSED', 'ECONNRESET']).toContain((refused.error as NodeJS.ErrnoException).code);

    const res = await stream.response;
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.text.endsWith(SHUTDOWN_FRAME + DONE)).toBe(true);
    expect(res.text).not.toContain('from mock-openai.'); // cut at the deadline, before the last chunk
    expect(await secured.exited).toBe(0);
    expect(secured.stdout()).toContain('stopped');
  });
});

/** The variables the example server sets, with addresses nothing listens on (the config is only built). */
function dummyMockEnv(): Record<string, string> {
  return { MOCK_OPENAI_URL: 'http://127.0.0.1:9', MOCK_ANTHROPIC_URL: 'http://127.0.0.1:9', BEDROCK_EMULATOR_URL: 'http://127.0.0.1:9' };
}

function replaceOnce(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`the default config no longer contains ${JSON.stringify(from)}`);
  return text.replace(from, to);
}
