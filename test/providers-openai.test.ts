import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  BadRequestError,
  ConnectionError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  GatewayError,
  RateLimitError,
  UpstreamCredentialsError,
  UpstreamError,
} from '../lib/errors.js';
import { createOpenAIAdapter } from '../lib/providers/openai.js';
import type { Deployment, ProviderAdapter, UpstreamRequest } from '../lib/providers/types.js';
import { MOCK_FAILURE_NAMES, startMockOpenAI, type MockCall, type MockServer } from '../lib/testing/mock-providers.js';
import type { ChatCompletionChunk, ChatCompletionRequest } from '../lib/types.js';

// Real loopback HTTP against the mock OpenAI/Azure/DashScope server. The mock picks its behaviour from
// the model name, which is the deployment's model (the request body carries the group name).

const TIMEOUTS: Deployment['timeouts'] = { connectMs: 2000, firstTokenMs: 60_000, idleMs: 30_000, totalMs: 600_000 };
const NORMAL_TEXT = 'Hello! This is a mock answer from mock-openai.';
const WEATHER_TOOL = { type: 'function' as const, function: { name: 'lookup_weather', parameters: { type: 'object', properties: {} } } };

let server: MockServer;
const adapters: ProviderAdapter[] = [];

beforeAll(async () => {
  server = await startMockOpenAI();
});

afterAll(async () => {
  await Promise.all(adapters.map((adapter) => adapter.close()));
  await server.close();
});

function adapter(model: string, fields: Partial<Deployment> = {}): ProviderAdapter {
  const created = createOpenAIAdapter({
    id: `openai/${model}`,
    group: 'group',
    weight: 1,
    provider: 'openai',
    baseUrl: `${server.url}/v1`,
    model,
    apiKey: 'sk-test-key-0000',
    timeouts: TIMEOUTS,
    ...fields,
  });
  adapters.push(created);
  return created;
}

function azure(model: string, fields: Partial<Deployment> = {}): ProviderAdapter {
  return adapter(model, { provider: 'azure', baseUrl: server.url, apiKey: 'azure-key-0000', ...fields });
}

function request(body: Partial<ChatCompletionRequest> = {}, signal = new AbortController().signal): UpstreamRequest {
  return { body: { model: 'group', messages: [{ role: 'user', content: 'Hi there' }], ...body }, signal, requestId: 'req-test-1' };
}

interface StreamOutcome {
  chunks: ChatCompletionChunk[];
  error: unknown;
}

async function readStream(stream: AsyncIterable<ChatCompletionChunk>): Promise<StreamOutcome> {
  const chunks: ChatCompletionChunk[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk);
    return { chunks, error: undefined };
  } catch (error) {
    return { chunks, error };
  }
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

function streamedText(chunks: readonly ChatCompletionChunk[], index = 0): string {
  let text = '';
  for (const chunk of chunks) for (const choice of chunk.choices) if (choice.index === index) text += choice.delta.content ?? '';
  return text;
}

function streamedToolArguments(chunks: readonly ChatCompletionChunk[]): string {
  let text = '';
  for (const chunk of chunks) for (const choice of chunk.choices) for (const call of choice.delta.tool_calls ?? []) text += call.function?.arguments ?? '';
  return text;
}

function finishReasons(chunks: readonly ChatCompletionChunk[]): string[] {
  return chunks.flatMap((chunk) => chunk.choices.flatMap((choice) => (choice.finish_reason == null ? [] : [choice.finish_reason])));
}

function contentChunks(chunks: readonly ChatCompletionChunk[]): ChatCompletionChunk[] {
  return chunks.filter((chunk) => chunk.choices.some((choice) => (choice.delta.content ?? '') !== '' || choice.delta.tool_calls !== undefined));
}

/** What must be identical between the HTTP and the in-band form of one failure. */
function signature(error: unknown): { name: string; status: number; type: string } {
  expect(error).toBeInstanceOf(GatewayError);
  const e = error as GatewayError;
  return { name: e.constructor.name, status: e.status, type: e.type };
}

function lastCall(model: string): MockCall {
  const call = server.calls.findLast((c) => c.model === model);
  if (call === undefined) throw new Error(`no call for ${model}`);
  return call;
}

