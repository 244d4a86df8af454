/**
 * The gateway inside somebody else's Express app (issue "Stay in its lane"): a host app with its own
 * routes, `express.json()`, its own 404 and error handlers, and the gateway mounted at the root (one call)
 * or piece by piece with the error writer app-wide. The gateway answers its own requests and nothing else.
 */
import type { ErrorRequestHandler, Express, RequestHandler } from 'express';
import {
  bedrockGuardrail,
  createGateway,
  createRouter,
  fallbackHandler,
  gatewayContext,
  sseErrorWriter,
  type Gateway,
  type GatewayOptions,
  type Logger,
} from '../lib/index.js';
import { startBedrockEmulator, startMockOpenAI, type BedrockEmulator, type MockServer } from '../lib/testing/index.js';
import { chatBoth, parityView } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR, express } from './helpers/express.js';
import { listen, rawRequest, type RunningServer } from './helpers/http.js';

let mock: MockServer;
let emulator: BedrockEmulator;
const running: { server: RunningServer; gateway?: Gateway }[] = [];

beforeAll(async () => {
  [mock, emulator] = await Promise.all([startMockOpenAI({ name: 'mock' }), startBedrockEmulator()]);
});
afterAll(() => Promise.all([mock.close(), emulator.close()]));
afterEach(async () => {
  for (const { server, gateway } of running.splice(0)) {
    await server.close();
    await gateway?.close();
  }
  mock.reset();
});

interface LogLine {
  level: keyof Logger;
  obj: Record<string, unknown>;
  msg: string | undefined;
}

function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: keyof Logger) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

const ask = (content = 'Hello there', model = 'main') => ({ model, messages: [{ role: 'user', content }] });

/** A host error the gateway must not touch: the host's handler answers it with its own status. */
class HostError extends Error {
  status = 503;
  expose = true;
}

const hostNotFound: RequestHandler = (req, res) => {
  res.status(404).json({ host: 'not-found', path: req.path });
};
const hostErrors: ErrorRequestHandler = (err: { status?: number; message?: string }, _req, res, _next) => {
  res.status(err.status ?? 500).json({ host: 'error', message: err.message });
};

function gatewayOptions(logger: Logger, extra: Partial<GatewayOptions> = {}): GatewayOptions {
  return {
    models: [{ name: 'main', deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: 'echo', apiKey: 'sk-main' }] }],
    router: { retries: { maxRetries: 0 } },
    logger,
    ...extra,
  };
}

/** The host app with the gateway at the root (one call), a route before it and routes after it. */
async function hostWithGateway(options: GatewayOptions): Promise<string> {
  const gateway = createGateway(options);
  const app = createApp();
  app.use(express.json());
  app.get('/api/before-fails', (_req, _res, next) => next(new HostError('host says no')));
  app.use(gateway);
  app.get('/api/ok', (_req, res) => {
    res.json({ host: 'ok' });
  });
  app.get('/api/after-fails', (_req, _res, next) => next(new HostError('host says no again')));
  app.use(hostNotFound);
  app.use(hostErrors);
  const server = await listen(app);
  running.push({ server, gateway });
  return server.url;
}

/** The host app composed piece by piece, with `sseErrorWriter()` app-wide. */
async function hostWithPieces(logger: Logger, configure?: (app: Express) => void): Promise<string> {
  const router = createRouter({ models: gatewayOptions(logger).models, retries: { maxRetries: 0 }, logger });
  const app = createApp();
  app.use(express.json());
  configure?.(app);
  app.post('/v1/chat/completions', gatewayContext({ logger }), router, fallbackHandler({ router }));
  app.get('/api/fails', (_req, _res, next) => next(new HostError('host says no')));
  app.use(sseErrorWriter({ logger }));
  app.use(hostNotFound);
  app.use(hostErrors);
  const server = await listen(app);
  running.push({ server });
  return server.url;
}

