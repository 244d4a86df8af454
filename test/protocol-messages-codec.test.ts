import Anthropic from '@anthropic-ai/sdk';
import {
  AuthenticationError,
  BadRequestError,
  ConnectionError,
  ContentPolicyViolationError,
  ContextWindowExceededError,
  GuardrailUnavailableError,
  GuardrailViolationError,
  InternalError,
  MethodNotAllowedError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  RequestTimeoutError,
  RequestTooLargeError,
  ServiceUnavailableError,
  TimeoutError,
  UnsupportedMediaTypeError,
  UpstreamCredentialsError,
  UpstreamError,
  type GatewayError,
} from '../lib/errors.js';
import { anthropicErrorType, messagesProtocol } from '../lib/protocols/messages/index.js';
import type { AnswerInfo, ProtocolEncoder } from '../lib/protocols/types.js';
import { RawChunk, scanChunk, type StreamChunk } from '../lib/raw-chunk.js';
import { ANTHROPIC_EXTRAS, type ChatCompletion, type ChatCompletionChunk, type ChatCompletionChunkDelta, type FinishReason, type Usage } from '../lib/types.js';
import { listen, type RunningServer } from './helpers/http.js';

const answer: AnswerInfo = { id: 'req-1', model: 'claude-x', created: 1700000000 };

// ---------------------------------------------------------------------------------------------
// Request mapping

const base = { model: 'claude-x', max_tokens: 100 };

function rejection(body: unknown): BadRequestError {
  try {
    messagesProtocol.toChatRequest(body);
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return error as BadRequestError;
  }
  throw new Error('expected a BadRequestError');
}