/** Aborts once the mock logged the call, and checks the upstream socket closed within 100 ms. */
async function abortAndExpectClosed(controller: AbortController, reason: Error, model: string): Promise<void> {
  await server.waitForCall((call) => call.model === model);
  const abortedAt = Date.now();
  controller.abort(reason);
  const call = await server.waitForCall((c) => c.model === model && c.closedAt !== undefined, 1000);
  expect(call.closedAt! - abortedAt).toBeLessThan(100);
  expect(call.clientAborted).toBe(true);
}

beforeEach(() => server.reset());

describe('answers', () => {
  it('non-streaming: the completion as upstream sent it, for the deployment model', async () => {
    const completion = await adapter('normal').complete(request());
    expect(completion).toMatchObject({ object: 'chat.completion', model: 'normal' });
    expect(completion.choices).toHaveLength(1);
    expect(completion.choices[0]).toMatchObject({ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: NORMAL_TEXT } });
    expect(completion.usage).toEqual({ prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number), total_tokens: expect.any(Number) });
    const call = lastCall('normal');
    expect(call.path).toBe('/v1/chat/completions');
    expect(call.body).toMatchObject({ model: 'normal', messages: [{ role: 'user', content: 'Hi there' }] });
  });

  it('streaming: same text, one stop, and the usage-only chunk last (always asked for upstream)', async () => {
    const completion = await adapter('normal').complete(request());
    const { chunks, error } = await readStream(adapter('normal').stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.model === 'normal')).toBe(true);
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(streamedText(chunks)).toBe(completion.choices[0]!.message.content);
    expect(contentChunks(chunks).length).toBeGreaterThan(1);
    expect(finishReasons(chunks)).toEqual(['stop']);
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual(completion.usage);
    expect(lastCall('normal').body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
  });

  it("keeps the client's other stream_options and forces include_usage", async () => {
    await readStream(adapter('normal').stream(request({ stream: true, stream_options: { include_usage: false, extra: 1 } })));
    expect(lastCall('normal').body).toMatchObject({ stream_options: { include_usage: true, extra: 1 } });
  });

  it('non-streaming strips stream and stream_options (OpenAI rejects stream_options without stream)', async () => {
    await adapter('normal').complete(request({ stream: true, stream_options: { include_usage: true } }));
    const body = lastCall('normal').body as Record<string, unknown>;
    expect(body).not.toHaveProperty('stream');
    expect(body).not.toHaveProperty('stream_options');
  });

  it("a wildcard deployment ('*') forwards the client's model, on OpenAI and Azure routes", async () => {
    await adapter('*').complete(request({ model: 'echo', messages: [{ role: 'user', content: 'say this back' }] }));
    expect(lastCall('echo').body).toMatchObject({ model: 'echo' });
    const completion = await azure('*').complete(request({ model: 'echo', messages: [{ role: 'user', content: 'say this back' }] }));
    expect(completion.choices[0]!.message.content).toBe('say this back');
    expect(lastCall('echo').path).toBe('/openai/deployments/echo/chat/completions');
  });

  it('passes other fields through untouched', async () => {
    await adapter('normal').complete(request({ temperature: 0.2, max_tokens: 50, user: 'u-1', seed: 7 }));
    expect(lastCall('normal').body).toMatchObject({ temperature: 0.2, max_tokens: 50, user: 'u-1', seed: 7 });
  });

  it('tools: the same call in both modes', async () => {
    const body = { tools: [WEATHER_TOOL] };
    const completion = await adapter('tools').complete(request(body));
    const call = completion.choices[0]!.message.tool_calls?.[0];
    expect(call?.function.name).toBe('lookup_weather');
    expect(JSON.parse(call!.function.arguments)).toEqual({ location: 'Paris', unit: 'celsius' });
    expect(completion.choices[0]!.finish_reason).toBe('tool_calls');

    const { chunks, error } = await readStream(adapter('tools').stream(request({ ...body, stream: true })));
    expect(error).toBeUndefined();
    const first = chunks.flatMap((chunk) => chunk.choices.flatMap((choice) => choice.delta.tool_calls ?? []))[0];
    expect(first).toMatchObject({ index: 0, type: 'function', function: { name: 'lookup_weather' } });
    expect(first?.id).toEqual(expect.any(String));
    expect(streamedToolArguments(chunks)).toBe(call!.function.arguments);
    expect(finishReasons(chunks)).toEqual(['tool_calls']);
  });

  it('n > 1: every choice, in both modes, with its own text', async () => {
    const completion = await adapter('normal').complete(request({ n: 2 }));
    expect(completion.choices.map((choice) => choice.message.content)).toEqual([NORMAL_TEXT, `${NORMAL_TEXT} (choice 1)`]);
    const { chunks } = await readStream(adapter('normal').stream(request({ n: 2, stream: true })));
    expect(streamedText(chunks, 0)).toBe(NORMAL_TEXT);
    expect(streamedText(chunks, 1)).toBe(`${NORMAL_TEXT} (choice 1)`);
    expect(finishReasons(chunks)).toEqual(['stop', 'stop']);
  });

  it('a long answer streams in many chunks and reassembles exactly', async () => {
    const completion = await adapter('long:5000').complete(request());
    const { chunks } = await readStream(adapter('long:5000').stream(request({ stream: true })));
    expect(contentChunks(chunks).length).toBeGreaterThan(50);
    expect(streamedText(chunks)).toBe(completion.choices[0]!.message.content);
  });

  it('multi-byte characters survive chunking', async () => {
    const text = 'Grüße 👋 日本語 — ünïcödé';
    const message = { role: 'user' as const, content: text };
    const { chunks } = await readStream(adapter('echo').stream(request({ messages: [message], stream: true })));
    expect(streamedText(chunks)).toBe(text);
  });
});

