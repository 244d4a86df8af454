/**
 * Issue 12, items 7–9: a slow upload ends with a 408 and a closed connection; a client's model name never
 * changes an upstream path; the validation gaps (assistant messages, json_schema, token limits, encoded
 * bodies, other methods) answer in the gateway's shape. Real HTTP on 127.0.0.1, both modes where the mode
 * matters, and the two modes must agree.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import type { Request, Response } from 'express';
import { GatewayConfigError, createGateway, gatewayContext, parseGatewayConfig, silentLogger, type GatewayOptions } from '../lib/index.js';
import { startMockBedrock, type MockBedrock } from '../lib/testing/index.js';
import { chat, chatBoth, parityView, type ChatOutcome } from './helpers/chat.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, type RunningServer } from './helpers/http.js';

const AZURE_VERSION = '2024-10-21';

interface Recorded {
  method: string;
  url: string;
  body: Record<string, unknown>;
}

/** An OpenAI-compatible upstream that records the method, path and body it got and answers in either mode. */
async function startRecorder(): Promise<RunningServer & { calls: Recorded[] }> {
  const calls: Recorded[] = [];
  const server = await listen((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const body = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
      calls.push({ method: req.method ?? '', url: req.url ?? '', body });
      const base = { id: 'c1', created: 1, model: String(body['model'] ?? 'deployment') };
      if (body['stream'] === true) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = { ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] };
        res.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] }));
    });
  });
  return { ...server, calls };
}

const servers: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const s of servers.reverse()) await s.close();
});

/** A gateway (createGateway, as users mount it) on 127.0.0.1, beside a host route and the host's own 404. */
async function serve(options: GatewayOptions): Promise<string> {
  const gateway = createGateway({ logger: silentLogger, router: { retries: { maxRetries: 0 } }, ...options });
  const app = createApp();
  app.get('/api/hello', (_req: Request, res: Response) => {
    res.json({ host: 'hello' });
  });
  app.use(gateway);
  app.use((req: Request, res: Response) => {
    res.status(404).json({ host: 'not-found', path: req.path });
  });
  const server = await listen(app);
  servers.push({ close: async () => (await server.close(), await gateway.close()) });
  return server.url;
}

const user = [{ role: 'user', content: 'hi' }];

/** The same request in both modes; they must agree (status, error object, text) before commit. */
async function both(url: string, body: Record<string, unknown>): Promise<ChatOutcome> {
  const [plain, streamed] = await chatBoth(url, body);
  expect(parityView(streamed)).toEqual(parityView(plain));
  return plain;
}

let recorder: Awaited<ReturnType<typeof startRecorder>>;
let bedrock: MockBedrock;
beforeAll(async () => {
  recorder = await startRecorder();
  bedrock = await startMockBedrock();
  servers.push(recorder, bedrock);
});
beforeEach(() => {
  recorder.calls.length = 0;
  bedrock.reset();
});

