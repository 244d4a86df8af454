/**
 * Issue 16: the Responses protocol module (lib/protocols/responses/) on its own: the body → chat request
 * mapping with its 400s, the stream encoder's event sequences (parsed and raw chunks alike), the whole answer,
 * and the encoder's bytes read by the real openai-node client (`responses.create({stream:true})`,
 * `responses.stream().finalResponse()`) and the Vercel AI SDK (`streamText` with @ai-sdk/openai) from a loopback
 * server on 127.0.0.1.
 */
import { createOpenAI } from '@ai-sdk/openai';
import { streamText } from 'ai';
import OpenAI from 'openai';
import { BadRequestError, GuardrailViolationError, RateLimitError } from '../lib/errors.js';
import { responsesProtocol } from '../lib/protocols/responses/index.js';
import type { ResponsesAnswerInfo } from '../lib/protocols/responses/response.js';
import type { ProtocolEncoder } from '../lib/protocols/types.js';
import { scanChunk, type StreamChunk } from '../lib/raw-chunk.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionChunkDelta, FinishReason, Usage } from '../lib/types.js';
import { listen, type RunningServer } from './helpers/http.js';

const answer: ResponsesAnswerInfo = { id: 'req1', model: 'gpt-test', created: 1700000000 };

// ---------------------------------------------------------------------------------------------
// helpers

function badRequest(body: unknown): BadRequestError {
  try {
    responsesProtocol.toChatRequest(body);
  } catch (error) {
    expect(error).toBeInstanceOf(BadRequestError);
    return error as BadRequestError;
  }
  throw new Error('expected a BadRequestError');
}

const chunk = (delta: ChatCompletionChunkDelta, finish: FinishReason | null = null): ChatCompletionChunk => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'upstream-model',
  choices: [{ index: 0, delta, finish_reason: finish }],
});
const usageChunk = (usage: Usage): ChatCompletionChunk => ({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'upstream-model', choices: [], usage });
const toolDelta = (index: number, id: string | undefined, name: string | undefined, args: string): ChatCompletionChunkDelta => ({
  tool_calls: [{ index, ...(id ? { id, type: 'function' as const } : {}), function: { ...(name ? { name } : {}), arguments: args } }],
});

/** The chunk as the raw path carries it (scanned text), failing when the scan leaves it to the parsed path. */
function raw(c: ChatCompletionChunk): StreamChunk {
  const scanned = scanChunk(JSON.stringify(c), false);
  if (scanned === undefined) throw new Error('scan declined the chunk');
  return scanned;
}

interface Event {
  event: string;
  data: Record<string, any>;
}

function parseFrames(text: string): Event[] {
  expect(text.endsWith('\n\n')).toBe(true);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((frame) => {
      const [eventLine, dataLine, ...rest] = frame.split('\n');
      expect(rest).toEqual([]);
      expect(eventLine).toMatch(/^event: /);
      expect(dataLine).toMatch(/^data: /);
      const data = JSON.parse(dataLine!.slice(6)) as Record<string, any>;
      expect(data.type).toBe(eventLine!.slice(7));
      return { event: eventLine!.slice(7), data };
    });
}

/** Runs chunks through a new encoder, then `finish` (end by default), and returns the whole text. */
function encode(chunks: StreamChunk[], finish: (e: ProtocolEncoder) => string = (e) => e.end(), info: ResponsesAnswerInfo = answer): string {
  const encoder = responsesProtocol.encoder(info);
  let out = '';
  for (const c of chunks) out += encoder.chunk(c);
  return out + finish(encoder);
}

const typesOf = (events: Event[]): string[] => events.map((e) => e.event);

const usage: Usage = {
  prompt_tokens: 12,
  completion_tokens: 7,
  total_tokens: 19,
  prompt_tokens_details: { cached_tokens: 4 },
  completion_tokens_details: { reasoning_tokens: 2 },
};

const textChunks = (): ChatCompletionChunk[] => [
  chunk({ role: 'assistant', content: '' }),
  chunk({ content: 'alpha ' }),
  chunk({ content: 'beta "q" é\n' }),
  chunk({}, 'stop'),
  usageChunk(usage),
];

const toolChunks = (): ChatCompletionChunk[] => [
  chunk({ role: 'assistant', content: 'Let me look.' }),
  chunk(toolDelta(0, 'call_a', 'get_weather', '')),
  chunk(toolDelta(0, undefined, undefined, '{"city":')),
  chunk(toolDelta(0, undefined, undefined, '"Paris"}')),
  chunk(toolDelta(1, 'call_b', 'get_time', '{"tz":')),
  chunk(toolDelta(1, undefined, undefined, '"CET"}')),
  chunk({}, 'tool_calls'),
  usageChunk(usage),
];

// ---------------------------------------------------------------------------------------------
// request mapping