describe('messages protocol: request mapping', () => {
  it('maps the minimal body, keeping the model as written and asking for nothing else', () => {
    expect(messagesProtocol.toChatRequest({ ...base, messages: [{ role: 'user', content: 'hi' }] })).toEqual({
      model: 'claude-x',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
    });
  });

  it('asks a stream for the usage chunk', () => {
    const request = messagesProtocol.toChatRequest({ ...base, stream: true, messages: [{ role: 'user', content: 'hi' }] });
    expect(request.stream).toBe(true);
    expect(request.stream_options).toEqual({ include_usage: true });
    expect(messagesProtocol.toChatRequest({ ...base, stream: false, messages: [{ role: 'user', content: 'hi' }] }).stream).toBeUndefined();
  });

  it('maps system (string or text blocks) to one leading system message', () => {
    const user = { role: 'user', content: 'hi' };
    expect(messagesProtocol.toChatRequest({ ...base, system: 'be brief', messages: [user] }).messages[0]).toEqual({ role: 'system', content: 'be brief' });
    const blocks = messagesProtocol.toChatRequest({
      ...base,
      system: [{ type: 'text', text: 'a', cache_control: { type: 'ephemeral' } }, { type: 'text', text: 'b' }],
      messages: [user],
    }).messages;
    // The breakpoint rides in the part's Anthropic extras (a symbol key: no JSON carries it).
    expect(blocks).toEqual([{ role: 'system', content: [{ type: 'text', text: 'a', [ANTHROPIC_EXTRAS]: { cache_control: { type: 'ephemeral' } } }, { type: 'text', text: 'b' }] }, user]);
    expect(JSON.stringify(blocks[0])).toBe('{"role":"system","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}');
    expect(messagesProtocol.toChatRequest({ ...base, system: '', messages: [user] }).messages).toEqual([user]);
    expect(messagesProtocol.toChatRequest({ ...base, system: [], messages: [user] }).messages).toEqual([user]);
  });

  it('maps the sampling fields, stop_sequences and metadata.user_id; drops top_k; keeps thinking in the Anthropic extras only', () => {
    const request = messagesProtocol.toChatRequest({
      ...base,
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      stop_sequences: ['END', 'STOP'],
      metadata: { user_id: 'u-1' },
      thinking: { type: 'enabled', budget_tokens: 50 },
    });
    expect(request).toEqual({
      model: 'claude-x',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.5,
      top_p: 0.9,
      stop: ['END', 'STOP'],
      user: 'u-1',
      [ANTHROPIC_EXTRAS]: { thinking: { type: 'enabled', budget_tokens: 50 } },
    });
    expect(JSON.stringify(request)).not.toContain('thinking');
    const quiet = messagesProtocol.toChatRequest({ ...base, messages: [{ role: 'user', content: 'hi' }], stop_sequences: [], metadata: { user_id: null } });
    expect(quiet.stop).toBeUndefined();
    expect(quiet.user).toBeUndefined();
  });

  it('maps text and image blocks (base64 → data URL, url → url)', () => {
    const request = messagesProtocol.toChatRequest({
      ...base,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBOR' } },
            { type: 'image', source: { type: 'url', url: 'https://example.com/a.jpg' } },
          ],
        },
      ],
    });
    expect(request.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBOR' } },
          { type: 'image_url', image_url: { url: 'https://example.com/a.jpg' } },
        ],
      },
    ]);
  });

  it('maps assistant tool_use blocks to tool_calls and keeps thinking blocks (in order) in the message extras only', () => {
    const request = messagesProtocol.toChatRequest({
      ...base,
      messages: [
        { role: 'user', content: 'weather?' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 'sig' },
            { type: 'redacted_thinking', data: 'xx' },
            { type: 'text', text: 'Checking.' },
            { type: 'tool_use', id: 'toolu_1', name: 'weather', input: { city: 'Paris' } },
          ],
        },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_2', name: 'time', input: {} }] },
        { role: 'assistant', content: 'plain' },
      ],
    });
    expect(request.messages.slice(1)).toEqual([
      {
        role: 'assistant',
        content: [{ type: 'text', text: 'Checking.' }],
        tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }],
        [ANTHROPIC_EXTRAS]: {
          thinking: [
            { type: 'thinking', thinking: 'hmm', signature: 'sig' },
            { type: 'redacted_thinking', data: 'xx' },
          ],
        },
      },
      { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_2', type: 'function', function: { name: 'time', arguments: '{}' } }] },
      { role: 'assistant', content: 'plain' },
    ]);
  });

  it("places a user turn's tool results first, as tool messages, with their images in the user message after them", () => {
    const image = (data: string) => ({ type: 'image', source: { type: 'base64', media_type: 'image/png', data } });
    const request = messagesProtocol.toChatRequest({
      ...base,
      messages: [
        { role: 'user', content: 'go' },
        {
          role: 'assistant',
          content: [
            { type: 'tool_use', id: 'a', name: 'f', input: {} },
            { type: 'tool_use', id: 'b', name: 'g', input: {} },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'here:' },
            { type: 'tool_result', tool_use_id: 'a', content: 'result a', is_error: true },
            image('own'),
            { type: 'tool_result', tool_use_id: 'b', content: [{ type: 'text', text: 'result b' }, image('shot')] },
          ],
        },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'c', name: 'f', input: {} }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'c' }] },
      ],
    });
    expect(request.messages.slice(2)).toEqual([
      { role: 'tool', tool_call_id: 'a', content: 'result a', [ANTHROPIC_EXTRAS]: { is_error: true } },
      { role: 'tool', tool_call_id: 'b', content: [{ type: 'text', text: 'result b' }] },
      {
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url: 'data:image/png;base64,shot' } },
          { type: 'text', text: 'here:' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,own' } },
        ],
      },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'c', content: '' },
    ]);
  });

  it('maps custom tools and tool_choice (only with tools), with disable_parallel_tool_use → parallel_tool_calls: false', () => {
    const tools = [
      { name: 'weather', description: 'Weather now', input_schema: { type: 'object', properties: { city: { type: 'string' } } } },
      { type: 'custom', name: 'time', input_schema: { type: 'object' } },
    ];
    const user = [{ role: 'user', content: 'hi' }];
    const request = messagesProtocol.toChatRequest({ ...base, messages: user, tools });
    expect(request.tools).toEqual([
      { type: 'function', function: { name: 'weather', description: 'Weather now', parameters: tools[0]!.input_schema } },
      { type: 'function', function: { name: 'time', parameters: { type: 'object' } } },
    ]);
    expect(request.tool_choice).toBeUndefined();
    const choice = (tool_choice: object) => {
      const r = messagesProtocol.toChatRequest({ ...base, messages: user, tools, tool_choice });
      return [r.tool_choice, r.parallel_tool_calls];
    };
    expect(choice({ type: 'auto' })).toEqual(['auto', undefined]);
    expect(choice({ type: 'any' })).toEqual(['required', undefined]);
    expect(choice({ type: 'tool', name: 'time' })).toEqual([{ type: 'function', function: { name: 'time' } }, undefined]);
    expect(choice({ type: 'none' })).toEqual(['none', undefined]);
    expect(choice({ type: 'auto', disable_parallel_tool_use: true })).toEqual(['auto', false]);
    expect(choice({ type: 'tool', name: 'time', disable_parallel_tool_use: true })).toEqual([{ type: 'function', function: { name: 'time' } }, false]);
    expect(choice({ type: 'any', disable_parallel_tool_use: false })).toEqual(['required', undefined]);
    const noTools = messagesProtocol.toChatRequest({ ...base, messages: user, tool_choice: { type: 'any', disable_parallel_tool_use: true } });
    expect([noTools.tools, noTools.tool_choice, noTools.parallel_tool_calls]).toEqual([undefined, undefined, undefined]);
  });

  it.each([
    ['a body that is not an object', [], 'body', /must be a JSON object/],
    ['no max_tokens', { model: 'm', messages: [{ role: 'user', content: 'x' }] }, 'max_tokens', /'max_tokens' is required/],
    ['max_tokens 0', { ...base, max_tokens: 0, messages: [{ role: 'user', content: 'x' }] }, 'max_tokens', />= 1/],
    ['max_tokens 1.5', { ...base, max_tokens: 1.5, messages: [{ role: 'user', content: 'x' }] }, 'max_tokens', /integer/],
    ['no model', { max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }, 'model', /required/],
    ['no messages', { ...base, messages: [] }, 'messages', /at least 1/],
    ['a system role in messages', { ...base, messages: [{ role: 'system', content: 'x' }] }, 'messages[0].role', /"user", "assistant"/],
    ['content of the wrong type', { ...base, messages: [{ role: 'user', content: 5 }] }, 'messages[0].content', /a string or an array/],
    ['an unknown block type', { ...base, messages: [{ role: 'user', content: [{ type: 'video' }] }] }, 'messages[0].content[0].type', /"text", "image", "tool_result", "document"/],
    ['tool_use in a user turn', { ...base, messages: [{ role: 'user', content: [{ type: 'tool_use', id: 'a', name: 'f', input: {} }] }] }, 'messages[0].content[0].type', /got "tool_use"/],
    ['tool_result in an assistant turn', { ...base, messages: [{ role: 'assistant', content: [{ type: 'tool_result', tool_use_id: 'a' }] }] }, 'messages[0].content[0].type', /got "tool_result"/],
    [
      'an empty base64 image',
      { ...base, messages: [{ role: 'user', content: 'a' }, { role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: '' } }] }] },
      'messages[1].content[0].source.data',
      /must not be empty/,
    ],
    ['an image media type', { ...base, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/bmp', data: 'x' } }] }] }, 'messages[0].content[0].source.media_type', /image\/png/],
    ['a file image source', { ...base, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'file', file_id: 'f' } }] }] }, 'messages[0].content[0].source.type', /"base64", "url"/],
    ['a document block', { ...base, messages: [{ role: 'user', content: [{ type: 'text', text: 'x' }, { type: 'document', source: {} }] }] }, 'messages[0].content[1].type', /is 'document'/],
    ['a tool_use input that is not an object', { ...base, messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'a', name: 'f', input: 'x' }] }] }, 'messages[0].content[0].input', /an object/],
    ['a tool_result without tool_use_id', { ...base, messages: [{ role: 'user', content: [{ type: 'tool_result', content: 'x' }] }] }, 'messages[0].content[0].tool_use_id', /required/],
    ['a tool_result image of another kind', { ...base, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'a', content: [{ type: 'document' }] }] }] }, 'messages[0].content[0].content[0].type', /"text", "image"/],
    ['a system block that is not text', { ...base, system: [{ type: 'image' }], messages: [{ role: 'user', content: 'x' }] }, 'system[0].type', /"text"/],
    ['stop_sequences as a string', { ...base, stop_sequences: 'END', messages: [{ role: 'user', content: 'x' }] }, 'stop_sequences', /an array/],
    ['temperature above 1', { ...base, temperature: 1.5, messages: [{ role: 'user', content: 'x' }] }, 'temperature', /<= 1/],
    ['top_k negative', { ...base, top_k: -1, messages: [{ role: 'user', content: 'x' }] }, 'top_k', />= 0/],
    ['a server tool', { ...base, tools: [{ type: 'web_search_20250305', name: 'web_search' }], messages: [{ role: 'user', content: 'x' }] }, 'tools[0].type', /web_search_20250305/],
    ['a tool without input_schema', { ...base, tools: [{ name: 'f' }], messages: [{ role: 'user', content: 'x' }] }, 'tools[0].input_schema', /required/],
    ['a tool name with spaces', { ...base, tools: [{ name: 'a b', input_schema: {} }], messages: [{ role: 'user', content: 'x' }] }, 'tools[0].name', /must match/],
    ['tool_choice tool without name', { ...base, tool_choice: { type: 'tool' }, messages: [{ role: 'user', content: 'x' }] }, 'tool_choice.name', /required/],
    ['an unknown tool_choice', { ...base, tool_choice: { type: 'some' }, messages: [{ role: 'user', content: 'x' }] }, 'tool_choice.type', /"auto", "any", "tool", "none"/],
    ['thinking without type', { ...base, thinking: {}, messages: [{ role: 'user', content: 'x' }] }, 'thinking.type', /required/],
    ['mcp_servers', { ...base, mcp_servers: [{ type: 'url', url: 'https://x', name: 'x' }], messages: [{ role: 'user', content: 'x' }] }, 'mcp_servers', /not supported/],
    // The chat request's limits, which the mapped request must meet (issue 16's fuzz findings).
    ['5 stop_sequences (the chat stop holds 4)', { ...base, stop_sequences: ['a', 'b', 'c', 'd', 'e'], messages: [{ role: 'user', content: 'x' }] }, 'stop_sequences', /at most 4/],
    ['a tool name of 65 characters', { ...base, tools: [{ name: 'a'.repeat(65), input_schema: {} }], messages: [{ role: 'user', content: 'x' }] }, 'tools[0].name', /must match/],
    ['a model of .', { ...base, model: '.', messages: [{ role: 'user', content: 'x' }] }, 'model', /must be a model name/],
    ['a model of ..', { ...base, model: '..', messages: [{ role: 'user', content: 'x' }] }, 'model', /must be a model name/],
  ])('refuses %s, naming the field', (_name, body, param, message) => {
    const error = rejection(body);
    expect(error.param).toBe(param);
    expect(error.message).toMatch(message);
    if (param !== 'body') expect(error.message).toContain(`'${param}'`);
    expect(error.status).toBe(400);
  });

  it('refuses a tool input nested too deeply (it would overflow the stack when turned back into JSON)', () => {
    let input: Record<string, unknown> = {};
    for (let i = 0; i < 200; i++) input = { a: input };
    const error = rejection({ ...base, messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 'a', name: 'f', input }] }] });
    expect(error.param).toBe('messages');
  });

  it('keeps room for the level the mapping adds to an input_schema (tools[i].function.parameters), and names fields as the chat path does', () => {
    const nested = (levels: number): Record<string, unknown> => {
      let value: Record<string, unknown> = {};
      for (let i = 1; i < levels; i++) value = { a: value };
      return value;
    };
    // body 1, tools 2, [0] 3, input_schema 4: an input_schema of 96 levels reaches level 99, the most accepted.
    const within = messagesProtocol.toChatRequest({ ...base, messages: [{ role: 'user', content: 'x' }], tools: [{ name: 'f', input_schema: nested(96) }] });
    expect(within.tools).toHaveLength(1);
    const error = rejection({ ...base, messages: [{ role: 'user', content: 'x' }], tools: [{ name: 'f', input_schema: nested(97) }] });
    expect([error.param, error.message]).toEqual(['tools', "Invalid request: 'tools' is nested more than 99 levels deep."]);
    expect(rejection({ ...base, messages: [{ role: 'user', content: 'x' }], '0': nested(200) }).param).toBe('[0]');
    expect(rejection({ ...base, messages: [{ role: 'user', content: 'x' }], '': nested(200) })).toMatchObject({ param: 'body', message: 'Request body: nested more than 99 levels deep.' });
  });

  it('compiles the validator once, ahead of the first request when asked', () => {
    expect(() => messagesProtocol.compile?.()).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------
// Stream encoder

interface Frame {
  event: string;
  data: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** Splits the encoder's output into events, checking each is `event: <type>` + `data: <json of that type>`. */
/**
 * The frames of `text`, without the one `ping` that must follow `message_start` (as Anthropic sends one
 * early in every stream; clients skip it): checked here once for every test, and no ping anywhere else.
 */
function framesOf(text: string): Frame[] {
  if (text === '') return [];
  expect(text.endsWith('\n\n')).toBe(true);
  const frames = text
    .slice(0, -2)
    .split('\n\n')
    .map((frame) => {
      const match = /^event: ([a-z_]+)\ndata: (.*)$/s.exec(frame);
      if (match === null) throw new Error(`not an event: ${JSON.stringify(frame)}`);
      const data = JSON.parse(match[2]!);
      expect(data.type).toBe(match[1]);
      return { event: match[1]!, data };
    });
  const start = frames.findIndex((frame) => frame.event === 'message_start');
  if (start >= 0) expect(frames[start + 1]).toEqual({ event: 'ping', data: { type: 'ping' } });
  const withoutPing = start >= 0 ? [...frames.slice(0, start + 1), ...frames.slice(start + 2)] : frames;
  expect(withoutPing.filter((frame) => frame.event === 'ping')).toEqual([]);
  return withoutPing;
}

const chunkOf = (delta: ChatCompletionChunkDelta, finish: FinishReason | null = null): ChatCompletionChunk => ({
  id: 'chatcmpl-u',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'upstream-model',
  choices: [{ index: 0, delta, finish_reason: finish }],
});

const usageChunk = (usage: Usage): ChatCompletionChunk => ({ id: 'chatcmpl-u', object: 'chat.completion.chunk', created: 1, model: 'upstream-model', choices: [], usage });

/** The same chunk as the OpenAI adapter's raw path would forward it, when the scan takes it (else parsed). */
function raw(chunk: ChatCompletionChunk): StreamChunk {
  return scanChunk(JSON.stringify(chunk), true) ?? chunk;
}

function encode(chunks: StreamChunk[], finish: (encoder: ProtocolEncoder) => string = (e) => e.end()): string {
  const encoder = messagesProtocol.encoder(answer);
  let out = '';
  for (const chunk of chunks) out += encoder.chunk(chunk);
  return out + finish(encoder);
}

const textStream = (): ChatCompletionChunk[] => [
  chunkOf({ role: 'assistant', content: '' }),
  chunkOf({ content: 'Hel' }),
  chunkOf({ content: 'lo "wörld"\n' }),
  chunkOf({}, 'stop'),
  usageChunk({ prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 }),
];

const toolStream = (): ChatCompletionChunk[] => [
  chunkOf({ role: 'assistant', content: 'Let me check.' }),
  chunkOf({ tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'weather', arguments: '' } }] }),
  chunkOf({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
  chunkOf({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
  chunkOf({ tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'time', arguments: '{"tz":"CET"}' } }] }),
  chunkOf({}, 'tool_calls'),
  usageChunk({ prompt_tokens: 20, completion_tokens: 9, total_tokens: 29 }),
];

describe('messages protocol: stream encoder', () => {
  it('writes a text answer: message_start on the first chunk, one text block, the ending with usage at end()', () => {
    const encoder = messagesProtocol.encoder(answer);
    const [role, hel, lo, finish, usage] = textStream();
    const first = framesOf(encoder.chunk(role!));
    expect(first).toEqual([
      {
        event: 'message_start',
        data: {
          type: 'message_start',
          message: {
            id: 'msg_req-1',
            type: 'message',
            role: 'assistant',
            model: 'claude-x',
            content: [],
            stop_reason: null,
            stop_sequence: null,
            usage: { input_tokens: 0, output_tokens: 0 },
          },
        },
      },
    ]);
    expect(framesOf(encoder.chunk(hel!))).toEqual([
      { event: 'content_block_start', data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } } },
      { event: 'content_block_delta', data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hel' } } },
    ]);
    expect(framesOf(encoder.chunk(lo!))).toEqual([
      { event: 'content_block_delta', data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'lo "wörld"\n' } } },
    ]);
    expect(encoder.chunk(finish!)).toBe('');
    expect(encoder.chunk(usage!)).toBe('');
    expect(framesOf(encoder.end())).toEqual([
      { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
      {
        event: 'message_delta',
        data: { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { input_tokens: 12, output_tokens: 3 } },
      },
      { event: 'message_stop', data: { type: 'message_stop' } },
    ]);
    expect(encoder.end()).toBe('');
    expect(encoder.chunk(hel!)).toBe('');
  });

  it('writes the same bytes for forwarded (raw) and parsed chunks', () => {
    for (const stream of [textStream(), toolStream()]) {
      const rawChunks = stream.map(raw);
      expect(rawChunks.some((c) => c instanceof RawChunk)).toBe(true);
      expect(encode(rawChunks)).toBe(encode(stream));
    }
    // Escapes in the upstream's text (the raw path decodes them from text0) and a chunk the scan takes in its general form.
    const escaped = [chunkOf({ content: 'a\u00e9\\"\u2028' }), chunkOf({ content: 'b' }, 'length')];
    expect(encode(escaped.map(raw))).toBe(encode(escaped));
    // Spelled as a provider may spell it (\u escapes, an escaped slash, a surrogate pair split across chunks):
    // the raw path keeps that spelling, the events decode to the same values.
    const spelled = ['caf\\u00e9 \\/', '\\ud83d', '\\ude00'].map(
      (text, i) => `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"${text}"},"finish_reason":${i === 2 ? '"length"' : 'null'}}]}`,
    );
    const spelledRaw = spelled.map((d) => scanChunk(d, true)!);
    expect(spelledRaw.every((c) => c.text0Json !== undefined)).toBe(true);
    expect(framesOf(encode(spelledRaw))).toEqual(framesOf(encode(spelled.map((d) => JSON.parse(d) as ChatCompletionChunk))));
    const spaced = new RawChunk(' {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]}', 'content', false, 1, 'x', false);
    expect(encode([spaced])).toBe(encode([chunkOf({ content: 'x' })]));
  });

  it('does not parse a forwarded text chunk (the hot path), nor a forwarded role or finish chunk', () => {
    const encoder = messagesProtocol.encoder(answer);
    const [role, hel, lo, stop] = textStream().map(raw);
    expect(role).toBeInstanceOf(RawChunk);
    expect(hel).toBeInstanceOf(RawChunk);
    expect(stop).toBeInstanceOf(RawChunk);
    const parse = jest.spyOn(JSON, 'parse');
    try {
      encoder.chunk(role!);
      encoder.chunk(hel!);
      encoder.chunk(lo!);
      encoder.chunk(stop!);
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
    }
  });

  it('writes tool calls as tool_use blocks after the text, by position, with input_json_delta arguments', () => {
    const frames = framesOf(encode(toolStream()));
    expect(frames.map((f) => [f.event, f.data.index ?? null])).toEqual([
      ['message_start', null],
      ['content_block_start', 0],
      ['content_block_delta', 0],
      ['content_block_stop', 0],
      ['content_block_start', 1],
      ['content_block_delta', 1],
      ['content_block_delta', 1],
      ['content_block_stop', 1],
      ['content_block_start', 2],
      ['content_block_delta', 2],
      ['content_block_stop', 2],
      ['message_delta', null],
      ['message_stop', null],
    ]);
    expect(frames[4]!.data.content_block).toEqual({ type: 'tool_use', id: 'call_a', name: 'weather', input: {} });
    expect(frames[5]!.data.delta).toEqual({ type: 'input_json_delta', partial_json: '{"city":' });
    expect(frames[6]!.data.delta).toEqual({ type: 'input_json_delta', partial_json: '"Paris"}' });
    expect(frames[8]!.data.content_block).toEqual({ type: 'tool_use', id: 'call_b', name: 'time', input: {} });
    expect(frames[9]!.data.delta).toEqual({ type: 'input_json_delta', partial_json: '{"tz":"CET"}' });
    expect(frames[11]!.data).toEqual({ type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { input_tokens: 20, output_tokens: 9 } });
  });

  it('writes two calls of one chunk (parallel) as two blocks, and a call without id under a generated one', () => {
    const frames = framesOf(
      encode([
        chunkOf({
          tool_calls: [
            { index: 0, id: 'call_a', function: { name: 'f', arguments: '{}' } },
            { index: 1, function: { name: 'g', arguments: '{"x":1}' } },
          ],
        }),
        chunkOf({}, 'tool_calls'),
      ]),
    );
    expect(frames.filter((f) => f.event === 'content_block_start').map((f) => [f.data.index, f.data.content_block.id, f.data.content_block.name])).toEqual([
      [0, 'call_a', 'f'],
      [1, 'toolu_req-1_1', 'g'],
    ]);
    expect(frames.map((f) => f.event)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
  });

  it('opens a new text block for text after a tool call, and writes a late argument delta against its own block', () => {
    const frames = framesOf(
      encode([
        chunkOf({ tool_calls: [{ index: 0, id: 'call_a', function: { name: 'f', arguments: '{"a":' } }] }),
        chunkOf({ content: 'between' }),
        chunkOf({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }),
        chunkOf({}, 'tool_calls'),
      ]),
    );
    expect(frames.map((f) => [f.event, f.data.index ?? null, f.data.delta?.type ?? f.data.content_block?.type ?? null])).toEqual([
      ['message_start', null, null],
      ['content_block_start', 0, 'tool_use'],
      ['content_block_delta', 0, 'input_json_delta'],
      ['content_block_stop', 0, null],
      ['content_block_start', 1, 'text'],
      ['content_block_delta', 1, 'text_delta'],
      ['content_block_delta', 0, 'input_json_delta'],
      ['content_block_stop', 1, null],
      ['message_delta', null, null],
      ['message_stop', null, null],
    ]);
  });

  it.each([
    ['stop', 'end_turn'],
    ['length', 'max_tokens'],
    ['tool_calls', 'tool_use'],
    ['function_call', 'tool_use'],
    ['content_filter', 'refusal'],
    [null, 'end_turn'],
  ] as const)('maps finish_reason %s to stop_reason %s', (finish, stopReason) => {
    const frames = framesOf(encode([chunkOf({ content: 'x' }), chunkOf({}, finish)]));
    const delta = frames.find((f) => f.event === 'message_delta')!;
    expect(delta.data.delta).toEqual({ stop_reason: stopReason, stop_sequence: null });
    expect(delta.data.usage).toEqual({ output_tokens: 0 });
  });

  it('reports cached prompt tokens apart from input tokens, as Anthropic counts them', () => {
    const frames = framesOf(
      encode([chunkOf({ content: 'x' }, 'stop'), usageChunk({ prompt_tokens: 100, completion_tokens: 5, total_tokens: 105, prompt_tokens_details: { cached_tokens: 60 } })]),
    );
    expect(frames.find((f) => f.event === 'message_delta')!.data.usage).toEqual({ input_tokens: 40, output_tokens: 5, cache_read_input_tokens: 60 });
  });

  it('writes a refusal delta as text', () => {
    const frames = framesOf(encode([chunkOf({ refusal: 'No.' }), chunkOf({}, 'stop')]));
    expect(frames[2]!.data.delta).toEqual({ type: 'text_delta', text: 'No.' });
  });

  it('ends a failed stream with exactly one error event, extra inside error, and nothing after it', () => {
    const encoder = messagesProtocol.encoder(answer);
    let out = encoder.chunk(chunkOf({ content: 'alpha ' }));
    const error = encoder.error(new GuardrailViolationError(), 'openai', { attempts: [{ deployment: 'd1' }] });
    expect(error).toBe(
      'event: error\ndata: {"type":"error","error":{"type":"guardrail_violation","message":"Violated guardrail policy","attempts":[{"deployment":"d1"}]}}\n\n',
    );
    out += error + encoder.end() + encoder.softStop('x') + encoder.error(new InternalError(), 'gateway') + encoder.chunk(chunkOf({ content: 'b' }));
    expect(framesOf(out).map((f) => f.event)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'error']);
  });

  it('soft-stops after content: the open block stops, the text comes as a new block, stop_reason refusal', () => {
    const encoder = messagesProtocol.encoder(answer);
    const out = encoder.chunk(chunkOf({ content: 'alpha ' })) + encoder.softStop('Blocked.');
    const frames = framesOf(out);
    expect(frames.map((f) => [f.event, f.data.index ?? null])).toEqual([
      ['message_start', null],
      ['content_block_start', 0],
      ['content_block_delta', 0],
      ['content_block_stop', 0],
      ['content_block_start', 1],
      ['content_block_delta', 1],
      ['content_block_stop', 1],
      ['message_delta', null],
      ['message_stop', null],
    ]);
    expect(frames[5]!.data.delta).toEqual({ type: 'text_delta', text: 'Blocked.' });
    expect(frames[7]!.data.delta).toEqual({ stop_reason: 'refusal', stop_sequence: null });
    expect(encoder.end()).toBe('');
  });

  it('soft-stops before any chunk with message_start first', () => {
    const frames = framesOf(messagesProtocol.encoder(answer).softStop('Blocked.'));
    expect(frames.map((f) => f.event)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  });
});

