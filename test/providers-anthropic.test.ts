import { BadRequestError, ConnectionError, ContentPolicyViolationError, GatewayError, RateLimitError, UpstreamError } from '../lib/errors.js';
import { createAnthropicAdapter } from '../lib/providers/anthropic.js';
import type { Deployment, ProviderAdapter, UpstreamRequest } from '../lib/providers/types.js';
import { MOCK_FAILURE_NAMES, startMockAnthropic, type MockCall, type MockServer } from '../lib/testing/mock-providers.js';
import type { ChatCompletionChunk, ChatCompletionRequest, ChatMessage } from '../lib/types.js';

// Real loopback HTTP against the mock Anthropic server. The mock picks its behaviour from the model
// name, which is the deployment's model (the request body carries the group name).

const TIMEOUTS: Deployment['timeouts'] = { connectMs: 2000, firstTokenMs: 60_000, idleMs: 30_000, totalMs: 600_000 };
const NORMAL_TEXT = 'Hello! This is a mock answer from mock-anthropic.';
const TOOL_PREFACE = 'Let me check that for you.';
const WEATHER_TOOL = {
  type: 'function' as const,
  function: { name: 'lookup_weather', description: 'Weather by city', parameters: { type: 'object', properties: { location: { type: 'string' } } } },
};

let server: MockServer;
const adapters: ProviderAdapter[] = [];

beforeAll(async () => {
  server = await startMockAnthropic();
});

afterAll(async () => {
  await Promise.all(adapters.map((adapter) => adapter.close()));
  await server.close();
});

beforeEach(() => server.reset());