describe('responses: request mapping', () => {
  it('maps a string input, instructions and the sampling fields; keeps the model as written', () => {
    const request = responsesProtocol.toChatRequest({
      model: 'My-Model:v1',
      instructions: 'Be brief.',
      input: 'Hello',
      max_output_tokens: 256,
      temperature: 0.3,
      top_p: 0.9,
      user: 'u-1',
      metadata: { team: 'a' },
      store: true,
      parallel_tool_calls: false,
      text: { verbosity: 'low' },
      reasoning: { effort: 'low', summary: 'auto' },
      truncation: 'auto',
      include: ['reasoning.encrypted_content'],
    });
    expect(request).toEqual({
      model: 'My-Model:v1',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      max_completion_tokens: 256,
      temperature: 0.3,
      top_p: 0.9,
      user: 'u-1',
      parallel_tool_calls: false,
      verbosity: 'low',
      reasoning_effort: 'low',
    });
  });

  it('asks for the usage chunk on streams', () => {
    const request = responsesProtocol.toChatRequest({ model: 'm', input: 'hi', stream: true, stream_options: { include_obfuscation: false } });
    expect(request.stream).toBe(true);
    expect(request.stream_options).toEqual({ include_usage: true });
    expect(responsesProtocol.toChatRequest({ model: 'm', input: 'hi', stream: false })).toEqual({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  });

  it('maps message items and their parts by role', () => {
    const request = responsesProtocol.toChatRequest({
      model: 'm',
      input: [
        { role: 'developer', content: [{ type: 'input_text', text: 'dev rules' }] },
        { type: 'message', role: 'system', content: 'sys' },
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'look' },
            { type: 'input_image', image_url: 'https://example.com/a.png', detail: 'low' },
            { type: 'input_image', image_url: 'data:image/png;base64,AAAA' },
            { type: 'input_file', file_data: 'data:application/pdf;base64,BBBB', filename: 'a.pdf' },
          ],
        },
        { type: 'message', role: 'assistant', id: 'msg_old', status: 'completed', content: [{ type: 'output_text', text: 'seen', annotations: [] }, { type: 'refusal', refusal: 'not that' }] },
        { role: 'assistant', content: 'plain' },
      ],
    });
    expect(request.messages).toEqual([
      { role: 'developer', content: [{ type: 'text', text: 'dev rules' }] },
      { role: 'system', content: 'sys' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'look' },
          { type: 'image_url', image_url: { url: 'https://example.com/a.png', detail: 'low' } },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
          { type: 'file', file: { file_data: 'data:application/pdf;base64,BBBB', filename: 'a.pdf' } },
        ],
      },
      { role: 'assistant', content: [{ type: 'text', text: 'seen' }, { type: 'refusal', refusal: 'not that' }] },
      { role: 'assistant', content: 'plain' },
    ]);
  });

  it('joins consecutive function calls (and the assistant message before them) into one assistant message; maps outputs; drops reasoning', () => {
    const request = responsesProtocol.toChatRequest({
      model: 'm',
      input: [
        { role: 'user', content: 'weather and time?' },
        { type: 'reasoning', id: 'rs_1', summary: [] },
        { role: 'assistant', content: 'Checking.' },
        { type: 'function_call', id: 'fc_1', call_id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call', call_id: 'call_b', name: 'get_time', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_a', output: 'sunny' },
        { type: 'function_call_output', call_id: 'call_b', output: [{ type: 'input_text', text: '12:00' }] },
        { type: 'function_call', call_id: 'call_c', name: 'get_time', arguments: '{}' },
        { type: 'function_call_output', call_id: 'call_c', output: '13:00' },
      ],
    });
    expect(request.messages).toEqual([
      { role: 'user', content: 'weather and time?' },
      {
        role: 'assistant',
        content: 'Checking.',
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_a', content: 'sunny' },
      { role: 'tool', tool_call_id: 'call_b', content: [{ type: 'text', text: '12:00' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_c', type: 'function', function: { name: 'get_time', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'call_c', content: '13:00' },
    ]);
  });

  it('maps function tools, tool_choice and text.format', () => {
    const parameters = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
    const request = responsesProtocol.toChatRequest({
      model: 'm',
      input: 'hi',
      tools: [
        { type: 'function', name: 'get_weather', description: 'Weather', parameters, strict: true },
        { type: 'function', name: 'noop', parameters: null, strict: null },
      ],
      tool_choice: { type: 'function', name: 'get_weather' },
      text: { format: { type: 'json_schema', name: 'answer', schema: { type: 'object' }, strict: true, description: 'd' } },
    });
    expect(request.tools).toEqual([
      { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters, strict: true } },
      { type: 'function', function: { name: 'noop' } },
    ]);
    expect(request.tool_choice).toEqual({ type: 'function', function: { name: 'get_weather' } });
    expect(request.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object' }, strict: true, description: 'd' } });
    for (const choice of ['auto', 'none', 'required'] as const) {
      expect(responsesProtocol.toChatRequest({ model: 'm', input: 'hi', tool_choice: choice }).tool_choice).toBe(choice);
    }
    expect(responsesProtocol.toChatRequest({ model: 'm', input: 'hi', text: { format: { type: 'json_object' } } }).response_format).toEqual({ type: 'json_object' });
    expect(responsesProtocol.toChatRequest({ model: 'm', input: 'hi', text: { format: { type: 'text' } } }).response_format).toBeUndefined();
  });

  it.each([
    ['a body that is not an object', [], 'body'],
    ['no model', { input: 'hi' }, 'model'],
    ['no input', { model: 'm' }, 'input'],
    ['an empty input list', { model: 'm', input: [] }, 'input'],
    ['an unknown item type', { model: 'm', input: [{ type: 'image_generation_call', id: 'x' }] }, 'input[0].type'],
    ['an item_reference (stateless: nothing to resolve)', { model: 'm', input: [{ role: 'user', content: 'a' }, { type: 'item_reference', id: 'msg_1' }] }, 'input[1]'],
    ['a message without role', { model: 'm', input: [{ type: 'message', content: 'x' }] }, 'input[0].role'],
    ['an unknown role', { model: 'm', input: [{ role: 'tool', content: 'x' }] }, 'input[0].role'],
    ['an image without image_url', { model: 'm', input: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'user', content: [{ type: 'input_image' }] }] }, 'input[2].content[0].image_url'],
    ['an image by file_id', { model: 'm', input: [{ role: 'user', content: [{ type: 'input_text', text: 'x' }, { type: 'input_image', file_id: 'file_1' }] }] }, 'input[0].content[1].file_id'],
    ['an image with a bad detail', { model: 'm', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://x/y.png', detail: 'huge' }] }] }, 'input[0].content[0].detail'],
    ['a file by file_id', { model: 'm', input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file_1' }] }] }, 'input[0].content[0].file_id'],
    ['an image in a system message', { model: 'm', input: [{ role: 'system', content: [{ type: 'input_image', image_url: 'https://x/y.png' }] }] }, 'input[0].content[0].type'],
    ['a function call without call_id', { model: 'm', input: [{ type: 'function_call', name: 'f', arguments: '{}' }] }, 'input[0].call_id'],
    ['a function call output without output', { model: 'm', input: [{ type: 'function_call_output', call_id: 'c' }] }, 'input[0].output'],
    ['a hosted tool', { model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f' }, { type: 'web_search' }] }, 'tools[1].type'],
    ['a function tool without name', { model: 'm', input: 'hi', tools: [{ type: 'function' }] }, 'tools[0].name'],
    ['a hosted tool_choice', { model: 'm', input: 'hi', tool_choice: { type: 'file_search' } }, 'tool_choice.type'],
    ['previous_response_id', { model: 'm', input: 'hi', previous_response_id: 'resp_1' }, 'previous_response_id'],
    ['conversation', { model: 'm', input: 'hi', conversation: 'conv_1' }, 'conversation'],
    ['background: true', { model: 'm', input: 'hi', background: true }, 'background'],
    ['a stored prompt', { model: 'm', input: 'hi', prompt: { id: 'pmpt_1' } }, 'prompt'],
    ['max_output_tokens 0', { model: 'm', input: 'hi', max_output_tokens: 0 }, 'max_output_tokens'],
    ['temperature 3', { model: 'm', input: 'hi', temperature: 3 }, 'temperature'],
    ['a json_schema format without schema', { model: 'm', input: 'hi', text: { format: { type: 'json_schema', name: 'x' } } }, 'text.format.schema'],
    ['an unknown format', { model: 'm', input: 'hi', text: { format: { type: 'yaml' } } }, 'text.format.type'],
    ['only reasoning items', { model: 'm', input: [{ type: 'reasoning', summary: [] }] }, 'input'],
    ['a model of ..', { model: '..', input: 'hi' }, 'model'],
    ['a tool schema nested too deeply', { model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f', parameters: { a: JSON.parse(`${'['.repeat(6_000)}${']'.repeat(6_000)}`) } }] }, 'tools'],
    ['a format schema nested too deeply', { model: 'm', input: 'hi', text: { format: { type: 'json_schema', name: 'n', schema: { a: JSON.parse(`${'['.repeat(200)}${']'.repeat(200)}`) } } } }, 'text'],
  ])('refuses %s with a 400 naming the field', (_what, body, param) => {
    const error = badRequest(body);
    expect(error.param).toBe(param);
    if (param !== 'body') expect(error.message).toContain(`'${param}'`);
  });

  it('keeps room for the level the mapping adds to a tool schema (tools[i].function.parameters)', () => {
    const nested = (levels: number): Record<string, unknown> => {
      let value: Record<string, unknown> = {};
      for (let i = 1; i < levels; i++) value = { a: value };
      return value;
    };
    // body 1, tools 2, [0] 3, parameters 4: parameters of 96 levels reach level 99, the most accepted.
    const request = responsesProtocol.toChatRequest({ model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f', parameters: nested(96) }] });
    expect(request.tools).toHaveLength(1);
    const error = badRequest({ model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f', parameters: nested(97) }] });
    expect([error.param, error.message]).toEqual(['tools', "Invalid request: 'tools' is nested more than 99 levels deep."]);
  });

  it("maps an assistant message with no parts to '' (the chat path refuses an empty list there)", () => {
    const request = responsesProtocol.toChatRequest({ model: 'm', input: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [] }] });
    expect(request.messages).toEqual([{ role: 'user', content: 'hi' }, { role: 'assistant', content: '' }]);
  });

  it("echoes a function tool's own fields only: the client's other fields are neither sent nor echoed", () => {
    const request = responsesProtocol.toChatRequest({ model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f', parameters: { type: 'object' }, strict: false, x: { y: 1 } }] });
    expect(request.tools).toEqual([{ type: 'function', function: { name: 'f', parameters: { type: 'object' }, strict: false } }]);
    const events = parseFrames(encode([], (e) => e.end(), { ...answer, request }));
    expect(events[0]!.data.response.tools).toEqual([{ type: 'function', name: 'f', parameters: { type: 'object' }, strict: false }]);
  });

  it('accepts background: false and store: false, and forwards neither', () => {
    const request = responsesProtocol.toChatRequest({ model: 'm', input: 'hi', background: false, store: false, previous_response_id: null });
    expect(request).toEqual({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  });
});

// ---------------------------------------------------------------------------------------------
// stream encoder

describe('responses: stream encoder', () => {
  it('writes a text answer as the Responses event sequence with sequence numbers from 0', () => {
    const events = parseFrames(encode(textChunks()));
    expect(typesOf(events)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_e, i) => i));
    const [created, inProgress, added, partAdded, delta] = events;
    expect(created!.data.response).toMatchObject({ id: 'resp_req1', object: 'response', status: 'in_progress', output: [], model: 'gpt-test', created_at: 1700000000 });
    expect(inProgress!.data.response).toEqual(created!.data.response);
    expect(added!.data).toMatchObject({ output_index: 0, item: { id: 'msg_req1', type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
    expect(partAdded!.data).toMatchObject({ item_id: 'msg_req1', output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
    expect(delta!.data).toEqual({ type: 'response.output_text.delta', item_id: 'msg_req1', output_index: 0, content_index: 0, delta: 'alpha ', logprobs: [], sequence_number: 4 });
    expect(events[6]!.data).toMatchObject({ text: 'alpha beta "q" é\n', item_id: 'msg_req1', output_index: 0, content_index: 0 });
    const completed = events.at(-1)!.data.response;
    expect(completed).toMatchObject({
      id: 'resp_req1',
      status: 'completed',
      error: null,
      incomplete_details: null,
      output: [{ id: 'msg_req1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'alpha beta "q" é\n', annotations: [] }] }],
      usage: { input_tokens: 12, input_tokens_details: { cached_tokens: 4 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 2 }, total_tokens: 19 },
      instructions: null,
      tools: [],
      tool_choice: 'auto',
      parallel_tool_calls: true,
      temperature: null,
      top_p: null,
      text: { format: { type: 'text' } },
      metadata: {},
    });
  });

  it('writes the same bytes for raw (scanned) chunks as for parsed ones', () => {
    const chunks = textChunks();
    const mixed = chunks.map((c, i) => (i === 1 || i === 2 || i === 3 ? raw(c) : c));
    expect(encode(mixed)).toBe(encode(chunks));
    const tools = toolChunks();
    expect(encode(tools.map((c) => (c.choices.length > 0 ? raw(c) : c)))).toBe(encode(tools));
  });

  it("keeps the upstream's escapes in the text it forwards: every event decodes to the same text as the parsed path's", () => {
    // Spelled as a provider may spell it: \u escapes, an escaped slash, a surrogate pair split across two chunks.
    const spelled = ['caf\\u00e9 \\/ \\"q\\"\\n', '\\ud83d', '\\ude00 end'];
    const data = spelled.map(
      (text, i) => `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"${text}"},"finish_reason":${i === 2 ? '"stop"' : 'null'}}]}`,
    );
    const scanned = data.map((d) => scanChunk(d, false)!);
    expect(scanned.every((c) => c.text0Json !== undefined)).toBe(true); // the compact layout's fast path
    const parsed = data.map((d) => JSON.parse(d) as ChatCompletionChunk);
    const fromRaw = parseFrames(encode(scanned));
    const fromParsed = parseFrames(encode(parsed));
    expect(fromRaw).toEqual(fromParsed); // the same values, event by event
    const text = 'caf\u00e9 / "q"\n\ud83d\ude00 end';
    expect(fromRaw.filter((e) => e.event === 'response.output_text.delta').map((e) => e.data.delta as string).join('')).toBe(text);
    expect(fromRaw.find((e) => e.event === 'response.output_text.done')!.data.text).toBe(text);
    expect(fromRaw.at(-1)!.data.response.output[0].content[0].text).toBe(text);
    expect(fromRaw.at(-1)!.event).toBe('response.completed');
  });

  it('does not parse forwarded chunks in the compact layout: role, text and the finish chunk', () => {
    const scanned = textChunks()
      .filter((c) => c.choices.length > 0)
      .map((c) => scanChunk(JSON.stringify(c), false)!);
    expect(scanned.some((c) => c.finished)).toBe(true);
    const encoder = responsesProtocol.encoder(answer);
    const parse = jest.spyOn(JSON, 'parse');
    try {
      for (const c of scanned) encoder.chunk(c);
      expect(parse).not.toHaveBeenCalled();
    } finally {
      parse.mockRestore();
    }
  });

  it('writes text then two parallel tool calls as a message item and two function_call items', () => {
    const events = parseFrames(encode(toolChunks()));
    expect(typesOf(events)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      // the first call closes the message
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events[8]!.data).toMatchObject({
      output_index: 1,
      item: { id: 'fc_req1_1', type: 'function_call', status: 'in_progress', call_id: 'call_a', name: 'get_weather', arguments: '' },
    });
    expect(events[9]!.data).toMatchObject({ item_id: 'fc_req1_1', output_index: 1, delta: '{"city":' });
    expect(events[14]!.data).toMatchObject({ item_id: 'fc_req1_1', output_index: 1, name: 'get_weather', arguments: '{"city":"Paris"}' });
    expect(events[16]!.data).toMatchObject({ item_id: 'fc_req1_2', output_index: 2, name: 'get_time', arguments: '{"tz":"CET"}' });
    expect(events.at(-1)!.data.response.output).toEqual([
      { id: 'msg_req1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Let me look.', annotations: [], logprobs: [] }] },
      { id: 'fc_req1_1', type: 'function_call', status: 'completed', arguments: '{"city":"Paris"}', call_id: 'call_a', name: 'get_weather' },
      { id: 'fc_req1_2', type: 'function_call', status: 'completed', arguments: '{"tz":"CET"}', call_id: 'call_b', name: 'get_time' },
    ]);
  });

  it('text after tool calls opens a second message item; the end closes every open item in output_index order', () => {
    const events = parseFrames(encode([chunk(toolDelta(0, 'call_a', 'f', '{}')), chunk({ content: 'done' })], (e) => e.softStop(' [cut]')));
    const added = events.filter((e) => e.event === 'response.output_item.added').map((e) => [e.data.output_index, e.data.item.id]);
    expect(added).toEqual([
      [0, 'fc_req1_0'],
      [1, 'msg_req1'],
    ]);
    const done = events.filter((e) => e.event === 'response.output_item.done').map((e) => [e.data.output_index, e.data.item.status]);
    expect(done).toEqual([
      [0, 'incomplete'],
      [1, 'incomplete'],
    ]);
    expect(events.at(-1)!.data.response.output[1].content[0].text).toBe('done [cut]');
  });

  it.each([
    ['length', 'max_output_tokens'],
    ['content_filter', 'content_filter'],
  ] as const)('ends a %s finish as response.incomplete (%s)', (finish, reason) => {
    const events = parseFrames(encode([chunk({ content: 'cut' }), chunk({}, finish), usageChunk(usage)]));
    const last = events.at(-1)!;
    expect(last.event).toBe('response.incomplete');
    expect(last.data.response).toMatchObject({ status: 'incomplete', incomplete_details: { reason }, output: [{ status: 'incomplete' }] });
    expect(last.data.response.usage.output_tokens).toBe(7);
    expect(events.filter((e) => e.event.startsWith('response.completed'))).toEqual([]);
  });

  it('holds the ending until end(): the usage chunk after the finish chunk still counts; usage without details maps to zeros', () => {
    const encoder = responsesProtocol.encoder(answer);
    const beforeEnd = encoder.chunk(chunk({ content: 'x' })) + encoder.chunk(chunk({}, 'stop')) + encoder.chunk(usageChunk({ prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 }));
    expect(typesOf(parseFrames(beforeEnd))).not.toContain('response.output_text.done');
    const end = parseFrames(encoder.end());
    expect(end.at(-1)!.data.response.usage).toEqual({ input_tokens: 3, input_tokens_details: { cached_tokens: 0 }, output_tokens: 1, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 4 });
    expect(encoder.end()).toBe('');
    expect(encoder.chunk(chunk({ content: 'late' }))).toBe('');
  });

  it('writes a refusal as a refusal part', () => {
    const events = parseFrames(encode([chunk({ role: 'assistant', refusal: 'I cannot' }), chunk({ refusal: ' help.' }), chunk({}, 'stop')]));
    expect(typesOf(events).slice(2)).toEqual([
      'response.output_item.added',
      'response.content_part.added',
      'response.refusal.delta',
      'response.refusal.delta',
      'response.refusal.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events[3]!.data.part).toEqual({ type: 'refusal', refusal: '' });
    expect(events.at(-1)!.data.response.output[0].content).toEqual([{ type: 'refusal', refusal: 'I cannot help.' }]);
  });

  it('ends a failed stream with the hybrid error event, then response.failed with the answer so far, and nothing after', () => {
    const encoder = responsesProtocol.encoder(answer);
    let text = encoder.chunk(chunk({ content: 'alpha ' })) + encoder.chunk(raw(chunk({ content: 'beta ' })));
    text += encoder.error(new GuardrailViolationError('Violated guardrail policy'), 'gateway', { guardrail: 'g1' });
    expect(encoder.end()).toBe('');
    expect(encoder.softStop('x')).toBe('');
    const events = parseFrames(text);
    expect(typesOf(events).slice(-2)).toEqual(['error', 'response.failed']);
    const [error, failed] = events.slice(-2);
    expect(error!.data).toEqual({
      type: 'error',
      code: '400',
      message: 'Violated guardrail policy',
      param: null,
      error: { type: 'guardrail_violation', code: '400', message: 'Violated guardrail policy', param: null, guardrail: 'g1' },
      sequence_number: events.length - 2,
    });
    expect(failed!.data.sequence_number).toBe(events.length - 1);
    expect(failed!.data.response).toMatchObject({
      id: 'resp_req1',
      status: 'failed',
      error: { code: '400', message: 'Violated guardrail policy' },
      output: [{ type: 'message', status: 'incomplete', content: [{ type: 'output_text', text: 'alpha beta ' }] }],
      usage: null,
    });
    expect(typesOf(events)).not.toContain('response.output_item.done');
  });

  it('opens with response.created even when the error comes before any chunk', () => {
    const events = parseFrames(encode([], (e) => e.error(new RateLimitError('slow down', { param: 'model' }), 'openai')));
    expect(typesOf(events)).toEqual(['response.created', 'response.in_progress', 'error', 'response.failed']);
    expect(events[2]!.data).toMatchObject({ code: '429', param: 'model', error: { type: 'rate_limit_exceeded', code: '429', param: 'model' } });
  });

  describe('never writes anything but JSON, whatever failed', () => {
    /** A request whose settings the Response cannot repeat (a value JSON cannot write, set after the mapping). */
    function unwritableRequest(): ResponsesAnswerInfo['request'] {
      const parameters: Record<string, unknown> = { type: 'object' };
      const request = responsesProtocol.toChatRequest({ model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f', parameters }] });
      parameters['n'] = 1n;
      return request;
    }

    it('error() after a chunk whose start() failed: the opening events, the error and response.failed, all JSON, numbered from 0', () => {
      const encoder = responsesProtocol.encoder({ ...answer, request: unwritableRequest() });
      expect(() => encoder.chunk(chunk({ content: 'hi' }))).toThrow(TypeError);
      const events = parseFrames(encoder.error(new RateLimitError('slow down'), 'openai'));
      expect(typesOf(events)).toEqual(['response.created', 'response.in_progress', 'error', 'response.failed']);
      expect(events.map((e) => e.data.sequence_number)).toEqual([0, 1, 2, 3]);
      // Only the members that cannot fail: the ids and the model.
      expect(events[3]!.data.response).toEqual({
        id: 'resp_req1',
        object: 'response',
        created_at: 1700000000,
        model: 'gpt-test',
        status: 'failed',
        error: { code: '429', message: 'slow down' },
        incomplete_details: null,
        output: [],
        usage: null,
      });
      expect(encoder.end()).toBe('');
    });

    it('error() before any chunk when the settings cannot be written', () => {
      const events = parseFrames(encode([], (e) => e.error(new RateLimitError('slow down'), 'openai'), { ...answer, request: unwritableRequest() }));
      expect(typesOf(events)).toEqual(['response.created', 'response.in_progress', 'error', 'response.failed']);
      expect(events[3]!.data.response).toMatchObject({ id: 'resp_req1', model: 'gpt-test', status: 'failed' });
    });

    it('error() whose extra members cannot be written goes without them, keeping the numbering', () => {
      const events = parseFrames(encode([chunk({ content: 'a' })], (e) => e.error(new GuardrailViolationError('blocked'), 'gateway', { big: 1n })));
      const error = events.find((e) => e.event === 'error')!;
      expect(error.data).toMatchObject({ message: 'blocked', error: { message: 'blocked' } });
      expect(error.data.error).not.toHaveProperty('big');
      expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i));
      expect(events.at(-1)!.event).toBe('response.failed');
    });
  });

  it('soft stop: adds the text to the open message and ends incomplete with content_filter', () => {
    const events = parseFrames(encode([chunk({ content: 'partial ' })], (e) => e.softStop('[blocked]')));
    const last = events.at(-1)!;
    expect(last.event).toBe('response.incomplete');
    expect(last.data.response).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'content_filter' },
      output: [{ id: 'msg_req1', content: [{ type: 'output_text', text: 'partial [blocked]' }] }],
      usage: { input_tokens: 0, output_tokens: 0, total_tokens: 0 },
    });
    const fresh = parseFrames(encode([], (e) => e.softStop('[blocked]')));
    expect(typesOf(fresh).slice(0, 3)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added']);
    expect(fresh.at(-1)!.data.response.output[0].content[0].text).toBe('[blocked]');
  });

  it('repeats the request settings when the writer is given the request', () => {
    const request = responsesProtocol.toChatRequest({
      model: 'm',
      instructions: 'Be brief.',
      input: 'hi',
      tools: [{ type: 'function', name: 'f', parameters: { type: 'object' } }],
      tool_choice: 'required',
      temperature: 0.5,
      max_output_tokens: 99,
      metadata: { k: 'v' },
      text: { format: { type: 'json_object' } },
    });
    const events = parseFrames(encode([chunk({ content: 'x' })], (e) => e.end(), { ...answer, request }));
    expect(events.at(-1)!.data.response).toMatchObject({
      instructions: 'Be brief.',
      tools: [{ type: 'function', name: 'f', parameters: { type: 'object' } }],
      tool_choice: 'required',
      temperature: 0.5,
      max_output_tokens: 99,
      metadata: { k: 'v' },
      text: { format: { type: 'json_object' } },
    });
  });
});

// ---------------------------------------------------------------------------------------------
// whole answers and errors before commit

describe('responses: whole answers', () => {
  const completion = (message: ChatCompletion['choices'][number]['message'], finish: FinishReason): ChatCompletion => ({
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1,
    model: 'upstream-model',
    choices: [{ index: 0, message, finish_reason: finish }],
    usage,
  });

  it('writes a text answer with tool calls as one Response object', () => {
    const body = JSON.parse(
      responsesProtocol.completion(
        completion(
          {
            role: 'assistant',
            content: 'Checking.',
            tool_calls: [
              { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
              { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{}' } },
            ],
          },
          'tool_calls',
        ),
        answer,
      ),
    );
    expect(body).toMatchObject({
      id: 'resp_req1',
      object: 'response',
      created_at: 1700000000,
      status: 'completed',
      model: 'gpt-test',
      error: null,
      incomplete_details: null,
      output: [
        { id: 'msg_req1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Checking.', annotations: [] }] },
        { id: 'fc_req1_1', type: 'function_call', call_id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}', status: 'completed' },
        { id: 'fc_req1_2', type: 'function_call', call_id: 'call_b', name: 'get_time', arguments: '{}', status: 'completed' },
      ],
      usage: { input_tokens: 12, input_tokens_details: { cached_tokens: 4 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 2 }, total_tokens: 19 },
    });
  });

  it('maps length and content_filter to incomplete, and a refusal to a refusal part', () => {
    const cut = JSON.parse(responsesProtocol.completion(completion({ role: 'assistant', content: 'cu' }, 'length'), answer));
    expect(cut).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output: [{ status: 'incomplete' }] });
    const refused = JSON.parse(responsesProtocol.completion(completion({ role: 'assistant', content: null, refusal: 'No.' }, 'content_filter'), answer));
    expect(refused).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'content_filter' }, output: [{ content: [{ type: 'refusal', refusal: 'No.' }] }] });
  });

  it('writes a soft block as an incomplete Response with content_filter', () => {
    const body = JSON.parse(responsesProtocol.softCompletion('[blocked]', answer));
    expect(body).toMatchObject({
      id: 'resp_req1',
      status: 'incomplete',
      incomplete_details: { reason: 'content_filter' },
      output: [{ type: 'message', content: [{ type: 'output_text', text: '[blocked]' }] }],
    });
  });

  it('uses the chat JSON error body before commit', () => {
    const error = new GuardrailViolationError('Violated guardrail policy');
    expect(responsesProtocol.errorBody(error, 'openai')).toEqual({ error: { message: 'Violated guardrail policy', type: 'guardrail_violation', param: null, code: '400' } });
    expect(responsesProtocol.errorBody(error, 'gateway')).toEqual(error.toBody('gateway'));
  });
});

// ---------------------------------------------------------------------------------------------
// the real openai-node client

describe('responses: openai-node reads the encoder output', () => {
  let server: RunningServer;
  /** What the loopback server answers next: SSE text, or a JSON body. */
  let next: { sse: string } | { json: string };
  const requests: Record<string, unknown>[] = [];

  beforeAll(async () => {
    server = await listen((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        requests.push(JSON.parse(body) as Record<string, unknown>);
        if ('sse' in next) {
          res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
          res.end(next.sse);
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(next.json);
        }
      });
    });
  });
  afterAll(() => server.close());

  const client = (): OpenAI => new OpenAI({ apiKey: 'test', baseURL: `${server.url}/v1`, maxRetries: 0 });

  it('create({stream:true}) yields every event, ending with response.completed', async () => {
    next = { sse: encode(textChunks().map((c) => (c.choices.length > 0 ? raw(c) : c))) };
    const stream = await client().responses.create({ model: 'gpt-test', input: 'hi', stream: true });
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    expect(types).toEqual(typesOf(parseFrames(next.sse)));
    expect(text).toBe('alpha beta "q" é\n');
  });

  it('stream().finalResponse() gives the text, the tool calls and the usage', async () => {
    next = { sse: encode(toolChunks()) };
    const runner = client().responses.stream({ model: 'gpt-test', input: 'hi' });
    const deltas: string[] = [];
    runner.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const final = await runner.finalResponse();
    expect(deltas).toEqual(['Let me look.']);
    expect(final.status).toBe('completed');
    expect(final.output_text).toBe('Let me look.');
    const calls = final.output.filter((item) => item.type === 'function_call');
    expect(calls.map((c) => [c.call_id, c.name, c.arguments])).toEqual([
      ['call_a', 'get_weather', '{"city":"Paris"}'],
      ['call_b', 'get_time', '{"tz":"CET"}'],
    ]);
    expect(final.usage).toMatchObject({ input_tokens: 12, output_tokens: 7, total_tokens: 19, input_tokens_details: { cached_tokens: 4 } });
  });

  it('stream().finalResponse() resolves an incomplete (length) answer with its reason, and a soft stop with content_filter', async () => {
    next = { sse: encode([chunk({ content: 'cut' }), chunk({}, 'length'), usageChunk(usage)]) };
    const cut = await client().responses.stream({ model: 'gpt-test', input: 'hi' }).finalResponse();
    expect(cut).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output_text: 'cut' });
    next = { sse: encode([chunk({ content: 'partial ' })], (e) => e.softStop('[blocked]')) };
    const soft = await client().responses.stream({ model: 'gpt-test', input: 'hi' }).finalResponse();
    expect(soft).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'content_filter' }, output_text: 'partial [blocked]' });
    next = { sse: encode([chunk({ refusal: 'No.' }), chunk({}, 'stop')]) };
    const refused = await client().responses.stream({ model: 'gpt-test', input: 'hi' }).finalResponse();
    expect(refused.output[0]).toMatchObject({ type: 'message', content: [{ type: 'refusal', refusal: 'No.' }] });
  });

  it('an error after content makes create() iteration and stream().finalResponse() throw an APIError with the gateway message and type', async () => {
    next = { sse: encode([chunk({ content: 'alpha ' }), chunk({ content: 'beta ' })], (e) => e.error(new GuardrailViolationError('Violated guardrail policy'), 'gateway')) };
    const stream = await client().responses.create({ model: 'gpt-test', input: 'hi', stream: true });
    const seen: string[] = [];
    let iterationError: unknown;
    try {
      for await (const event of stream) seen.push(event.type);
    } catch (error) {
      iterationError = error;
    }
    expect(iterationError).toBeInstanceOf(OpenAI.APIError);
    expect(iterationError).toMatchObject({ message: 'Violated guardrail policy', type: 'guardrail_violation', code: '400' });
    expect(seen).not.toContain('response.failed');
    expect(seen).toContain('response.output_text.delta');

    const finalError = await client().responses.stream({ model: 'gpt-test', input: 'hi' }).finalResponse().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(finalError).toBeInstanceOf(OpenAI.APIError);
    expect(finalError).toMatchObject({ message: 'Violated guardrail policy', type: 'guardrail_violation', code: '400' });
  });

  it('create() without stream reads the whole Response (output_text, usage)', async () => {
    next = {
      json: responsesProtocol.completion(
        { id: 'c', object: 'chat.completion', created: 1, model: 'u', choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }], usage },
        answer,
      ),
    };
    const response = await client().responses.create({ model: 'gpt-test', input: 'hi' });
    expect(response.output_text).toBe('hello');
    expect(response.usage?.total_tokens).toBe(19);
  });
});

// ---------------------------------------------------------------------------------------------
// the Vercel AI SDK (@ai-sdk/openai calls POST /v1/responses)

describe('responses: the AI SDK reads the encoder output', () => {
  let server: RunningServer;
  let next: string;

  beforeAll(async () => {
    server = await listen((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
        res.end(next);
      });
    });
  });
  afterAll(() => server.close());

  async function run(sse: string): Promise<{ text: string; finishReason: string; usage: unknown; parts: { type: string; [key: string]: unknown }[] }> {
    next = sse;
    const provider = createOpenAI({ apiKey: 'test', baseURL: `${server.url}/v1` });
    const result = streamText({ model: provider('gpt-test'), prompt: 'hi', maxRetries: 0, onError: () => undefined });
    const parts: { type: string; [key: string]: unknown }[] = [];
    for await (const part of result.fullStream) parts.push(part as { type: string });
    return { text: await result.text, finishReason: await result.finishReason, usage: await result.usage, parts };
  }

  it('text: finishReason stop, the text and the usage', async () => {
    const { text, finishReason, usage, parts } = await run(encode(textChunks()));
    expect(parts.filter((p) => p.type === 'error')).toEqual([]);
    expect(text).toBe('alpha beta "q" é\n');
    expect(finishReason).toBe('stop');
    expect(usage).toMatchObject({ inputTokens: 12, outputTokens: 7, totalTokens: 19 });
  });

  it('tool calls: two tool-call parts with their arguments', async () => {
    const { parts } = await run(encode(toolChunks()));
    const calls = parts.filter((p) => p.type === 'tool-call').map((p) => [p.toolCallId, p.toolName, p.input]);
    expect(calls).toEqual([
      ['call_a', 'get_weather', { city: 'Paris' }],
      ['call_b', 'get_time', { tz: 'CET' }],
    ]);
  });

  it.each([
    ['length', 'length'],
    ['content_filter', 'content-filter'],
  ] as const)('a %s finish gives finishReason %s', async (finish, reason) => {
    const { finishReason, parts } = await run(encode([chunk({ content: 'cut' }), chunk({}, finish), usageChunk(usage)]));
    expect(parts.filter((p) => p.type === 'error')).toEqual([]);
    expect(finishReason).toBe(reason);
  });

  it('an error after content: one error part with the gateway message and type, status 400, not retryable', async () => {
    const { text, finishReason, parts } = await run(
      encode([chunk({ content: 'alpha ' }), chunk({ content: 'beta ' })], (e) => e.error(new GuardrailViolationError('Violated guardrail policy'), 'gateway')),
    );
    const errors = parts.filter((p) => p.type === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.error).toMatchObject({ message: 'Violated guardrail policy', type: 'guardrail_violation', code: '400', statusCode: 400, isRetryable: false });
    expect(text).toBe('alpha beta ');
    expect(finishReason).toBe('error');
  });
});