describe(`the gateway in a host app (Express ${EXPRESS_MAJOR})`, () => {
  describe('createGateway at the root', () => {
    it("leaves the host's routes, 404s and errors to the host", async () => {
      const { logger, lines } = captureLogger();
      const url = await hostWithGateway(gatewayOptions(logger));
      const ok = await rawRequest(url, { method: 'GET', path: '/api/ok' });
      expect([ok.status, JSON.parse(ok.text)]).toEqual([200, { host: 'ok' }]);
      for (const path of ['/api/typo', '/favicon.ico', '/x/v1/embeddings', '/v1/embeddings']) {
        const res = await rawRequest(url, { method: 'GET', path });
        expect([path, res.status, JSON.parse(res.text)]).toEqual([path, 404, { host: 'not-found', path }]);
      }
      for (const path of ['/api/before-fails', '/api/after-fails']) {
        const res = await rawRequest(url, { method: 'GET', path });
        expect([path, res.status, JSON.parse(res.text).host]).toEqual([path, 503, 'error']);
      }
      expect(mock.callCount()).toBe(0);
      expect(lines.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
    });

    it("answers body-parser errors on its route in its own shape, with the parser's real status", async () => {
      const url = await hostWithGateway(gatewayOptions(captureLogger().logger));
      const badJson = await rawRequest(url, { body: '{"model": "main", "messages": [' });
      expect(badJson.status).toBe(400);
      expect(badJson.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(badJson.text)).toEqual({ error: { message: 'Request body: not valid JSON.', code: 400, type: 'invalid_request_error' } });
      const tooLarge = await rawRequest(url, { body: ask('x'.repeat(200_000)) }); // express.json()'s default limit is 100kb
      expect(tooLarge.status).toBe(413);
      expect(JSON.parse(tooLarge.text)).toEqual({
        error: { message: 'Request body: larger than the 100kb limit.', code: 413, type: 'invalid_request_error' },
      });
      for (const res of [badJson, tooLarge]) {
        expect(res.text).not.toMatch(/<html|at .*\.js/i);
        expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      }
    });

    it('puts x-request-id on /v1/models and on guardrail blocks, in both modes', async () => {
      const guardrail = {
        guardrailIdentifier: 'gr1default',
        guardrailVersion: '1',
        region: 'us-east-1',
        endpoint: emulator.url,
        credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
        maxAttempts: 1,
      };
      for (const hooks of [['pre_call'], ['during_call'], ['post_call']] as const) {
        const url = await hostWithGateway(gatewayOptions(captureLogger().logger, { guardrails: [{ ...guardrail, hooks: [...hooks] }] }));
        const models = await rawRequest(url, { method: 'GET', path: '/v1/models', headers: { 'x-request-id': 'models-1' } });
        expect(models.status).toBe(200);
        expect(models.headers['x-request-id']).toBe('models-1');
        const content = hooks[0] === 'post_call' ? 'please give me stock tips' : 'give me stock tips please';
        const [plain, streamed] = await chatBoth(url, ask(content), { headers: { 'x-request-id': `blocked-${hooks[0]}` } });
        expect(plain.status).toBe(400);
        expect(plain.error?.['type']).toBe('guardrail_violation');
        expect(parityView(streamed)).toEqual(parityView(plain));
        expect(plain.headers['x-request-id']).toBe(`blocked-${hooks[0]}`);
        expect(streamed.headers['x-request-id']).toBe(`blocked-${hooks[0]}`);
      }
    });
  });

  describe('piece by piece, with sseErrorWriter() app-wide', () => {
    it("passes the host's errors to the host's handler, unchanged", async () => {
      const { logger, lines } = captureLogger();
      const url = await hostWithPieces(logger);
      const res = await rawRequest(url, { method: 'GET', path: '/api/fails' });
      expect([res.status, JSON.parse(res.text)]).toEqual([503, { host: 'error', message: 'host says no' }]);
      const missing = await rawRequest(url, { method: 'GET', path: '/nowhere' });
      expect(missing.status).toBe(404);
      expect(lines).toEqual([]);
    });

    it('still answers its own requests and its own errors (both modes agree)', async () => {
      const url = await hostWithPieces(captureLogger().logger);
      const [plain, streamed] = await chatBoth(url, ask('echo me'));
      expect([plain.status, plain.text]).toEqual([200, 'echo me']);
      expect(parityView(streamed)).toEqual(parityView(plain));
      const [badPlain, badStreamed] = await chatBoth(url, { model: 'main', messages: [{ role: 'robot', content: 'x' }] });
      expect(badPlain.status).toBe(400);
      expect(parityView(badStreamed)).toEqual(parityView(badPlain));
    });

    it("answers an app-wide body parser's errors on its path in its shape (Express skips routes while an error is pending), and leaves them to the host elsewhere", async () => {
      const url = await hostWithPieces(captureLogger().logger);
      const badJson = await rawRequest(url, { body: '{"model":' });
      expect([badJson.status, JSON.parse(badJson.text)]).toEqual([400, { error: { message: 'Request body: not valid JSON.', code: 400, type: 'invalid_request_error' } }]);
      const hostPath = await rawRequest(url, { path: '/api/things', body: '{"model":' });
      expect([hostPath.status, JSON.parse(hostPath.text).host]).toEqual([400, 'error']);
    });

    it('answers the errors of its own body reading in its own shape (no parser before the route)', async () => {
      const { logger } = captureLogger();
      const router = createRouter({ models: gatewayOptions(logger).models, logger });
      const app = createApp();
      app.post('/v1/chat/completions', gatewayContext({ logger, bodyLimit: '1kb' }), router);
      app.use(sseErrorWriter({ logger }));
      app.use(hostErrors);
      const server = await listen(app);
      running.push({ server });
      const badJson = await rawRequest(server.url, { body: '{"model":' });
      expect([badJson.status, JSON.parse(badJson.text)]).toEqual([400, { error: { message: 'Request body: not valid JSON.', code: 400, type: 'invalid_request_error' } }]);
      const tooLarge = await rawRequest(server.url, { body: ask('x'.repeat(2000)) });
      expect([tooLarge.status, JSON.parse(tooLarge.text)]).toEqual([
        413,
        { error: { message: 'Request body: larger than the 1kb limit.', code: 413, type: 'invalid_request_error' } },
      ]);
    });
  });

  describe('graceful shutdown', () => {
    it('drain() ends what is left with a 503 that says when to retry and closes the connection; logged at info, not error', async () => {
      const { logger, lines } = captureLogger();
      const options = gatewayOptions(logger);
      options.models[0]!.deployments[0]!.model = 'slow-headers:3000';
      const gateway = createGateway({ ...options, models: [...options.models, { name: 'stream', deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: 'slow:1000', apiKey: 'sk-main' }] }] });
      const app = createApp();
      app.use(gateway);
      const server = await listen(app);
      running.push({ server, gateway });
      const waiting = rawRequest(server.url, { body: { ...ask(), stream: false } });
      const streaming = rawRequest(server.url, { body: { ...ask('one two three four five six seven eight', 'stream'), stream: true } });
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(gateway.inFlight).toBe(2);
      await gateway.drain(100);
      const [plain, streamed] = await Promise.all([waiting, streaming]);
      expect(plain.status).toBe(503);
      expect(JSON.parse(plain.text)).toEqual({ error: { message: 'The server is shutting down.', code: 503, type: 'service_unavailable' } });
      expect(plain.headers['retry-after']).toBe('1');
      expect(plain.headers['connection']).toBe('close');
      expect(streamed.status).toBe(200); // committed before the drain: the in-band frame, then [DONE]
      expect(streamed.complete).toBe(true);
      expect(streamed.text.endsWith('data: {"error":{"message":"The server is shutting down.","code":503,"type":"service_unavailable"}}\n\ndata: [DONE]\n\n')).toBe(true);
      expect(lines.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
      expect(lines.filter((l) => l.level === 'info' && l.msg === 'request ended by the shutdown')).toHaveLength(2);
      // A request that arrives while draining (a keep-alive connection) is sent elsewhere, in both modes.
      const [late, lateStreamed] = await chatBoth(server.url, ask('echo me', 'stream'));
      expect(late.status).toBe(503);
      expect(parityView(lateStreamed)).toEqual(parityView(late));
      for (const res of [late, lateStreamed]) expect([res.headers['retry-after'], res.headers['connection']]).toEqual(['1', 'close']);
    });
  });

  describe('composition mistakes', () => {
    it.each([
      ['the router', (logger: Logger) => createRouter({ models: gatewayOptions(logger).models, logger })],
      [
        'the guardrail',
        (logger: Logger) =>
          bedrockGuardrail({ guardrailIdentifier: 'gr1default', guardrailVersion: '1', region: 'us-east-1', endpoint: emulator.url, logger }),
      ],
    ])('%s without gatewayContext(): one clear log line, a JSON 500 per request, never an HTML page', async (_name, build) => {
      const { logger, lines } = captureLogger();
      const app = createApp();
      app.post('/v1/chat/completions', build(logger)); // no context, no error writer
      const server = await listen(app);
      running.push({ server });
      for (let i = 0; i < 3; i++) {
        const res = await rawRequest(server.url, { body: ask() });
        expect(res.status).toBe(500);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        const body = JSON.parse(res.text);
        expect(body.error.type).toBe('internal_error');
        expect(res.text).not.toMatch(/<html|\bat .*:\d+:\d+/i);
      }
      expect(lines).toHaveLength(1);
      expect(lines[0]!.level).toBe('error');
      expect(lines[0]!.msg).toMatch(/gatewayContext\(\)/);
      expect(lines[0]!.obj['err']).toBeUndefined(); // no stack
      expect(mock.callCount()).toBe(0);
    });
  });
});
