/**
 * Issue 16, "Real clients, in tests": the real SDKs pointed at a real gateway (`createGateway`, served on
 * 127.0.0.1) in front of the mock OpenAI server and the Bedrock ApplyGuardrail emulator:
 * - openai-node 6.49 on `POST /v1/responses`: `responses.create({ stream: true })` iteration,
 *   `responses.stream()` + `finalResponse()`, and `responses.create()` without streaming;
 * - @anthropic-ai/sdk 1.16 on `POST /v1/messages`: `messages.create({ stream: true })` iteration,
 *   `messages.stream()` + `finalMessage()`, and `messages.create()` without streaming;
 * - the Vercel AI SDK 6 with `@ai-sdk/openai` 3 (its default model calls `/v1/responses`) and
 *   `@ai-sdk/anthropic` 3: `generateText` and `streamText`.
 *
 * For each: (1) a normal answer round-trips (text, finish reason, the mock's usage numbers); (2) a tool call
 * round-trips, and the tool result of the next turn reaches the upstream as a chat `tool` message; (3) an
 * upstream failure mid-stream, (4) a guardrail block after the first byte (post_call window guardrail, the
 * real Bedrock client against the emulator) and (5) a pre-commit 400 (the upstream's, and one the gateway
 * itself refuses) each surface as the client's error with the gateway's message and type; (6) nothing looks
 * like a success: no final response/message resolves, no `response.completed`/`message_stop` is seen, and
 * the AI SDK reports finishReason `error`.
 *
 * Also: the AI SDK's usual chat loop (a second turn with the first answer's `response.messages`). With
 * @ai-sdk/openai's default `store: true` the provider sends the earlier answer as an `item_reference`, which
 * the stateless gateway refuses with a 400 naming the item and the workaround (`store: false`, tested too; see
 * docs/reference/responses-and-messages-clients.md).
 *
 * Clients run with `maxRetries: 0`, except where the test is that `x-should-retry: false` is honoured.
 * The AI SDK packages load under ts-jest as they are (each ships a CommonJS build): no jest config change.
 * The upstream is always the mock OpenAI server, so its call log shows the internal (chat) request.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Server } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, stepCountIs, streamText, tool, type LanguageModel, type ModelMessage } from 'ai';
/** `providerOptions` of a call (the `ai` package does not export the type under a name of its own). */
type CallProviderOptions = Record<string, Record<string, string | number | boolean | null>>;
import OpenAI from 'openai';
import { createGateway, silentLogger, type Gateway } from '../lib/index.js';
import { DEFAULT_GUARDRAIL, startBedrockEmulator, startMockOpenAI, type BedrockEmulator, type MockCall, type MockServer } from '../lib/testing/index.js';
import { estimateTokens, normalText } from '../lib/testing/mock-scenarios.js';
import { createApp, EXPRESS_MAJOR } from './helpers/express.js';

