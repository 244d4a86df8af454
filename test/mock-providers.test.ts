import { createParser } from 'eventsource-parser';
import OpenAI from 'openai';
import { startMockAnthropic, startMockOpenAI, type MockCall, type MockServer } from '../lib/testing/mock-providers.js';

// Real loopback HTTP with Node's fetch: the wire format is what is under test.

interface SseEvent {
  event: string | undefined;
  data: string;
  /** ms since the request was sent */
  at: number;
}

interface ReadStream {
  raw: string;
  events: SseEvent[];
  /** Set when the body did not end cleanly (socket destroyed). */
  error: Error | undefined;
}

const USER_MESSAGES = [{ role: 'user', content: 'Hi there' }];
const ANTHROPIC_HEADERS = { 'x-api-key': 'sk-ant-test', 'anthropic-version': '2023-06-01' };

function post(url: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

async function readStream(response: Response, startedAt = Date.now()): Promise<ReadStream> {
  const events: SseEvent[] = [];
  const parser = createParser({ onEvent: ({ event, data }) => events.push({ event, data, at: Date.now() - startedAt }) });
  const decoder = new TextDecoder();
  const reader = response.body!.getReader();
  let raw = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const text = decoder.decode(value, { stream: true });
      raw += text;
      parser.feed(text);
    }
    return { raw, events, error: undefined };
  } catch (error) {
    return { raw, events, error: error as Error };
  }
}

/** Every frame must be exactly `[event: name\n]data: …\n\n`. */
function expectWellFormedFrames(raw: string): void {
  expect(raw.endsWith('\n\n')).toBe(true);
  for (const frame of raw.slice(0, -2).split('\n\n')) {
    expect(frame).toMatch(/^(event: [a-z_]+\n)?data: [^\n]+$/);
  }
}

/** Node's fetch types `json()` as `unknown`; the tests inspect bodies freely. */
function bodyOf(response: Response): Promise<any> {
  return response.json();
}

function json(event: SseEvent | undefined): any {
  if (event === undefined) throw new Error('missing event');
  return JSON.parse(event.data);
}

function chunksOf(stream: ReadStream): any[] {
  return stream.events.filter((event) => event.data !== '[DONE]').map(json);
}

function textOf(chunks: any[], index = 0): string {
  return chunks
    .flatMap((chunk) => chunk.choices ?? [])
    .filter((choice: any) => choice.index === index)
    .map((choice: any) => choice.delta?.content ?? '')
    .join('');
}

function anthropicText(stream: ReadStream): string {
  return stream.events
    .map(json)
    .filter((data) => data.type === 'content_block_delta' && data.delta.type === 'text_delta')
    .map((data) => data.delta.text)
    .join('');
}

