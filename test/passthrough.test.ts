/**
 * The pass-through stays in its lane: a host app with its own routes, 404 and error handlers, and
 * `express.json()`, mounts `createGateway` with a pass-through to a hostile upstream. Only the configured
 * paths, spelled one way, reach that upstream, with the gateway's key and nothing of the client's; nothing
 * of the upstream's internals comes back; a cut or stalled body ends the client's connection promptly.
 */
import http from 'node:http';
import type { Express, NextFunction, Request, Response } from 'express';
import { createGateway, DEFAULT_PASSTHROUGH_PATHS, GatewayConfigError, parseGatewayConfig, passThrough, silentLogger, type Gateway, type GatewayOptions, type PassThroughOptions } from '../lib/index.js';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { exactRequest } from './helpers/exact-request.js';
import { createApp, EXPRESS_MAJOR, express } from './helpers/express.js';
import { listen, type RunningServer } from './helpers/http.js';
import { startHostileUpstream, TRUNCATED_BYTES, type HostileUpstream } from './helpers/hostile-upstream.js';

const KEY = 'sk-passthrough-server-key-0123456789';
const ORG = 'org-configured-secret-organization';
const TIMEOUT_MS = 600;

let upstream: HostileUpstream;
let chatMock: MockServer;
const running: RunningServer[] = [];
const gateways: Gateway[] = [];

beforeAll(async () => {
  [upstream, chatMock] = await Promise.all([startHostileUpstream(), startMockOpenAI({ name: 'chat' })]);
});
afterAll(() => Promise.all([upstream.close(), chatMock.close()]));
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
  await Promise.all(gateways.splice(0).map((g) => g.close()));
  upstream.requests.length = 0;
  upstream.abandoned.length = 0;
  chatMock.reset();
});

function gatewayOptions(passthrough: Partial<GatewayOptions['passthrough']> = {}): GatewayOptions {
  return {
    // Chat goes to a different (well-behaved) upstream: whatever reaches the hostile one came through the pass-through.
    models: [{ name: 'main', deployments: [{ provider: 'openai', baseUrl: `${chatMock.url}/v1`, model: 'echo', apiKey: 'sk-chat-deployment-key' }] }],
    passthrough: { target: upstream.url, apiKey: KEY, headers: { 'OpenAI-Organization': ORG }, timeoutMs: TIMEOUT_MS, ...passthrough },
    logger: silentLogger,
  };
}

/** The host app: its own route, `express.json()`, the gateway (at `mount`), its own 404 and error handler. */
function hostApp(mountGateway: (app: Express) => void): Express {
  const app = createApp();
  app.disable('x-powered-by');
  app.use(express.json());
  app.get('/api/hello', (_req, res) => {
    res.json({ host: 'hello' });
  });
  mountGateway(app);
  app.use((_req: Request, res: Response) => {
    res.status(404).json({ host: 'not found' });
  });
  app.use((err: { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err.status ?? 500).json({ host: 'error' });
  });
  return app;
}

async function serveGateway(options: GatewayOptions = gatewayOptions(), prefix = ''): Promise<RunningServer> {
  const gateway = createGateway(options);
  gateways.push(gateway);
  const server = await listen(hostApp((app) => (prefix ? app.use(prefix, gateway) : app.use(gateway))));
  running.push(server);
  return server;
}

async function servePieces(mount: string, options: Omit<PassThroughOptions, 'target'>): Promise<RunningServer> {
  const server = await listen(hostApp((app) => app.use(mount, passThrough({ target: upstream.url, timeoutMs: TIMEOUT_MS, ...options }))));
  running.push(server);
  return server;
}

const chatBody = { model: 'main', messages: [{ role: 'user', content: 'hi' }] };
const gatewayShape = (status: number, type: string) => ({ error: { message: expect.any(String), code: status, type } });