/** The installed version of a client package (some do not export their package.json). */
const versionOf = (name: string): string => (JSON.parse(readFileSync(join(__dirname, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

// ---- what the mock and the gateway say ----

const PROMPT = 'Hi there';
const ANSWER = normalText('upstream');
/** The mock's usage for PROMPT → ANSWER (4 characters a token). */
const USAGE = { input: estimateTokens(PROMPT), output: estimateTokens(ANSWER) };
const TOOL_ARGS = { location: 'Paris', unit: 'celsius' };
const TOOL_RESULT = '{"temperature":21}';
/** The mock OpenAI server's 500 body message (its `midstream-error` default), relayed by the gateway as a 502 `upstream_error`. */
const UPSTREAM_MESSAGE = 'The server had an error while processing your request. Sorry about that!';
const BAD_REQUEST_MESSAGE = "Invalid value for 'temperature': expected a decimal between 0 and 2, but got 3 instead.";
const GUARDRAIL_MESSAGE = 'Violated guardrail policy';

/** 32 tokens of 8 characters with BLOCKME as token 18: a 64-character window guardrail passes windows 1–2 and blocks window 3. */
const GUARDED_TOKENS = Array.from({ length: 32 }, (_, i) => (i === 18 ? 'BLOCKME ' : `word${String(i).padStart(3, '0')} `));
const RELEASED = GUARDED_TOKENS.slice(0, 16).join('');

const WEATHER_PARAMETERS = {
  type: 'object',
  properties: { location: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
  required: ['location', 'unit'],
  additionalProperties: false,
} as const;

// ---- the gateway ----

let upstream: MockServer;
let emulator: BedrockEmulator;
let gateway: Gateway;
let server: Server;
let url: string;
/** POSTs that reached the app, by path (what a client's retries add to). */
const requests = new Map<string, number>();

/** Is there a chat `tool` message in the upstream request (the second turn of a tool round trip)? */
const hasToolMessage = (body: unknown): boolean => Array.isArray((body as { messages?: unknown[] })?.messages) && (body as { messages: { role: string }[] }).messages.some((m) => m.role === 'tool');

beforeAll(async () => {
  // The AI SDK logs a warning per call for model names it does not know ('normal'); nothing to see here.
  (globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;
  [upstream, emulator] = await Promise.all([
    startMockOpenAI({
      name: 'upstream',
      scenarios: {
        // A tool call, then (once the request carries the tool's result) the normal answer.
        'gw-tools': ({ body }) => (hasToolMessage(body) ? 'normal' : 'tools'),
        'gw-guarded': { scenario: 'normal', text: GUARDED_TOKENS.join(''), chunks: GUARDED_TOKENS.length },
      },
    }),
    startBedrockEmulator(),
  ]);
  const deployment = (model: string) => ({ provider: 'openai' as const, baseUrl: `${upstream.url}/v1`, model, apiKey: 'k' });
  gateway = createGateway({
    models: [
      { name: 'normal', deployments: [deployment('normal')] },
      { name: 'tools', deployments: [deployment('gw-tools')] },
      { name: 'midstream', deployments: [deployment('midstream-error')] },
      { name: 'bad', deployments: [deployment('bad-request')] },
      { name: 'failing', deployments: [deployment('error-500')] },
      { name: 'guarded', deployments: [deployment('gw-guarded')] },
    ],
    router: { retries: { maxRetries: 0 }, cooldown: { failureThreshold: 1000 } },
    guardrails: [
      {
        guardrailIdentifier: DEFAULT_GUARDRAIL.id,
        guardrailVersion: DEFAULT_GUARDRAIL.version,
        region: 'us-east-1',
        endpoint: emulator.url,
        credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
        maxAttempts: 1,
        hooks: ['post_call'],
        streaming: { windowSize: 64, overlap: 0 },
        groups: ['guarded'],
      },
    ],
    logger: silentLogger,
  });
  const app = createApp();
  app.use((req, _res, next) => {
    if (req.method === 'POST') requests.set(req.path, (requests.get(req.path) ?? 0) + 1);
    next();
  });
  app.use(gateway);
  server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await gateway.close();
  await Promise.all([upstream.close(), emulator.close()]);
});

beforeEach(() => {
  upstream.reset();
  emulator.reset();
  requests.clear();
});

// ---- helpers ----

/** The promise's rejection, or a failure if it resolved (which, in an error case, would look like a success). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got a success: ${JSON.stringify(value)?.slice(0, 300)}`);
    },
    (error: unknown) => error,
  );
}

/** Iterates an SDK stream to its end; returns what it yielded and what it threw. */
async function drain<T>(stream: AsyncIterable<T>): Promise<{ events: T[]; error: unknown }> {
  const events: T[] = [];
  try {
    for await (const event of stream) events.push(event);
  } catch (error) {
    return { events, error };
  }
  return { events, error: undefined };
}

/** The upstream (chat) request of the last call the mock saw. */
const lastUpstreamBody = (): { messages: Record<string, unknown>[]; tools?: unknown[] } => upstream.calls.at(-1)!.body as { messages: Record<string, unknown>[] };

/** Checks the second turn of a tool round trip reached the upstream as chat messages: the call, then the `tool` message. */
function expectToolTurnUpstream(callId: string): void {
  const calls: MockCall[] = upstream.calls.filter((c) => c.model === 'gw-tools');
  expect(calls).toHaveLength(2);
  expect(calls[0]!.scenario).toBe('tools');
  expect(calls[1]!.scenario).toBe('normal');
  const messages = (calls[1]!.body as { messages: Record<string, unknown>[] }).messages;
  const assistant = messages.find((m) => m['role'] === 'assistant');
  expect(assistant).toMatchObject({ role: 'assistant', tool_calls: [{ id: callId, type: 'function', function: { name: 'get_weather' } }] });
  const calledWith = (assistant!['tool_calls'] as { function: { arguments: string } }[])[0]!.function.arguments;
  expect(JSON.parse(calledWith)).toEqual(TOOL_ARGS);
  const toolMessages = messages.filter((m) => m['role'] === 'tool');
  expect(toolMessages).toHaveLength(1);
  expect(toolMessages[0]).toMatchObject({ role: 'tool', tool_call_id: callId });
  const content = toolMessages[0]!['content'];
  const text = typeof content === 'string' ? content : (content as { text: string }[]).map((p) => p.text).join('');
  expect(JSON.parse(text)).toEqual(JSON.parse(TOOL_RESULT));
  // The tool message answers the assistant's call directly, as chat requires.
  expect(messages.indexOf(toolMessages[0]!)).toBe(messages.indexOf(assistant!) + 1);
}

// =============================================================================================
// openai-node on /v1/responses

/**
 * openai-node 6 (the devDependency) everywhere, and openai 7 (devDependency `openai-v7`, which needs Node >= 22)
 * where it runs: openai 7's ResponseStream checks more (output identity, unfinished items at the end).
 */
const OPENAI_NODE: { version: string; Sdk: typeof OpenAI }[] = [
  { version: versionOf('openai'), Sdk: OpenAI },
  ...(Number(process.versions.node.split('.')[0]) >= 22 ? [{ version: versionOf('openai-v7'), Sdk: (require('openai-v7') as { OpenAI: typeof OpenAI }).OpenAI }] : []),
];

describe.each(OPENAI_NODE)(`openai-node $version responses API through the gateway (Express ${EXPRESS_MAJOR})`, ({ Sdk }) => {
  const client = (maxRetries = 0) => new Sdk({ baseURL: `${url}/v1`, apiKey: 'test', maxRetries });
  const weatherTool = { type: 'function' as const, name: 'get_weather', description: 'The weather in a city', parameters: { ...WEATHER_PARAMETERS }, strict: false };
  type Event = OpenAI.Responses.ResponseStreamEvent;

  const textOf = (events: Event[]) => events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join('');
  const typesOf = (events: Event[]) => events.map((e) => e.type);

  describe('(1) a normal answer', () => {
    it('create({ stream: true }): the deltas, then response.completed with the status and the usage', async () => {
      const { events, error } = await drain(await client().responses.create({ model: 'normal', input: PROMPT, stream: true }));
      expect(error).toBeUndefined();
      expect(textOf(events)).toBe(ANSWER);
      expect(typesOf(events).slice(0, 2)).toEqual(['response.created', 'response.in_progress']);
      const last = events.at(-1)!;
      expect(last.type).toBe('response.completed');
      const response = (last as OpenAI.Responses.ResponseCompletedEvent).response;
      expect(response.status).toBe('completed');
      expect(response.output_text ?? response.output.flatMap((o) => (o.type === 'message' ? o.content : [])).map((c) => (c.type === 'output_text' ? c.text : '')).join('')).toBe(ANSWER);
      expect(response.usage).toMatchObject({ input_tokens: USAGE.input, output_tokens: USAGE.output, total_tokens: USAGE.input + USAGE.output });
      expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    });

    it('stream() + finalResponse(): output_text, status completed, the usage; the text events add up', async () => {
      const runner = client().responses.stream({ model: 'normal', input: PROMPT });
      const deltas: string[] = [];
      runner.on('response.output_text.delta', (e) => deltas.push(e.delta));
      const final = await runner.finalResponse();
      expect(final.status).toBe('completed');
      expect(final.output_text).toBe(ANSWER);
      expect(deltas.join('')).toBe(ANSWER);
      expect(final.usage).toMatchObject({ input_tokens: USAGE.input, output_tokens: USAGE.output, total_tokens: USAGE.input + USAGE.output });
    });

    it('create() without streaming: the whole Response', async () => {
      const response = await client().responses.create({ model: 'normal', input: PROMPT });
      expect(response.status).toBe('completed');
      expect(response.output_text).toBe(ANSWER);
      expect(response.usage).toMatchObject({ input_tokens: USAGE.input, output_tokens: USAGE.output, total_tokens: USAGE.input + USAGE.output });
    });
  });

  describe('(2) a tool call round-trips', () => {
    const functionCallOf = (output: OpenAI.Responses.ResponseOutputItem[]) => {
      const calls = output.filter((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === 'function_call');
      expect(calls).toHaveLength(1);
      return calls[0]!;
    };

    /** The second turn: the first answer's output items, then the tool's result; must answer with text. */
    async function secondTurn(output: OpenAI.Responses.ResponseOutputItem[], callId: string, stream: boolean): Promise<void> {
      const input: OpenAI.Responses.ResponseInput = [{ role: 'user', content: 'Weather in Paris?' }, ...(output as OpenAI.Responses.ResponseInputItem[]), { type: 'function_call_output', call_id: callId, output: TOOL_RESULT }];
      if (stream) {
        const final = await client().responses.stream({ model: 'tools', input, tools: [weatherTool] }).finalResponse();
        expect(final.output_text).toBe(ANSWER);
      } else {
        const response = await client().responses.create({ model: 'tools', input, tools: [weatherTool] });
        expect(response.output_text).toBe(ANSWER);
      }
      expectToolTurnUpstream(callId);
    }

    it('create({ stream: true }): function_call_arguments events and the function_call item; its output goes upstream as a tool message', async () => {
      const { events, error } = await drain(await client().responses.create({ model: 'tools', input: 'Weather in Paris?', tools: [weatherTool], stream: true }));
      expect(error).toBeUndefined();
      const done = events.find((e): e is OpenAI.Responses.ResponseFunctionCallArgumentsDoneEvent => e.type === 'response.function_call_arguments.done');
      expect(JSON.parse(done!.arguments)).toEqual(TOOL_ARGS);
      const argumentDeltas = events.flatMap((e) => (e.type === 'response.function_call_arguments.delta' ? [e.delta] : [])).join('');
      expect(argumentDeltas).toBe(done!.arguments);
      const completed = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
      expect(completed.type).toBe('response.completed');
      const call = functionCallOf(completed.response.output);
      expect(call.name).toBe('get_weather');
      expect(JSON.parse(call.arguments)).toEqual(TOOL_ARGS);
      await secondTurn(completed.response.output, call.call_id, true);
    });

    it('stream() + finalResponse(): the parsed function_call; the second turn through stream() too', async () => {
      const final = await client().responses.stream({ model: 'tools', input: 'Weather in Paris?', tools: [weatherTool] }).finalResponse();
      expect(final.status).toBe('completed');
      const call = functionCallOf(final.output);
      expect(call.name).toBe('get_weather');
      expect(JSON.parse(call.arguments)).toEqual(TOOL_ARGS);
      await secondTurn(final.output, call.call_id, true);
    });

    it('create() without streaming: the function_call item; the second turn without streaming', async () => {
      const response = await client().responses.create({ model: 'tools', input: 'Weather in Paris?', tools: [weatherTool] });
      const call = functionCallOf(response.output);
      expect(call.name).toBe('get_weather');
      expect(JSON.parse(call.arguments)).toEqual(TOOL_ARGS);
      await secondTurn(response.output, call.call_id, false);
    });
  });

  describe.each([
    ['(3) an upstream failure mid-stream', 'midstream', { message: UPSTREAM_MESSAGE, type: 'upstream_error', code: '502' }, ANSWER.slice(0, 'Hello! This is a '.length)],
    ['(4) a guardrail block after the first byte', 'guarded', { message: GUARDRAIL_MESSAGE, type: 'guardrail_violation', code: '400' }, RELEASED],
  ] as const)('%s', (_name, model, expected, released) => {
    it('create({ stream: true }): the released text, then an APIError thrown from the iteration; no response.completed', async () => {
      const { events, error } = await drain(await client().responses.create({ model, input: PROMPT, stream: true }));
      expect(textOf(events)).toBe(released);
      expect(error).toBeInstanceOf(Sdk.APIError);
      expect(error).toMatchObject(expected);
      expect(typesOf(events)).not.toContain('response.completed');
      expect(typesOf(events)).not.toContain('response.failed'); // the error event comes first and ends the iteration
    });

    it("stream(): iteration throws it and finalResponse() rejects with it; the 'error' listener fires once", async () => {
      const runner = client().responses.stream({ model, input: PROMPT });
      const heard: unknown[] = [];
      runner.on('error', (e) => heard.push(e));
      const deltas: string[] = [];
      runner.on('response.output_text.delta', (e) => deltas.push(e.delta));
      const final = await rejectionOf(runner.finalResponse());
      expect(final).toBeInstanceOf(Sdk.APIError);
      expect(final).toMatchObject(expected);
      expect(deltas.join('')).toBe(released);
      expect(heard).toHaveLength(1);

      const iterated = await drain(client().responses.stream({ model, input: PROMPT }));
      expect(iterated.error).toBeInstanceOf(Sdk.APIError);
      expect(iterated.error).toMatchObject(expected);
    });

    it('create() without streaming: the same error as a JSON answer with its HTTP status', async () => {
      const error = await rejectionOf(client().responses.create({ model, input: PROMPT }));
      expect(error).toBeInstanceOf(Sdk.APIError);
      expect(error).toMatchObject({ status: Number(expected.code), type: expected.type, message: `${expected.code} ${expected.message}` });
    });
  });

  describe('(5) a pre-commit 400', () => {
    it.each([false, true])("the upstream's 400 (stream: %p): BadRequestError with the message and type", async (stream) => {
      // With stream: true the SDK rejects create() itself (a non-2xx status), before any iteration.
      const error = await rejectionOf(stream ? client().responses.create({ model: 'bad', input: PROMPT, stream: true }) : client().responses.create({ model: 'bad', input: PROMPT }));
      expect(error).toBeInstanceOf(Sdk.BadRequestError);
      expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', message: `400 ${BAD_REQUEST_MESSAGE}` });
    });

    it("the upstream's 400 through stream(): finalResponse() rejects with BadRequestError", async () => {
      const error = await rejectionOf(client().responses.stream({ model: 'bad', input: PROMPT }).finalResponse());
      expect(error).toBeInstanceOf(Sdk.BadRequestError);
      expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', message: `400 ${BAD_REQUEST_MESSAGE}` });
    });

    it.each([false, true])('a body the gateway refuses (previous_response_id, stream: %p): BadRequestError naming the field; nothing goes upstream', async (stream) => {
      const body = { model: 'normal', input: PROMPT, previous_response_id: 'resp_123' };
      const error = await rejectionOf(stream ? client().responses.create({ ...body, stream: true }) : client().responses.create(body));
      expect(error).toBeInstanceOf(Sdk.BadRequestError);
      // The default `errors.bodyForm` ('gateway') has no `param`; the message names the field.
      expect(error).toMatchObject({ status: 400, type: 'invalid_request_error' });
      expect((error as Error).message).toMatch(/^400 Invalid request: 'previous_response_id' is not supported/);
      expect(upstream.callCount()).toBe(0);
    });
  });

  it('x-should-retry: false on a final 502 is honoured: the default client (maxRetries 2) sends one request', async () => {
    const error = await rejectionOf(client(2).responses.create({ model: 'failing', input: PROMPT }));
    expect(error).toBeInstanceOf(Sdk.InternalServerError);
    expect(error).toMatchObject({ status: 502, type: 'upstream_error' });
    expect(requests.get('/v1/responses')).toBe(1);
  });
});

// =============================================================================================
// @anthropic-ai/sdk on /v1/messages

describe(`@anthropic-ai/sdk ${versionOf('@anthropic-ai/sdk')} messages API through the gateway (Express ${EXPRESS_MAJOR})`, () => {
  const client = (maxRetries = 0) => new Anthropic({ baseURL: url, apiKey: 'test', maxRetries });
  const weatherTool: Anthropic.Tool = { name: 'get_weather', description: 'The weather in a city', input_schema: { ...WEATHER_PARAMETERS, properties: { ...WEATHER_PARAMETERS.properties }, required: [...WEATHER_PARAMETERS.required] } };
  const ask = (model: string, extra: Partial<Anthropic.MessageCreateParamsNonStreaming> = {}) => ({ model, max_tokens: 1024, messages: [{ role: 'user' as const, content: PROMPT }], ...extra });
  type Event = Anthropic.RawMessageStreamEvent;

  const textOf = (events: Event[]) => events.flatMap((e) => (e.type === 'content_block_delta' && e.delta.type === 'text_delta' ? [e.delta.text] : [])).join('');
  const textOfMessage = (message: Anthropic.Message) => message.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('');

  describe('(1) a normal answer', () => {
    it('create({ stream: true }): message_start, the text deltas, message_delta (end_turn, usage), message_stop', async () => {
      const { events, error } = await drain(await client().messages.create({ ...ask('normal'), stream: true }));
      expect(error).toBeUndefined();
      expect(textOf(events)).toBe(ANSWER);
      expect(events[0]!.type).toBe('message_start');
      expect(events.at(-1)!.type).toBe('message_stop');
      const delta = events.find((e): e is Anthropic.RawMessageDeltaEvent => e.type === 'message_delta')!;
      expect(delta.delta.stop_reason).toBe('end_turn');
      expect(delta.usage).toMatchObject({ output_tokens: USAGE.output, input_tokens: USAGE.input });
    });

    it('stream() + finalMessage(): the text, stop_reason end_turn, the usage', async () => {
      const runner = client().messages.stream(ask('normal'));
      const texts: string[] = [];
      runner.on('text', (t) => texts.push(t));
      const final = await runner.finalMessage();
      expect(textOfMessage(final)).toBe(ANSWER);
      expect(texts.join('')).toBe(ANSWER);
      expect(final.stop_reason).toBe('end_turn');
      expect(final.usage).toMatchObject({ input_tokens: USAGE.input, output_tokens: USAGE.output });
    });

    it('create() without streaming: the whole Message', async () => {
      const message = await client().messages.create(ask('normal'));
      expect(textOfMessage(message)).toBe(ANSWER);
      expect(message.stop_reason).toBe('end_turn');
      expect(message.usage).toMatchObject({ input_tokens: USAGE.input, output_tokens: USAGE.output });
    });
  });

  describe('(2) a tool call round-trips', () => {
    const toolUseOf = (message: Anthropic.Message) => {
      const uses = message.content.filter((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
      expect(uses).toHaveLength(1);
      expect(message.stop_reason).toBe('tool_use');
      return uses[0]!;
    };

    /** The second turn: the assistant's content as it came, then the tool_result; must answer with text. */
    async function secondTurn(content: Anthropic.ContentBlock[], toolUseId: string, stream: boolean): Promise<void> {
      const messages: Anthropic.MessageParam[] = [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: content as Anthropic.ContentBlockParam[] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: toolUseId, content: TOOL_RESULT }] },
      ];
      const body = { model: 'tools', max_tokens: 1024, messages, tools: [weatherTool] };
      const answer = stream ? await client().messages.stream(body).finalMessage() : await client().messages.create(body);
      expect(textOfMessage(answer)).toBe(ANSWER);
      // The tool_use id the client saw is the upstream's call id, and comes back as the tool message's tool_call_id.
      expectToolTurnUpstream(toolUseId);
    }

    it('create({ stream: true }): a tool_use block whose input_json_delta pieces parse to the arguments; stop_reason tool_use', async () => {
      const { events, error } = await drain(await client().messages.create({ ...ask('tools', { tools: [weatherTool] }), stream: true }));
      expect(error).toBeUndefined();
      const start = events.find((e): e is Anthropic.RawContentBlockStartEvent => e.type === 'content_block_start' && e.content_block.type === 'tool_use')!;
      expect(start.content_block).toMatchObject({ type: 'tool_use', name: 'get_weather' });
      const json = events.flatMap((e) => (e.type === 'content_block_delta' && e.delta.type === 'input_json_delta' && e.index === start.index ? [e.delta.partial_json] : [])).join('');
      expect(JSON.parse(json)).toEqual(TOOL_ARGS);
      const delta = events.find((e): e is Anthropic.RawMessageDeltaEvent => e.type === 'message_delta')!;
      expect(delta.delta.stop_reason).toBe('tool_use');
      expect(events.at(-1)!.type).toBe('message_stop');
    });

    it('stream() + finalMessage(): the parsed tool_use (name, input); its tool_result goes upstream as a tool message', async () => {
      const final = await client().messages.stream(ask('tools', { tools: [weatherTool] })).finalMessage();
      const use = toolUseOf(final);
      expect(use.name).toBe('get_weather');
      expect(use.input).toEqual(TOOL_ARGS);
      await secondTurn(final.content, use.id, true);
    });

    it('create() without streaming: the tool_use block; the second turn without streaming', async () => {
      const message = await client().messages.create(ask('tools', { tools: [weatherTool] }));
      const use = toolUseOf(message);
      expect(use.name).toBe('get_weather');
      expect(use.input).toEqual(TOOL_ARGS);
      await secondTurn(message.content, use.id, false);
    });
  });

  describe.each([
    ['(3) an upstream failure mid-stream', 'midstream', { apiMessage: UPSTREAM_MESSAGE, type: 'api_error' }, ANSWER.slice(0, 'Hello! This is a '.length)],
    ['(4) a guardrail block after the first byte', 'guarded', { apiMessage: GUARDRAIL_MESSAGE, type: 'guardrail_violation' }, RELEASED],
  ] as const)('%s', (_name, model, expected, released) => {
    const body = { type: 'error', error: { type: expected.type, message: expected.apiMessage } };

    it('create({ stream: true }): the released text, then an APIError thrown from the iteration (type, apiMessage, error body); no message_stop', async () => {
      const { events, error } = await drain(await client().messages.create({ ...ask(model), stream: true }));
      expect(textOf(events)).toBe(released);
      expect(error).toBeInstanceOf(Anthropic.APIError);
      expect(error).toMatchObject({ ...expected, status: undefined, error: body });
      expect(events.map((e) => e.type)).not.toContain('message_stop');
      expect(events.map((e) => e.type)).not.toContain('message_delta');
    });

    it("stream(): finalMessage() rejects with it, the 'error' listener fires once, the text events had the released text", async () => {
      const runner = client().messages.stream(ask(model));
      const heard: unknown[] = [];
      runner.on('error', (e) => heard.push(e));
      const texts: string[] = [];
      runner.on('text', (t) => texts.push(t));
      const final = await rejectionOf(runner.finalMessage());
      expect(final).toBeInstanceOf(Anthropic.APIError);
      expect(final).toMatchObject({ ...expected, error: body });
      expect(texts.join('')).toBe(released);
      expect(heard).toHaveLength(1);

      const iterated = await drain(client().messages.stream(ask(model)));
      expect(iterated.error).toBeInstanceOf(Anthropic.APIError);
      expect(iterated.error).toMatchObject(expected);
    });

    it('create() without streaming: the same error as a JSON answer with its HTTP status', async () => {
      const error = await rejectionOf(client().messages.create(ask(model)));
      expect(error).toBeInstanceOf(Anthropic.APIError);
      expect(error).toMatchObject({ ...expected, status: model === 'guarded' ? 400 : 502, error: body });
    });
  });

  describe('(5) a pre-commit 400', () => {
    const expected = { status: 400, type: 'invalid_request_error', apiMessage: BAD_REQUEST_MESSAGE };

    it.each([false, true])("the upstream's 400 (stream: %p): BadRequestError with the message and type", async (stream) => {
      const error = await rejectionOf(stream ? client().messages.create({ ...ask('bad'), stream: true }) : client().messages.create(ask('bad')));
      expect(error).toBeInstanceOf(Anthropic.BadRequestError);
      expect(error).toMatchObject(expected);
    });

    it("the upstream's 400 through stream(): finalMessage() rejects with BadRequestError", async () => {
      const error = await rejectionOf(client().messages.stream(ask('bad')).finalMessage());
      expect(error).toBeInstanceOf(Anthropic.BadRequestError);
      expect(error).toMatchObject(expected);
    });

    it.each([false, true])('a body the gateway refuses (a document block, stream: %p): BadRequestError naming the field; nothing goes upstream', async (stream) => {
      const messages: Anthropic.MessageParam[] = [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x' } }, { type: 'text', text: PROMPT }] }];
      const body = { model: 'normal', max_tokens: 1024, messages };
      const error = await rejectionOf(stream ? client().messages.create({ ...body, stream: true }) : client().messages.create(body));
      expect(error).toBeInstanceOf(Anthropic.BadRequestError);
      expect(error).toMatchObject({ status: 400, type: 'invalid_request_error' });
      expect((error as { apiMessage?: string }).apiMessage).toMatch(/messages\[0\]\.content\[0\]/);
      expect(upstream.callCount()).toBe(0);
    });
  });

  it('x-should-retry: false on a final 502 is honoured: the default client (maxRetries 2) sends one request', async () => {
    const error = await rejectionOf(client(2).messages.create(ask('failing')));
    expect(error).toBeInstanceOf(Anthropic.InternalServerError);
    expect(error).toMatchObject({ status: 502, type: 'api_error' });
    expect(requests.get('/v1/messages')).toBe(1);
  });
});

// =============================================================================================
// The Vercel AI SDK: @ai-sdk/openai (Responses) and @ai-sdk/anthropic (Messages)

interface AiSdkCase {
  name: string;
  path: string;
  model(id: string): LanguageModel;
  /** The gateway's error as the provider reports it in a mid-stream error part (the v3 providers give a plain object). */
  midstream: Record<string, unknown>;
  guardrail: Record<string, unknown>;
  /** A call whose body the gateway refuses before anything goes upstream, and what the 400's message must say. */
  refused: { what: string; call: { prompt: string } | { messages: ModelMessage[] }; providerOptions?: CallProviderOptions; message: RegExp };
}

const AI_SDK_CASES: AiSdkCase[] = [
  {
    name: `@ai-sdk/openai ${versionOf('@ai-sdk/openai')} (POST /v1/responses)`,
    path: '/v1/responses',
    model: (id) => createOpenAI({ baseURL: `${url}/v1`, apiKey: 'test' })(id),
    midstream: { message: UPSTREAM_MESSAGE, type: 'upstream_error', code: '502' },
    guardrail: { message: GUARDRAIL_MESSAGE, type: 'guardrail_violation', code: '400' },
    refused: {
      what: 'previousResponseId: previous_response_id',
      call: { prompt: PROMPT },
      providerOptions: { openai: { previousResponseId: 'resp_123' } },
      message: /^Invalid request: 'previous_response_id' is not supported/,
    },
  },
  {
    name: `@ai-sdk/anthropic ${versionOf('@ai-sdk/anthropic')} (POST /v1/messages)`,
    path: '/v1/messages',
    model: (id) => createAnthropic({ baseURL: `${url}/v1`, apiKey: 'test' })(id),
    midstream: { message: UPSTREAM_MESSAGE, type: 'api_error' },
    guardrail: { message: GUARDRAIL_MESSAGE, type: 'guardrail_violation' },
    refused: {
      what: 'a PDF file part: a document block',
      call: { messages: [{ role: 'user', content: [{ type: 'file', data: Buffer.from('%PDF-1.4').toString('base64'), mediaType: 'application/pdf' }, { type: 'text', text: PROMPT }] }] },
      message: /'messages\[0\]\.content\[0\]\.type' is 'document'/,
    },
  },
];

describe.each(AI_SDK_CASES)(`Vercel AI SDK ${versionOf('ai')}, $name, through the gateway (Express ${EXPRESS_MAJOR})`, (c) => {
  type Part = { type: string; [key: string]: unknown };

  /** streamText to its end: every part, the onError calls, and the promised results. */
  async function stream(model: string, extra: Partial<Parameters<typeof streamText>[0]> = {}) {
    const errors: unknown[] = [];
    const prompt = extra.messages === undefined ? { prompt: PROMPT } : {};
    const result = streamText({ model: c.model(model), ...prompt, maxRetries: 0, onError: ({ error }) => void errors.push(error), ...extra } as Parameters<typeof streamText>[0]);
    const parts: Part[] = [];
    for await (const part of result.fullStream) parts.push(part as Part);
    const settled = async <T>(p: PromiseLike<T>) => Promise.resolve(p).then((value) => ({ value }), (error: unknown) => ({ error }));
    return { parts, errors, text: await settled(result.text), finishReason: await settled(result.finishReason), usage: await settled(result.totalUsage), steps: await settled(result.steps) };
  }

  const errorParts = (parts: Part[]) => parts.filter((p) => p.type === 'error').map((p) => p['error']);
  const weatherTools = () => ({
    get_weather: tool({
      description: 'The weather in a city',
      inputSchema: jsonSchema<{ location: string; unit: string }>({ ...WEATHER_PARAMETERS, properties: { ...WEATHER_PARAMETERS.properties }, required: [...WEATHER_PARAMETERS.required] }),
      execute: async () => JSON.parse(TOOL_RESULT) as unknown,
    }),
  });

  describe('(1) a normal answer', () => {
    it('generateText: the text, finishReason stop, the usage', async () => {
      const result = await generateText({ model: c.model('normal'), prompt: PROMPT, maxRetries: 0 });
      expect(result.text).toBe(ANSWER);
      expect(result.finishReason).toBe('stop');
      expect(result.usage).toMatchObject({ inputTokens: USAGE.input, outputTokens: USAGE.output, totalTokens: USAGE.input + USAGE.output });
    });

    it('streamText: the text, finishReason stop, the usage, no error part', async () => {
      const r = await stream('normal');
      expect(errorParts(r.parts)).toEqual([]);
      expect(r.errors).toEqual([]);
      expect(r.text).toEqual({ value: ANSWER });
      expect(r.finishReason).toEqual({ value: 'stop' });
      expect(r.usage).toMatchObject({ value: { inputTokens: USAGE.input, outputTokens: USAGE.output, totalTokens: USAGE.input + USAGE.output } });
    });
  });

  describe('(2) a tool call round-trips (two steps: the call, executed by the SDK, then the answer)', () => {
    it('generateText: the tool call parsed, the result sent upstream as a tool message, the final text', async () => {
      const result = await generateText({ model: c.model('tools'), prompt: 'Weather in Paris?', tools: weatherTools(), stopWhen: stepCountIs(2), maxRetries: 0 });
      expect(result.steps).toHaveLength(2);
      const [call] = result.steps[0]!.toolCalls;
      expect(call).toMatchObject({ toolName: 'get_weather', input: TOOL_ARGS });
      expect(result.steps[0]!.finishReason).toBe('tool-calls');
      expect(result.text).toBe(ANSWER);
      expect(result.finishReason).toBe('stop');
      expectToolTurnUpstream(call!.toolCallId);
    });

    it('streamText: a tool-call part, a tool-result part, then the final text', async () => {
      const r = await stream('tools', { prompt: 'Weather in Paris?', tools: weatherTools(), stopWhen: stepCountIs(2) });
      expect(errorParts(r.parts)).toEqual([]);
      const calls = r.parts.filter((p) => p.type === 'tool-call');
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({ toolName: 'get_weather', input: TOOL_ARGS });
      expect(r.parts.filter((p) => p.type === 'tool-result')).toHaveLength(1);
      expect(r.text).toEqual({ value: ANSWER });
      expect(r.finishReason).toEqual({ value: 'stop' });
      const toolCallId = calls[0]!['toolCallId'] as string;
      expectToolTurnUpstream(toolCallId);
    });
  });

  describe("a second turn with the first answer's response.messages (the usual chat loop)", () => {
    async function secondTurn(extra: { providerOptions?: CallProviderOptions } = {}): Promise<void> {
      const first = await generateText({ model: c.model('normal'), prompt: PROMPT, maxRetries: 0, ...extra });
      const messages = [{ role: 'user' as const, content: PROMPT }, ...first.response.messages, { role: 'user' as const, content: 'And again?' }];
      const second = await generateText({ model: c.model('normal'), messages, maxRetries: 0, ...extra });
      expect(second.text).toBe(ANSWER);
      const sent = lastUpstreamBody().messages.map((m) => [m['role'], typeof m['content'] === 'string' ? m['content'] : (m['content'] as { text: string }[]).map((p) => p.text).join('')]);
      expect(sent).toEqual([
        ['user', PROMPT],
        ['assistant', ANSWER],
        ['user', 'And again?'],
      ]);
    }

    if (c.path === '/v1/responses') {
      // With its default `store` (true) @ai-sdk/openai sends the earlier assistant text as
      // `{"type":"item_reference","id":"msg_…"}` (the id the gateway gave the output item), which a stateless
      // gateway cannot resolve: a 400 that names the item and says what to do, and nothing goes upstream.
      it('with the default provider options, the earlier answer comes back as an item_reference: a 400 naming it and the workaround', async () => {
        const first = await generateText({ model: c.model('normal'), prompt: PROMPT, maxRetries: 0 });
        const before = requests.get(c.path) ?? 0;
        const messages = [{ role: 'user' as const, content: PROMPT }, ...first.response.messages, { role: 'user' as const, content: 'And again?' }];
        const error = await rejectionOf(generateText({ model: c.model('normal'), messages, maxRetries: 0 }));
        expect(error).toMatchObject({ name: 'AI_APICallError', statusCode: 400, isRetryable: false });
        expect((error as Error).message).toMatch(/'input\[1\]' is an item_reference: .*stateless.*providerOptions\.openai\.store to false/);
        expect(requests.get(c.path)).toBe(before + 1);
      });
    } else {
      it('with the default provider options, the whole conversation reaches the upstream', () => secondTurn());
    }

    if (c.path === '/v1/responses') {
      it('with providerOptions.openai.store = false (the workaround), the earlier answer goes back as a message item and round-trips', () =>
        secondTurn({ providerOptions: { openai: { store: false } } }));
    }
  });

  describe.each([
    ['(3) an upstream failure mid-stream', 'midstream', 'midstream', 502, ANSWER.slice(0, 'Hello! This is a '.length)],
    ['(4) a guardrail block after the first byte', 'guarded', 'guardrail', 400, RELEASED],
  ] as const)('%s', (_name, model, key, status, released) => {
    it("streamText: the released text, then one error part and onError with the gateway's message and type; finishReason error", async () => {
      const r = await stream(model);
      const errors = errorParts(r.parts);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject(c[key]);
      expect(r.errors).toEqual(errors);
      expect(r.finishReason).toEqual({ value: 'error' });
      // The AI SDK resolves `text` with the partial text (it never throws mid-stream): only the error part says it failed.
      expect(r.text).toEqual({ value: released });
      expect(r.parts.filter((p) => p.type === 'text-delta').map((p) => p['text']).join('')).toBe(released);
    });

    it('generateText: throws APICallError with the status and message; no text resolves', async () => {
      const error = await rejectionOf(generateText({ model: c.model(model), prompt: PROMPT, maxRetries: 0 }));
      expect(error).toMatchObject({ name: 'AI_APICallError', statusCode: status, message: c[key]['message'] });
      expect(JSON.parse((error as { responseBody: string }).responseBody)).toMatchObject({ error: { type: c[key]['type'] } });
    });
  });

  describe('(5) a pre-commit 400', () => {
    it("generateText with the upstream's 400: APICallError 400 with the message, not retried", async () => {
      const error = await rejectionOf(generateText({ model: c.model('bad'), prompt: PROMPT }));
      expect(error).toMatchObject({ name: 'AI_APICallError', statusCode: 400, isRetryable: false, message: BAD_REQUEST_MESSAGE });
      expect(requests.get(c.path)).toBe(1);
    });

    it("streamText with the upstream's 400: one error part (APICallError 400), text rejects, nothing looks like a success", async () => {
      const r = await stream('bad');
      const errors = errorParts(r.parts);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ name: 'AI_APICallError', statusCode: 400, message: BAD_REQUEST_MESSAGE });
      expect(r.parts.filter((p) => p.type === 'text-delta')).toEqual([]);
      expect(r.text).toMatchObject({ error: expect.objectContaining({ name: 'AI_NoOutputGeneratedError' }) });
    });

    it(`a body the gateway refuses (${c.refused.what}), both functions: APICallError 400 with the message naming the field; nothing goes upstream`, async () => {
      const error = await rejectionOf(generateText({ model: c.model('normal'), maxRetries: 0, ...c.refused.call, ...(c.refused.providerOptions ? { providerOptions: c.refused.providerOptions } : {}) }));
      expect(error).toMatchObject({ name: 'AI_APICallError', statusCode: 400, isRetryable: false });
      expect((error as Error).message).toMatch(c.refused.message);
      const r = await stream('normal', { ...c.refused.call, ...(c.refused.providerOptions ? { providerOptions: c.refused.providerOptions } : {}) });
      expect(errorParts(r.parts)).toEqual([expect.objectContaining({ name: 'AI_APICallError', statusCode: 400, message: (error as Error).message })]);
      expect(r.text).toMatchObject({ error: expect.objectContaining({ name: 'AI_NoOutputGeneratedError' }) });
      expect(upstream.callCount()).toBe(0);
    });
  });
});
