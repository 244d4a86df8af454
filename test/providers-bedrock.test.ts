/**
 * The Bedrock adapter with the real `@aws-sdk/client-bedrock-runtime` against the mock Bedrock over
 * loopback, through both transports: a default client (the SDK's HTTP/2 handler) passed in, and the
 * adapter's own NodeHttpHandler (HTTP/1.1) client. Plus the classification table on real SDK exceptions.
 */
import net from 'node:net';
import {
  AccessDeniedException,
  BedrockRuntimeClient,
  BedrockRuntimeServiceException,
  InternalServerException,
  ModelErrorException,
  ModelNotReadyException,
  ModelStreamErrorException,
  ModelTimeoutException,
  ResourceNotFoundException,
  ServiceQuotaExceededException,
  ServiceUnavailableException,
  ThrottlingException,
  ValidationException,
} from '@aws-sdk/client-bedrock-runtime';
import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  ContextWindowExceededError,
  GatewayError,
  InternalError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  TimeoutError,
  UpstreamCredentialsError,
  UpstreamError,
} from '../lib/errors.js';
import { classifyBedrockError, createBedrockAdapter } from '../lib/providers/bedrock.js';
import type { Deployment, ProviderAdapter, UpstreamRequest } from '../lib/providers/types.js';
import {
  MOCK_BEDROCK_FAILURES,
  MOCK_BEDROCK_STREAM_FAILURES,
  startMockBedrock,
  type MockBedrock,
  type MockBedrockCall,
  type MockBedrockFailureName,
} from '../lib/testing/mock-bedrock.js';
import type { ChatCompletionChunk, ChatCompletionRequest } from '../lib/types.js';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };
const NORMAL_TEXT = 'Hello! This is a mock answer from mock-bedrock.';
const TOOL_ARGUMENTS = { location: 'Paris', unit: 'celsius' };
const WEATHER_TOOL = {
  type: 'function' as const,
  function: { name: 'lookup_weather', description: 'Weather by city', parameters: { type: 'object', properties: { location: { type: 'string' } } } },
};

let bedrock: MockBedrock;
const adapters: ProviderAdapter[] = [];
const clients: BedrockRuntimeClient[] = [];

beforeAll(async () => {
  bedrock = await startMockBedrock();
});

afterEach(async () => {
  await Promise.all(adapters.splice(0).map((adapter) => adapter.close()));
  for (const client of clients.splice(0)) client.destroy();
  bedrock.reset();
});

afterAll(() => bedrock.close());

function deploymentFor(model: string, overrides: Partial<Deployment> = {}): Deployment {
  return {
    id: `bedrock/${model}`,
    group: 'bedrock-group',
    provider: 'bedrock',
    model,
    baseUrl: bedrock.url,
    region: 'us-east-1',
    awsCredentials: CREDENTIALS,
    weight: 1,
    timeouts: { connectMs: 1000, firstTokenMs: 60_000, idleMs: 30_000, totalMs: 600_000 },
    ...overrides,
  };
}

type Transport = 'http2' | 'http1';
const TRANSPORTS: Transport[] = ['http2', 'http1'];

/**
 * `http2`: a client as users build it (default HTTP/2 handler), passed in; `maxAttempts: 1` only so that
 * error scenarios are not retried with backoff. `http1`: the adapter's own client.
 */
function adapterFor(transport: Transport, model: string, overrides: Partial<Deployment> = {}): ProviderAdapter {
  const deployment = deploymentFor(model, overrides);
  let adapter: ProviderAdapter;
  if (transport === 'http2') {
    const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: bedrock.url, credentials: CREDENTIALS, maxAttempts: 1 });
    clients.push(client);
    adapter = createBedrockAdapter(deployment, { client });
  } else {
    adapter = createBedrockAdapter(deployment);
  }
  adapters.push(adapter);
  return adapter;
}