function adapter(model: string, fields: Partial<Deployment> = {}): ProviderAdapter {
  const created = createAnthropicAdapter({
    id: `anthropic/${model}`,
    group: 'group',
    weight: 1,
    provider: 'anthropic',
    baseUrl: server.url,
    model,
    apiKey: 'sk-ant-test-0000',
    timeouts: TIMEOUTS,
    ...fields,
  });
  adapters.push(created);
  return created;
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

function streamedText(chunks: readonly ChatCompletionChunk[]): string {
  let text = '';
  for (const chunk of chunks) for (const choice of chunk.choices) text += choice.delta.content ?? '';
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

/** The body the mock received for `messages`, sent through a non-streaming call. */
async function sentBody(body: Partial<ChatCompletionRequest>, fields: Partial<Deployment> = {}): Promise<Record<string, unknown>> {
  await adapter('echo', fields).complete(request(body));
  return lastCall('echo').body as Record<string, unknown>;
}

async function abortAndExpectClosed(controller: AbortController, reason: Error, model: string): Promise<void> {
  await server.waitForCall((call) => call.model === model);
  const abortedAt = Date.now();
  controller.abort(reason);
  const call = await server.waitForCall((c) => c.model === model && c.closedAt !== undefined, 1000);
  expect(call.closedAt! - abortedAt).toBeLessThan(100);
  expect(call.clientAborted).toBe(true);
}

describe('answers', () => {
  it('non-streaming: an OpenAI chat.completion', async () => {
    const completion = await adapter('normal').complete(request());
    expect(completion).toMatchObject({
      id: expect.stringMatching(/^msg_/),
      object: 'chat.completion',
      model: 'normal',
      created: expect.any(Number),
      choices: [{ index: 0, message: { role: 'assistant', content: NORMAL_TEXT }, finish_reason: 'stop' }],
    });
    const { prompt_tokens, completion_tokens, total_tokens } = completion.usage!;
    expect(prompt_tokens).toBeGreaterThan(0);
    expect(completion_tokens).toBeGreaterThan(0);
    expect(total_tokens).toBe(prompt_tokens + completion_tokens);
    const call = lastCall('normal');
    expect(call.path).toBe('/v1/messages');
    expect(call.headers['x-api-key']).toBe('sk-ant-test-0000');
    expect(call.headers['anthropic-version']).toBe('2023-06-01');
    expect(call.body).toMatchObject({ model: 'normal', max_tokens: 4096, messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi there' }] }] });
    expect(call.body).not.toHaveProperty('stream');
  });

  it('streaming: role chunk first, same text, one stop, then the usage chunk', async () => {
    const completion = await adapter('normal').complete(request());
    const { chunks, error } = await readStream(adapter('normal').stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.model === 'normal' && chunk.created > 0)).toBe(true);
    expect(streamedText(chunks)).toBe(completion.choices[0]!.message.content);
    expect(contentChunks(chunks).length).toBeGreaterThan(1);
    expect(finishReasons(chunks)).toEqual(['stop']);
    const usage = chunks.at(-1)!;
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual(completion.usage);
    expect(lastCall('normal').body).toMatchObject({ stream: true });
  });

  it('tools: tool_use becomes tool_calls in both modes, with the text before it', async () => {
    const body = { tools: [WEATHER_TOOL] };
    const completion = await adapter('tools').complete(request(body));
    const message = completion.choices[0]!.message;
    expect(message.content).toBe(TOOL_PREFACE);
    expect(message.tool_calls).toEqual([
      { id: expect.stringMatching(/^toolu_/), type: 'function', function: { name: 'lookup_weather', arguments: '{"location":"Paris","unit":"celsius"}' } },
    ]);
    expect(completion.choices[0]!.finish_reason).toBe('tool_calls');
    expect(lastCall('tools').body).toMatchObject({
      tools: [{ name: 'lookup_weather', description: 'Weather by city', input_schema: WEATHER_TOOL.function.parameters }],
    });

    const { chunks, error } = await readStream(adapter('tools').stream(request({ ...body, stream: true })));
    expect(error).toBeUndefined();
    expect(streamedText(chunks)).toBe(TOOL_PREFACE);
    const calls = chunks.flatMap((chunk) => chunk.choices.flatMap((choice) => choice.delta.tool_calls ?? []));
    expect(calls[0]).toEqual({ index: 0, id: expect.stringMatching(/^toolu_/), type: 'function', function: { name: 'lookup_weather', arguments: '' } });
    expect(calls.every((call) => call.index === 0)).toBe(true);
    expect(JSON.parse(streamedToolArguments(chunks))).toEqual(JSON.parse(message.tool_calls![0]!.function.arguments));
    expect(finishReasons(chunks)).toEqual(['tool_calls']);
  });

  it('max_tokens → finish "length" in both modes', async () => {
    const completion = await adapter('long:400').complete(request({ max_tokens: 10 }));
    expect(completion.choices[0]!.finish_reason).toBe('length');
    const { chunks } = await readStream(adapter('long:400').stream(request({ max_tokens: 10, stream: true })));
    expect(finishReasons(chunks)).toEqual(['length']);
    expect(streamedText(chunks)).toBe(completion.choices[0]!.message.content);
  });

  it('a stop sequence → finish "stop"', async () => {
    const completion = await adapter('normal').complete(request({ stop: 'mock' }));
    expect(completion.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'Hello! This is a ' } });
  });

  it('multi-byte characters survive chunking', async () => {
    const text = 'Grüße 👋 日本語 — ünïcödé';
    const { chunks } = await readStream(adapter('echo').stream(request({ messages: [{ role: 'user', content: text }], stream: true })));
    expect(streamedText(chunks)).toBe(text);
  });

  it('calls a credential function per request', async () => {
    let calls = 0;
    const rotating = adapter('normal', { apiKey: async () => `ant-key-${++calls}` });
    await rotating.complete(request());
    await readStream(rotating.stream(request({ stream: true })));
    expect(server.calls.map((call) => call.apiKey)).toEqual(['ant-key-1', 'ant-key-2']);
  });

  it("a wildcard deployment ('*') forwards the client's model", async () => {
    const completion = await adapter('*').complete(request({ model: 'echo', messages: [{ role: 'user', content: 'say this back' }] }));
    expect(completion.choices[0]!.message.content).toBe('say this back');
    expect(lastCall('echo').body).toMatchObject({ model: 'echo' });
  });

  it('merges deployment headers (e.g. anthropic-beta)', async () => {
    await adapter('normal', { headers: { 'Anthropic-Beta': 'prompt-caching-2024-07-31' } }).complete(request());
    expect(lastCall('normal').headers['anthropic-beta']).toBe('prompt-caching-2024-07-31');
  });
});

describe('request translation', () => {
  it('a single system message becomes the system string', async () => {
    const body = await sentBody({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }] });
    expect(body.system).toBe('Be brief.');
    expect(body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }]);
  });

  it('system and developer messages (anywhere) become system text blocks, cache_control kept', async () => {
    const body = await sentBody({
      messages: [
        { role: 'system', content: [{ type: 'text', text: 'Rule one.', cache_control: { type: 'ephemeral' } }] },
        { role: 'user', content: 'Hi' },
        { role: 'developer', content: 'Rule two.' },
      ],
    });
    expect(body.system).toEqual([
      { type: 'text', text: 'Rule one.', cache_control: { type: 'ephemeral' } },
      { type: 'text', text: 'Rule two.' },
    ]);
  });

  it('tool calls and results: tool_use with parsed input, consecutive results merged into one user turn', async () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'lookup_weather', arguments: '{"location":"Paris"}' } },
          { id: 'call_2', type: 'function', function: { name: 'lookup_weather', arguments: '{"location":"Rome"}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'Sunny' },
      { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: 'Rainy' }] },
      { role: 'user', content: 'Thanks, and tomorrow?' },
    ];
    const body = await sentBody({ messages, tools: [WEATHER_TOOL] });
    expect(body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'call_1', name: 'lookup_weather', input: { location: 'Paris' } },
          { type: 'tool_use', id: 'call_2', name: 'lookup_weather', input: { location: 'Rome' } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'call_1', content: 'Sunny' },
          { type: 'tool_result', tool_use_id: 'call_2', content: [{ type: 'text', text: 'Rainy' }] },
          { type: 'text', text: 'Thanks, and tomorrow?' },
        ],
      },
    ]);
  });

  it('consecutive same-role messages merge into one turn', async () => {
    const body = await sentBody({
      messages: [
        { role: 'user', content: 'One.' },
        { role: 'user', content: 'Two.' },
        { role: 'assistant', content: 'A.' },
        { role: 'assistant', content: 'B.' },
        { role: 'user', content: 'Three.' },
      ],
    });
    expect(body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'One.' }, { type: 'text', text: 'Two.' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'A.' }, { type: 'text', text: 'B.' }] },
      { role: 'user', content: [{ type: 'text', text: 'Three.' }] },
    ]);
  });

  it('images: data URLs → base64 source, http URLs → url source', async () => {
    const body = await sentBody({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'high' } },
          ],
        },
      ],
    });
    expect(body.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is this?' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
          { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
        ],
      },
    ]);
  });

  it('sampling, stop, user and token limits', async () => {
    const body = await sentBody({ temperature: 0.3, top_p: 0.9, stop: ['END', 'STOP'], user: 'user-42', max_completion_tokens: 77, max_tokens: 5 });
    expect(body).toMatchObject({ temperature: 0.3, top_p: 0.9, stop_sequences: ['END', 'STOP'], metadata: { user_id: 'user-42' }, max_tokens: 77 });
    expect((await sentBody({ max_tokens: 12 })).max_tokens).toBe(12);
    expect((await sentBody({}, { defaultMaxTokens: 1234 })).max_tokens).toBe(1234);
    expect((await sentBody({ stop: 'END' })).stop_sequences).toEqual(['END']);
    const plain = await sentBody({ temperature: null, stream_options: { include_usage: true } });
    expect(plain).not.toHaveProperty('temperature');
    expect(plain).not.toHaveProperty('stream_options');
    expect(plain).not.toHaveProperty('metadata');
  });

  it('tool_choice: auto / required / none / a named tool, and parallel_tool_calls: false', async () => {
    const tools = [WEATHER_TOOL];
    expect((await sentBody({ tools, tool_choice: 'auto' })).tool_choice).toEqual({ type: 'auto' });
    expect((await sentBody({ tools, tool_choice: 'required' })).tool_choice).toEqual({ type: 'any' });
    expect((await sentBody({ tools, tool_choice: 'none' })).tool_choice).toEqual({ type: 'none' });
    expect((await sentBody({ tools, tool_choice: { type: 'function', function: { name: 'lookup_weather' } } })).tool_choice).toEqual({
      type: 'tool',
      name: 'lookup_weather',
    });
    expect((await sentBody({ tools, parallel_tool_calls: false })).tool_choice).toEqual({ type: 'auto', disable_parallel_tool_use: true });
    expect(await sentBody({ tools })).not.toHaveProperty('tool_choice');
  });

  it('what Anthropic cannot express is a 400 naming the field, before any upstream call', async () => {
    const badArguments: ChatMessage[] = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{"location": ' } }] },
    ];
    const cases: [Partial<ChatCompletionRequest>, string][] = [
      [{ n: 2 }, 'n'],
      [{ messages: badArguments }, 'messages[1].tool_calls[0].function.arguments'],
      [{ messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AA', format: 'wav' } }] }] }, 'messages[0].content[0].type'],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'ftp://x/y.png' } }] }] }, 'messages[0].content[0].image_url.url'],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    ];
    for (const [body, param] of cases) {
      for (const call of [
        (a: ProviderAdapter) => a.complete(request(body)),
        async (a: ProviderAdapter) => {
          const { error } = await readStream(a.stream(request({ ...body, stream: true })));
          throw error;
        },
      ]) {
        const error = await rejectionOf(call(adapter('normal')));
        expect(error).toBeInstanceOf(BadRequestError);
        expect((error as BadRequestError).param).toBe(param);
        expect((error as Error).message).toContain(param);
      }
    }
    expect(server.callCount()).toBe(0);
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

  for (const failure of MOCK_FAILURE_NAMES) {
    it(failure, async () => {
      const http = await rejectionOf(adapter(failure).complete(request()));
      const streamedHttp = await readStream(adapter(failure).stream(request({ stream: true })));
      const inBand = await readStream(adapter(`stream-error:${failure}`).stream(request({ stream: true })));
      expect(signature(http)).toMatchObject(expected[failure]!);
      expect(signature(streamedHttp.error)).toEqual(signature(http));
      expect(signature(inBand.error)).toEqual(signature(http));
      expect(inBand.chunks).toEqual([]);
      for (const error of [http, streamedHttp.error, inBand.error]) expect((error as Error).message).not.toMatch(/https?:\/\//);
    });
  }

  it('529 overloaded keeps its upstream status; rate limits carry retry-after', async () => {
    const overloaded = await rejectionOf(adapter('overloaded').complete(request()));
    expect((overloaded as UpstreamError).upstreamStatus).toBe(529);
    const limited = await rejectionOf(adapter('rate-limit:4').complete(request()));
    expect(limited).toBeInstanceOf(RateLimitError);
    expect((limited as RateLimitError).retryAfterMs).toBe(4000);
  });
});

describe('stream pathologies', () => {
  it('midstream-error: content, then the classified error (overloaded → 503)', async () => {
    const { chunks, error } = await readStream(adapter('midstream-error').stream(request({ stream: true })));
    expect(contentChunks(chunks).length).toBeGreaterThan(0);
    expect(signature(error)).toEqual({ name: 'UpstreamError', status: 503, type: 'upstream_error' });
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

  it('no-done (no message_stop): content, then "ended before it finished", and no usage chunk', async () => {
    const { chunks, error } = await readStream(adapter('no-done').stream(request({ stream: true })));
    expect(contentChunks(chunks).length).toBeGreaterThan(0);
    expect(chunks.some((chunk) => chunk.usage != null)).toBe(false);
    expect(error).toBeInstanceOf(UpstreamError);
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

  it('empty-stream: ends with no content and no error; the JSON form is an empty answer', async () => {
    const { chunks, error } = await readStream(adapter('empty-stream').stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(contentChunks(chunks)).toEqual([]);
    const completion = await adapter('empty-stream').complete(request());
    expect(completion.choices[0]!.message.content).toBe('');
  });

  it('content-filter-first (refusal): a content_filter finish, no content, not thrown', async () => {
    const { chunks, error } = await readStream(adapter('content-filter-first').stream(request({ stream: true })));
    expect(error).toBeUndefined();
    expect(contentChunks(chunks)).toEqual([]);
    expect(finishReasons(chunks)).toEqual(['content_filter']);
    const completion = await adapter('content-filter-first').complete(request());
    expect(completion.choices[0]!.finish_reason).toBe('content_filter');
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

  it('aborting a hung stream', async () => {
    const controller = new AbortController();
    const reason = new Error('first-token timeout');
    const pending = readStream(adapter('hang').stream(request({ stream: true }, controller.signal)));
    await abortAndExpectClosed(controller, reason, 'hang');
    expect((await pending).error).toBe(reason);
  });

  it('aborting a slow stream between chunks: nothing more comes out, not even buffered chunks', async () => {
    const controller = new AbortController();
    const reason = new Error('guardrail blocked');
    const iterator = adapter('slow:500').stream(request({ stream: true }, controller.signal))[Symbol.asyncIterator]();
    expect((await iterator.next()).done).toBe(false);
    await abortAndExpectClosed(controller, reason, 'slow:500');
    expect(await rejectionOf(iterator.next())).toBe(reason);
  });
});
