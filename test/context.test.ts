import request from 'supertest';
import type { Request, Response } from 'express';
import { gatewayContext, getContext, GatewayConfigError, sseErrorWriter, silentLogger } from '../lib/index.js';
import { createApp, express, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, rawRequest } from './helpers/http.js';

const valid = { model: 'gpt-test', messages: [{ role: 'user', content: 'Hello' }] };

/** context → a route that reports what it saw → the error writer. */
function appWith(options: Parameters<typeof gatewayContext>[0] = {}, { preParse = false } = {}) {
  const app = createApp();
  if (preParse) app.use(express.json({ limit: '20mb' }));
  app.post('/v1/chat/completions', gatewayContext(options), (req: Request, res: Response) => {
    const ctx = getContext(req);
    res.json({ id: ctx.id, model: ctx.model, stream: ctx.stream, messages: ctx.body.messages.length, extra: ctx.body['x_custom'] });
  });
  app.use(sseErrorWriter({ logger: silentLogger }));
  return app;
}

describe(`gatewayContext (Express ${EXPRESS_MAJOR})`, () => {
  describe.each([false, true])('with express.json() mounted first: %p', (preParse) => {
    const app = appWith({}, { preParse });

    it('creates the context from a valid body; unknown fields pass through', async () => {
      const res = await request(app).post('/v1/chat/completions').send({ ...valid, stream: true, x_custom: 7 });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ model: 'gpt-test', stream: true, messages: 1, extra: 7 });
    });

    it.each([
      ['stream: false', { ...valid, stream: false }, false],
      ['no stream field', valid, false],
    ])('reads the stream flag (%s)', async (_name, body, stream) => {
      const res = await request(app).post('/v1/chat/completions').send(body);
      expect(res.body.stream).toBe(stream);
    });

    it('accepts every role and content form', async () => {
      const body = {
        model: 'm',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'developer', content: [{ type: 'text', text: 'dev rules' }] },
          {
            role: 'user',
            name: 'ann',
            content: [
              { type: 'text', text: 'look' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' } },
              { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } },
              { type: 'file', file: { file_id: 'file-1' } },
            ],
          },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
          { role: 'tool', tool_call_id: 'c1', content: '{"ok":true}' },
          { role: 'assistant', content: [{ type: 'refusal', refusal: 'no' }] },
          { role: 'function', name: 'f', content: 'legacy' },
        ],
        n: 2,
        temperature: 0.5,
        max_tokens: 10,
        max_completion_tokens: 10,
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
        tool_choice: { type: 'function', function: { name: 'f' } },
        response_format: { type: 'json_schema', json_schema: { name: 's', schema: {} } },
        stop: ['\n'],
        user: 'u1',
        metadata: { team: 'a' },
        stream_options: { include_usage: true },
      };
      const res = await request(app).post('/v1/chat/completions').send(body);
      expect(res.status).toBe(200);
      expect(res.body.messages).toBe(7);
    });
  });

  describe('bad bodies get a 400 (413 when too large) naming the field, never a 500', () => {
    const app = appWith({ bodyLimit: '2kb' });
    const cases: [string, unknown, string, RegExp][] = [
      ['not JSON', '{"model": "m", "messages": [', 'body', /not valid JSON/],
      ['empty body', '', 'body', /empty/],
      ['a JSON array', [valid], 'body', /must be a JSON object/],
      ['missing messages', { model: 'm' }, 'messages', /'messages' is required/],
      ['missing model', { messages: valid.messages }, 'model', /'model' is required/],
      ['empty messages', { model: 'm', messages: [] }, 'messages', /at least 1/],
      ['messages not an array', { model: 'm', messages: 'hi' }, 'messages', /must be an array/],
      ['unknown role', { model: 'm', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role', /must be one of "system", "developer", "user", "assistant", "tool", "function" \(got "wizard"\)/],
      ['missing role', { model: 'm', messages: [{ content: 'x' }] }, 'messages[0].role', /is required/],
      ['wrong content type', { model: 'm', messages: [{ role: 'user', content: 42 }] }, 'messages[0].content', /must be a string or an array/],
      ['user without content', { model: 'm', messages: [{ role: 'user' }] }, 'messages[0].content', /is required/],
      ['unknown part type', { model: 'm', messages: [{ role: 'user', content: [{ type: 'video', url: 'x' }] }] }, 'messages[0].content[0].type', /must be one of "text", "image_url", "input_audio", "file"/],
      ['image part without url', { model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content[0].image_url.url', /is required/],
      ['tool result without tool_call_id', { model: 'm', messages: [{ role: 'tool', content: 'r' }] }, 'messages[0].tool_call_id', /is required/],
      ['tool call arguments not a string', { model: 'm', messages: [{ role: 'assistant', tool_calls: [{ id: '1', type: 'function', function: { name: 'f', arguments: {} } }] }] }, 'messages[0].tool_calls[0].function.arguments', /must be a string/],
      ['temperature out of range', { ...valid, temperature: 3 }, 'temperature', /must be <= 2/],
      ['temperature of the wrong type', { ...valid, temperature: 'hot' }, 'temperature', /must be a number or null/],
      ['stream not a boolean', { ...valid, stream: 'yes' }, 'stream', /must be a boolean or null/],
      ['n not an integer', { ...valid, n: 1.5 }, 'n', /must be an integer or null/],
      ['max_tokens zero', { ...valid, max_tokens: 0 }, 'max_tokens', /must be >= 1/],
      ['bad tool_choice', { ...valid, tool_choice: 'always' }, 'tool_choice', /must be/],
      ['bad response_format', { ...valid, response_format: { type: 'xml' } }, 'response_format.type', /must be one of "text", "json_object", "json_schema"/],
      ['too many stops', { ...valid, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /at most 4/],
      ['metadata values not strings', { ...valid, metadata: { a: 1 } }, 'metadata.a', /must be a string/],
      ['oversize', { ...valid, messages: [{ role: 'user', content: 'x'.repeat(4000) }] }, 'body', /larger than the 2kb limit/],
    ];

    it.each(cases)('%s', async (name, body, param, message) => {
      const req = request(app).post('/v1/chat/completions').set('content-type', 'application/json');
      const res = await req.send(typeof body === 'string' ? body : JSON.stringify(body));
      const status = name === 'oversize' ? 413 : 400;
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(Object.keys(res.body)).toEqual(['error']);
      expect(Object.keys(res.body.error)).toEqual(['message', 'code', 'type']);
      expect(res.body.error.code).toBe(status);
      expect(res.body.error.type).toBe('invalid_request_error');
      expect(res.body.error.message).toMatch(message);
      if (param !== 'body') expect(res.body.error.message).toContain(`'${param}'`);
      const typed = await request(typedApp).post('/v1/chat/completions').set('content-type', 'application/json').send(typeof body === 'string' ? body : JSON.stringify(body));
      expect(typed.body.error).toEqual({ message: res.body.error.message, type: 'invalid_request_error', param, code: String(status) });
    });

    const typedApp = (() => {
      const a = createApp();
      a.post('/v1/chat/completions', gatewayContext({ bodyLimit: '2kb' }), (_req, res) => res.end());
      a.use(sseErrorWriter({ logger: silentLogger, errorBodyForm: 'openai' }));
      return a;
    })();

    it('an oversize body announced by content-length is refused without reading it', async () => {
      const res = await request(app).post('/v1/chat/completions').set('content-type', 'application/json').send(JSON.stringify({ ...valid, pad: 'x'.repeat(10_000) }));
      expect(res.status).toBe(413);
      expect(res.body.error.message).toMatch(/2kb/);
    });

    it('the limit of a body parser mounted first is reported the same way', async () => {
      const a = createApp();
      a.use(express.json({ limit: 100 }));
      a.post('/v1/chat/completions', gatewayContext(), (_req, res) => res.end());
      a.use(sseErrorWriter({ logger: silentLogger }));
      const res = await request(a).post('/v1/chat/completions').send({ ...valid, pad: 'x'.repeat(200) });
      expect(res.status).toBe(413);
      expect(res.body.error).toEqual({ message: 'Request body: larger than the 100 bytes limit.', code: 413, type: 'invalid_request_error' });
    });

    it('a bad body never reaches the handlers after the context', async () => {
      const a = createApp();
      const reached = jest.fn();
      a.post('/v1/chat/completions', gatewayContext(), (_req, res) => {
        reached();
        res.end();
      });
      a.use(sseErrorWriter({ logger: silentLogger }));
      await request(a).post('/v1/chat/completions').send({ model: 'm' });
      expect(reached).not.toHaveBeenCalled();
    });
  });

  describe('request id', () => {
    const app = appWith();

    it("honours and echoes the client's x-request-id", async () => {
      const res = await request(app).post('/v1/chat/completions').set('x-request-id', 'req-123_abc').send(valid);
      expect(res.headers['x-request-id']).toBe('req-123_abc');
      expect(res.body.id).toBe('req-123_abc');
    });

    it('generates one when absent or unusable, and echoes it on errors too', async () => {
      const res = await request(app).post('/v1/chat/completions').send(valid);
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      const bad = await request(app).post('/v1/chat/completions').set('x-request-id', 'has space').send({});
      expect(bad.status).toBe(400);
      expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('can be told not to trust client ids, and to generate its own', async () => {
      const a = appWith({ trustRequestId: false, generateRequestId: () => 'mine' });
      const res = await request(a).post('/v1/chat/completions').set('x-request-id', 'theirs').send(valid);
      expect(res.headers['x-request-id']).toBe('mine');
    });
  });

  describe('abort signal', () => {
    it('aborts when the client goes away', async () => {
      let resolveAbort: (reason: unknown) => void = () => {};
      const aborted = new Promise<unknown>((resolve) => (resolveAbort = resolve));
      const app = createApp();
      app.post('/v1/chat/completions', gatewayContext(), (req) => {
        const signal = getContext(req).signal;
        signal.addEventListener('abort', () => resolveAbort(signal.reason));
        // never answers: the client will leave
      });
      const server = await listen(app);
      try {
        const response = await rawRequest(server.url, { body: valid, abortAfterMs: 50 });
        expect(response.complete).toBe(false);
        const reason = await aborted;
        expect((reason as Error).name).toBe('ClientDisconnectedError');
      } finally {
        await server.close();
      }
    });

    it('does not abort after a normal response', async () => {
      let signal: AbortSignal | undefined;
      const app = createApp();
      app.post('/v1/chat/completions', gatewayContext(), (req, res) => {
        signal = getContext(req).signal;
        res.json({});
      });
      await request(app).post('/v1/chat/completions').send(valid);
      await new Promise((r) => setTimeout(r, 20));
      expect(signal?.aborted).toBe(false);
    });
  });

  describe('configuration', () => {
    it('throws at start-up naming a bad option', () => {
      expect(() => gatewayContext({ bodyLimit: 'lots' })).toThrow(GatewayConfigError);
      expect(() => gatewayContext({ bodyLimit: 'lots' })).toThrow(/'gatewayContext.bodyLimit'/);
      expect(() => gatewayContext({ bodyLimit: -1 })).toThrow(/'gatewayContext.bodyLimit'/);
      expect(() => gatewayContext({ trustRequestId: 'yes' as unknown as boolean })).toThrow(/'gatewayContext.trustRequestId'/);
      expect(() => gatewayContext({ bodyLimt: '1mb' } as never)).toThrow(/'gatewayContext.bodyLimt': unknown option/);
      expect(() => gatewayContext({ generateRequestId: 'x' as never })).toThrow(/'gatewayContext.generateRequestId'/);
    });

    it('catches app.use(gatewayContext) written without the call', () => {
      const fakeReq = { method: 'POST', url: '/', headers: {} };
      expect(() => (gatewayContext as (o: unknown) => unknown)(fakeReq)).toThrow(/app.use\(gatewayContext\(\)\)/);
    });

    it('never mutates the caller options', () => {
      const options = Object.freeze({ bodyLimit: undefined, trustRequestId: false });
      expect(() => gatewayContext(options)).not.toThrow();
    });
  });

  it('getContext throws a clear error when the middleware is missing', async () => {
    const app = createApp();
    app.post('/x', (req, res) => {
      try {
        getContext(req);
        res.send('no error');
      } catch (err) {
        res.send((err as Error).message);
      }
    });
    const res = await request(app).post('/x').send(valid);
    expect(res.text).toMatch(/Mount gatewayContext\(\) before/);
  });
});

describe('a client that left before the context middleware ran', () => {
  it('gets no context, no upstream work and no request events', async () => {
    const events = { onRequestStart: jest.fn(), onRequestEnd: jest.fn() };
    const reached = jest.fn();
    const app = createApp();
    app.use(express.json());
    app.use((_req, _res, next) => {
      setTimeout(next, 150); // a slow auth check; the client gives up meanwhile
    });
    app.post('/v1/chat/completions', gatewayContext({ events }), (_req, res) => {
      reached();
      res.end();
    });
    app.use(sseErrorWriter({ logger: silentLogger }));
    const server = await listen(app);
    try {
      await rawRequest(server.url, { body: valid, abortAfterMs: 40 });
      await new Promise((r) => setTimeout(r, 250));
      expect(reached).not.toHaveBeenCalled();
      expect(events.onRequestStart).not.toHaveBeenCalled();
      expect(events.onRequestEnd).not.toHaveBeenCalled();
    } finally {
      await server.close();
    }
  });
});
