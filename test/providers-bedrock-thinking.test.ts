/**
 * Anthropic extras on Bedrock (issue 16): the adapter, with the real `@aws-sdk/client-bedrock-runtime` over
 * loopback against the mock Bedrock, sends a request's `thinking` to Claude models only (as
 * `additionalModelRequestFields.thinking`), history thinking blocks as `reasoningContent` with their
 * signatures, cache breakpoints as `cachePoint` blocks; the answer's reasoning comes back as the completion
 * message's thinking blocks and as thinking deltas on chunks, and never in the chat JSON. End to end, a
 * Messages client (the real @anthropic-ai/sdk) on a Bedrock Claude deployment gets the thinking block
 * (thinking_delta, signature_delta) in both modes, and sends it back with its signature.
 */
import Anthropic from '@anthropic-ai/sdk';
import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import { createGateway, silentLogger, type Gateway } from '../lib/index.js';
import { createBedrockAdapter, isBedrockClaude } from '../lib/providers/bedrock.js';
import type { Deployment, ProviderAdapter, UpstreamRequest } from '../lib/providers/types.js';
import {
  MOCK_BEDROCK_REASONING,
  MOCK_BEDROCK_REDACTED_BYTES,
  MOCK_BEDROCK_REDACTED_TRIGGER,
  mockBedrockSignature,
  startMockBedrock,
  type MockBedrock,
  type MockBedrockCall,
} from '../lib/testing/mock-bedrock.js';
import {
  ANTHROPIC_EXTRAS,
  anthropicExtras,
  type AnthropicDeltaExtras,
  type AnthropicMessageExtras,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatMessage,
} from '../lib/types.js';
import { EXPRESS_MAJOR, serve } from './helpers/express.js';
import { rawRequest, type RunningServer } from './helpers/http.js';

const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };
const NORMAL_TEXT = 'Hello! This is a mock answer from mock-bedrock.';
const CLAUDE = 'us.anthropic.claude-3-7-sonnet-20250219-v1:0';
const OLD_CLAUDE = 'anthropic.claude-3-haiku-20240307-v1:0';
const LLAMA = 'meta.llama3-70b-instruct-v1:0';
const THINKING = { type: 'enabled', budget_tokens: 2048 };
const REDACTED_DATA = Buffer.from(MOCK_BEDROCK_REDACTED_BYTES).toString('base64');

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

type Transport = 'http2' | 'http1';