describe(`passThrough (Express ${EXPRESS_MAJOR})`, () => {
  describe('only the configured paths', () => {
    it.each([
      ['GET', '/api/typo'],
      ['GET', '/favicon.ico'],
      ['POST', '/x/v1/embeddings'],
      ['GET', '/v1/embeddings'], // the default allows POST only
      ['POST', '/V1/embeddings'], // one spelling: exact case
      ['GET', '/v1/files'], // not in the default list
      ['POST', '/v1/batches'],
      ['POST', '/v1/completions'],
      ['POST', '/v1/x/chat/completions'],
      ['GET', '/static/%2e%2e/etc/passwd'], // an odd host path: not ours, left to the host
    ])('%s %s reaches the host 404, not the upstream', async (method, path) => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, path, { method, ...(method === 'GET' ? {} : { body: chatBody }) });
      expect(res.status).toBe(404);
      expect(JSON.parse(res.text)).toEqual({ host: 'not found' });
      expect(upstream.requests).toEqual([]);
    });

    it("the host's own routes still answer", async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/api/hello', { method: 'GET' });
      expect(JSON.parse(res.text)).toEqual({ host: 'hello' });
      expect(upstream.requests).toEqual([]);
    });

    it('the default paths are OpenAI’s stateless non-chat endpoints, POST only', () => {
      expect(DEFAULT_PASSTHROUGH_PATHS).toEqual([
        'POST /v1/embeddings',
        'POST /v1/moderations',
        'POST /v1/audio/speech',
        'POST /v1/audio/transcriptions',
        'POST /v1/audio/translations',
        'POST /v1/images/generations',
        'POST /v1/images/edits',
        'POST /v1/images/variations',
      ]);
    });
  });

  describe('the chat path in any spelling never reaches the pass-through upstream', () => {
    const spellings = [
      '/v1/chat/completions', // other methods than POST
      '/v1/models',
      '/v1//chat/completions',
      '//v1/chat/completions',
      '/v1/x/chat/completions',
      '/v1/chat/completions/',
      '/V1/chat/completions',
      '/v1/chat/completions?x=1',
      '/v1/./chat/completions',
      '/v1/x/../chat/completions',
      '/x/../v1/chat/completions',
      '/v1/%2e/chat/completions',
      '/v1/%2E%2E/v1/chat/completions',
      '/v1/chat%2fcompletions',
      '/v1/chat%2Fcompletions',
      '/v1/..%2fchat/completions',
      '/v1/x/..%2fchat/completions',
      '/v1/%63hat/completions',
      '/v1/chat%252fcompletions',
      '/v1\\chat\\completions',
      '/v1/chat\\completions',
      '/v1/x/..\\chat/completions',
      '/v1/chat%5ccompletions',
      '/v1/chat;x/completions',
      '/v1/chat/completions/.',
    ];
    it.each(spellings.flatMap((path) => ['POST', 'GET', 'DELETE'].map((method) => [method, path] as const)))('%s %s', async (method, path) => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, path, { method, body: chatBody });
      expect(upstream.requests).toEqual([]);
      // Either the gateway's own route served it (Express matches routes case-insensitively and with a
      // trailing slash; another method gets its 405), or a 400 in the gateway's shape, or the host's 404.
      if (res.status === 400) expect(JSON.parse(res.text)).toEqual(gatewayShape(400, 'invalid_request_error'));
      else if (res.status === 404) expect(JSON.parse(res.text)).toEqual({ host: 'not found' });
      else if (res.status === 405) expect(JSON.parse(res.text)).toMatchObject({ error: { code: 405 } });
      else {
        expect(res.status).toBe(200);
        if (chatMock.calls.length > 0) expect(chatMock.calls.at(-1)?.path).toBe('/v1/chat/completions');
      }
    });

    it('a dot-segment, encoded or doubled spelling under /v1 is a 400 naming the path', async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/v1//chat/completions', { body: chatBody, headers: { 'x-request-id': 'bad-path-1' } });
      expect(res.status).toBe(400);
      expect(res.headers['x-request-id']).toBe('bad-path-1');
      expect(JSON.parse(res.text)).toEqual({
        error: { message: 'Request path: dot segments, percent-encoding, backslashes and empty segments are not accepted.', code: 400, type: 'invalid_request_error' },
      });
    });
  });

  describe('every dot-segment form of an allowed path is refused, never forwarded', () => {
    it.each([
      '/v1/./embeddings',
      '/v1/x/../embeddings',
      '/api/../v1/embeddings',
      '/v1/%2e%2e/v1/embeddings',
      '/v1/%2E/embeddings',
      '/v1/.%2e/v1/embeddings',
      '/v1//embeddings',
      '/v1/embeddings/',
      '/v1/embeddings%2f',
      '/v1%2fembeddings',
      '/v1\\embeddings',
      '/v1/embeddings/..',
      '/v1/%65mbeddings',
    ])('POST %s → 400', async (path) => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, path, { body: { model: 'e', input: 'x' } });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toEqual(gatewayShape(400, 'invalid_request_error'));
      expect(upstream.requests).toEqual([]);
    });

    it('an odd path outside /v1 that matches nothing is left to the host', async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/api/./typo', { method: 'GET' });
      expect(res.status).toBe(404);
      expect(JSON.parse(res.text)).toEqual({ host: 'not found' });
    });
  });

  describe('an allowed path is proxied with the gateway’s credentials and nothing of the client’s', () => {
    it('request headers: the configured key and organization, the allow-listed headers, the request id; no cookie, no client credentials', async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/v1/embeddings?trace=1', {
        body: { model: 'e', input: 'hi' },
        headers: {
          authorization: 'Bearer client-own-key',
          'api-key': 'client-azure-key',
          'x-api-key': 'client-anthropic-key',
          cookie: 'session=host-session-cookie',
          'openai-organization': 'org-client',
          'openai-project': 'proj-client',
          'openai-beta': 'assistants=v2',
          'idempotency-key': 'idem-1',
          'user-agent': 'test-client/1.0',
          'x-forwarded-for': '203.0.113.9',
          'x-internal-user': 'admin',
          'x-request-id': 'pt-req-1',
          accept: 'application/json',
        },
      });
      expect(res.status).toBe(200);
      expect(upstream.requests).toHaveLength(1);
      const seen = upstream.requests[0]!;
      expect(seen.method).toBe('POST');
      expect(seen.url).toBe('/v1/embeddings?trace=1');
      expect(JSON.parse(seen.body)).toEqual({ model: 'e', input: 'hi' }); // written back after express.json()
      expect(seen.headers).toMatchObject({
        authorization: `Bearer ${KEY}`,
        'openai-organization': ORG,
        'openai-beta': 'assistants=v2',
        'idempotency-key': 'idem-1',
        'user-agent': 'test-client/1.0',
        'x-request-id': 'pt-req-1',
        'content-type': 'application/json',
        accept: 'application/json',
        host: `127.0.0.1:${upstream.port}`,
      });
      for (const name of ['cookie', 'api-key', 'x-api-key', 'openai-project', 'x-forwarded-for', 'x-internal-user']) expect(seen.headers[name]).toBeUndefined();
      expect(JSON.stringify(seen.headers)).not.toMatch(/client-own-key|host-session-cookie|org-client/);
    });

    it('a body express.json() left alone (multipart, chunked) streams through; Expect: 100-continue does not skip the header allow-list', async () => {
      const { port } = await serveGateway();
      const form = '--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFFxxxx\r\n--b--\r\n';
      const res = await new Promise<number>((resolve, reject) => {
        const req = http.request({
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/v1/audio/transcriptions',
          agent: false,
          headers: { 'content-type': 'multipart/form-data; boundary=b', 'transfer-encoding': 'chunked', expect: '100-continue', cookie: 'session=host-session-cookie', authorization: 'Bearer client-own-key' },
        });
        req.on('error', reject);
        req.on('continue', () => {
          req.write(form.slice(0, 20));
          setTimeout(() => req.end(form.slice(20)), 20);
        });
        req.on('response', (r) => {
          r.resume();
          r.on('end', () => resolve(r.statusCode ?? 0));
        });
      });
      expect(res).toBe(404); // the upstream's own answer for a path it does not know
      const seen = upstream.requests[0]!;
      expect(seen.url).toBe('/v1/audio/transcriptions');
      expect(seen.body).toBe(form);
      expect(seen.headers).toMatchObject({ authorization: `Bearer ${KEY}`, 'content-type': 'multipart/form-data; boundary=b' });
      expect(seen.headers['cookie']).toBeUndefined();
      expect(seen.headers['expect']).toBeUndefined();
    });

    it('a chunked JSON body that express.json() consumed is written back with its length', async () => {
      const { port } = await serveGateway();
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/embeddings', agent: false, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } });
        req.on('error', reject);
        req.on('response', (r) => {
          r.resume();
          r.on('end', () => resolve(r.statusCode ?? 0));
        });
        req.write('{"model":"e",');
        setTimeout(() => req.end('"input":"chunked"}'), 20);
      });
      expect(status).toBe(200);
      const seen = upstream.requests[0]!;
      expect(JSON.parse(seen.body)).toEqual({ model: 'e', input: 'chunked' });
      expect(seen.headers['content-length']).toBe(String(Buffer.byteLength(seen.body)));
      expect(seen.headers['transfer-encoding']).toBeUndefined();
    });

    it('response headers: no set-cookie, no internal headers, no key; content-type, rate limits, retry-after and the request id stay', async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/v1/embeddings', { body: { model: 'e', input: 'hi' }, headers: { 'x-request-id': 'pt-req-2' } });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text)).toMatchObject({ object: 'list' });
      expect(res.headers).toMatchObject({
        'content-type': 'application/json',
        'x-ratelimit-remaining-requests': '99',
        'retry-after': '1',
        'x-request-id': 'pt-req-2',
      });
      for (const name of ['set-cookie', 'server', 'x-powered-by', 'via', 'x-envoy-upstream-service-time', 'openai-organization', 'x-upstream-debug-key']) {
        expect(res.headers[name]).toBeUndefined();
      }
      expect(res.rawHeaders.join('\n')).not.toMatch(new RegExp(`${KEY}|${ORG}|envoy|UpstreamPHP|internal`, 'i'));
    });

    it('an upstream error body that echoes the key, the organization and an internal URL is redacted', async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/v1/moderations', { body: { input: 'x' } });
      expect(res.status).toBe(401);
      expect(res.complete).toBe(true);
      expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
      const all = res.rawHeaders.join('\n') + res.text;
      expect(all).not.toContain(KEY);
      expect(all).not.toContain(ORG);
      expect(all).not.toContain('10.0.0.7');
      expect(res.headers['set-cookie']).toBeUndefined();
      const body = JSON.parse(res.text) as { error: { message: string } };
      expect(body.error.message).toContain('Incorrect API key provided: [redacted]');
    });

    it('mounted under a prefix, paths are relative to the mount', async () => {
      const { port } = await serveGateway(gatewayOptions(), '/llm');
      const ok = await exactRequest(port, '/llm/v1/embeddings', { body: { model: 'e', input: 'hi' } });
      expect(ok.status).toBe(200);
      expect(upstream.requests.map((r) => r.url)).toEqual(['/v1/embeddings']);
      for (const path of ['/v1/embeddings', '/llm/llm/v1/embeddings', '/llm/v1/x/chat/completions']) {
        const res = await exactRequest(port, path, { body: chatBody });
        expect(res.status).toBe(404);
      }
      expect((await exactRequest(port, '/llm/v1/../v1/embeddings', { body: chatBody })).status).toBe(400);
      expect(upstream.requests).toHaveLength(1);
    });

    it('configured paths with wildcards and methods replace the default', async () => {
      const { port } = await serveGateway(gatewayOptions({ paths: ['GET,POST /v1/files', 'GET,DELETE /v1/files/*', 'GET /v1/files/*/content', 'GET /v1/vector_stores/**'] }));
      const ok: [string, string][] = [
        ['GET', '/v1/files'],
        ['POST', '/v1/files'],
        ['DELETE', '/v1/files/file-abc'],
        ['GET', '/v1/files/file-abc/content'],
        ['GET', '/v1/vector_stores/vs_1/files/f_2'],
      ];
      for (const [method, path] of ok) expect((await exactRequest(port, path, { method })).status).toBe(404); // the upstream's own 404 for unknown routes
      expect(upstream.requests.map((r) => `${r.method} ${r.url}`)).toEqual(ok.map(([m, p]) => `${m} ${p}`));
      upstream.requests.length = 0;
      for (const [method, path] of [
        ['POST', '/v1/embeddings'], // no longer in the list
        ['PUT', '/v1/files'],
        ['GET', '/v1/files/a/b'],
        ['GET', '/v1/vector_stores'],
        ['GET', '/v1/vector_stores/vs_1/chat/completions'], // covered by ** but the chat path anywhere is never proxied
      ] as const) {
        const res = await exactRequest(port, path, { method });
        expect(JSON.parse(res.text)).toEqual({ host: 'not found' });
      }
      expect(upstream.requests).toEqual([]);
    });

    it('forwardHeaders adds client headers to the allow-list; the configured key still wins', async () => {
      const { port } = await serveGateway(gatewayOptions({ forwardHeaders: ['OpenAI-Project', 'authorization'], headers: {} }));
      await exactRequest(port, '/v1/embeddings', { body: { input: 'x' }, headers: { 'openai-project': 'proj-1', authorization: 'Bearer client', cookie: 'a=b' } });
      expect(upstream.requests[0]!.headers).toMatchObject({ 'openai-project': 'proj-1', authorization: `Bearer ${KEY}` });
      expect(upstream.requests[0]!.headers['cookie']).toBeUndefined();
    });
  });

  describe('a cut-off or stalled upstream body ends the client connection promptly', () => {
    it('content-length 1000, 93 bytes, then a closed socket: the client sees the cut within a second, and the next request works', async () => {
      const { port } = await serveGateway();
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const cut = await exactRequest(port, '/v1/audio/speech', { body: { input: 'x' }, agent });
        expect(cut.status).toBe(200);
        expect(cut.headers['content-length']).toBe('1000');
        expect(cut.complete).toBe(false);
        expect(Buffer.byteLength(cut.text)).toBeLessThanOrEqual(TRUNCATED_BYTES);
        expect(cut.elapsedMs).toBeLessThan(1000);
        const next = await exactRequest(port, '/v1/embeddings', { body: { input: 'x' }, agent });
        expect(next.status).toBe(200);
        expect(next.complete).toBe(true);
      } finally {
        agent.destroy();
      }
    });

    it('an upstream that never answers: a 504 in the gateway shape after timeoutMs', async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/v1/images/generations', { body: { prompt: 'x' } });
      expect(res.status).toBe(504);
      expect(JSON.parse(res.text)).toEqual(gatewayShape(504, 'timeout'));
      expect(res.elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expect(res.elapsedMs).toBeLessThan(TIMEOUT_MS + 1000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(upstream.abandoned).toEqual(['/v1/images/generations']); // the upstream request was ended too
    });

    it('an upstream body that stalls after the headers: the timeout covers the body, the client connection is cut', async () => {
      const { port } = await serveGateway();
      const res = await exactRequest(port, '/v1/images/edits', { body: { prompt: 'x' } });
      expect(res.status).toBe(200);
      expect(res.complete).toBe(false);
      expect(res.text).toBe('{"data":[');
      expect(res.elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expect(res.elapsedMs).toBeLessThan(TIMEOUT_MS + 1000);
      const later = await exactRequest(port, '/v1/embeddings', { body: { input: 'x' } });
      expect(later.status).toBe(200);
    });

    it('a client that leaves: the upstream request is aborted at once', async () => {
      const { port } = await serveGateway(gatewayOptions({ timeoutMs: 10_000 }));
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/images/generations', agent: false, headers: { 'content-type': 'application/json' } });
      req.on('error', () => {});
      req.end('{"prompt":"x"}');
      while (upstream.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      const left = Date.now();
      req.destroy();
      while (upstream.abandoned.length === 0 && Date.now() - left < 2000) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(upstream.abandoned).toEqual(['/v1/images/generations']);
      expect(Date.now() - left).toBeLessThan(500);
    });

    it('an unreachable upstream: a 502 in the gateway shape', async () => {
      const { port } = await serveGateway(gatewayOptions({ target: 'http://127.0.0.1:9' }));
      const res = await exactRequest(port, '/v1/embeddings', { body: { input: 'x' } });
      expect(res.status).toBe(502);
      expect(JSON.parse(res.text)).toEqual({ error: { message: 'The upstream could not be reached.', code: 502, type: 'connection_error' } });
    });
  });

  describe('piece by piece: passThrough() on its own', () => {
    it('mounted under a prefix: proxies what matches, leaves the rest to the host, refuses odd spellings', async () => {
      const { port } = await servePieces('/openai', { apiKey: KEY, paths: ['POST /v1/embeddings'] });
      const ok = await exactRequest(port, '/openai/v1/embeddings', { body: { input: 'x' }, headers: { cookie: 'a=b' } });
      expect(ok.status).toBe(200);
      expect(upstream.requests.map((r) => r.url)).toEqual(['/v1/embeddings']);
      expect(upstream.requests[0]!.headers).toMatchObject({ authorization: `Bearer ${KEY}` });
      expect(ok.headers['set-cookie']).toBeUndefined();
      expect((await exactRequest(port, '/openai/v1/chat/completions', { body: chatBody })).status).toBe(404);
      expect((await exactRequest(port, '/api/typo', { method: 'GET' })).status).toBe(404);
      expect((await exactRequest(port, '/openai/v1/x/../embeddings', { body: chatBody })).status).toBe(400);
      expect(upstream.requests).toHaveLength(1);
    });

    it('mounted at /v1, the chat path relative to it is never proxied either', async () => {
      const { port } = await servePieces('/v1', { paths: ['POST /embeddings', 'POST /x/**'] });
      expect((await exactRequest(port, '/v1/embeddings', { body: { input: 'x' } })).status).toBe(404); // the upstream's 404 for /embeddings
      expect(upstream.requests.map((r) => r.url)).toEqual(['/embeddings']);
      for (const path of ['/v1/chat/completions', '/v1/x/chat/completions', '/v1/x/models']) {
        const res = await exactRequest(port, path, { body: chatBody });
        expect(JSON.parse(res.text)).toEqual(path === '/v1/x/models' ? { error: { message: 'no route /x/models' } } : { host: 'not found' });
      }
      expect(upstream.requests.map((r) => r.url)).toEqual(['/embeddings', '/x/models']);
    });
  });

  describe('bad configuration fails at start-up naming the field', () => {
    const bad: [string, Partial<PassThroughOptions>, string][] = [
      ['everything under /v1', { paths: ['/v1/**'] }, 'paths[0]'],
      ['everything', { paths: ['/v1/embeddings', '/**'] }, 'paths[1]'],
      ['a wildcard over the chat path', { paths: ['/v1/chat/*'] }, 'paths[0]'],
      ['a wildcard segment over the chat path', { paths: ['POST /v1/*/completions'] }, 'paths[0]'],
      ['the chat path in other letters', { paths: ['GET /V1/Chat/Completions'] }, 'paths[0]'],
      ['under the chat path', { paths: ['GET /v1/chat/completions/*'] }, 'paths[0]'],
      ['the model list', { paths: ['/v1/models'] }, 'paths[0]'],
      ['an unknown method', { paths: ['FETCH /v1/embeddings'] }, 'paths[0]'],
      ['a lower-case method', { paths: ['post /v1/embeddings'] }, 'paths[0]'],
      ['a relative path', { paths: ['v1/embeddings'] }, 'paths[0]'],
      ['a dot segment', { paths: ['/v1/../embeddings'] }, 'paths[0]'],
      ['an empty segment', { paths: ['/v1//embeddings'] }, 'paths[0]'],
      ['a trailing slash', { paths: ['/v1/embeddings/'] }, 'paths[0]'],
      ['an encoded character', { paths: ['/v1/%2e/embeddings'] }, 'paths[0]'],
      ['** not last', { paths: ['/v1/**/content'] }, 'paths[0]'],
      ['an empty pattern', { paths: [''] }, 'paths[0]'],
      ['a cookie to forward', { forwardHeaders: ['Cookie'] }, 'forwardHeaders[0]'],
      ['a hop-by-hop header to forward', { forwardHeaders: ['x-ok', 'Connection'] }, 'forwardHeaders[1]'],
      ['a bad header name', { forwardHeaders: ['bad header'] }, 'forwardHeaders[0]'],
      ['a zero timeout', { timeoutMs: 0 }, 'timeoutMs'],
    ];
    it.each(bad)('%s: createGateway names passthrough.%s', (_name, change, field) => {
      const options = gatewayOptions(change);
      expect(() => createGateway(options)).toThrow(GatewayConfigError);
      expect(() => createGateway(options)).toThrow(`'passthrough.${field}'`);
    });
    it.each(bad)('%s: passThrough() names passThrough.%s', (_name, change, field) => {
      expect(() => passThrough({ target: upstream.url, ...change })).toThrow(`'passThrough.${field}'`);
    });

    it('a config file with paths, forwardHeaders and timeoutMs loads', () => {
      const config = parseGatewayConfig(
        ['models:', '  - name: main', '    deployments: [{ provider: openai, model: m, apiKey: k }]', 'passthrough:', '  target: http://127.0.0.1:1', '  paths: ["POST /v1/embeddings", "GET /v1/files/*"]', '  forwardHeaders: [openai-project]', "  timeoutMs: '5000'"].join('\n'),
        'yaml',
      );
      expect(config.passthrough).toEqual({ target: 'http://127.0.0.1:1', paths: ['POST /v1/embeddings', 'GET /v1/files/*'], forwardHeaders: ['openai-project'], timeoutMs: 5000 });
      expect(() => parseGatewayConfig('models: [{ name: m, deployments: [{ provider: openai, model: m }] }]\npassthrough: { target: http://x, errorBodyForm: openai }', 'yaml')).toThrow("'passthrough.errorBodyForm'");
    });
  });
});
