/**
 * Issue 16: "Where inbound and upstream speak the same protocol, nothing the client sent is lost in
 * translation (Anthropic cache_control, thinking, tool ids)". Through a real gateway (`createGateway` on
 * 127.0.0.1) with an Anthropic deployment (mock-anthropic) and an OpenAI one (mock-openai):
 * - a Messages request with `thinking`, `cache_control` (system, text, tool, tool_use, tool_result), a
 *   tool result's `is_error` and a tool-use history with thinking and redacted thinking blocks reaches the
 *   Anthropic upstream with all of it, exactly; the same request reaches the OpenAI upstream with none of it;
 * - the answer's thinking block (and a redacted one) reaches the Messages client in both modes, and the
 *   modes agree: on the wire (`thinking_delta`, `signature_delta`), in the whole `Message` (thinking
 *   first), and through the real @anthropic-ai/sdk (`messages.stream().finalMessage()`, `messages.create()`);
 * - a chat client of the same Anthropic deployment sees no thinking, in both modes, and the chat chunks an
 *   Anthropic thinking stream becomes carry none on the wire.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { createGateway, silentLogger, type Gateway } from '../lib/index.js';
import { chatProtocol } from '../lib/protocols/chat/index.js';
import { createAnthropicAdapter } from '../lib/providers/anthropic.js';
import type { Deployment } from '../lib/providers/types.js';
import { MOCK_ANTHROPIC_REDACTED_DATA, MOCK_ANTHROPIC_REDACTED_TRIGGER, MOCK_ANTHROPIC_THINKING, mockAnthropicSignature } from '../lib/testing/mock-anthropic.js';
import { startMockAnthropic, startMockOpenAI, type MockCall, type MockServer } from '../lib/testing/index.js';
import { normalText } from '../lib/testing/mock-scenarios.js';
import { ANTHROPIC_EXTRAS, type ChatCompletionChunk, type ChatCompletionRequest } from '../lib/types.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';

const ANSWER = normalText('upstream-a');
const THINKING = { type: 'enabled', budget_tokens: 2048 };
const WEATHER_SCHEMA = { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] };

/** A second turn of a tool-use loop with thinking, carrying every Anthropic-only field the gateway keeps. */
function nativeBody(model: string, lastUserText?: string): Record<string, unknown> {
  const toolResult = { type: 'tool_result', tool_use_id: 'toolu_01A', content: '21°C, sunny', is_error: false, cache_control: { type: 'ephemeral' } };
  return {
    model,
    max_tokens: 4096,
    thinking: THINKING,
    system: [{ type: 'text', text: 'You are terse.', cache_control: { type: 'ephemeral' } }],
    tools: [{ name: 'get_weather', description: 'Weather by city', input_schema: WEATHER_SCHEMA, cache_control: { type: 'ephemeral', ttl: '1h' } }],
    messages: [
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?', cache_control: { type: 'ephemeral' } }] },
      {
        role: 'assistant',
        content: [
          { type: 'thinking', thinking: 'I should call the weather tool.', signature: 'sig-turn-1' },
          { type: 'redacted_thinking', data: 'opaque-turn-1' },
          { type: 'text', text: 'Let me check.' },
          { type: 'tool_use', id: 'toolu_01A', name: 'get_weather', input: { location: 'Paris' }, cache_control: { type: 'ephemeral' } },
        ],
      },
      { role: 'user', content: lastUserText === undefined ? [toolResult] : [toolResult, { type: 'text', text: lastUserText }] },
    ],
  };
}

/** What the Anthropic upstream must receive for `nativeBody('claude')` (the deployment's model `normal`). */
function expectedAnthropicBody(stream: boolean): Record<string, unknown> {
  const body = nativeBody('normal');
  return {
    model: 'normal',
    max_tokens: 4096,
    messages: body.messages,
    system: body.system,
    ...(stream ? { stream: true } : {}),
    tools: [{ name: 'get_weather', input_schema: WEATHER_SCHEMA, description: 'Weather by city', cache_control: { type: 'ephemeral', ttl: '1h' } }],
    thinking: THINKING,
  };
}