function adapterFor(model: string, transport: Transport = 'http1'): ProviderAdapter {
  const deployment: Deployment = {
    id: `bedrock/${model}`,
    group: 'bedrock-group',
    provider: 'bedrock',
    model,
    baseUrl: bedrock.url,
    region: 'us-east-1',
    awsCredentials: CREDENTIALS,
    weight: 1,
    timeouts: { connectMs: 1000, firstTokenMs: 60_000, idleMs: 30_000, totalMs: 600_000 },
  };
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

/** Puts Anthropic extras on an object under the symbol key, as the Messages mapping does. */
function withExtras<T extends object>(value: T, extras: object): T {
  (value as { [ANTHROPIC_EXTRAS]?: object })[ANTHROPIC_EXTRAS] = extras;
  return value;
}

/** A chat request with the given request extras (`null`: none); by default, thinking enabled. */
function requestOf(body: Partial<ChatCompletionRequest> = {}, extras: object | null = { thinking: THINKING }): UpstreamRequest {
  const chat: ChatCompletionRequest = { model: 'bedrock-group', messages: [{ role: 'user', content: 'Hi there' }], max_tokens: 4096, ...body };
  return { body: extras === null ? chat : withExtras(chat, extras), signal: new AbortController().signal, requestId: 'req-thinking' };
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

function lastCall(): MockBedrockCall {
  const call = bedrock.calls.at(-1);
  if (call === undefined) throw new Error('no call reached the mock');
  return call;
}

function sentBody(): { additionalModelRequestFields?: unknown; messages: { role: string; content: Record<string, unknown>[] }[]; [key: string]: unknown } {
  return lastCall().body as never;
}

function deltaExtras(chunk: ChatCompletionChunk): AnthropicDeltaExtras | undefined {
  const choice = chunk.choices[0];
  return choice === undefined ? undefined : anthropicExtras<AnthropicDeltaExtras>(choice.delta);
}

function textOf(chunks: ChatCompletionChunk[]): string {
  return chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
}

/** The thinking deltas in order, as the Messages encoder sees them. */
function thinkingOf(chunks: ChatCompletionChunk[]): AnthropicDeltaExtras[] {
  return chunks.map(deltaExtras).filter((extras): extras is AnthropicDeltaExtras => extras !== undefined);
}

describe('isBedrockClaude', () => {
  it.each([
    ['anthropic.claude-3-7-sonnet-20250219-v1:0', true],
    ['us.anthropic.claude-sonnet-4-20250514-v1:0', true],
    ['global.anthropic.claude-sonnet-4-5-20250929-v1:0', true],
    ['arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0', true],
    ['arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-3-7-sonnet-20250219-v1:0', true],
    ['Anthropic.Claude-v2', true],
    ['arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3', false],
    ['meta.llama3-70b-instruct-v1:0', false],
    ['amazon.nova-pro-v1:0', false],
    ['deepseek.r1-v1:0', false],
  ])('%s → %s', (model, expected) => {
    expect(isBedrockClaude(model)).toBe(expected);
  });
});

describe('the request', () => {
  it.each(['stream', 'complete'] as const)('a Claude model gets the thinking configuration as additionalModelRequestFields (%s)', async (mode) => {
    const adapter = adapterFor(CLAUDE);
    if (mode === 'stream') await collect(adapter.stream(requestOf()));
    else await adapter.complete(requestOf());
    expect(lastCall().modelId).toBe(CLAUDE);
    expect(sentBody().additionalModelRequestFields).toEqual({ thinking: THINKING });
    // Nothing else of the request changes: the client's max_tokens, no temperature added.
    expect(sentBody().inferenceConfig).toEqual({ maxTokens: 4096 });
  });

  it.each(['stream', 'complete'] as const)('another model gets no thinking, and answers without reasoning (%s)', async (mode) => {
    const adapter = adapterFor(LLAMA);
    if (mode === 'stream') {
      const chunks = await collect(adapter.stream(requestOf()));
      expect(thinkingOf(chunks)).toEqual([]);
      expect(textOf(chunks)).toBe(NORMAL_TEXT);
    } else {
      const completion = await adapter.complete(requestOf());
      expect(anthropicExtras(completion.choices[0]!.message)).toBeUndefined();
      expect(completion.choices[0]!.message.content).toBe(NORMAL_TEXT);
    }
    expect(sentBody()).not.toHaveProperty('additionalModelRequestFields');
  });

  it('a Claude request without thinking sends no additionalModelRequestFields', async () => {
    const chunks = await collect(adapterFor(CLAUDE).stream(requestOf({}, null)));
    expect(sentBody()).not.toHaveProperty('additionalModelRequestFields');
    expect(thinkingOf(chunks)).toEqual([]);
    expect(textOf(chunks)).toBe(NORMAL_TEXT);
  });

  const history = (): ChatMessage[] => [
    { role: 'user', content: 'What is the weather in Paris?' },
    withExtras<ChatMessage>(
      {
        role: 'assistant',
        content: 'Let me check.',
        tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
      },
      {
        thinking: [
          { type: 'thinking', thinking: 'The user wants the weather.', signature: 'sig-one' },
          { type: 'redacted_thinking', data: REDACTED_DATA },
        ],
      },
    ),
    { role: 'tool', tool_call_id: 'toolu_1', content: 'Sunny, 21 °C' },
  ];

  it('history thinking blocks reach a Claude model as reasoningContent, with their signatures, before the text and tool use', async () => {
    await collect(adapterFor(CLAUDE).stream(requestOf({ messages: history() })));
    const assistant = sentBody().messages[1]!;
    expect(assistant.role).toBe('assistant');
    expect(assistant.content).toEqual([
      { reasoningContent: { reasoningText: { text: 'The user wants the weather.', signature: 'sig-one' } } },
      // The SDK sends the bytes as base64: the client's `data`, unchanged.
      { reasoningContent: { redactedContent: REDACTED_DATA } },
      { text: 'Let me check.' },
      { toolUse: { toolUseId: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } } },
    ]);
  });

  it('history thinking blocks are dropped for another model', async () => {
    await adapterFor(LLAMA).complete(requestOf({ messages: history() }));
    expect(sentBody().messages[1]!.content).toEqual([
      { text: 'Let me check.' },
      { toolUse: { toolUseId: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } } },
    ]);
  });

  const cached = (): Partial<ChatCompletionRequest> => ({
    messages: [
      withExtras<ChatMessage>({ role: 'system', content: 'You are terse.' }, { cache_control: { type: 'ephemeral' } }),
      {
        role: 'user',
        content: [
          withExtras({ type: 'text' as const, text: 'A long document.' }, { cache_control: { type: 'ephemeral', ttl: '1h' } }),
          // A chat part's own field (as the Anthropic adapter accepts it) counts too.
          { type: 'text', text: 'The question.', cache_control: { type: 'ephemeral' } },
          { type: 'text', text: 'No breakpoint here.' },
        ],
      },
    ],
    tools: [
      withExtras(
        { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } },
        { cache_control: { type: 'ephemeral' } },
      ),
    ],
  });

  it('cache breakpoints become cachePoint blocks after their part, system message and tool (Claude 3.7)', async () => {
    await adapterFor(CLAUDE).complete(requestOf(cached(), null));
    const body = sentBody();
    expect(body.system).toEqual([{ text: 'You are terse.' }, { cachePoint: { type: 'default' } }]);
    expect(body.messages[0]!.content).toEqual([
      { text: 'A long document.' },
      { cachePoint: { type: 'default', ttl: '1h' } },
      { text: 'The question.' },
      { cachePoint: { type: 'default' } },
      { text: 'No breakpoint here.' },
    ]);
    expect((body.toolConfig as { tools: unknown[] }).tools).toEqual([
      { toolSpec: { name: 'get_weather', inputSchema: { json: { type: 'object', properties: {} } } } },
      { cachePoint: { type: 'default' } },
    ]);
  });

  it.each([OLD_CLAUDE, LLAMA])('cache breakpoints are dropped for %s (no prompt caching there)', async (model) => {
    await adapterFor(model).complete(requestOf(cached(), null));
    expect(JSON.stringify(sentBody())).not.toContain('cachePoint');
  });

  it("a tool result's is_error becomes status 'error' for Claude only", async () => {
    const messages = (): ChatMessage[] => [
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'w', arguments: '{}' } }] },
      withExtras<ChatMessage>({ role: 'tool', tool_call_id: 'toolu_1', content: 'service down' }, { is_error: true }),
    ];
    await adapterFor(CLAUDE).complete(requestOf({ messages: messages() }, null));
    expect(sentBody().messages[2]!.content).toEqual([{ toolResult: { toolUseId: 'toolu_1', content: [{ text: 'service down' }], status: 'error' } }]);
    await adapterFor(LLAMA).complete(requestOf({ messages: messages() }, null));
    expect(sentBody().messages[2]!.content).toEqual([{ toolResult: { toolUseId: 'toolu_1', content: [{ text: 'service down' }] } }]);
  });
});