describe('headers and credentials', () => {
  it('sends the bearer key, x-request-id and the deployment headers (one header per name)', async () => {
    await adapter('normal', { headers: { 'X-Custom': 'yes', 'Content-Type': 'application/json' } }).complete(request());
    const call = lastCall('normal');
    expect(call.headers.authorization).toBe('Bearer sk-test-key-0000');
    expect(call.headers['x-request-id']).toBe('req-test-1');
    expect(call.headers['x-custom']).toBe('yes');
    expect(call.headers['content-type']).toBe('application/json');
  });

  it('sends no authorization with apiKey: false (a keyless server)', async () => {
    await adapter('normal', { apiKey: false }).complete(request());
    expect(lastCall('normal').headers.authorization).toBeUndefined();
  });

  it('without a key, fails the attempt as a 502 naming the deployment and calls nothing', async () => {
    for (const apiKey of [undefined, '', () => '', () => undefined as unknown as string]) {
      const error = await rejectionOf(adapter('normal', { apiKey }).complete(request()));
      expect(error).toBeInstanceOf(UpstreamCredentialsError);
      expect(error).toMatchObject({ status: 502, type: 'upstream_error', deployment: 'openai/normal' });
      expect((error as Error).message).toContain("deployment 'openai/normal'");
    }
    expect(server.callCount()).toBe(0);
  });

  it('calls a credential function per request (sync or async)', async () => {
    let calls = 0;
    const rotating = adapter('normal', { apiKey: async () => `key-${++calls}` });
    await rotating.complete(request());
    await readStream(rotating.stream(request({ stream: true })));
    expect(calls).toBe(2);
    expect(server.calls.map((call) => call.apiKey)).toEqual(['key-1', 'key-2']);
    await adapter('normal', { apiKey: () => 'sync-key' }).complete(request());
    expect(lastCall('normal').apiKey).toBe('sync-key');
  });

  it('a failing credential function is a 502 naming the deployment, without its message', async () => {
    const broken = adapter('normal', {
      apiKey: () => {
        throw new Error('vault at https://vault.internal/ said no');
      },
    });
    const error = await rejectionOf(broken.complete(request()));
    expect(error).toBeInstanceOf(UpstreamCredentialsError);
    expect((error as Error).message).toBe("The gateway has no API key for deployment 'openai/normal': its key function failed.");
    expect(server.callCount()).toBe(0);
  });
});