describe('mock OpenAI server', () => {
  let server: MockServer;
  const chat = (model: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}, signal?: AbortSignal) =>
    post(`${server.url}/v1/chat/completions`, { model, messages: USER_MESSAGES, ...extra }, headers, signal);

  beforeAll(async () => {
    server = await startMockOpenAI();
  });
  afterEach(() => server.reset());
  afterAll(() => server.close());

  describe('answers', () => {
    test('normal, non-streaming: a complete chat.completion', async () => {
      const response = await chat('normal');
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/json');
      const body = await bodyOf(response);
      expect(body).toEqual({
        id: 'chatcmpl-mock-1',
        object: 'chat.completion',
        created: expect.any(Number),
        model: 'normal',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: 'Hello! This is a mock answer from mock-openai.', refusal: null },
            logprobs: null,
            finish_reason: 'stop',
          },
        ],
        usage: { prompt_tokens: 2, completion_tokens: 12, total_tokens: 14 },
      });
    });

    test('unknown model names behave as normal, and the log says so', async () => {
      const body = await bodyOf(await chat('gpt-4o-mini'));
      expect(body.choices[0].message.content).toBe('Hello! This is a mock answer from mock-openai.');
      expect(server.calls[0]).toMatchObject({ model: 'gpt-4o-mini', scenario: 'normal', endpoint: 'chat', api: 'openai' });
    });

    test('normal, streaming: role chunk, content chunks, finish chunk, usage chunk, [DONE]', async () => {
      const response = await chat('normal', { stream: true, stream_options: { include_usage: true } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      const stream = await readStream(response);
      expectWellFormedFrames(stream.raw);
      expect(stream.raw.endsWith('data: [DONE]\n\n')).toBe(true);
      expect(stream.events.every((event) => event.event === undefined)).toBe(true);

      const chunks = chunksOf(stream);
      expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.id === 'chatcmpl-mock-1')).toBe(true);
      expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '', refusal: null });
      const content = chunks.filter((chunk) => chunk.choices[0]?.delta.content);
      expect(content).toHaveLength(4);
      expect(textOf(chunks)).toBe('Hello! This is a mock answer from mock-openai.');
      const finish = chunks.at(-2);
      expect(finish.choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]);
      expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 2, completion_tokens: 12, total_tokens: 14 } });
      expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
    });

    test('without include_usage there is no usage chunk and no usage key', async () => {
      const chunks = chunksOf(await readStream(await chat('normal', { stream: true })));
      expect(chunks.at(-1).choices[0].finish_reason).toBe('stop');
      expect(chunks.some((chunk) => 'usage' in chunk)).toBe(false);
    });

    test('n > 1: choices keep their index and their own text', async () => {
      const body = await bodyOf(await chat('normal', { n: 2 }));
      expect(body.choices.map((choice: any) => choice.index)).toEqual([0, 1]);
      expect(body.choices[1].message.content).toBe('Hello! This is a mock answer from mock-openai. (choice 1)');

      const chunks = chunksOf(await readStream(await chat('normal', { n: 2, stream: true })));
      expect(textOf(chunks, 0)).toBe('Hello! This is a mock answer from mock-openai.');
      expect(textOf(chunks, 1)).toBe('Hello! This is a mock answer from mock-openai. (choice 1)');
      const finishes = chunks.flatMap((chunk) => chunk.choices).filter((choice: any) => choice.finish_reason);
      expect(finishes.map((choice: any) => choice.index)).toEqual([0, 1]);
    });

    test('echo repeats the last user message, parts included', async () => {
      const messages = [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: [{ type: 'text', text: 'repeat ' }, { type: 'text', text: 'me' }] },
      ];
      const body = await bodyOf(await post(`${server.url}/v1/chat/completions`, { model: 'echo', messages }));
      expect(body.choices[0].message.content).toBe('repeat me');
    });

    test('long:<N> streams exactly N characters in chunkSize chunks', async () => {
      const chunks = chunksOf(await readStream(await chat('long:5000', { stream: true })));
      const text = textOf(chunks);
      expect(text).toHaveLength(5000);
      expect(text.startsWith('Sentence 1 of the long mock answer. Sentence 2')).toBe(true);
      expect(chunks.filter((chunk) => chunk.choices[0]?.delta.content)).toHaveLength(Math.ceil(5000 / 64));
    });

    test('max_tokens cuts the answer with finish_reason length; stop sequences cut it with stop', async () => {
      const limited = await bodyOf(await chat('long:400', { max_tokens: 10 }));
      expect(limited.choices[0].message.content).toHaveLength(40);
      expect(limited.choices[0].finish_reason).toBe('length');
      const stopped = await bodyOf(await chat('normal', { stop: ['mock'] }));
      expect(stopped.choices[0]).toMatchObject({ message: { content: 'Hello! This is a ' }, finish_reason: 'stop' });
    });

    test('tools answers with a tool call, streamed as tool_call deltas', async () => {
      const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object' } } }];
      const body = await bodyOf(await chat('tools', { tools }));
      expect(body.choices[0]).toEqual({
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_mock_1', type: 'function', function: { name: 'lookup', arguments: '{"location":"Paris","unit":"celsius"}' } }],
          refusal: null,
        },
        logprobs: null,
        finish_reason: 'tool_calls',
      });

      const chunks = chunksOf(await readStream(await chat('tools', { tools, stream: true })));
      const first = chunks[0].choices[0].delta.tool_calls[0];
      expect(first).toEqual({ index: 0, id: 'call_mock_2', type: 'function', function: { name: 'lookup', arguments: '' } });
      const args = chunks
        .flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? [])
        .map((call: any) => call.function.arguments)
        .join('');
      expect(JSON.parse(args)).toEqual({ location: 'Paris', unit: 'celsius' });
      expect(chunks.at(-1).choices[0].finish_reason).toBe('tool_calls');
    });

    test('slow spaces the chunks by the delay; non-streaming waits for the whole answer', async () => {
      const startedAt = Date.now();
      const stream = await readStream(await chat('slow:60', { stream: true }), startedAt);
      const contentTimes = stream.events.filter((event) => /"content":"[^"]/.test(event.data)).map((event) => event.at);
      expect(contentTimes).toHaveLength(4);
      expect(contentTimes[3]! - contentTimes[0]!).toBeGreaterThanOrEqual(3 * 60 - 5);

      const before = Date.now();
      await bodyOf(await chat('slow:60'));
      expect(Date.now() - before).toBeGreaterThanOrEqual(3 * 60 - 5);
    });

    test('slow-headers:<ms> holds the status line back', async () => {
      const response = await chat('slow-headers:150');
      expect(response.status).toBe(200);
      const [call] = server.calls;
      expect(call!.respondedAt! - call!.receivedAt).toBeGreaterThanOrEqual(145);
    });
  });

  describe('failures as HTTP statuses', () => {
    test.each([
      ['error-500', 500, { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', param: null, code: null }],
      ['error-503', 503, { message: 'The engine is currently overloaded, please try again later.', type: 'server_error', param: null, code: null }],
      ['bad-request', 400, { type: 'invalid_request_error', param: 'temperature', code: 'decimal_above_max_value' }],
      ['auth', 401, { message: expect.stringContaining('Incorrect API key provided'), type: 'invalid_request_error', code: 'invalid_api_key' }],
      ['not-found', 404, { message: 'The model `not-found` does not exist or you do not have access to it.', type: 'invalid_request_error', code: 'model_not_found' }],
      ['context-window', 400, { message: expect.stringMatching(/^This model's maximum context length is \d+ tokens/), type: 'invalid_request_error', code: 'context_length_exceeded' }],
      ['content-policy', 400, { type: 'invalid_request_error', code: 'content_policy_violation' }],
    ])('%s → %i in OpenAI shape', async (model, status, error) => {
      const response = await chat(model, { stream: true });
      expect(response.status).toBe(status);
      expect(response.headers.get('content-type')).toBe('application/json');
      expect((await bodyOf(response)).error).toMatchObject(error);
    });

    test('rate-limit: 429 with Retry-After (default, option and argument)', async () => {
      const response = await chat('rate-limit');
      expect(response.status).toBe(429);
      expect(response.headers.get('retry-after')).toBe('1');
      expect((await bodyOf(response)).error).toMatchObject({ type: 'requests', code: 'rate_limit_exceeded' });
      expect((await chat('rate-limit:7')).headers.get('retry-after')).toBe('7');

      const other = await startMockOpenAI({ retryAfterSeconds: 3 });
      try {
        const otherResponse = await post(`${other.url}/v1/chat/completions`, { model: 'rate-limit', messages: USER_MESSAGES });
        expect(otherResponse.headers.get('retry-after')).toBe('3');
      } finally {
        await other.close();
      }
    });

    test('content-policy-azure: Azure content_filter 400 with innererror', async () => {
      const response = await chat('content-policy-azure');
      expect(response.status).toBe(400);
      const { error } = await bodyOf(response);
      expect(error).toMatchObject({
        message: expect.stringContaining("triggering Azure OpenAI's content management policy"),
        code: 'content_filter',
        param: 'prompt',
        status: 400,
        innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { violence: { filtered: true, severity: 'medium' } } },
      });
    });

    test('content-policy-dashscope: 400 data_inspection_failed', async () => {
      const response = await chat('content-policy-dashscope');
      expect(response.status).toBe(400);
      expect(await bodyOf(response)).toEqual({
        error: { code: 'data_inspection_failed', param: null, message: 'Input data may contain inappropriate content.', type: 'data_inspection_failed' },
        id: 'chatcmpl-mock-1',
        request_id: 'mock-request-1',
      });
    });
  });

  describe('failures in band and stream pathologies', () => {
    test('stream-error:<failure> sends the same error body as the first event of a 200 stream, then [DONE]', async () => {
      const httpBody = await bodyOf(await chat('content-policy-dashscope'));
      const response = await chat('stream-error:content-policy-dashscope', { stream: true });
      expect(response.status).toBe(200);
      const stream = await readStream(response);
      expectWellFormedFrames(stream.raw);
      expect(stream.events.map((event) => event.data)).toEqual([expect.any(String), '[DONE]']);
      expect(json(stream.events[0]).error).toEqual(httpBody.error);
    });

    test('stream-error:<failure> without streaming is the plain HTTP failure', async () => {
      const response = await chat('stream-error:error-500');
      expect(response.status).toBe(500);
      expect((await bodyOf(response)).error.type).toBe('server_error');
    });

    test('midstream-error: content chunks, then an in-band server_error, then [DONE]', async () => {
      const stream = await readStream(await chat('midstream-error', { stream: true }));
      const datas = stream.events.map((event) => event.data);
      expect(datas.at(-1)).toBe('[DONE]');
      expect(json(stream.events.at(-2)).error).toMatchObject({ type: 'server_error' });
      expect(textOf(chunksOf(stream).slice(0, -1))).toBe('Hello! This is a ');
      expect(chunksOf(stream).some((chunk) => chunk.choices?.[0]?.finish_reason)).toBe(false);
    });

    test('empty-stream is exactly data: [DONE]', async () => {
      const stream = await readStream(await chat('empty-stream', { stream: true }));
      expect(stream.raw).toBe('data: [DONE]\n\n');
    });

    test('no-done ends cleanly after the content: no finish_reason, no [DONE]', async () => {
      const stream = await readStream(await chat('no-done', { stream: true }));
      expect(stream.error).toBeUndefined();
      expect(textOf(chunksOf(stream))).toBe('Hello! This is a mock answer from mock-openai.');
      expect(stream.raw).not.toContain('[DONE]');
      expect(stream.raw).not.toContain('"finish_reason":"');
    });

    test('midstream-drop sends some content, then destroys the socket (not counted as a client abort)', async () => {
      const stream = await readStream(await chat('midstream-drop', { stream: true }));
      expect(stream.error?.message).toBe('terminated');
      expect(textOf(chunksOf(stream))).toBe('Hello! This is a ');
      const call = await server.waitForCall((c) => c.closedAt !== undefined);
      expect(call.clientAborted).toBe(false);

      const response = await chat('midstream-drop');
      await expect(response.text()).rejects.toThrow('terminated');
    });

    test('malformed-chunk: a data line that is not JSON before the content', async () => {
      const stream = await readStream(await chat('malformed-chunk', { stream: true }));
      const bad = stream.events.filter((event) => {
        try {
          JSON.parse(event.data);
          return false;
        } catch {
          return event.data !== '[DONE]';
        }
      });
      expect(bad).toHaveLength(1);
      expect(stream.events.indexOf(bad[0]!)).toBe(1);
      expect(stream.raw.endsWith('data: [DONE]\n\n')).toBe(true);
      await expect(bodyOf(await chat('malformed-chunk'))).rejects.toThrow(/not valid JSON/);
    });

    test('content-filter-first: a content_filter finish with no content', async () => {
      const chunks = chunksOf(await readStream(await chat('content-filter-first', { stream: true })));
      expect(chunks).toHaveLength(1);
      expect(chunks[0].choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: 'content_filter' }]);
      const body = await bodyOf(await chat('content-filter-first'));
      expect(body.choices[0]).toMatchObject({ message: { content: null }, finish_reason: 'content_filter' });
    });

    test('content-filter-first-azure: Azure prompt_filter_results chunk, then content_filter with results', async () => {
      const chunks = chunksOf(await readStream(await chat('content-filter-first-azure', { stream: true })));
      expect(chunks[0]).toMatchObject({ id: '', choices: [], prompt_filter_results: [{ prompt_index: 0 }] });
      expect(chunks[1].choices[0]).toMatchObject({
        finish_reason: 'content_filter',
        content_filter_results: { violence: { filtered: true } },
      });
    });

    test('hang: no answer; the call log records the client abort within 100 ms', async () => {
      const controller = new AbortController();
      const request = chat('hang', { stream: true }, {}, controller.signal);
      await server.waitForCall((call) => call.model === 'hang');
      await new Promise((resolve) => setTimeout(resolve, 50));
      const abortedAt = Date.now();
      controller.abort();
      await expect(request).rejects.toThrow(/abort/i);
      const call = await server.waitForCall((c) => c.closedAt !== undefined, 1000);
      expect(call.clientAborted).toBe(true);
      expect(call.respondedAt).toBeUndefined();
      expect(call.closedAt! - abortedAt).toBeLessThan(100);
    });

    test('hang-after-first: one content chunk, then silence until the client leaves', async () => {
      const controller = new AbortController();
      const response = await chat('hang-after-first', { stream: true }, {}, controller.signal);
      const reader = response.body!.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      expect(first).toContain('"content":"Hello! This "');
      expect(first).not.toContain('[DONE]');
      const next = await Promise.race([reader.read(), new Promise((resolve) => setTimeout(() => resolve('silence'), 150))]);
      expect(next).toBe('silence');
      controller.abort();
      const call = await server.waitForCall((c) => c.closedAt !== undefined);
      expect(call).toMatchObject({ status: 200, clientAborted: true });

      const jsonController = new AbortController();
      const headersOnly = await chat('hang-after-first', {}, {}, jsonController.signal);
      expect(headersOnly.status).toBe(200);
      const body = headersOnly.text();
      const silence = await Promise.race([body, new Promise((resolve) => setTimeout(() => resolve('silence'), 100))]);
      expect(silence).toBe('silence');
      jsonController.abort();
      await expect(body).rejects.toThrow(/abort/i);
    });
  });

  describe('routes, auth and call log', () => {
    test('Azure route: the deployment is the model; api-key and api-version are recorded; Azure errors', async () => {
      const base = `${server.url}/openai/deployments`;
      const ok = await post(`${base}/normal/chat/completions?api-version=2024-10-21`, { messages: USER_MESSAGES }, { 'api-key': 'azure-key' });
      expect((await bodyOf(ok)).prompt_filter_results).toHaveLength(1);
      expect(server.calls[0]).toMatchObject({ api: 'azure', model: 'normal', apiKey: 'azure-key', apiVersion: '2024-10-21', query: { 'api-version': '2024-10-21' } });

      const notFound = await post(`${base}/not-found/chat/completions?api-version=2024-10-21`, { messages: USER_MESSAGES });
      expect(notFound.status).toBe(404);
      expect((await bodyOf(notFound)).error.code).toBe('DeploymentNotFound');
      const policy = await post(`${base}/content-policy/chat/completions?api-version=2024-10-21`, { messages: USER_MESSAGES });
      expect((await bodyOf(policy)).error.innererror.code).toBe('ResponsibleAIPolicyViolation');
      const limited = await post(`${base}/rate-limit:4/chat/completions?api-version=2024-10-21`, { messages: USER_MESSAGES });
      expect(limited.headers.get('retry-after')).toBe('4');
      expect((await bodyOf(limited)).error).toEqual({ code: '429', message: expect.stringContaining('Please retry after 4 seconds') });

      const stream = await readStream(await post(`${base}/normal/chat/completions?api-version=2024-10-21`, { messages: USER_MESSAGES, stream: true }));
      const chunks = chunksOf(stream);
      expect(chunks[0]).toMatchObject({ choices: [], prompt_filter_results: expect.any(Array) });
      expect(textOf(chunks)).toBe('Hello! This is a mock answer from mock-openai.');
    });

    test('DashScope-style base path and the key as a bearer token', async () => {
      const response = await post(`${server.url}/compatible-mode/v1/chat/completions`, { model: 'qwen-plus', messages: USER_MESSAGES }, { authorization: 'Bearer sk-dash' });
      expect(response.status).toBe(200);
      expect(server.calls[0]).toMatchObject({ path: '/compatible-mode/v1/chat/completions', model: 'qwen-plus', apiKey: 'sk-dash' });
    });

    test('requireAuth: a wrong key gets the provider 401, the right one an answer', async () => {
      const guarded = await startMockOpenAI({ requireAuth: 'sk-right', name: 'guarded' });
      try {
        const url = `${guarded.url}/v1/chat/completions`;
        const wrong = await post(url, { model: 'normal', messages: USER_MESSAGES }, { authorization: 'Bearer sk-wrong' });
        expect(wrong.status).toBe(401);
        expect((await bodyOf(wrong)).error.code).toBe('invalid_api_key');
        const azure = await post(`${guarded.url}/openai/deployments/d/chat/completions`, { messages: USER_MESSAGES }, { 'api-key': 'nope' });
        expect((await bodyOf(azure)).error.code).toBe('401');
        const right = await post(url, { model: 'normal', messages: USER_MESSAGES }, { authorization: 'Bearer sk-right' });
        expect((await bodyOf(right)).choices[0].message.content).toBe('Hello! This is a mock answer from guarded.');
      } finally {
        await guarded.close();
      }
    });

    test('setScenario: by name, by spec, by function of the call index; reset() removes it', async () => {
      server.setScenario('gpt-4o', 'error-503');
      expect((await chat('gpt-4o')).status).toBe(503);
      server.setScenario('gpt-4o', { scenario: 'normal', text: 'My SSN is 123-45-6789.', chunks: 2 });
      const chunks = chunksOf(await readStream(await chat('gpt-4o', { stream: true })));
      expect(textOf(chunks)).toBe('My SSN is 123-45-6789.');
      expect(chunks.filter((chunk) => chunk.choices[0]?.delta.content)).toHaveLength(2);

      server.setScenario('flaky', ({ callIndex }) => (callIndex === 0 ? 'rate-limit' : 'normal'));
      expect((await chat('flaky')).status).toBe(429);
      expect((await chat('flaky')).status).toBe(200);
      expect(server.calls.filter((call) => call.model === 'flaky').map((call) => call.scenario)).toEqual(['rate-limit', 'normal']);

      server.reset();
      expect((await chat('gpt-4o')).status).toBe(200);
    });

    test('scenarios option applies from the start and again after reset()', async () => {
      const configured = await startMockOpenAI({ scenarios: { primary: 'error-500' } });
      try {
        const call = () => post(`${configured.url}/v1/chat/completions`, { model: 'primary', messages: USER_MESSAGES });
        expect((await call()).status).toBe(500);
        configured.setScenario('primary', undefined);
        expect((await call()).status).toBe(200);
        configured.reset();
        expect((await call()).status).toBe(500);
      } finally {
        await configured.close();
      }
    });

    test('callCount and the call record', async () => {
      await chat('normal', { stream: true }, { authorization: 'Bearer sk-test', 'x-trace': 'abc' });
      await chat('echo');
      await chat('echo');
      expect(server.callCount()).toBe(3);
      expect(server.callCount('echo')).toBe(2);
      expect(server.callCount('missing')).toBe(0);
      const call: MockCall = server.calls[0]!;
      expect(call).toMatchObject({
        seq: 1,
        method: 'POST',
        path: '/v1/chat/completions',
        api: 'openai',
        endpoint: 'chat',
        model: 'normal',
        scenario: 'normal',
        stream: true,
        apiKey: 'sk-test',
        status: 200,
        clientAborted: false,
        body: { model: 'normal', messages: USER_MESSAGES, stream: true },
      });
      expect(call.headers['x-trace']).toBe('abc');
      expect(call.finishedAt).toBeGreaterThanOrEqual(call.receivedAt);
      expect(call.closedAt).toBeGreaterThanOrEqual(call.finishedAt!);
    });

    test('maxCallLog keeps the newest calls; callCount keeps counting', async () => {
      const small = await startMockOpenAI({ maxCallLog: 2 });
      try {
        for (const model of ['a', 'b', 'c']) await post(`${small.url}/v1/chat/completions`, { model, messages: USER_MESSAGES });
        expect(small.calls.map((call) => call.model)).toEqual(['b', 'c']);
        expect(small.callCount()).toBe(3);
      } finally {
        await small.close();
      }
    });

    test('a throwing scenario function fails its request with a 500, not the process', async () => {
      server.setScenario('boom', () => {
        throw new Error('no scenario for you');
      });
      const response = await chat('boom');
      expect(response.status).toBe(500);
      expect((await bodyOf(response)).error.message).toBe('mock provider: no scenario for you');
      expect((await chat('normal')).status).toBe(200);
    });

    test('waitForCall rejects after its timeout when nothing matches', async () => {
      await expect(server.waitForCall((call) => call.model === 'never', 50)).rejects.toThrow('no matching call within 50 ms');
    });

    test('GET /v1/models lists the scenario names; embeddings are deterministic', async () => {
      const models = await bodyOf(await fetch(`${server.url}/v1/models`));
      expect(models.object).toBe('list');
      expect(models.data.map((model: any) => model.id)).toEqual(expect.arrayContaining(['normal', 'tools', 'rate-limit', 'hang']));

      const embed = async () => bodyOf(await post(`${server.url}/v1/embeddings`, { model: 'text-embedding-3-small', input: ['a', 'b'], dimensions: 4 }));
      const first = await embed();
      expect(first).toMatchObject({ object: 'list', model: 'text-embedding-3-small', usage: { prompt_tokens: 2, total_tokens: 2 } });
      expect(first.data).toHaveLength(2);
      expect(first.data[0].embedding).toHaveLength(4);
      expect(first.data[0].embedding).not.toEqual(first.data[1].embedding);
      expect(await embed()).toEqual(first);
      expect((await post(`${server.url}/v1/embeddings`, { model: 'rate-limit', input: 'x' })).status).toBe(429);
    });

    test('bad input: unknown path 404, invalid JSON 400, missing messages 400', async () => {
      const unknown = await post(`${server.url}/v1/nothing`, {});
      expect(unknown.status).toBe(404);
      expect((await bodyOf(unknown)).error.message).toBe('Invalid URL (POST /v1/nothing)');
      const invalid = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{oops' });
      expect(invalid.status).toBe(400);
      expect((await bodyOf(invalid)).error.message).toContain('could not parse the JSON body');
      const missing = await post(`${server.url}/v1/chat/completions`, { model: 'normal' });
      expect((await bodyOf(missing)).error.code).toBe('missing_required_parameter');
    });

    test('openai-node reads the answers, streams and errors as it reads OpenAI', async () => {
      const client = new OpenAI({ apiKey: 'sk-test', baseURL: `${server.url}/v1`, maxRetries: 0 });
      const messages = [{ role: 'user' as const, content: 'hi' }];
      const streamed = await client.chat.completions
        .stream({ model: 'normal', messages, n: 2, stream_options: { include_usage: true } })
        .finalChatCompletion();
      expect(streamed.choices.map((choice) => choice.message.content)).toEqual([
        'Hello! This is a mock answer from mock-openai.',
        'Hello! This is a mock answer from mock-openai. (choice 1)',
      ]);
      expect(streamed.usage?.total_tokens).toBe(28);

      const tool = await client.chat.completions.stream({ model: 'tools', messages }).finalChatCompletion();
      expect(tool.choices[0]?.message.tool_calls?.[0]).toMatchObject({ function: { name: 'get_weather' } });

      const inBand = client.chat.completions.create({ model: 'stream-error:context-window', messages, stream: true });
      await expect((async () => {
        for await (const chunk of await inBand) void chunk;
      })()).rejects.toMatchObject({ code: 'context_length_exceeded', status: undefined });
      await expect(client.chat.completions.create({ model: 'rate-limit', messages })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    });

    test('bad options throw when the server starts', async () => {
      await expect(startMockOpenAI({ chunks: 0 })).rejects.toThrow('`chunks` must be an integer >= 1');
      await expect(startMockAnthropic({ chunkDelayMs: -1 })).rejects.toThrow('`chunkDelayMs`');
    });
  });
});

describe('mock Anthropic server', () => {
  let server: MockServer;
  const messages = (model: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = ANTHROPIC_HEADERS, signal?: AbortSignal) =>
    post(`${server.url}/v1/messages`, { model, max_tokens: 1024, messages: USER_MESSAGES, ...extra }, headers, signal);

  beforeAll(async () => {
    server = await startMockAnthropic({ name: 'claude-mock' });
  });
  afterEach(() => server.reset());
  afterAll(() => server.close());

  test('normal, non-streaming: a complete message', async () => {
    const response = await messages('normal', { system: 'Be brief.' });
    expect(response.status).toBe(200);
    expect(await bodyOf(response)).toEqual({
      id: 'msg_mock_1',
      type: 'message',
      role: 'assistant',
      model: 'normal',
      content: [{ type: 'text', text: 'Hello! This is a mock answer from claude-mock.' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 5, output_tokens: 12 },
    });
    expect(server.calls[0]).toMatchObject({ api: 'anthropic', endpoint: 'messages', apiKey: 'sk-ant-test', apiVersion: '2023-06-01' });
  });

  test('normal, streaming: the real event sequence, event names matching data.type', async () => {
    const stream = await readStream(await messages('normal', { stream: true }));
    expectWellFormedFrames(stream.raw);
    expect(stream.events.map((event) => event.event)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(stream.events.every((event) => json(event).type === event.event)).toBe(true);
    expect(json(stream.events[0]).message).toMatchObject({ id: 'msg_mock_1', content: [], stop_reason: null, usage: { input_tokens: 2, output_tokens: 1 } });
    expect(anthropicText(stream)).toBe('Hello! This is a mock answer from claude-mock.');
    expect(json(stream.events.at(-2))).toEqual({
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: 12 },
    });
  });

  test('tools: a text block, then a tool_use block streamed as input_json_delta', async () => {
    const tools = [{ name: 'lookup', input_schema: { type: 'object' } }];
    const body = await bodyOf(await messages('tools', { tools }));
    expect(body.content).toEqual([
      { type: 'text', text: 'Let me check that for you.' },
      { type: 'tool_use', id: 'toolu_mock_1', name: 'lookup', input: { location: 'Paris', unit: 'celsius' } },
    ]);
    expect(body.stop_reason).toBe('tool_use');

    const events = (await readStream(await messages('tools', { tools, stream: true }))).events.map(json);
    expect(events.find((event) => event.type === 'content_block_start' && event.index === 1).content_block).toEqual({
      type: 'tool_use',
      id: 'toolu_mock_2',
      name: 'lookup',
      input: {},
    });
    const partial = events.filter((event) => event.delta?.type === 'input_json_delta').map((event) => event.delta.partial_json);
    expect(JSON.parse(partial.join(''))).toEqual({ location: 'Paris', unit: 'celsius' });
    expect(events.find((event) => event.type === 'message_delta').delta.stop_reason).toBe('tool_use');
  });

  test('stop_reason max_tokens and stop_sequence', async () => {
    const limited = await bodyOf(await messages('long:400', { max_tokens: 10 }));
    expect(limited).toMatchObject({ stop_reason: 'max_tokens', content: [{ text: expect.stringMatching(/^.{40}$/) }] });
    const stopped = await bodyOf(await messages('normal', { stop_sequences: ['mock'] }));
    expect(stopped).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: 'mock', content: [{ text: 'Hello! This is a ' }] });
  });

  test('required headers and fields are checked', async () => {
    const noKey = await messages('normal', {}, { 'anthropic-version': '2023-06-01' });
    expect(noKey.status).toBe(401);
    expect(await bodyOf(noKey)).toEqual({ type: 'error', error: { type: 'authentication_error', message: 'x-api-key header is required' } });
    const noVersion = await messages('normal', {}, { 'x-api-key': 'k' });
    expect(noVersion.status).toBe(400);
    expect((await bodyOf(noVersion)).error.message).toBe('anthropic-version: header is required');
    const noMax = await post(`${server.url}/v1/messages`, { model: 'normal', messages: USER_MESSAGES }, ANTHROPIC_HEADERS);
    expect(await bodyOf(noMax)).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
  });

  test.each([
    ['error-500', 500, 'api_error', 'Internal server error'],
    ['error-503', 503, 'api_error', 'Service unavailable'],
    ['overloaded', 529, 'overloaded_error', 'Overloaded'],
    ['bad-request', 400, 'invalid_request_error', expect.stringContaining('roles must alternate')],
    ['auth', 401, 'authentication_error', 'invalid x-api-key'],
    ['not-found', 404, 'not_found_error', 'model: not-found'],
    ['context-window', 400, 'invalid_request_error', expect.stringMatching(/^prompt is too long: \d+ tokens > \d+ maximum$/)],
    ['content-policy', 400, 'invalid_request_error', 'Output blocked by content filtering policy'],
    ['rate-limit:9', 429, 'rate_limit_error', expect.stringContaining('rate limit')],
  ])('%s → %i %s', async (model, status, type, message) => {
    const response = await messages(model, { stream: true });
    expect(response.status).toBe(status);
    expect(await bodyOf(response)).toEqual({ type: 'error', error: { type, message } });
    if (status === 429) expect(response.headers.get('retry-after')).toBe('9');
  });

  test('stream-error:<failure> is event: error as the first event of a 200 stream', async () => {
    const response = await messages('stream-error:overloaded', { stream: true });
    expect(response.status).toBe(200);
    const stream = await readStream(response);
    expect(stream.raw).toBe('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n');
  });

  test('midstream-error: some content, then event: error (overloaded by default), no message_stop', async () => {
    const stream = await readStream(await messages('midstream-error', { stream: true }));
    expect(anthropicText(stream)).toBe('Hello! This is a ');
    expect(stream.events.at(-1)).toMatchObject({ event: 'error' });
    expect(json(stream.events.at(-1)).error.type).toBe('overloaded_error');
    expect(stream.events.some((event) => event.event === 'message_stop')).toBe(false);
    const explicit = await readStream(await messages('midstream-error:content-policy', { stream: true }));
    expect(json(explicit.events.at(-1)).error.message).toBe('Output blocked by content filtering policy');
  });

  test('pathologies: empty-stream, no-done, content-filter-first', async () => {
    expect((await readStream(await messages('empty-stream', { stream: true }))).raw).toBe('');
    const noDone = await readStream(await messages('no-done', { stream: true }));
    expect(anthropicText(noDone)).toBe('Hello! This is a mock answer from claude-mock.');
    expect(noDone.events.at(-1)?.event).toBe('content_block_delta');

    const refused = await readStream(await messages('content-filter-first', { stream: true }));
    expect(refused.events.map((event) => event.event)).toEqual(['message_start', 'message_delta', 'message_stop']);
    expect(json(refused.events[1]).delta.stop_reason).toBe('refusal');
    expect(await bodyOf(await messages('content-filter-first'))).toMatchObject({ content: [], stop_reason: 'refusal' });
  });

  test('midstream-drop and malformed-chunk', async () => {
    const dropped = await readStream(await messages('midstream-drop', { stream: true }));
    expect(dropped.error?.message).toBe('terminated');
    expect(anthropicText(dropped)).toBe('Hello! This is a ');
    const malformed = await readStream(await messages('malformed-chunk', { stream: true }));
    expect(() => JSON.parse(malformed.events[3]!.data)).toThrow(SyntaxError);
    expect(malformed.events.at(-1)?.event).toBe('message_stop');
  });

  test('hang: the call log records the client abort within 100 ms', async () => {
    const controller = new AbortController();
    const request = messages('hang', { stream: true }, ANTHROPIC_HEADERS, controller.signal);
    await server.waitForCall((call) => call.model === 'hang');
    const abortedAt = Date.now();
    controller.abort();
    await expect(request).rejects.toThrow(/abort/i);
    const call = await server.waitForCall((c) => c.closedAt !== undefined, 1000);
    expect(call.clientAborted).toBe(true);
    expect(call.closedAt! - abortedAt).toBeLessThan(100);
  });
});