describe('the answer', () => {
  it.each(['http1', 'http2'] as const)('streamed: thinking deltas, then the signature that closes the block, then all the text (%s)', async (transport) => {
    const chunks = await collect(adapterFor(CLAUDE, transport).stream(requestOf()));
    const seq = lastCall().seq;
    const thinking = thinkingOf(chunks);
    expect(thinking.map((extras) => extras.thinking ?? '').join('')).toBe(MOCK_BEDROCK_REASONING);
    expect(thinking.at(-1)).toEqual({ signature: mockBedrockSignature(seq) });
    expect(thinking.filter((extras) => extras.signature !== undefined)).toHaveLength(1);
    // Thinking chunks carry no text; every thinking chunk comes before the first text.
    const firstText = chunks.findIndex((chunk) => chunk.choices[0]?.delta.content);
    const lastThinking = chunks.findLastIndex((chunk) => deltaExtras(chunk) !== undefined);
    expect(lastThinking).toBeLessThan(firstText);
    for (const chunk of chunks) if (deltaExtras(chunk) !== undefined) expect(chunk.choices[0]!.delta.content).toBeUndefined();
    expect(textOf(chunks)).toBe(NORMAL_TEXT);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe('stop');
    expect(chunks.at(-1)!.usage).toBeDefined();
    // The chat serialization carries none of it.
    const json = chunks.map((chunk) => JSON.stringify(chunk)).join('\n');
    expect(json).not.toContain('signature');
    expect(json).not.toContain(mockBedrockSignature(seq));
    expect(json).not.toContain('The user greets me');
  });

  it('complete: the reasoning is the message thinking blocks, with the signature; the text is whole', async () => {
    const completion = await adapterFor(CLAUDE).complete(requestOf());
    const seq = lastCall().seq;
    const message = completion.choices[0]!.message;
    expect(message.content).toBe(NORMAL_TEXT);
    expect(anthropicExtras<AnthropicMessageExtras>(message)).toEqual({
      thinking: [{ type: 'thinking', thinking: MOCK_BEDROCK_REASONING, signature: mockBedrockSignature(seq) }],
    });
    const json = JSON.stringify(completion);
    expect(json).not.toContain('thinking');
    expect(json).not.toContain(mockBedrockSignature(seq));
  });

  it('a redacted block comes back whole, as base64 data, after the signed block (stream and complete)', async () => {
    const request = (): UpstreamRequest => requestOf({ messages: [{ role: 'user', content: `Hi ${MOCK_BEDROCK_REDACTED_TRIGGER}` }] });
    const chunks = await collect(adapterFor(CLAUDE).stream(request()));
    const seq = lastCall().seq;
    const thinking = thinkingOf(chunks);
    expect(thinking.slice(-2)).toEqual([{ signature: mockBedrockSignature(seq) }, { redacted: REDACTED_DATA }]);
    expect(textOf(chunks)).toBe(NORMAL_TEXT);

    const completion = await adapterFor(CLAUDE).complete(request());
    expect(anthropicExtras<AnthropicMessageExtras>(completion.choices[0]!.message)?.thinking).toEqual([
      { type: 'thinking', thinking: MOCK_BEDROCK_REASONING, signature: mockBedrockSignature(lastCall().seq) },
      { type: 'redacted_thinking', data: REDACTED_DATA },
    ]);
    expect(completion.choices[0]!.message.content).toBe(NORMAL_TEXT);
  });

  it('the mock counts reasoning as output tokens', async () => {
    const [withThinking, without] = [await adapterFor(CLAUDE).complete(requestOf()), await adapterFor(CLAUDE).complete(requestOf({}, null))];
    expect(withThinking.usage!.completion_tokens).toBeGreaterThan(without.usage!.completion_tokens);
  });
});