describe('Azure', () => {
  it('deployment path, default api-version, api-key and no model in the body', async () => {
    const completion = await azure('normal').complete(request());
    expect(completion.choices[0]!.message.content).toBe(NORMAL_TEXT);
    const call = lastCall('normal');
    expect(call.api).toBe('azure');
    expect(call.path).toBe('/openai/deployments/normal/chat/completions');
    expect(call.query['api-version']).toBe('2024-10-21');
    expect(call.headers['api-key']).toBe('azure-key-0000');
    expect(call.headers.authorization).toBeUndefined();
    expect(call.body).not.toHaveProperty('model');
  });

  it('uses the configured api-version and escapes the deployment name', async () => {
    await azure('normal', { apiVersion: '2025-01-01-preview' }).complete(request());
    expect(lastCall('normal').query['api-version']).toBe('2025-01-01-preview');
    await azure('my deployment').complete(request());
    expect(lastCall('my deployment').path).toBe('/openai/deployments/my%20deployment/chat/completions');
  });

  it("does not yield Azure's prompt_filter_results chunk: the first chunk is a real one", async () => {
    const { chunks, error } = await readStream(azure('normal').stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(chunks[0]!.choices.length).toBeGreaterThan(0);
    expect(chunks.some((chunk) => 'prompt_filter_results' in chunk)).toBe(false);
    expect(chunks.every((chunk) => chunk.choices.length > 0 || chunk.usage != null)).toBe(true);
    expect(streamedText(chunks)).toBe(NORMAL_TEXT);
  });

  it('needs a base URL (configuration error at creation)', () => {
    expect(() => createOpenAIAdapter({ id: 'az', group: 'g', weight: 1, provider: 'azure', model: 'm', timeouts: TIMEOUTS })).toThrow(/baseUrl/);
  });
});

describe('DashScope compatible mode and other OpenAI-compatible bases', () => {
  it('POSTs to <base>/chat/completions', async () => {
    const completion = await adapter('normal', { baseUrl: `${server.url}/compatible-mode/v1/` }).complete(request());
    expect(completion.choices[0]!.message.content).toBe(NORMAL_TEXT);
    expect(lastCall('normal').path).toBe('/compatible-mode/v1/chat/completions');
  });

  it('moderation is a content-policy violation in both forms', async () => {
    const base = { baseUrl: `${server.url}/compatible-mode/v1` };
    expect(await rejectionOf(adapter('content-policy-dashscope', base).complete(request()))).toBeInstanceOf(ContentPolicyViolationError);
    const { error } = await readStream(adapter('stream-error:content-policy-dashscope', base).stream(request({ stream: true })));
    expect(error).toBeInstanceOf(ContentPolicyViolationError);
  });
});

describe('failures: the HTTP form and the first-event form are the same error', () => {
  const expected: Record<string, { name: string; status: number }> = {
    'error-500': { name: 'UpstreamError', status: 502 },
    'error-503': { name: 'UpstreamError', status: 503 },
    overloaded: { name: 'UpstreamError', status: 503 },
    'rate-limit': { name: 'RateLimitError', status: 429 },
    'bad-request': { name: 'BadRequestError', status: 400 },
    // The key the upstream refused is the gateway's: a 502 naming the deployment, not the client's 401.
    auth: { name: 'UpstreamCredentialsError', status: 502 },
    'not-found': { name: 'NotFoundError', status: 404 },
    'context-window': { name: 'ContextWindowExceededError', status: 400 },
    'content-policy': { name: 'ContentPolicyViolationError', status: 400 },
    'content-policy-azure': { name: 'ContentPolicyViolationError', status: 400 },
    'content-policy-dashscope': { name: 'ContentPolicyViolationError', status: 400 },
  };

  for (const [route, open] of [
    ['OpenAI', adapter],
    ['Azure', azure],
  ] as const) {
    describe(route, () => {
      for (const failure of MOCK_FAILURE_NAMES) {
        it(`${failure}`, async () => {
          const http = await rejectionOf(open(failure).complete(request()));
          const streamedHttp = await readStream(open(failure).stream(request({ stream: true })));
          const inBand = await readStream(open(`stream-error:${failure}`).stream(request({ stream: true })));
          expect(signature(http)).toMatchObject(expected[failure]!);
          expect(signature(streamedHttp.error)).toEqual(signature(http));
          expect(signature(inBand.error)).toEqual(signature(http));
          expect(inBand.chunks).toEqual([]);
          expect((inBand.error as GatewayError).retryAfterMs).toBe((http as GatewayError).retryAfterMs);
          for (const error of [http, streamedHttp.error, inBand.error]) expect((error as Error).message).not.toMatch(/https?:\/\//);
        });
      }
    });
  }

  it('rate limits carry Retry-After (header over HTTP, message in band)', async () => {
    const http = await rejectionOf(adapter('rate-limit:3').complete(request()));
    expect(http).toBeInstanceOf(RateLimitError);
    expect((http as RateLimitError).retryAfterMs).toBe(3000);
    const inBand = await readStream(adapter('stream-error:rate-limit:3').stream(request({ stream: true })));
    expect((inBand.error as RateLimitError).retryAfterMs).toBe(3000);
  });

  it('a bad request keeps the upstream param', async () => {
    const error = await rejectionOf(adapter('bad-request').complete(request()));
    expect(error).toBeInstanceOf(BadRequestError);
    expect((error as BadRequestError).param).toBe('temperature');
  });
});

describe('stream pathologies', () => {
  it('midstream-error: content, then the classified error', async () => {
    const { chunks, error } = await readStream(adapter('midstream-error').stream(request({ stream: true })));
    expect(contentChunks(chunks).length).toBeGreaterThan(0);
    expect(signature(error)).toEqual({ name: 'UpstreamError', status: 502, type: 'upstream_error' });
    const policy = await readStream(adapter('midstream-error:content-policy').stream(request({ stream: true })));
    expect(contentChunks(policy.chunks).length).toBeGreaterThan(0);
    expect(policy.error).toBeInstanceOf(ContentPolicyViolationError);
  });

  it('midstream-drop: content, then a connection error', async () => {
    const { chunks, error } = await readStream(adapter('midstream-drop').stream(request({ stream: true })));
    expect(contentChunks(chunks).length).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(await rejectionOf(adapter('midstream-drop').complete(request()))).toBeInstanceOf(ConnectionError);
  });

  it('no-done: content, then "ended before it finished"', async () => {
    const { chunks, error } = await readStream(adapter('no-done').stream(request({ stream: true })));
    expect(contentChunks(chunks).length).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).status).toBe(502);
    expect((error as Error).message).toMatch(/ended before it finished/);
  });

  it('malformed-chunk: a 502 "malformed chunk", in both modes', async () => {
    const { error } = await readStream(adapter('malformed-chunk').stream(request({ stream: true })));
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).status).toBe(502);
    expect((error as Error).message).toMatch(/malformed chunk/);
    const json = await rejectionOf(adapter('malformed-chunk').complete(request()));
    expect(json).toBeInstanceOf(UpstreamError);
    expect((json as UpstreamError).status).toBe(502);
  });

  it('empty-stream: ends with no content and no error', async () => {
    const { chunks, error } = await readStream(adapter('empty-stream').stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(contentChunks(chunks)).toEqual([]);
  });

  it('content-filter-first: the content_filter chunk is yielded, not thrown (the router decides)', async () => {
    for (const open of [adapter, azure]) {
      const { chunks, error } = await readStream(open('content-filter-first').stream(request({ stream: true })));
      expect(error).toBeUndefined();
      expect(contentChunks(chunks)).toEqual([]);
      expect(finishReasons(chunks)).toEqual(['content_filter']);
      expect(chunks[0]!.choices[0]!.finish_reason).toBe('content_filter');
      const completion = await open('content-filter-first').complete(request());
      expect(completion.choices[0]!.finish_reason).toBe('content_filter');
    }
  });
});