// ---------------------------------------------------------------------------------------------
// Whole answers and errors

const completionOf = (message: ChatCompletion['choices'][number]['message'], finish: FinishReason | null, usage?: Usage): ChatCompletion => ({
  id: 'chatcmpl-u',
  object: 'chat.completion',
  created: 1,
  model: 'upstream-model',
  choices: [{ index: 0, message, finish_reason: finish }],
  ...(usage === undefined ? {} : { usage }),
});

describe('messages protocol: whole answers and errors', () => {
  it('writes a completion as a Message: text, tool_use with parsed input, stop reason, usage', () => {
    const completion = completionOf(
      {
        role: 'assistant',
        content: 'Checking.',
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
          { id: 'call_b', type: 'function', function: { name: 'time', arguments: '' } },
          { id: 'call_c', type: 'function', function: { name: 'cut', arguments: '{"city":"Par' } },
        ],
      },
      'tool_calls',
      { prompt_tokens: 30, completion_tokens: 7, total_tokens: 37, prompt_tokens_details: { cached_tokens: 10 } },
    );
    expect(JSON.parse(messagesProtocol.completion(completion, answer))).toEqual({
      id: 'msg_req-1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'call_a', name: 'weather', input: { city: 'Paris' } },
        { type: 'tool_use', id: 'call_b', name: 'time', input: {} },
        { type: 'tool_use', id: 'call_c', name: 'cut', input: {} },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 20, output_tokens: 7, cache_read_input_tokens: 10 },
    });
  });

  it('writes text parts and a refusal as one text block, nothing for an empty answer, zero usage when unknown', () => {
    const parts = JSON.parse(messagesProtocol.completion(completionOf({ role: 'assistant', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }, 'length'), answer));
    expect(parts.content).toEqual([{ type: 'text', text: 'ab' }]);
    expect(parts.stop_reason).toBe('max_tokens');
    expect(parts.usage).toEqual({ input_tokens: 0, output_tokens: 0 });
    const refusal = JSON.parse(messagesProtocol.completion(completionOf({ role: 'assistant', content: null, refusal: 'No.' }, 'content_filter'), answer));
    expect([refusal.content, refusal.stop_reason]).toEqual([[{ type: 'text', text: 'No.' }], 'refusal']);
    const empty = JSON.parse(messagesProtocol.completion(completionOf({ role: 'assistant', content: '' }, 'stop'), answer));
    expect([empty.content, empty.stop_reason]).toEqual([[], 'end_turn']);
  });

  it('writes a soft block as a Message stopped as a refusal', () => {
    expect(JSON.parse(messagesProtocol.softCompletion('Blocked.', answer))).toEqual({
      id: 'msg_req-1',
      type: 'message',
      role: 'assistant',
      model: 'claude-x',
      content: [{ type: 'text', text: 'Blocked.' }],
      stop_reason: 'refusal',
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    });
  });

  it.each([
    [new BadRequestError('bad'), 'invalid_request_error', 400],
    [new ContextWindowExceededError('long'), 'invalid_request_error', 400],
    [new ContentPolicyViolationError('no'), 'invalid_request_error', 400],
    [new MethodNotAllowedError(['POST']), 'invalid_request_error', 405],
    [new RequestTimeoutError('slow'), 'invalid_request_error', 408],
    [new UnsupportedMediaTypeError('enc'), 'invalid_request_error', 415],
    [new GuardrailViolationError(), 'guardrail_violation', 400],
    [new AuthenticationError('key'), 'authentication_error', 401],
    [new PermissionDeniedError('no'), 'permission_error', 403],
    [new NotFoundError('model'), 'not_found_error', 404],
    [new RequestTooLargeError('big'), 'request_too_large', 413],
    [new RateLimitError('slow down'), 'rate_limit_error', 429],
    [new InternalError(), 'api_error', 500],
    [new UpstreamError('upstream 500'), 'api_error', 502],
    [new ConnectionError('refused'), 'api_error', 502],
    [new UpstreamCredentialsError('d1', 'key refused'), 'api_error', 502],
    [new UpstreamError('upstream 503', { status: 503 }), 'overloaded_error', 503],
    [new GuardrailUnavailableError('guardrail down'), 'overloaded_error', 503],
    [new ServiceUnavailableError(), 'overloaded_error', 503],
    [new TimeoutError('slow'), 'timeout_error', 504],
  ] as [GatewayError, string, number][])('maps %p to %s, in the body and the stream alike', (error, type, status) => {
    expect(anthropicErrorType(error)).toBe(type);
    expect(error.status).toBe(status);
    const body = messagesProtocol.errorBody(error, 'openai', { attempts: 2 });
    expect(body).toEqual({ type: 'error', error: { type, message: error.message, attempts: 2 } });
    expect(messagesProtocol.errorBody(error, 'gateway')).toEqual({ type: 'error', error: { type, message: error.message } });
    const stream = messagesProtocol.encoder(answer).error(error, 'gateway', { attempts: 2 });
    expect(stream).toBe(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
  });
});