describe(`a Messages client on a Bedrock Claude deployment, through createGateway (Express ${EXPRESS_MAJOR})`, () => {
  let server: RunningServer;
  let gateway: Gateway;
  const client = (): Anthropic => new Anthropic({ baseURL: server.url, apiKey: 'test', maxRetries: 0 });
  const ask = (model: string, extra: Partial<Anthropic.MessageCreateParamsNonStreaming> = {}): Anthropic.MessageCreateParamsNonStreaming => ({
    model,
    max_tokens: 4096,
    thinking: { type: 'enabled', budget_tokens: 2048 },
    messages: [{ role: 'user', content: 'Hi there' }],
    ...extra,
  });

  beforeAll(async () => {
    // Fresh credentials: a client built by the SDK above writes `$source` into the object it was given.
    const bedrockDeployment = (model: string) => ({ provider: 'bedrock' as const, baseUrl: bedrock.url, model, awsCredentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
    gateway = createGateway({
      models: [
        { name: 'claude', deployments: [bedrockDeployment(CLAUDE)] },
        { name: 'llama', deployments: [bedrockDeployment(LLAMA)] },
      ],
      router: { retries: { maxRetries: 0 } },
      logger: silentLogger,
    });
    server = await serve(gateway);
  });

  afterAll(async () => {
    await server.close();
    await gateway.close();
  });

  it('without streaming: the thinking block, signed, before the text', async () => {
    const message = await client().messages.create(ask('claude'));
    const seq = lastCall().seq;
    expect(sentBody().additionalModelRequestFields).toEqual({ thinking: { type: 'enabled', budget_tokens: 2048 } });
    expect(message.content).toEqual([
      { type: 'thinking', thinking: MOCK_BEDROCK_REASONING, signature: mockBedrockSignature(seq) },
      expect.objectContaining({ type: 'text', text: NORMAL_TEXT }),
    ]);
    expect(message.stop_reason).toBe('end_turn');
  });

  it('streaming: thinking_delta and signature_delta in a thinking block, then the text block', async () => {
    const stream = await client().messages.create({ ...ask('claude'), stream: true });
    const events: Anthropic.RawMessageStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const seq = lastCall().seq;
    const starts = events.filter((e): e is Anthropic.RawContentBlockStartEvent => e.type === 'content_block_start');
    expect(starts.map((e) => [e.index, e.content_block.type])).toEqual([
      [0, 'thinking'],
      [1, 'text'],
    ]);
    const deltas = events.filter((e): e is Anthropic.RawContentBlockDeltaEvent => e.type === 'content_block_delta');
    const thinking = deltas.filter((e) => e.delta.type === 'thinking_delta').map((e) => (e.delta as Anthropic.ThinkingDelta).thinking);
    expect(thinking.join('')).toBe(MOCK_BEDROCK_REASONING);
    expect(deltas.filter((e) => e.delta.type === 'signature_delta').map((e) => [e.index, (e.delta as Anthropic.SignatureDelta).signature])).toEqual([
      [0, mockBedrockSignature(seq)],
    ]);
    const text = deltas.filter((e) => e.delta.type === 'text_delta').map((e) => (e.delta as Anthropic.TextDelta).text);
    expect(text.join('')).toBe(NORMAL_TEXT);
    expect(events.at(-1)!.type).toBe('message_stop');
  });

  it('messages.stream(): the final message has the signed thinking block; sent back, it reaches Bedrock as reasoningContent', async () => {
    const first = await client().messages.stream(ask('claude')).finalMessage();
    const signature = mockBedrockSignature(lastCall().seq);
    expect(first.content[0]).toEqual({ type: 'thinking', thinking: MOCK_BEDROCK_REASONING, signature });
    expect(first.content[1]).toEqual(expect.objectContaining({ type: 'text', text: NORMAL_TEXT }));
    const history: Anthropic.MessageParam[] = [
      { role: 'user', content: 'Hi there' },
      { role: 'assistant', content: first.content.map((block) => (block.type === 'text' ? { type: 'text' as const, text: block.text } : block)) as Anthropic.ContentBlockParam[] },
      { role: 'user', content: 'And again?' },
    ];
    const second = await client().messages.stream(ask('claude', { messages: history })).finalMessage();
    expect(sentBody().messages[1]!.content).toEqual([
      { reasoningContent: { reasoningText: { text: MOCK_BEDROCK_REASONING, signature } } },
      { text: NORMAL_TEXT },
    ]);
    expect(second.content.map((block) => block.type)).toEqual(['thinking', 'text']);
  });

  it('a redacted block reaches the client as redacted_thinking in both modes', async () => {
    const extra = { messages: [{ role: 'user' as const, content: `Hi ${MOCK_BEDROCK_REDACTED_TRIGGER}` }] };
    const plain = await client().messages.create(ask('claude', extra));
    const streamed = await client().messages.stream(ask('claude', extra)).finalMessage();
    for (const message of [plain, streamed]) {
      expect(message.content.map((block) => block.type)).toEqual(['thinking', 'redacted_thinking', 'text']);
      expect(message.content[1]).toEqual({ type: 'redacted_thinking', data: REDACTED_DATA });
    }
  });

  it.each([false, true])('a non-Claude Bedrock deployment drops thinking: the answer is text only (stream: %s)', async (stream) => {
    const res = await rawRequest(server.url, { path: '/v1/messages', body: { ...ask('llama'), stream } });
    expect(res.status).toBe(200);
    expect(sentBody()).not.toHaveProperty('additionalModelRequestFields');
    expect(res.text).not.toContain('thinking');
    expect(res.text).toContain(stream ? '"text_delta"' : NORMAL_TEXT);
  });
});
