import http from 'node:http';
import { GuardrailViolationError, ResponseWriter, type ChatCompletion, type ChatCompletionChunk } from '../lib/index.js';
import { listen, rawRequest, sseData, type RunningServer } from './helpers/http.js';

const chunk = (content: string): ChatCompletionChunk => ({
  id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }],
});
const completion: ChatCompletion = {
  id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
};

/** Runs `script` with a writer on a real response; reports when the status line went out. */
async function withWriter(script: (writer: ResponseWriter, res: http.ServerResponse) => Promise<void>): Promise<RunningServer> {
  return listen((_req, res) => {
    const writer = new ResponseWriter(res, () => ({ 'x-gateway-attempts': '1' }));
    script(writer, res).catch((err: unknown) => {
      writer.fail(err as GuardrailViolationError, 'gateway');
    });
  });
}

describe('ResponseWriter', () => {
  let server: RunningServer;
  afterEach(() => server?.close());

  it('leaves a header source\'s object alone unless told it is fresh, and completes a fresh one with the same headers', async () => {
    const shared = { 'x-gateway-attempts': '1' };
    const texts: string[] = [];
    for (const fresh of [false, true]) {
      for (const mode of ['stream', 'json'] as const) {
        server = await listen((_req, res) => {
          const writer = new ResponseWriter(res, fresh ? () => ({ 'x-gateway-attempts': '1' }) : () => shared, fresh);
          const done = mode === 'stream' ? Promise.resolve(writer.send(chunk('a'))).then(() => writer.finish()) : writer.json(completion);
          void done;
        });
        const res = await rawRequest(server.url, { body: {} });
        await server.close();
        expect(res.headers['x-gateway-attempts']).toBe('1');
        expect(res.headers['content-type']).toBe(mode === 'stream' ? 'text/event-stream; charset=utf-8' : 'application/json; charset=utf-8');
        if (mode === 'stream') expect(res.headers['cache-control']).toBe('no-cache');
        else expect(res.headers['content-length']).toBe(String(Buffer.byteLength(res.text)));
        texts.push(res.text);
      }
    }
    expect(shared).toEqual({ 'x-gateway-attempts': '1' });
    expect(texts.slice(2)).toEqual(texts.slice(0, 2));
  });

  it('commits nothing until the first chunk, then sends SSE headers and the attempt headers', async () => {
    const seen: boolean[] = [];
    server = await withWriter(async (writer, res) => {
      await new Promise((r) => setTimeout(r, 10));
      seen.push(res.headersSent, writer.committed);
      await writer.send(chunk('a'));
      seen.push(res.headersSent, writer.committed);
      writer.finish();
    });
    const res = await rawRequest(server.url, { body: {} });
    expect(seen).toEqual([false, false, true, true]);
    expect(res.headers['x-gateway-attempts']).toBe('1');
    expect(sseData(res.text)).toEqual([JSON.stringify(chunk('a')), '[DONE]']);
  });

  it('holds the commit until pending checks pass', async () => {
    const order: string[] = [];
    server = await withWriter(async (writer, res) => {
      writer.holdCommitUntil(new Promise((r) => setTimeout(() => { order.push('check passed'); r(undefined); }, 30)));
      const sent = writer.send(chunk('a'));
      order.push(`headers sent while checking: ${res.headersSent}`);
      await sent;
      order.push(`headers sent after: ${res.headersSent}`);
      writer.finish();
    });
    await rawRequest(server.url, { body: {} });
    expect(order).toEqual(['headers sent while checking: false', 'check passed', 'headers sent after: true']);
  });

  it.each(['stream', 'json'])('a failing check turns the %s answer into a pre-commit JSON error with its status', async (mode) => {
    server = await withWriter(async (writer) => {
      writer.holdCommitUntil(Promise.reject(new GuardrailViolationError()));
      if (mode === 'stream') await writer.send(chunk('must not leave'));
      else await writer.json(completion);
    });
    const res = await rawRequest(server.url, { body: {} });
    expect(res.status).toBe(400);
    expect(res.text).toBe('{"error":{"message":"Violated guardrail policy","code":400,"type":"guardrail_violation"}}');
  });

  it('keeps chunks sent during the commit in order', async () => {
    server = await withWriter(async (writer) => {
      writer.holdCommitUntil(new Promise((r) => setTimeout(r, 10)));
      const all = ['1', '2', '3'].map((c) => writer.send(chunk(c)));
      await Promise.all(all);
      writer.finish();
    });
    const res = await rawRequest(server.url, { body: {} });
    expect(sseData(res.text).slice(0, 3).map((f) => JSON.parse(f).choices[0].delta.content)).toEqual(['1', '2', '3']);
  });

  it('sends a non-streaming completion as JSON with a content-length', async () => {
    server = await withWriter((writer) => writer.json(completion));
    const res = await rawRequest(server.url, { body: {} });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength(res.text)));
    expect(JSON.parse(res.text)).toEqual(completion);
  });

  it('writes exactly one [DONE] and nothing after it', async () => {
    server = await withWriter(async (writer) => {
      await writer.send(chunk('a'));
      writer.finish();
      writer.finish();
      await writer.send(chunk('after'));
      writer.fail(new GuardrailViolationError(), 'gateway');
    });
    const res = await rawRequest(server.url, { body: {} });
    expect(sseData(res.text)).toEqual([JSON.stringify(chunk('a')), '[DONE]']);
  });

  it('waits for a slow client to drain instead of buffering without bound', async () => {
    let pending = 0;
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => (resolveDone = r));
    server = await withWriter(async (writer) => {
      const big = chunk('x'.repeat(64 * 1024));
      for (let i = 0; i < 64; i++) {
        const wait = writer.send(big);
        if (wait) {
          pending++;
          await wait;
        }
      }
      writer.finish();
      resolveDone();
    });
    // A client that does not read for a while: the writer must report backpressure.
    const req = http.request(`${server.url}/`, { method: 'POST' });
    const response = await new Promise<http.IncomingMessage>((resolve) => { req.on('response', resolve); req.end('{}'); });
    response.pause();
    await new Promise((r) => setTimeout(r, 100));
    response.resume();
    response.on('data', () => {});
    await done;
    expect(pending).toBeGreaterThan(0);
  });
});