let anthropic: MockServer;
let openai: MockServer;
let gateway: Gateway;
let server: Server;
let url: string;

beforeAll(async () => {
  [anthropic, openai] = await Promise.all([startMockAnthropic({ name: 'upstream-a' }), startMockOpenAI({ name: 'upstream-o' })]);
  gateway = createGateway({
    models: [
      { name: 'claude', deployments: [{ provider: 'anthropic', baseUrl: anthropic.url, model: 'normal', apiKey: 'k' }] },
      { name: 'gpt', deployments: [{ provider: 'openai', baseUrl: `${openai.url}/v1`, model: 'normal', apiKey: 'k' }] },
    ],
    router: { retries: { maxRetries: 0 }, cooldown: { failureThreshold: 1000 } },
    logger: silentLogger,
  });
  const app = createApp();
  app.use(gateway);
  server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await gateway.close();
  await Promise.all([anthropic.close(), openai.close()]);
});

beforeEach(() => {
  anthropic.reset();
  openai.reset();
});

// ---- the wire ----

interface SseEvent {
  event: string | undefined;
  data: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function post(path: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, text: await res.text() };
}

function eventsOf(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.trim() !== '')
    .map((frame) => {
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1] ?? '';
      return { event, data: data === '[DONE]' ? { done: true } : JSON.parse(data) };
    });
}

type Block = Record<string, unknown>;

/** The content blocks a Messages stream spells, assembled as a client does (strictly: every delta in its open block). */
function blocksOfStream(events: SseEvent[]): Block[] {
  const blocks: Block[] = [];
  const open = new Set<number>();
  for (const { event, data } of events) {
    expect(data.type).toBe(event);
    if (event === 'content_block_start') {
      expect(data.index).toBe(blocks.length);
      blocks.push({ ...data.content_block });
      open.add(data.index);
    } else if (event === 'content_block_delta') {
      expect(open.has(data.index)).toBe(true);
      const block = blocks[data.index]!;
      const { delta } = data;
      if (delta.type === 'text_delta') block.text = `${String(block.text)}${delta.text}`;
      else if (delta.type === 'thinking_delta') block.thinking = `${String(block.thinking)}${delta.thinking}`;
      else if (delta.type === 'signature_delta') block.signature = `${String(block.signature)}${delta.signature}`;
      else throw new Error(`unexpected delta ${String(delta.type)}`);
    } else if (event === 'content_block_stop') {
      expect(open.delete(data.index)).toBe(true);
    }
  }
  expect(open.size).toBe(0);
  return blocks;
}

const lastCall = (mock: MockServer): MockCall => {
  const call = mock.calls.at(-1);
  if (call === undefined) throw new Error('no upstream call');
  return call;
};

const thinkingBlock = (call: MockCall): Block => ({ type: 'thinking', thinking: MOCK_ANTHROPIC_THINKING, signature: mockAnthropicSignature(call.seq) });

