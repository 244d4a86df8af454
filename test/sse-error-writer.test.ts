import compression from 'compression';
import http from 'node:http';
import { createGunzip } from 'node:zlib';
import OpenAI from 'openai';
import type { NextFunction, Request, Response } from 'express';
import {
  GatewayError,
  GuardrailViolationError,
  RateLimitError,
  gatewayContext,
  getContext,
  silentLogger,
  sseErrorWriter,
  type ChatCompletionChunk,
  type ErrorBodyForm,
  type Logger,
} from '../lib/index.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';
import { listen, rawRequest, sseData, type RunningServer } from './helpers/http.js';

const SEED_JSON = '{"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}';

function chunk(content: string, finish: 'stop' | null = null): ChatCompletionChunk {
  return { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] };
}

type Script = (req: Request, res: Response, next: NextFunction) => Promise<void> | void;

/** A route that streams (or not) through the context's writer, then does what the test scripts. */
async function serve(script: Script, { form, withCompression = false, logger = silentLogger }: { form?: ErrorBodyForm; withCompression?: boolean; logger?: Logger } = {}): Promise<RunningServer> {
  const app = createApp();
  if (withCompression) app.use(compression({ threshold: 0 }));
  app.post('/v1/chat/completions', gatewayContext(), (req, res, next) => {
    Promise.resolve(script(req, res, next)).catch(next);
  });
  app.use(sseErrorWriter({ logger, ...(form ? { errorBodyForm: form } : {}) }));
  return listen(app);
}

/** Streams two chunks when the request asks for a stream, then fails with `error`; without streaming fails at once. */
const contentThenFail = (error: Error): Script => async (req, _res, next) => {
  const ctx = getContext(req);
  if (ctx.stream) {
    await ctx.writer.send(chunk('Hello'));
    await ctx.writer.send(chunk(' world'));
  }
  next(error);
};

const body = (stream: boolean) => ({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }] });