describe(`request hardening (Express ${EXPRESS_MAJOR})`, () => {
  describe('body-read deadline', () => {
    let url: string;
    beforeAll(async () => {
      url = await serve({ models: [{ name: 'm', deployments: [{ provider: 'openai', baseUrl: `${recorder.url}/v1`, model: 'up', apiKey: false }] }], context: { bodyTimeoutMs: 500 } });
    });

    it.each([false, true])('a body trickled 1 byte / 200 ms gets a 408 in the gateway shape and the connection is closed (stream: %p)', async (stream) => {
      const result = await trickle(url, JSON.stringify({ model: 'm', stream, messages: user }));
      expect(result.status).toBe(408);
      expect(result.headers['connection']).toBe('close');
      expect(result.headers['content-type']).toMatch(/^application\/json/);
      expect(result.headers['x-request-id']).toBeTruthy();
      expect(JSON.parse(result.body)).toEqual({ error: { message: 'Request body: not received within 500 ms.', code: 408, type: 'invalid_request_error' } });
      // The server ended the connection while the client was still sending, soon after the deadline.
      expect(result.serverEnded).toBe(true);
      expect(result.stillSendingAtEnd).toBe(true);
      expect(result.endedAfterMs).toBeGreaterThanOrEqual(450);
      expect(result.endedAfterMs).toBeLessThan(2_000);
      expect(recorder.calls).toHaveLength(0);
    });

    it('both modes get the same 408', async () => {
      const [plain, streamed] = await Promise.all([false, true].map((stream) => trickle(url, JSON.stringify({ model: 'm', stream, messages: user }))));
      expect([streamed!.status, JSON.parse(streamed!.body)]).toEqual([plain!.status, JSON.parse(plain!.body)]);
    });

    it('a body that arrives in pieces within the deadline is answered normally, in both modes', async () => {
      for (const stream of [false, true]) {
        const text = JSON.stringify({ model: 'm', stream, messages: user });
        const res = await post(url, [text.slice(0, 10), text.slice(10, 30), text.slice(30)].map((p) => Buffer.from(p)), {}, 100);
        expect(res.status).toBe(200);
      }
    });

    it('bodyTimeoutMs is validated where it is configured, naming the field', () => {
      expect(() => gatewayContext({ bodyTimeoutMs: -1 })).toThrow(GatewayConfigError);
      expect(() => gatewayContext({ bodyTimeoutMs: 'soon' as unknown as number })).toThrow(/gatewayContext\.bodyTimeoutMs/);
      expect(() => gatewayContext({ bodyTimeoutMs: 2 ** 31 })).toThrow(/gatewayContext\.bodyTimeoutMs/);
      const models: GatewayOptions['models'] = [{ name: 'm', deployments: [{ provider: 'openai', model: 'x', apiKey: false }] }];
      expect(() => createGateway({ models, context: { bodyTimeoutMs: 1.5 }, logger: silentLogger })).toThrow(/context\.bodyTimeoutMs/);
      expect(parseGatewayConfig('models: [{name: m, deployments: [{provider: openai, model: x, apiKey: false}]}]\ncontext: {bodyTimeoutMs: 0}', 'yaml').context).toEqual({ bodyTimeoutMs: 0 });
      expect(() => parseGatewayConfig('models: [{name: m, deployments: [{provider: openai, model: x, apiKey: false}]}]\ncontext: {bodyTimeoutMs: -5}', 'yaml')).toThrow(
        /context\.bodyTimeoutMs/,
      );
    });
  });

  describe("upstream paths are built from encoded parts: a client's model name never changes them", () => {
    let azure: string;
    let openai: string;
    let bedrockUrl: string;
    beforeAll(async () => {
      azure = await serve({ models: [{ name: '*', deployments: [{ provider: 'azure', baseUrl: recorder.url, model: '*', apiKey: 'azure-key', apiVersion: AZURE_VERSION }] }] });
      openai = await serve({ models: [{ name: '*', deployments: [{ provider: 'openai', baseUrl: `${recorder.url}/v1`, model: '*', apiKey: 'sk-test-0123456789' }] }] });
      bedrockUrl = await serve({
        models: [{ name: '*', deployments: [{ provider: 'bedrock', baseUrl: bedrock.url, region: 'us-east-1', model: '*', awsCredentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' } }] }],
      });
    });

    it.each(['.', '..'])("model %p is a 400 naming 'model', in both modes, before any upstream call", async (model) => {
      for (const url of [azure, openai, bedrockUrl]) {
        const res = await both(url, { model, messages: user });
        expect(res.status).toBe(400);
        expect(res.error).toEqual({ message: `Invalid request: 'model' must be a model name, not '${model}'.`, code: 400, type: 'invalid_request_error' });
      }
      expect(recorder.calls).toHaveLength(0);
      expect(bedrock.callCount()).toBe(0);
    });

    it.each(['a/../b', 'x?y', '../../x', 'a#b', 'a%2F..', 'gpt 4o'])('Azure: model %p stays one encoded segment under the deployment path', async (model) => {
      const res = await both(azure, { model, messages: user });
      expect(res.status).toBe(200);
      expect(recorder.calls).toHaveLength(2);
      for (const call of recorder.calls) {
        const url = new URL(call.url, 'http://upstream');
        // `new URL` normalizes like any server or proxy would: the path is still the deployment's.
        expect(url.pathname).toBe(`/openai/deployments/${encodeURIComponent(model)}/chat/completions`);
        expect(decodeURIComponent(url.pathname.split('/')[3]!)).toBe(model);
        expect([...url.searchParams]).toEqual([['api-version', AZURE_VERSION]]);
        expect(call.body['model']).toBeUndefined();
      }
    });

    it.each(['a/../b', 'x?y', '..x', 'a b'])('OpenAI: model %p goes in the body only; the path is fixed', async (model) => {
      const res = await both(openai, { model, messages: user });
      expect(res.status).toBe(200);
      expect(recorder.calls.map((c) => [c.url, c.body['model']])).toEqual([
        ['/v1/chat/completions', model],
        ['/v1/chat/completions', model],
      ]);
    });

    it.each(['a/../b', 'x?y', 'us.anthropic.claude-x:0', 'arn:aws:bedrock:us-east-1:123:inference-profile/us.x'])(
      'Bedrock: model %p is the one {modelId} segment of /model/{id}/converse',
      async (model) => {
        const res = await both(bedrockUrl, { model, messages: user });
        expect(res.status).toBe(200);
        expect(bedrock.calls.map((c) => c.operation)).toEqual(['converse', 'converse-stream']);
        for (const call of bedrock.calls) {
          const path = new URL(call.path, 'http://upstream').pathname;
          expect(path).toMatch(/^\/model\/[^/]+\/converse(-stream)?$/);
          expect(call.modelId).toBe(model);
        }
      },
    );
  });

  describe('validation gaps: a 400 naming the field, in both modes, before any upstream call', () => {
    let url: string;
    beforeAll(async () => {
      url = await serve({ models: [{ name: 'm', deployments: [{ provider: 'openai', baseUrl: `${recorder.url}/v1`, model: 'up', apiKey: false }] }], errors: { bodyForm: 'openai' } });
    });
    const withTurns = (assistant: Record<string, unknown>) => ({ model: 'm', messages: [...user, { role: 'assistant', ...assistant }, { role: 'user', content: 'and?' }] });

    it.each([
      ['an assistant message with nothing', withTurns({}), 'messages[1].content'],
      ['an assistant message with null content', withTurns({ content: null }), 'messages[1].content'],
      ['an assistant message with null content and no tool calls', withTurns({ content: null, tool_calls: [] }), 'messages[1].content'],
      ['an assistant message with an empty list of parts', withTurns({ content: [], refusal: null, function_call: null }), 'messages[1].content'],
      ["response_format 'json_schema' without json_schema", { model: 'm', messages: user, response_format: { type: 'json_schema' } }, 'response_format.json_schema'],
      ['json_schema without a name', { model: 'm', messages: user, response_format: { type: 'json_schema', json_schema: { schema: { type: 'object' } } } }, 'response_format.json_schema.name'],
      ['json_schema with an empty name', { model: 'm', messages: user, response_format: { type: 'json_schema', json_schema: { name: '' } } }, 'response_format.json_schema.name'],
      ['json_schema whose schema is not an object', { model: 'm', messages: user, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: 'any' } } }, 'response_format.json_schema.schema'],
      ['max_tokens: 1e20', { model: 'm', messages: user, max_tokens: 1e20 }, 'max_tokens'],
      ['max_tokens: 2^31', { model: 'm', messages: user, max_tokens: 2 ** 31 }, 'max_tokens'],
      ['max_tokens: 0', { model: 'm', messages: user, max_tokens: 0 }, 'max_tokens'],
      ['max_tokens: 1.5', { model: 'm', messages: user, max_tokens: 1.5 }, 'max_tokens'],
      ['max_completion_tokens: 1e20', { model: 'm', messages: user, max_completion_tokens: 1e20 }, 'max_completion_tokens'],
    ])('%s', async (_name, body, field) => {
      const res = await both(url, body);
      expect(res.status).toBe(400);
      expect(res.error).toMatchObject({ type: 'invalid_request_error', param: field, code: '400' });
      expect(String(res.error?.['message'])).toContain(`'${field}'`);
      expect(recorder.calls).toHaveLength(0);
    });

    it.each([
      ['text', withTurns({ content: 'sure' })],
      ['an empty string', withTurns({ content: '' })],
      ['tool calls only', { model: 'm', messages: [...user, { role: 'assistant', content: null, tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{}' } }] }, { role: 'tool', tool_call_id: 't1', content: '1' }] }],
      ['a function_call only', withTurns({ function_call: { name: 'f', arguments: '{}' } })],
      ['a refusal only', withTurns({ content: null, refusal: 'no' })],
      ['refusal parts', withTurns({ content: [{ type: 'refusal', refusal: 'no' }] })],
      ['a json_schema with name and schema', { model: 'm', messages: user, response_format: { type: 'json_schema', json_schema: { name: 'out', schema: { type: 'object' }, strict: true } } }],
      ['a json_schema with a name only (OpenAI: schema is optional)', { model: 'm', messages: user, response_format: { type: 'json_schema', json_schema: { name: 'out' } } }],
      ['the largest token limits', { model: 'm', messages: user, max_tokens: 2 ** 31 - 1, max_completion_tokens: 2 ** 31 - 1 }],
      ['null token limits', { model: 'm', messages: user, max_tokens: null, max_completion_tokens: null }],
    ])('accepts an answer with %s', async (_name, body) => {
      const res = await both(url, body);
      expect(res.status).toBe(200);
      expect(res.text).toBe('ok');
    });
  });

  describe('Content-Encoding', () => {
    let url: string;
    beforeAll(async () => {
      url = await serve({
        models: [{ name: 'm', deployments: [{ provider: 'openai', baseUrl: `${recorder.url}/v1`, model: 'up', apiKey: false }] }],
        context: { bodyLimit: '1mb' },
      });
    });
    const encoders: [string, (b: Buffer) => Buffer][] = [
      ['gzip', (b) => zlib.gzipSync(b)],
      ['x-gzip', (b) => zlib.gzipSync(b)],
      ['GZip', (b) => zlib.gzipSync(b)],
      ['deflate', (b) => zlib.deflateSync(b)],
      ['br', (b) => zlib.brotliCompressSync(b)],
      ['identity', (b) => b],
    ];

    it.each(encoders)('a %s body is decoded and answered, the same in both modes', async (encoding, encode) => {
      const outcomes: { status: number; text: string }[] = [];
      for (const stream of [false, true]) {
        const content = `héllo ${'x'.repeat(5000)} ${encoding}`;
        const res = await post(url, [encode(Buffer.from(JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content }] })))], { 'content-encoding': encoding });
        outcomes.push({ status: res.status, text: stream ? (res.text.includes('"content":"ok"') ? 'ok' : res.text) : (JSON.parse(res.text).choices[0].message.content as string) });
        expect(recorder.calls.at(-1)?.body['messages']).toEqual([{ role: 'user', content }]);
      }
      expect(outcomes).toEqual([
        { status: 200, text: 'ok' },
        { status: 200, text: 'ok' },
      ]);
    });

    it.each(['compress', 'gzip, br', 'zstd'])('Content-Encoding: %s is a 415 in the gateway shape, with Accept-Encoding', async (encoding) => {
      for (const stream of [false, true]) {
        const res = await post(url, [Buffer.from(JSON.stringify({ model: 'm', stream, messages: user }))], { 'content-encoding': encoding });
        expect(res.status).toBe(415);
        expect(res.headers['accept-encoding']).toBe('gzip, deflate, br');
        expect(JSON.parse(res.text)).toEqual({
          error: { message: `Request body: Content-Encoding '${encoding}' is not supported; use gzip, deflate, br or none.`, code: 415, type: 'invalid_request_error' },
        });
      }
      expect(recorder.calls).toHaveLength(0);
    });

    it('a gzip bomb stops at the body limit with a 413, without inflating it all', async () => {
      const bomb = zlib.gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20)); // 64 MB of spaces, ~64 KB on the wire
      expect(bomb.length).toBeLessThan(1024 * 1024);
      const heapBefore = process.memoryUsage().heapUsed;
      const started = Date.now();
      const res = await post(url, [bomb], { 'content-encoding': 'gzip' });
      expect(res.status).toBe(413);
      expect(JSON.parse(res.text)).toEqual({ error: { message: 'Request body: larger than the 1mb limit.', code: 413, type: 'invalid_request_error' } });
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
      expect(recorder.calls).toHaveLength(0);
    });

    it('a body over the limit on the wire is a 413 even when its encoding is refused later or never inflates', async () => {
      const big = Buffer.alloc(2 * 1024 * 1024, 0x20);
      expect((await post(url, [big], { 'content-encoding': 'gzip' })).status).toBe(413);
      expect((await post(url, [big], {}, 0, true)).status).toBe(413); // chunked: no Content-Length to check up front
    });

    it('a corrupt gzip body is a 400 naming the body', async () => {
      const res = await post(url, [Buffer.from('this is not gzip at all')], { 'content-encoding': 'gzip' });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toEqual({ error: { message: 'Request body: not valid gzip data.', code: 400, type: 'invalid_request_error' } });
    });
  });

  describe('methods', () => {
    let url: string;
    beforeAll(async () => {
      url = await serve({
        models: [{ name: 'm', deployments: [{ provider: 'openai', baseUrl: `${recorder.url}/v1`, model: 'up', apiKey: false }] }],
        passthrough: { target: recorder.url },
      });
    });

    it.each(['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'])('%s /v1/chat/completions is a JSON 405 with Allow: POST, never proxied', async (method) => {
      const res = await request(url, method, '/v1/chat/completions', method === 'GET' || method === 'OPTIONS' ? undefined : JSON.stringify({ model: 'm', messages: user }));
      expect(res.status).toBe(405);
      expect(res.headers['allow']).toBe('POST');
      expect(res.headers['x-request-id']).toBeTruthy();
      expect(JSON.parse(res.text)).toEqual({ error: { message: 'This endpoint accepts POST only.', code: 405, type: 'invalid_request_error' } });
      expect(recorder.calls).toHaveLength(0);
    });

    it('HEAD /v1/chat/completions is a 405 with Allow and no body; trailing slash and case are the same path', async () => {
      const head = await request(url, 'HEAD', '/v1/chat/completions');
      expect([head.status, head.headers['allow'], head.text]).toEqual([405, 'POST', '']);
      for (const path of ['/v1/chat/completions/', '/V1/Chat/Completions']) {
        const res = await request(url, 'GET', path);
        expect([path, res.status, res.headers['allow']]).toEqual([path, 405, 'POST']);
      }
    });

    it.each(['POST', 'PUT', 'DELETE'])('%s /v1/models is a JSON 405 with Allow: GET, HEAD', async (method) => {
      const res = await request(url, method, '/v1/models', '{}');
      expect([res.status, res.headers['allow'], JSON.parse(res.text).error.type]).toEqual([405, 'GET, HEAD', 'invalid_request_error']);
    });

    it('GET and HEAD /v1/models and POST /v1/chat/completions still work', async () => {
      expect((await request(url, 'GET', '/v1/models')).status).toBe(200);
      expect((await request(url, 'HEAD', '/v1/models')).status).toBe(200);
      const [plain, streamed] = await chatBoth(url, { model: 'm', messages: user });
      expect([plain.status, streamed.status, plain.text, streamed.text]).toEqual([200, 200, 'ok', 'ok']);
    });

    it("leaves every other path to the host or the pass-through (invariant 7)", async () => {
      expect(JSON.parse((await request(url, 'GET', '/api/hello')).text)).toEqual({ host: 'hello' });
      const embeddings = await request(url, 'POST', '/v1/embeddings', '{"input":"x"}');
      expect(embeddings.status).toBe(200); // proxied as configured
      expect(recorder.calls.map((c) => [c.method, c.url])).toEqual([['POST', '/v1/embeddings']]);
      expect(JSON.parse((await request(url, 'GET', '/v1/nothing')).text)).toEqual({ host: 'not-found', path: '/v1/nothing' });
      const other = await chat(url, { model: 'm', messages: user }, { path: '/v1/chat/completions/extra' });
      expect(other.status).not.toBe(405);
    });
  });
});