describe('cancellation', () => {
  it('aborting a hung non-streaming call throws exactly the reason and closes the socket', async () => {
    const controller = new AbortController();
    const reason = new Error('client went away');
    const pending = rejectionOf(adapter('hang').complete(request({}, controller.signal)));
    await abortAndExpectClosed(controller, reason, 'hang');
    expect(await pending).toBe(reason);
  });

  it('aborting a non-streaming call whose body never comes (headers sent)', async () => {
    const controller = new AbortController();
    const reason = new Error('total timeout');
    const pending = rejectionOf(adapter('hang-after-first').complete(request({}, controller.signal)));
    await server.waitForCall((call) => call.model === 'hang-after-first' && call.respondedAt !== undefined);
    await abortAndExpectClosed(controller, reason, 'hang-after-first');
    expect(await pending).toBe(reason);
  });

  it('aborting a hung stream before its headers', async () => {
    const controller = new AbortController();
    const reason = new Error('first-token timeout');
    const pending = readStream(adapter('hang').stream(request({ stream: true }, controller.signal)));
    await abortAndExpectClosed(controller, reason, 'hang');
    expect((await pending).error).toBe(reason);
  });

  it('aborting a slow stream between chunks', async () => {
    const controller = new AbortController();
    const reason = new Error('guardrail blocked');
    const iterator = adapter('slow:500').stream(request({ stream: true }, controller.signal))[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    await abortAndExpectClosed(controller, reason, 'slow:500');
    expect(await rejectionOf(iterator.next())).toBe(reason);
  });

  it('aborting after the first chunk of a stream that then goes silent', async () => {
    const controller = new AbortController();
    const reason = new Error('idle timeout');
    const iterator = adapter('hang-after-first').stream(request({ stream: true }, controller.signal))[Symbol.asyncIterator]();
    let first = await iterator.next();
    while (!first.done && contentChunks([first.value]).length === 0) first = await iterator.next();
    expect(first.done).toBe(false);
    const pending = rejectionOf(iterator.next());
    await abortAndExpectClosed(controller, reason, 'hang-after-first');
    expect(await pending).toBe(reason);
  });

  it('an already aborted signal throws its reason without calling upstream', async () => {
    const controller = new AbortController();
    const reason = new Error('already gone');
    controller.abort(reason);
    expect(await rejectionOf(adapter('normal').complete(request({}, controller.signal)))).toBe(reason);
    expect((await readStream(adapter('normal').stream(request({ stream: true }, controller.signal)))).error).toBe(reason);
    expect(server.callCount()).toBe(0);
  });

  it('stopping iteration early closes the upstream socket', async () => {
    const iterator = adapter('slow:500').stream(request({ stream: true }))[Symbol.asyncIterator]();
    await iterator.next();
    const stoppedAt = Date.now();
    await iterator.return?.();
    const call = await server.waitForCall((c) => c.model === 'slow:500' && c.closedAt !== undefined, 1000);
    expect(call.closedAt! - stoppedAt).toBeLessThan(100);
    expect(call.clientAborted).toBe(true);
  });
});

describe('wire details no mock scenario covers', () => {
  let scripted: Server;
  /** What the scripted upstream sends next: status, content type, and body pieces written 10 ms apart. */
  let script: { status: number; contentType: string; pieces: (string | Buffer)[] };

  beforeAll(async () => {
    scripted = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(script.status, { 'content-type': script.contentType });
        const write = (index: number): void => {
          const piece = script.pieces[index];
          if (piece === undefined) return void res.end();
          res.write(piece);
          setTimeout(() => write(index + 1), 10);
        };
        write(0);
      });
    });
    await new Promise<void>((resolve) => scripted.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    scripted.closeAllConnections();
    await new Promise((resolve) => scripted.close(resolve));
  });

  function scriptedAdapter(): ProviderAdapter {
    return adapter('m', { baseUrl: `http://127.0.0.1:${(scripted.address() as AddressInfo).port}/v1` });
  }

  const chunkData = (content: string, finish: string | null = null): string =>
    `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

  it('a UTF-8 character split across network chunks comes out whole', async () => {
    const frame = Buffer.from(chunkData('Grüße 👋'));
    const emoji = frame.indexOf(Buffer.from('👋'));
    script = { status: 200, contentType: 'text/event-stream', pieces: [frame.subarray(0, emoji + 2), frame.subarray(emoji + 2), chunkData('', 'stop'), 'data: [DONE]\n\n'] };
    const { chunks, error } = await readStream(scriptedAdapter().stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(streamedText(chunks)).toBe('Grüße 👋');
  });

  it('an event split across network chunks, and CRLF line endings', async () => {
    const frame = chunkData('split').replaceAll('\n', '\r\n');
    script = { status: 200, contentType: 'text/event-stream', pieces: [frame.slice(0, 20), frame.slice(20), chunkData('', 'stop'), 'data: [DONE]\n\n'] };
    const { chunks, error } = await readStream(scriptedAdapter().stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(streamedText(chunks)).toBe('split');
  });

  it('in-band errors in the other forms: a bare vLLM error object, an event: error frame', async () => {
    const bare = { object: 'error', message: "This model's maximum context length is 4096 tokens.", type: 'BadRequestError', param: null, code: 400 };
    script = { status: 200, contentType: 'text/event-stream', pieces: [`data: ${JSON.stringify(bare)}\n\n`] };
    expect((await readStream(scriptedAdapter().stream(request({ stream: true })))).error).toBeInstanceOf(ContextWindowExceededError);
    const named = { error: { message: 'Rate limit reached. Please try again in 2s.', type: 'requests', code: 'rate_limit_exceeded' } };
    script = { status: 200, contentType: 'text/event-stream', pieces: [chunkData('Hel'), `event: error\ndata: ${JSON.stringify(named)}\n\n`] };
    const { chunks, error } = await readStream(scriptedAdapter().stream(request({ stream: true })));
    expect(streamedText(chunks)).toBe('Hel');
    expect(error).toBeInstanceOf(RateLimitError);
    expect((error as RateLimitError).retryAfterMs).toBe(2000);
  });

  it('a JSON error under 200 to a streaming request is classified like its HTTP form', async () => {
    const body = { error: { message: 'Input data may contain inappropriate content.', type: 'data_inspection_failed', code: 'data_inspection_failed' } };
    script = { status: 200, contentType: 'application/json', pieces: [JSON.stringify(body)] };
    expect((await readStream(scriptedAdapter().stream(request({ stream: true })))).error).toBeInstanceOf(ContentPolicyViolationError);
    script = { status: 200, contentType: 'application/json', pieces: [JSON.stringify(body)] };
    expect(await rejectionOf(scriptedAdapter().complete(request()))).toBeInstanceOf(ContentPolicyViolationError);
  });

  it('an error body larger than 64 KB is cut, not buffered whole, and still classified by status', async () => {
    script = { status: 503, contentType: 'text/html', pieces: ['<html>'.padEnd(100_000, 'x'), '</html>'] };
    const error = await rejectionOf(scriptedAdapter().complete(request()));
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).status).toBe(503);
    expect((error as Error).message.length).toBeLessThanOrEqual(1001);
  });
});

describe('connections', () => {
  let counting: Server;
  let connections = 0;

  beforeAll(async () => {
    // A minimal upstream that counts TCP connections, to see the keep-alive pool at work.
    counting = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
        // The end of the chunked body comes a little after [DONE], as it can over a real network.
        setTimeout(() => res.end(), 20);
      });
    });
    counting.on('connection', () => connections++);
    await new Promise<void>((resolve) => counting.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    counting.closeAllConnections();
    await new Promise((resolve) => counting.close(resolve));
  });

  it('reuses the connection after a complete stream', async () => {
    const pooled = adapter('m', { baseUrl: `http://127.0.0.1:${(counting.address() as AddressInfo).port}/v1` });
    connections = 0;
    for (let i = 0; i < 5; i++) {
      const { chunks, error } = await readStream(pooled.stream(request({ stream: true })));
      expect(error).toBeUndefined();
      expect(streamedText(chunks)).toBe('hi');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(connections).toBe(1);
  });

  it('a refused connection is a ConnectionError without the URL', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const refused = adapter('normal', { baseUrl: `http://127.0.0.1:${port}/v1` });
    const error = await rejectionOf(refused.complete(request()));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).not.toContain(String(port));
    expect((error as Error).cause).toBeDefined();
    expect((await readStream(refused.stream(request({ stream: true })))).error).toBeInstanceOf(ConnectionError);
  });
});