describe(`SSE error writer (Express ${EXPRESS_MAJOR})`, () => {
  let server: RunningServer;
  afterEach(() => server?.close());

  it('seed frame: a committed stream that fails with a guardrail violation ends with exactly the frame and [DONE]', async () => {
    server = await serve(contentThenFail(new GuardrailViolationError()));
    const res = await rawRequest(server.url, { body: body(true) });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['x-accel-buffering']).toBe('no');
    expect(res.complete).toBe(true); // ended cleanly: the terminating chunk arrived, the socket was not destroyed
    expect(res.error).toBeUndefined();
    const frames = sseData(res.text);
    expect(frames).toHaveLength(4);
    expect(JSON.parse(frames[0]!).choices[0].delta.content).toBe('Hello');
    expect(frames[2]).toBe(SEED_JSON);
    expect(Object.keys(JSON.parse(frames[2]!))).toEqual(['error']);
    expect(frames[3]).toBe('[DONE]');
    expect(res.text.endsWith(`data: ${SEED_JSON}\n\ndata: [DONE]\n\n`)).toBe(true);
  });

  it('the same error before commit is a 400 JSON body with the identical error object', async () => {
    server = await serve(contentThenFail(new GuardrailViolationError()));
    const streamed = sseData((await rawRequest(server.url, { body: body(true) })).text)[2];
    const res = await rawRequest(server.url, { body: body(false) });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.text).toBe(SEED_JSON);
    expect(JSON.parse(res.text)).toEqual(JSON.parse(streamed!));
  });

  it.each([true, false])('with stream: %p, a failure before any content is a JSON error with the real status', async (stream) => {
    server = await serve((_req, _res, next) => next(new RateLimitError('Too many requests')));
    const res = await rawRequest(server.url, { body: body(stream) });
    expect(res.status).toBe(429);
    expect(JSON.parse(res.text)).toEqual({ error: { message: 'Too many requests', code: 429, type: 'rate_limit_exceeded' } });
  });

  it("the 'openai' form switches both the JSON body and the in-band frame", async () => {
    server = await serve(contentThenFail(new GuardrailViolationError()), { form: 'openai' });
    const expected = { error: { message: 'Violated guardrail policy', type: 'guardrail_violation', param: null, code: '400' } };
    const streamed = await rawRequest(server.url, { body: body(true) });
    const frames = sseData(streamed.text);
    expect(JSON.parse(frames.at(-2)!)).toEqual(expected);
    expect(frames.at(-1)).toBe('[DONE]');
    const plain = await rawRequest(server.url, { body: body(false) });
    expect(JSON.parse(plain.text)).toEqual(expected);
  });

  it('an unexpected exception after commit becomes an internal_error frame without its message or stack', async () => {
    server = await serve(async (req) => {
      await getContext(req).writer.send(chunk('partial'));
      throw new Error('secret detail at /srv/app.js:10 with sk-live-0123456789abcdef');
    });
    const res = await rawRequest(server.url, { body: body(true) });
    expect(res.complete).toBe(true);
    const frames = sseData(res.text);
    expect(JSON.parse(frames.at(-2)!)).toEqual({ error: { message: 'The gateway failed to process the request.', code: 500, type: 'internal_error' } });
    expect(frames.at(-1)).toBe('[DONE]');
    expect(res.text).not.toMatch(/secret|sk-live|app\.js/);
  });

  it('an unexpected exception before commit is a 500 JSON body, never an HTML page or a stack', async () => {
    server = await serve(() => {
      throw new TypeError("Cannot read properties of undefined (reading 'x')");
    });
    const res = await rawRequest(server.url, { body: body(false) });
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toMatch(/application\/json/);
    expect(JSON.parse(res.text).error.type).toBe('internal_error');
    expect(res.text).not.toContain('reading');
  });

  it('is safe when the response already ended: nothing more is written and nothing throws', async () => {
    const logged: object[] = [];
    const logger: Logger = { ...silentLogger, info: (o) => logged.push(o) };
    server = await serve(
      async (req, _res, next) => {
        const ctx = getContext(req);
        await ctx.writer.send(chunk('done'));
        ctx.writer.finish();
        next(new GuardrailViolationError());
      },
      { logger },
    );
    const res = await rawRequest(server.url, { body: body(true) });
    const frames = sseData(res.text);
    expect(frames).toEqual([JSON.stringify(chunk('done')), '[DONE]']);
    expect(res.complete).toBe(true);
    expect(logged).toHaveLength(1);
  });

  it('a second error after the frame is ignored: exactly one error frame and one [DONE]', async () => {
    server = await serve(async (req, res, next) => {
      const ctx = getContext(req);
      await ctx.writer.send(chunk('a'));
      next(new GuardrailViolationError());
      await ctx.writer.send(chunk('late'));
      ctx.writer.finish();
      void res;
    });
    const res = await rawRequest(server.url, { body: body(true) });
    const frames = sseData(res.text);
    expect(frames.filter((f) => f === '[DONE]')).toHaveLength(1);
    expect(frames.filter((f) => f.startsWith('{"error"'))).toHaveLength(1);
    expect(res.text).not.toContain('"late"');
  });

  it('works behind compression(): frames are flushed as they are written, and the stream still ends with the frame', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    server = await serve(
      async (req, _res, next) => {
        const ctx = getContext(req);
        await ctx.writer.send(chunk('first'));
        await gate; // the client must see the first frame while we wait here
        next(new GuardrailViolationError());
      },
      { withCompression: true },
    );
    const received = await new Promise<{ early: string; all: string; encoding?: string }>((resolve, reject) => {
      const req = http.request(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' } });
      req.on('error', reject);
      req.on('response', (raw) => {
        let all = '';
        let early = '';
        const res = raw.pipe(createGunzip());
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          all += d;
          if (!early) {
            early = all;
            release();
          }
        });
        res.on('end', () => resolve({ early, all, encoding: raw.headers['content-encoding'] }));
      });
      req.end(JSON.stringify(body(true)));
    });
    expect(received.encoding).toBe('gzip');
    expect(received.early).toContain('first');
    expect(received.early).not.toContain('[DONE]');
    expect(received.all.endsWith(`data: ${SEED_JSON}\n\ndata: [DONE]\n\n`)).toBe(true);
  });

  it('the real openai client surfaces the in-band frame as an APIError with message, code and type', async () => {
    server = await serve(contentThenFail(new GuardrailViolationError()));
    const client = new OpenAI({ apiKey: 'test', baseURL: `${server.url}/v1`, maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    const error = await (async () => {
      try {
        for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(text).toBe('Hello world');
    expect(error).toBeInstanceOf(OpenAI.APIError);
    const apiError = error as InstanceType<typeof OpenAI.APIError>;
    expect([apiError.message, apiError.code, apiError.type]).toEqual(['Violated guardrail policy', 400, 'guardrail_violation']);
  });

  it('an error middleware with four parameters, so Express calls it for errors', () => {
    expect(sseErrorWriter().length).toBe(4);
    expect(() => sseErrorWriter({ errorBodyForm: 'xml' as never })).toThrow(/'sseErrorWriter.errorBodyForm'/);
  });

  it('renders a soft guardrail block as a normal content_filter completion, stream and not', async () => {
    server = await serve((_req, _res, next) => next(new GuardrailViolationError(undefined, { softMessage: 'I cannot help with that.' })));
    const plain = await rawRequest(server.url, { body: body(false) });
    expect(plain.status).toBe(200);
    const completion = JSON.parse(plain.text);
    expect(completion.choices[0]).toEqual({ index: 0, message: { role: 'assistant', content: 'I cannot help with that.' }, finish_reason: 'content_filter' });
    const streamed = await rawRequest(server.url, { body: body(true) });
    const frames = sseData(streamed.text);
    expect(frames.at(-1)).toBe('[DONE]');
    const chunks = frames.slice(0, -1).map((f) => JSON.parse(f) as ChatCompletionChunk);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(completion.choices[0].message.content);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('content_filter');
  });

  it('keeps GatewayError subclasses distinguishable from bugs', () => {
    expect(new GuardrailViolationError()).toBeInstanceOf(GatewayError);
  });
});