function requestOf(body: Partial<ChatCompletionRequest> = {}, signal: AbortSignal = new AbortController().signal): UpstreamRequest {
  return { body: { model: 'bedrock-group', messages: [{ role: 'user', content: 'Hi there' }], ...body }, signal, requestId: 'req-test' };
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

interface StreamOutcome {
  chunks: ChatCompletionChunk[];
  error: unknown;
}

/** Reads a stream that is expected to fail; the test fails if it ends cleanly. */
async function streamUntilError(adapter: ProviderAdapter, request: UpstreamRequest = requestOf()): Promise<StreamOutcome> {
  const chunks: ChatCompletionChunk[] = [];
  try {
    for await (const chunk of adapter.stream(request)) chunks.push(chunk);
  } catch (error) {
    return { chunks, error };
  }
  throw new Error(`stream ended cleanly after ${chunks.length} chunks`);
}

async function completeError(adapter: ProviderAdapter, request: UpstreamRequest = requestOf()): Promise<unknown> {
  try {
    await adapter.complete(request);
  } catch (error) {
    return error;
  }
  throw new Error('complete() resolved');
}

function textOf(chunks: ChatCompletionChunk[]): string {
  return chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
}

function finishReasons(chunks: ChatCompletionChunk[]): unknown[] {
  return chunks.map((chunk) => chunk.choices[0]?.finish_reason).filter((reason) => reason != null);
}

function lastCall(): MockBedrockCall {
  const call = bedrock.calls[bedrock.calls.length - 1];
  if (call === undefined) throw new Error('the mock saw no call');
  return call;
}

/** What parity compares: everything a client or the router can see of the error. */
function errorFace(error: unknown): object {
  if (!(error instanceof GatewayError)) throw new Error(`not a GatewayError: ${String(error)}`);
  return { class: error.constructor.name, status: error.status, type: error.type, retryable: error.retryable, message: error.message };
}

describe.each(TRANSPORTS)('Bedrock adapter over %s', (transport) => {
  test('normal answer: the streamed text equals the non-streamed text, with the same usage', async () => {
    const adapter = adapterFor(transport, 'normal');
    const completion = await adapter.complete(requestOf());
    expect(completion).toMatchObject({
      object: 'chat.completion',
      model: 'normal',
      choices: [{ index: 0, message: { role: 'assistant', content: NORMAL_TEXT }, finish_reason: 'stop' }],
    });
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.created).toBeGreaterThan(1_700_000_000);
    expect(completion.usage).toEqual({ prompt_tokens: 2, completion_tokens: 12, total_tokens: 14 });

    const chunks = await collect(adapter.stream(requestOf()));
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant' });
    expect(textOf(chunks)).toBe(NORMAL_TEXT);
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta.content !== undefined).length).toBe(4);
    expect(finishReasons(chunks)).toEqual(['stop']);
    const last = chunks[chunks.length - 1];
    expect(last).toMatchObject({ object: 'chat.completion.chunk', model: 'normal', choices: [], usage: completion.usage });
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(bedrock.calls.map((call) => [call.operation, call.httpVersion])).toEqual([
      ['converse', transport === 'http2' ? '2.0' : '1.1'],
      ['converse-stream', transport === 'http2' ? '2.0' : '1.1'],
    ]);
  });

  test('tools: tool calls in both modes, arguments streamed as deltas of one indexed call', async () => {
    const adapter = adapterFor(transport, 'tools');
    const body = { tools: [WEATHER_TOOL] };
    const completion = await adapter.complete(requestOf(body));
    const choice = completion.choices[0];
    expect(choice?.finish_reason).toBe('tool_calls');
    expect(choice?.message.content).toBe('Let me check that for you.');
    expect(choice?.message.tool_calls).toEqual([
      { id: expect.stringMatching(/^tooluse_mock_/), type: 'function', function: { name: 'lookup_weather', arguments: expect.any(String) } },
    ]);
    expect(JSON.parse(choice?.message.tool_calls?.[0]?.function.arguments ?? '')).toEqual(TOOL_ARGUMENTS);

    const chunks = await collect(adapter.stream(requestOf(body)));
    const toolDeltas = chunks.flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? []);
    expect(toolDeltas[0]).toEqual({ index: 0, id: expect.stringMatching(/^tooluse_mock_/), type: 'function', function: { name: 'lookup_weather', arguments: '' } });
    expect(toolDeltas.length).toBe(5);
    expect(toolDeltas.every((delta) => delta.index === 0)).toBe(true);
    expect(JSON.parse(toolDeltas.map((delta) => delta.function?.arguments ?? '').join(''))).toEqual(TOOL_ARGUMENTS);
    expect(textOf(chunks)).toBe('Let me check that for you.');
    expect(finishReasons(chunks)).toEqual(['tool_calls']);
    expect(chunks[chunks.length - 1]?.usage).toEqual(completion.usage);
  });

  test.each(MOCK_BEDROCK_FAILURES)('%s: the same error without streaming, streaming, and as the first stream event', async (failure) => {
    const adapter = adapterFor(transport, failure);
    const expected = EXPECTED_ERRORS[failure];
    const nonStreaming = await completeError(adapter);
    expect(nonStreaming).toBeInstanceOf(expected.class);
    expect(nonStreaming).toMatchObject({ status: expected.status, upstreamStatus: HTTP_STATUS[failure] });
    const streaming = await streamUntilError(adapter);
    expect(streaming.chunks).toEqual([]);
    expect(errorFace(streaming.error)).toEqual(errorFace(nonStreaming));
    if ((MOCK_BEDROCK_STREAM_FAILURES as readonly string[]).includes(failure)) {
      const inBand = await streamUntilError(adapterFor(transport, `stream-error:${failure}`));
      expect(lastCall().status).toBe(200);
      expect(inBand.chunks).toEqual([]);
      expect(errorFace(inBand.error)).toEqual(errorFace(nonStreaming));
    }
  });

  test('rate-limit carries retry-after', async () => {
    const error = await completeError(adapterFor(transport, 'rate-limit:2'));
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error).toMatchObject({ retryAfterMs: 2000 });
  });

  test('midstream-error: content, then an internalServerException event is an upstream error (not a client 400)', async () => {
    const { chunks, error } = await streamUntilError(adapterFor(transport, 'midstream-error'));
    expect(textOf(chunks)).toBe('Hello! This is a ');
    expect(error).toBeInstanceOf(UpstreamError);
    expect(error).toMatchObject({ status: 502, retryable: true });
  });

  test('midstream-error with a throttling event is a rate limit', async () => {
    const { chunks, error } = await streamUntilError(adapterFor(transport, 'midstream-error:rate-limit'));
    expect(textOf(chunks)).not.toBe('');
    expect(error).toBeInstanceOf(RateLimitError);
  });

  test('midstream-drop: content, then a retryable upstream error; a cut JSON body fails retryably too', async () => {
    const adapter = adapterFor(transport, 'midstream-drop');
    const { chunks, error } = await streamUntilError(adapter);
    expect(textOf(chunks)).toBe('Hello! This is a ');
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as Error).message).toMatch(/connection closed before the stream finished/);
    const nonStreaming = await completeError(adapter);
    expect(nonStreaming).toBeInstanceOf(GatewayError);
    expect(nonStreaming).toMatchObject({ retryable: true });
  });

  test('no-stop: a stream that ends without messageStop is an upstream error', async () => {
    const { chunks, error } = await streamUntilError(adapterFor(transport, 'no-stop'));
    expect(textOf(chunks)).toBe(NORMAL_TEXT);
    expect(finishReasons(chunks)).toEqual([]);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as Error).message).toMatch(/stream ended before it finished/);
  });

  test('guardrail-intervened: finish_reason content_filter and no content, in both modes', async () => {
    const adapter = adapterFor(transport, 'guardrail-intervened');
    const completion = await adapter.complete(requestOf());
    expect(completion.choices[0]).toMatchObject({ message: { role: 'assistant', content: null }, finish_reason: 'content_filter' });
    const chunks = await collect(adapter.stream(requestOf()));
    expect(textOf(chunks)).toBe('');
    expect(chunks.some((chunk) => chunk.choices[0]?.delta.content !== undefined)).toBe(false);
    expect(finishReasons(chunks)).toEqual(['content_filter']);
  });

  test('max tokens and stop reasons map to finish reasons', async () => {
    const adapter = adapterFor(transport, 'long:400');
    const completion = await adapter.complete(requestOf({ max_tokens: 10 }));
    expect(completion.choices[0]).toMatchObject({ message: { content: 'Sentence 1 of the long mock answer. Sent' }, finish_reason: 'length' });
    const chunks = await collect(adapter.stream(requestOf({ stop: ['long'] })));
    expect(textOf(chunks)).toBe('Sentence 1 of the ');
    expect(finishReasons(chunks)).toEqual(['stop']);
  });

  describe('cancellation', () => {
    test.each(['complete', 'stream'] as const)('hang (%s): the abort reason is thrown and the upstream request closes at once', async (mode) => {
      const adapter = adapterFor(transport, 'hang');
      const controller = new AbortController();
      const reason = new TimeoutError('first token deadline');
      const request = requestOf({}, controller.signal);
      const pending = mode === 'complete' ? adapter.complete(request) : collect(adapter.stream(request));
      const settled = pending.then(
        () => 'resolved',
        (error: unknown) => error,
      );
      await bedrock.waitForCall((call) => call.modelId === 'hang');
      const abortedAt = Date.now();
      controller.abort(reason);
      expect(await settled).toBe(reason);
      const call = await bedrock.waitForCall((c) => c.modelId === 'hang' && c.closedAt !== undefined, 1000);
      expect(call.clientAborted).toBe(true);
      expect((call.closedAt ?? Infinity) - abortedAt).toBeLessThan(100);
    });

    test('slow stream: aborting after the first content chunk throws the reason and closes the upstream stream', async () => {
      const adapter = adapterFor(transport, 'slow:300');
      const controller = new AbortController();
      const reason = new Error('client went away');
      const seen: ChatCompletionChunk[] = [];
      let abortedAt = 0;
      let thrown: unknown;
      try {
        for await (const chunk of adapter.stream(requestOf({}, controller.signal))) {
          seen.push(chunk);
          if (chunk.choices[0]?.delta.content !== undefined) {
            abortedAt = Date.now();
            controller.abort(reason);
          }
        }
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBe(reason);
      expect(Date.now() - abortedAt).toBeLessThan(100);
      expect(textOf(seen)).toBe('Hello! This ');
      const call = await bedrock.waitForCall((c) => c.closedAt !== undefined, 1000);
      expect(call.clientAborted).toBe(true);
      expect((call.closedAt ?? Infinity) - abortedAt).toBeLessThan(100);
    });

    test('an already aborted signal throws its reason without a call', async () => {
      const controller = new AbortController();
      const reason = new Error('already gone');
      controller.abort(reason);
      const adapter = adapterFor(transport, 'normal');
      await expect(adapter.complete(requestOf({}, controller.signal))).rejects.toBe(reason);
      await expect(collect(adapter.stream(requestOf({}, controller.signal)))).rejects.toBe(reason);
      expect(bedrock.callCount()).toBe(0);
    });
  });
});