// ---------------------------------------------------------------------------------------------
// The real @anthropic-ai/sdk against the encoder's frames

type Script = (encoder: ProtocolEncoder) => string[];

/** Serves `POST /v1/messages`: a stream of the frames `script` returns (one write each), or a JSON body. */
async function messagesServer(answerWith: { stream?: Script; json?: { status: number; body: unknown } }): Promise<RunningServer> {
  return listen((req, res) => {
    req.resume();
    req.on('end', () => {
      if (answerWith.json !== undefined) {
        const body = JSON.stringify(answerWith.json.body);
        res.writeHead(answerWith.json.status, { 'content-type': 'application/json', 'x-should-retry': 'false' });
        res.end(body);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
      for (const frames of answerWith.stream!(messagesProtocol.encoder(answer))) if (frames !== '') res.write(frames);
      res.end();
    });
  });
}

const clientOf = (server: RunningServer) => new Anthropic({ apiKey: 'test-key', baseURL: server.url, maxRetries: 0 });
const params = { model: 'claude-x', max_tokens: 100, messages: [{ role: 'user' as const, content: 'hi' }] };

const play = (chunks: StreamChunk[]): Script => (encoder) => [...chunks.map((c) => encoder.chunk(c)), encoder.end()];

async function caught(promise: Promise<unknown>): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('messages protocol: the real Anthropic SDK', () => {
  let server: RunningServer;
  afterEach(() => server?.close());

  it('create({stream: true}) yields every event of a text answer (raw chunks)', async () => {
    server = await messagesServer({ stream: play(textStream().map(raw)) });
    const events: string[] = [];
    let text = '';
    for await (const event of await clientOf(server).messages.create({ ...params, stream: true })) {
      events.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    }
    expect(events).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(text).toBe('Hello "wörld"\n');
  });

  it('stream().finalMessage() gives the text, the tool inputs, the stop reason and the usage', async () => {
    const chunks: StreamChunk[] = [...toolStream().slice(0, -1), usageChunk({ prompt_tokens: 20, completion_tokens: 9, total_tokens: 29, prompt_tokens_details: { cached_tokens: 5 } })];
    server = await messagesServer({ stream: play(chunks.map((c) => (c instanceof RawChunk ? c : raw(c)))) });
    const stream = clientOf(server).messages.stream(params);
    const texts: string[] = [];
    stream.on('text', (delta) => texts.push(delta));
    const message = await stream.finalMessage();
    expect(texts.join('')).toBe('Let me check.');
    expect(message.id).toBe('msg_req-1');
    expect(message.model).toBe('claude-x');
    expect(message.content).toEqual([
      { type: 'text', text: 'Let me check.' },
      { type: 'tool_use', id: 'call_a', name: 'weather', input: { city: 'Paris' } },
      { type: 'tool_use', id: 'call_b', name: 'time', input: { tz: 'CET' } },
    ]);
    expect(message.stop_reason).toBe('tool_use');
    expect(message.usage).toMatchObject({ input_tokens: 15, output_tokens: 9, cache_read_input_tokens: 5 });
  });

  it('stream().finalMessage() still assembles a tool input whose last delta came after a text block started', async () => {
    server = await messagesServer({
      stream: play([
        chunkOf({ tool_calls: [{ index: 0, id: 'call_a', function: { name: 'f', arguments: '{"a":' } }] }),
        chunkOf({ content: 'between' }),
        chunkOf({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }),
        chunkOf({}, 'tool_calls'),
      ]),
    });
    const message = await clientOf(server).messages.stream(params).finalMessage();
    expect(message.content).toEqual([
      { type: 'tool_use', id: 'call_a', name: 'f', input: { a: 1 } },
      { type: 'text', text: 'between' },
    ]);
  });

  it('stream().finalMessage() takes a soft stop as a refusal', async () => {
    server = await messagesServer({ stream: (e) => [e.chunk(chunkOf({ content: 'alpha ' })), e.softStop('Blocked.')] });
    const message = await clientOf(server).messages.stream(params).finalMessage();
    expect(message.content).toEqual([{ type: 'text', text: 'alpha ' }, { type: 'text', text: 'Blocked.' }]);
    expect(message.stop_reason).toBe('refusal');
  });

  it('error() after content makes create() iteration and finalMessage() throw the gateway\'s type and message', async () => {
    const script: Script = (e) => [e.chunk(chunkOf({ content: 'alpha ' })), e.chunk(chunkOf({ content: 'beta ' })), e.error(new GuardrailViolationError(), 'gateway')];
    server = await messagesServer({ stream: script });
    const client = clientOf(server);

    let text = '';
    const iterated = await caught(
      (async () => {
        for await (const event of await client.messages.create({ ...params, stream: true })) {
          if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
        }
      })(),
    );
    expect(iterated).toBeInstanceOf(Anthropic.APIError);
    expect(iterated.type).toBe('guardrail_violation');
    expect(iterated.apiMessage).toBe('Violated guardrail policy');
    expect(text).toBe('alpha beta ');

    const stream = client.messages.stream(params);
    const errors: unknown[] = [];
    stream.on('error', (error) => errors.push(error));
    const final = await caught(stream.finalMessage());
    expect(final).toBeInstanceOf(Anthropic.APIError);
    expect([final.type, final.apiMessage]).toEqual(['guardrail_violation', 'Violated guardrail policy']);
    expect(errors).toHaveLength(1);
  });

  it('error() with an upstream failure gives its Anthropic type (overloaded_error)', async () => {
    server = await messagesServer({ stream: (e) => [e.chunk(chunkOf({ content: 'x' })), e.error(new UpstreamError('The upstream is overloaded.', { status: 503 }), 'gateway')] });
    const error = await caught(clientOf(server).messages.stream(params).finalMessage());
    expect([error.type, error.apiMessage]).toEqual(['overloaded_error', 'The upstream is overloaded.']);
  });

  it('reads a whole answer and a pre-commit error body with its status', async () => {
    const completion = completionOf({ role: 'assistant', content: 'hi there' }, 'stop', { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    server = await messagesServer({ json: { status: 200, body: JSON.parse(messagesProtocol.completion(completion, answer)) } });
    const message = await clientOf(server).messages.create(params);
    expect([message.content, message.stop_reason, message.usage.input_tokens, message.usage.output_tokens]).toEqual([[{ type: 'text', text: 'hi there' }], 'end_turn', 3, 2]);
    await server.close();

    const failure = new RateLimitError('Slow down.');
    server = await messagesServer({ json: { status: failure.status, body: messagesProtocol.errorBody(failure, 'gateway') } });
    const error = await caught(clientOf(server).messages.create(params));
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect([error.status, error.type, error.apiMessage]).toEqual([429, 'rate_limit_error', 'Slow down.']);
  });
});