interface TrickleResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  serverEnded: boolean;
  stillSendingAtEnd: boolean;
  endedAfterMs: number;
}

/**
 * Sends the request head, then the body one byte every `intervalMs`, never finishing it (Content-Length
 * promises more); records the raw answer and when the server ended the connection.
 */
function trickle(baseUrl: string, body: string, intervalMs = 200, giveUpMs = 5_000): Promise<TrickleResult> {
  const { port } = new URL(baseUrl);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    const started = Date.now();
    const received: Buffer[] = [];
    let sent = 0;
    let sending = true;
    let serverEnded = false;
    let endedAt = 0;
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 1000}\r\n\r\n`);
    const timer = setInterval(() => {
      if (socket.destroyed || socket.writableEnded) return;
      socket.write(body[sent % body.length]!);
      sent += 1;
    }, intervalMs);
    const giveUp = setTimeout(() => socket.destroy(), giveUpMs);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('end', () => {
      serverEnded = true;
      endedAt = Date.now();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      const stillSendingAtEnd = sending;
      sending = false;
      clearInterval(timer);
      clearTimeout(giveUp);
      const text = Buffer.concat(received).toString('utf8');
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({
        status: Number(statusLine.split(' ')[1]),
        headers,
        body: rest.join('\r\n\r\n'),
        serverEnded,
        stillSendingAtEnd,
        endedAfterMs: (endedAt || Date.now()) - started,
      });
    });
  });
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** POSTs `parts` (a pause of `gapMs` between them) to the chat path, with a Content-Length unless `chunked`. */
function post(baseUrl: string, parts: Buffer[], headers: Record<string, string>, gapMs = 0, chunked = false): Promise<Answer> {
  const length = parts.reduce((n, p) => n + p.length, 0);
  return new Promise((resolve, reject) => {
    const req = http.request(new URL('/v1/chat/completions', baseUrl), {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json', ...(chunked ? {} : { 'content-length': String(length) }), ...headers },
    });
    req.on('error', reject);
    req.on('response', (res) => collect(res, resolve));
    const next = (i: number): void => {
      if (i === parts.length) {
        req.end();
        return;
      }
      // A server that refused the body early may have closed the connection: stop writing.
      if (req.destroyed) return;
      req.write(parts[i]);
      if (gapMs > 0) setTimeout(() => next(i + 1), gapMs);
      else next(i + 1);
    };
    next(0);
  });
}

function request(baseUrl: string, method: string, path: string, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, baseUrl), { method, agent: false, headers: body === undefined ? {} : { 'content-type': 'application/json' } });
    req.on('error', reject);
    req.on('response', (res) => collect(res, resolve));
    req.end(body);
  });
}

function collect(res: http.IncomingMessage, resolve: (answer: Answer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
}