const EXPECTED_ERRORS: Record<MockBedrockFailureName, { class: new (...args: never[]) => GatewayError; status: number }> = {
  'error-500': { class: UpstreamError, status: 502 },
  'error-503': { class: UpstreamError, status: 503 },
  'rate-limit': { class: RateLimitError, status: 429 },
  'context-window': { class: ContextWindowExceededError, status: 400 },
  'bad-request': { class: BadRequestError, status: 400 },
  'model-error': { class: UpstreamError, status: 502 },
  // Refusals of the gateway's own AWS credentials: a 502 naming the deployment, not the client's 401/403.
  'access-denied': { class: UpstreamCredentialsError, status: 502 },
  auth: { class: UpstreamCredentialsError, status: 502 },
  'not-found': { class: NotFoundError, status: 404 },
  'model-timeout': { class: TimeoutError, status: 504 },
};

const HTTP_STATUS: Record<MockBedrockFailureName, number> = {
  'error-500': 500,
  'error-503': 503,
  'rate-limit': 429,
  'context-window': 400,
  'bad-request': 400,
  'model-error': 424,
  'access-denied': 403,
  auth: 403,
  'not-found': 404,
  'model-timeout': 408,
};

describe('request translation (the body the mock received)', () => {
  const PNG_BYTES = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);

  test('system, merged turns, tool use and results, images, inference and tool config', async () => {
    const adapter = adapterFor('http1', 'normal', { headers: { 'x-team': 'search' } });
    await adapter.complete(
      requestOf({
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'developer', content: [{ type: 'text', text: 'Use metric units.' }] },
          { role: 'user', content: 'Weather in Paris and Rome?' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'See the map.' },
              { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_BYTES.toString('base64')}` } },
            ],
          },
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              { id: 'call_1', type: 'function', function: { name: 'lookup_weather', arguments: '{"location":"Paris"}' } },
              { id: 'call_2', type: 'function', function: { name: 'lookup_weather', arguments: '{"location":"Rome"}' } },
            ],
          },
          { role: 'tool', tool_call_id: 'call_1', content: '18 C' },
          { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: '24 C' }] },
          { role: 'user', content: 'Thanks!' },
        ],
        tools: [WEATHER_TOOL],
        tool_choice: { type: 'function', function: { name: 'lookup_weather' } },
        max_completion_tokens: 300,
        max_tokens: 100,
        temperature: 0.2,
        top_p: 0.9,
        stop: 'END',
      }),
    );
    const call = lastCall();
    expect(call.path).toBe('/model/normal/converse');
    expect(call.headers['x-team']).toBe('search');
    expect(call.body).toEqual({
      system: [{ text: 'Be brief.' }, { text: 'Use metric units.' }],
      messages: [
        {
          role: 'user',
          content: [
            { text: 'Weather in Paris and Rome?' },
            { text: 'See the map.' },
            { image: { format: 'png', source: { bytes: PNG_BYTES.toString('base64') } } },
          ],
        },
        {
          role: 'assistant',
          content: [
            { toolUse: { toolUseId: 'call_1', name: 'lookup_weather', input: { location: 'Paris' } } },
            { toolUse: { toolUseId: 'call_2', name: 'lookup_weather', input: { location: 'Rome' } } },
          ],
        },
        {
          role: 'user',
          content: [
            { toolResult: { toolUseId: 'call_1', content: [{ text: '18 C' }] } },
            { toolResult: { toolUseId: 'call_2', content: [{ text: '24 C' }] } },
            { text: 'Thanks!' },
          ],
        },
      ],
      inferenceConfig: { maxTokens: 300, temperature: 0.2, topP: 0.9, stopSequences: ['END'] },
      toolConfig: {
        tools: [{ toolSpec: { name: 'lookup_weather', description: 'Weather by city', inputSchema: { json: WEATHER_TOOL.function.parameters } } }],
        toolChoice: { tool: { name: 'lookup_weather' } },
      },
    });
  });

  test('model id is percent-encoded in the path; defaults: max tokens from the deployment, else 4096; tool_choice none sends no tools', async () => {
    await adapterFor('http1', 'long:10', { defaultMaxTokens: 777 }).complete(requestOf({ tools: [WEATHER_TOOL], tool_choice: 'auto' }));
    const first = lastCall();
    expect(first.path).toBe('/model/long%3A10/converse');
    expect(first.modelId).toBe('long:10');
    expect(first.body).toMatchObject({ inferenceConfig: { maxTokens: 777 }, toolConfig: { toolChoice: { auto: {} } } });

    await adapterFor('http1', 'normal').complete(requestOf({ tools: [WEATHER_TOOL], tool_choice: 'none' }));
    expect(lastCall().body).toEqual({ messages: [{ role: 'user', content: [{ text: 'Hi there' }] }], inferenceConfig: { maxTokens: 4096 } });

    await adapterFor('http1', 'normal').complete(requestOf({ tools: [WEATHER_TOOL], tool_choice: 'required' }));
    expect(lastCall().body).toMatchObject({ toolConfig: { toolChoice: { any: {} } } });
  });

  test.each([
    [
      'invalid tool arguments',
      { messages: [{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{oops' } }] }] },
      'messages[1].tool_calls[0].function.arguments',
    ],
    ['an image URL to fetch', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }, 'messages[0].content[0].image_url.url'],
    ['audio content', { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AA==', format: 'wav' } }] }] }, 'messages[0].content[0].type'],
    ['a tool message without tool_call_id', { messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    ['n > 1', { n: 2 }, 'n'],
  ] as const)('%s is a 400 naming the field, before any call', async (_name, body, param) => {
    const adapter = adapterFor('http1', 'normal');
    const request = requestOf(body as Partial<ChatCompletionRequest>);
    const error = await completeError(adapter, request);
    expect(error).toBeInstanceOf(BadRequestError);
    expect(error).toMatchObject({ param });
    expect((await streamUntilError(adapter, request)).error).toMatchObject({ param });
    expect(bedrock.callCount()).toBe(0);
  });
});

describe('connection and lifecycle', () => {
  test('a refused connection is a ConnectionError that does not leak the address', async () => {
    const port = await closedPort();
    const adapter = createBedrockAdapter(deploymentFor('normal', { baseUrl: `http://127.0.0.1:${port}` }));
    adapters.push(adapter);
    const error = await completeError(adapter);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toBe('Bedrock: the connection failed (ECONNREFUSED).');
    expect((await streamUntilError(adapter)).error).toBeInstanceOf(ConnectionError);
  });

  test('close() destroys the client it built, never a client passed in', async () => {
    const client = new BedrockRuntimeClient({ region: 'us-east-1', endpoint: bedrock.url, credentials: CREDENTIALS, maxAttempts: 1 });
    clients.push(client);
    const destroy = jest.spyOn(client, 'destroy');
    const borrowed = createBedrockAdapter(deploymentFor('normal'), { client });
    await borrowed.close();
    expect(destroy).not.toHaveBeenCalled();
    await expect(createBedrockAdapter(deploymentFor('normal'), { client }).complete(requestOf())).resolves.toBeDefined();

    const owned = createBedrockAdapter(deploymentFor('normal'));
    await owned.complete(requestOf());
    await owned.close();
    expect(bedrock.callCount()).toBe(2);
  });
});

describe('classifyBedrockError', () => {
  const $metadata = (httpStatusCode?: number) => (httpStatusCode === undefined ? {} : { httpStatusCode });

  function networkError(code: string): Error {
    return Object.assign(new Error(`connect ${code} 10.1.2.3:443`), { code });
  }

  test.each([
    ['ValidationException with a context-window text', new ValidationException({ message: 'Input is too long for requested model.', $metadata: $metadata(400) }), ContextWindowExceededError, 400],
    ['Anthropic-on-Bedrock "prompt is too long"', new ValidationException({ message: 'prompt is too long: 208310 tokens > 200000 maximum', $metadata: $metadata(400) }), ContextWindowExceededError, 400],
    ['"expected maxLength:"', new ValidationException({ message: 'Malformed input request: expected maxLength: 50000, actual: 80000', $metadata: $metadata(400) }), ContextWindowExceededError, 400],
    ['"Too many input tokens"', new ValidationException({ message: 'Too many input tokens. Max input tokens: 8192', $metadata: $metadata(400) }), ContextWindowExceededError, 400],
    ['ValidationException', new ValidationException({ message: 'Malformed input request, please reformat your input and try again.', $metadata: $metadata(400) }), BadRequestError, 400],
    ['first turn not user', new Error('A conversation must start with a user message. Try again with a conversation that starts with a user message.'), BadRequestError, 400],
    ['AccessDeniedException', new AccessDeniedException({ message: "You don't have access to the model.", $metadata: $metadata(403) }), PermissionDeniedError, 403],
    ['invalid security token', new BedrockRuntimeServiceException({ name: 'UnrecognizedClientException', $fault: 'client', message: 'The security token included in the request is invalid.', $metadata: $metadata(403) }), AuthenticationError, 401],
    ['no credentials', Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), AuthenticationError, 401],
    ['"Unable to locate credentials"', new Error('Unable to locate credentials'), AuthenticationError, 401],
    ['ThrottlingException on tokens (not a context-window text)', new ThrottlingException({ message: 'Too many tokens, please wait before trying again.', $metadata: $metadata(429) }), RateLimitError, 429],
    ['"too many tokens" in a validation error', new ValidationException({ message: 'Too many tokens in the prompt for this model', $metadata: $metadata(400) }), ContextWindowExceededError, 400],
    ['ThrottlingException', new ThrottlingException({ message: 'Too many requests, please wait before trying again.', $metadata: $metadata(429) }), RateLimitError, 429],
    ['ServiceQuotaExceededException', new ServiceQuotaExceededException({ message: 'Your request exceeds the service quota for your account.', $metadata: $metadata(400) }), RateLimitError, 429],
    ['lower-case throttlingException text', new Error('An error occurred (throttlingException) when calling the ConverseStream operation'), RateLimitError, 429],
    ['ModelTimeoutException', new ModelTimeoutException({ message: 'Model has timed out in processing the request.', $metadata: $metadata(408) }), TimeoutError, 504],
    ['the SDK socket timeout', Object.assign(new Error('Socket timed out without establishing a connection within 1000 ms'), { name: 'TimeoutError' }), TimeoutError, 504],
    ['ETIMEDOUT', networkError('ETIMEDOUT'), TimeoutError, 504],
    ['ResourceNotFoundException', new ResourceNotFoundException({ message: 'Could not resolve the foundation model.', $metadata: $metadata(404) }), NotFoundError, 404],
    ['InternalServerException', new InternalServerException({ message: 'Internal error', $metadata: $metadata(500) }), UpstreamError, 502],
    ['in-stream InternalServerException (no status)', new InternalServerException({ message: 'Internal error', $metadata: {} }), UpstreamError, 502],
    ['ServiceUnavailableException', new ServiceUnavailableException({ message: 'Bedrock is unable to process your request.', $metadata: $metadata(503) }), UpstreamError, 503],
    ['in-stream ServiceUnavailableException (no status)', new ServiceUnavailableException({ message: 'unavailable', $metadata: {} }), UpstreamError, 503],
    ['ModelNotReadyException', new ModelNotReadyException({ message: 'Model is not ready.', $metadata: $metadata(429) }), UpstreamError, 503],
    ['ModelErrorException', new ModelErrorException({ message: 'The model failed.', $metadata: $metadata(424) }), UpstreamError, 502],
    ['ModelStreamErrorException', new ModelStreamErrorException({ message: 'The model stream failed.', $metadata: {} }), UpstreamError, 502],
    ['"Could not process image" (transient)', new ValidationException({ message: 'Could not process image', $metadata: $metadata(400) }), UpstreamError, 502],
    ['unknown server exception', new BedrockRuntimeServiceException({ name: 'WeirdException', $fault: 'server', message: 'weird', $metadata: $metadata(500) }), UpstreamError, 502],
    ['unknown client exception with 400', new BedrockRuntimeServiceException({ name: 'WeirdException', $fault: 'client', message: 'weird', $metadata: $metadata(400) }), BadRequestError, 400],
    ['ECONNREFUSED', networkError('ECONNREFUSED'), ConnectionError, 502],
    ['ECONNRESET', networkError('ECONNRESET'), ConnectionError, 502],
    ['HTTP/2 protocol error', Object.assign(new Error('Protocol error'), { code: 'ERR_HTTP2_ERROR' }), ConnectionError, 502],
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'x')"), InternalError, 500],
  ] as const)('%s', (_name, error, expectedClass, status) => {
    const classified = classifyBedrockError(error);
    expect(classified).toBeInstanceOf(expectedClass);
    expect(classified.status).toBe(status);
    expect(classified.cause).toBe(error);
  });

  test('network errors never show the address; bugs never show their message', () => {
    expect(classifyBedrockError(networkError('ECONNREFUSED')).message).toBe('Bedrock: the connection failed (ECONNREFUSED).');
    expect(classifyBedrockError(new TypeError('secret internals')).message).not.toMatch(/secret/);
  });

  test('a body that is not a Bedrock error (a proxy page) keeps the status, not the body', () => {
    const error = Object.assign(new SyntaxError('Unexpected token < in JSON: <html>internal proxy 10.0.0.7</html>'), {
      $response: { statusCode: 502, headers: {} },
    });
    const classified = classifyBedrockError(error);
    expect(classified).toBeInstanceOf(UpstreamError);
    expect(classified).toMatchObject({ status: 502, upstreamStatus: 502 });
    expect(classified.message).not.toMatch(/10\.0\.0\.7|html/);
  });

  test('retry hints: retry-after in seconds or as a date, x-amz-retry-after in ms', () => {
    const throttled = (headers: Record<string, string>) =>
      classifyBedrockError(Object.assign(new ThrottlingException({ message: 'slow down', $metadata: $metadata(429) }), { $response: { statusCode: 429, headers } }));
    expect(throttled({ 'retry-after': '3' }).retryAfterMs).toBe(3000);
    expect(throttled({ 'x-amz-retry-after': '1500' }).retryAfterMs).toBe(1500);
    expect(throttled({ 'retry-after': new Date(Date.now() + 60_000).toUTCString() }).retryAfterMs).toBeGreaterThan(55_000);
    expect(throttled({}).retryAfterMs).toBeUndefined();
  });

  test('classified errors pass through unchanged', () => {
    const error = new RateLimitError('already classified');
    expect(classifyBedrockError(error)).toBe(error);
  });
});

function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