describe(`Anthropic-native fields through the Messages protocol (Express ${EXPRESS_MAJOR})`, () => {
  it.each([true, false])('stream %s: thinking, cache_control, is_error and the thinking history reach the Anthropic upstream exactly', async (stream) => {
    const res = await post('/v1/messages', { ...nativeBody('claude'), stream });
    expect(res.status).toBe(200);
    expect(anthropic.calls).toHaveLength(1);
    expect(lastCall(anthropic).body).toEqual(expectedAnthropicBody(stream));
  });

  it.each([true, false])('stream %s: the same request reaches the OpenAI upstream with none of it (a valid chat request, the tool ids kept)', async (stream) => {
    const res = await post('/v1/messages', { ...nativeBody('gpt'), stream });
    expect(res.status).toBe(200);
    const body = lastCall(openai).body as ChatCompletionRequest;
    const text = JSON.stringify(body);
    for (const key of ['thinking', 'cache_control', 'is_error', 'signature', 'redacted', 'sig-turn-1', 'opaque-turn-1']) expect(text).not.toContain(key);
    expect(body.messages).toEqual([
      { role: 'system', content: [{ type: 'text', text: 'You are terse.' }] },
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
      {
        role: 'assistant',
        content: [{ type: 'text', text: 'Let me check.' }],
        tool_calls: [{ id: 'toolu_01A', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'toolu_01A', content: '21°C, sunny' },
    ]);
    expect(body.tools).toEqual([{ type: 'function', function: { name: 'get_weather', description: 'Weather by city', parameters: WEATHER_SCHEMA } }]);
    // The OpenAI deployment's answer has no thinking: none reaches the client.
    expect(res.text).not.toContain('thinking');
  });

  it("writes the answer's thinking block on the wire (ping after message_start, thinking_delta, signature_delta) and first in the whole Message; the modes agree", async () => {
    const streamed = await post('/v1/messages', { ...nativeBody('claude'), stream: true });
    const streamCall = lastCall(anthropic);
    const events = eventsOf(streamed.text);
    expect(events.slice(0, 3).map((e) => [e.event, e.data.content_block?.type ?? null])).toEqual([
      ['message_start', null],
      ['ping', null],
      ['content_block_start', 'thinking'],
    ]);
    expect(events[2]!.data.content_block).toEqual({ type: 'thinking', thinking: '', signature: '' });
    const deltaTypes = events.filter((e) => e.event === 'content_block_delta' && e.data.index === 0).map((e) => e.data.delta.type);
    expect(deltaTypes).toEqual(['thinking_delta', 'thinking_delta', 'signature_delta']);
    expect(events.filter((e) => e.event === 'ping')).toHaveLength(1);
    expect(events.at(-1)!.event).toBe('message_stop');
    const streamedBlocks = blocksOfStream(events);
    expect(streamedBlocks).toEqual([thinkingBlock(streamCall), { type: 'text', text: ANSWER }]);

    const whole = await post('/v1/messages', nativeBody('claude'));
    expect(whole.status).toBe(200);
    const message = JSON.parse(whole.text) as { content: Block[]; stop_reason: string };
    expect(message.content).toEqual([thinkingBlock(lastCall(anthropic)), { type: 'text', text: ANSWER }]);
    expect(message.stop_reason).toBe('end_turn');
    // Both modes: the same blocks, each signed by its own upstream call.
    const unsigned = (blocks: Block[]) => blocks.map((b) => (b.type === 'thinking' ? { ...b, signature: '<signed>' } : b));
    expect(unsigned(streamedBlocks)).toEqual(unsigned(message.content));
  });

  it('writes a redacted thinking block after the thinking block, in both modes alike', async () => {
    const body = nativeBody('claude', `Please think. ${MOCK_ANTHROPIC_REDACTED_TRIGGER}`);
    const streamed = await post('/v1/messages', { ...body, stream: true });
    const streamCall = lastCall(anthropic);
    const events = eventsOf(streamed.text);
    const redacted = { type: 'redacted_thinking', data: MOCK_ANTHROPIC_REDACTED_DATA };
    expect(blocksOfStream(events)).toEqual([thinkingBlock(streamCall), redacted, { type: 'text', text: ANSWER }]);
    const whole = JSON.parse((await post('/v1/messages', body)).text) as { content: Block[] };
    expect(whole.content).toEqual([thinkingBlock(lastCall(anthropic)), redacted, { type: 'text', text: ANSWER }]);
  });

  it('the real @anthropic-ai/sdk gets the thinking block and its signature: messages.stream().finalMessage() and messages.create()', async () => {
    const client = new Anthropic({ apiKey: 'test-key', baseURL: url, maxRetries: 0 });
    const params = nativeBody('claude') as unknown as Anthropic.MessageCreateParamsNonStreaming;
    const stream = client.messages.stream(params);
    let thinkingText = '';
    let signature = '';
    stream.on('thinking', (delta) => (thinkingText += delta));
    stream.on('signature', (value) => (signature = value));
    const final = await stream.finalMessage();
    const streamCall = lastCall(anthropic);
    expect(final.content).toEqual([thinkingBlock(streamCall), { type: 'text', text: ANSWER }]);
    expect(thinkingText).toBe(MOCK_ANTHROPIC_THINKING);
    expect(signature).toBe(mockAnthropicSignature(streamCall.seq));

    const created = await client.messages.create(params);
    expect(created.content).toEqual([thinkingBlock(lastCall(anthropic)), { type: 'text', text: ANSWER }]);
    expect(created.stop_reason).toBe(final.stop_reason);
  });

  it.each([true, false])('stream %s: a chat client of the same Anthropic deployment sees no thinking', async (stream) => {
    const res = await post('/v1/chat/completions', { model: 'claude', stream, thinking: THINKING, messages: [{ role: 'user', content: 'Hi' }] });
    expect(res.status).toBe(200);
    expect(lastCall(anthropic).body).not.toHaveProperty('thinking');
    for (const word of ['thinking', 'signature', 'redacted']) expect(res.text).not.toContain(word);
    const text = stream
      ? eventsOf(res.text)
          .filter((e) => e.data.done !== true)
          .map((e) => (e.data as ChatCompletionChunk).choices[0]?.delta.content ?? '')
          .join('')
      : (JSON.parse(res.text) as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    expect(text).toBe(ANSWER);
  });

  it('an Anthropic thinking stream becomes chat chunks whose thinking is in the extras only: the chat wire carries none of it', async () => {
    const deployment: Deployment = {
      id: 'anthropic/normal',
      group: 'direct',
      weight: 1,
      provider: 'anthropic',
      baseUrl: anthropic.url,
      model: 'normal',
      apiKey: 'k',
      timeouts: { connectMs: 2000, firstTokenMs: 60_000, idleMs: 30_000, totalMs: 600_000 },
    };
    const adapter = createAnthropicAdapter(deployment);
    try {
      const body: ChatCompletionRequest = { model: 'normal', max_tokens: 4096, stream: true, messages: [{ role: 'user', content: 'Hi' }] };
      (body as { [ANTHROPIC_EXTRAS]?: unknown })[ANTHROPIC_EXTRAS] = { thinking: THINKING };
      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of adapter.stream({ body, signal: new AbortController().signal, requestId: 'r1' })) chunks.push(chunk);
      const extras = chunks.map((c) => (c.choices[0]?.delta as { [ANTHROPIC_EXTRAS]?: Record<string, string> } | undefined)?.[ANTHROPIC_EXTRAS]).filter((e) => e !== undefined);
      expect(extras).toEqual([
        { thinking: MOCK_ANTHROPIC_THINKING.slice(0, Math.ceil(MOCK_ANTHROPIC_THINKING.length / 2)) },
        { thinking: MOCK_ANTHROPIC_THINKING.slice(Math.ceil(MOCK_ANTHROPIC_THINKING.length / 2)) },
        { signature: mockAnthropicSignature(lastCall(anthropic).seq) },
      ]);
      const encoder = chatProtocol.encoder({ id: 'r1', model: 'claude', created: 1 });
      const wire = chunks.map((c) => encoder.chunk(c)).join('') + encoder.end();
      for (const word of ['thinking', 'signature', MOCK_ANTHROPIC_THINKING.slice(0, 8)]) expect(wire).not.toContain(word);

      const whole = await adapter.complete({ body: { ...body, stream: false }, signal: new AbortController().signal, requestId: 'r2' });
      expect((whole.choices[0]!.message as { [ANTHROPIC_EXTRAS]?: unknown })[ANTHROPIC_EXTRAS]).toEqual({ thinking: [thinkingBlock(lastCall(anthropic))] });
      expect(chatProtocol.completion(whole, { id: 'r2', model: 'claude', created: 1 })).not.toContain('thinking');
    } finally {
      await adapter.close?.();
    }
  });
});
