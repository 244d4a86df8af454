/**
 * Issue 16: fuzzing the bodies of the two other inbound protocols, `POST /v1/responses` (OpenAI Responses) and
 * `POST /v1/messages` (Anthropic Messages), as test/fuzz-request-body.test.ts does for the chat path (the
 * shared pieces are in test/helpers/fuzz-bodies.ts).
 *
 * Pure: `toChatRequest(body)` either returns a chat request the chat validator accepts (the internal request
 * every guardrail, the router and every adapter rely on), or throws a `BadRequestError` whose `param` points
 * into the body; never another exception. Valid bodies of every item and block kind, with unknown fields,
 * always map.
 *
 * Over HTTP (createGateway over a mock OpenAI on the wildcard group, so every model name answers; both error
 * body forms; streaming or not): a 400 in the protocol's error shape naming the field, or a well-formed
 * answer (a stream: the protocol's events, ending with its terminal event); never a 500, a stack, a
 * repository path or a hang.
 *
 * Reproduce a failure with `FC_SEED=<seed printed by fast-check> npx jest test/fuzz-protocol-bodies`.
 */
import fc from 'fast-check';
import { BadRequestError } from '../lib/index.js';
import { messagesProtocol } from '../lib/protocols/messages/index.js';
import { messagesRequestSchema } from '../lib/protocols/messages/schema.js';
import { responsesProtocol } from '../lib/protocols/responses/index.js';
import { responsesRequestSchema } from '../lib/protocols/responses/schema.js';
import type { Protocol } from '../lib/protocols/types.js';
import { compileRequestValidator, MAX_BODY_NESTING, validateChatCompletionRequest } from '../lib/request-validation.js';
import { EXPRESS_MAJOR } from './helpers/express.js';
import {
  SEED,
  assertNoLeak,
  expectChatStyleRefusal,
  extrasAdder,
  extrasOutside,
  fcOptions,
  isPathInto,
  jsonValue,
  key,
  modelName,
  mutatedBodyOf,
  notAnObjectOf,
  nullable,
  parseOr,
  post,
  schemaNames,
  serialize,
  stopSequence,
  unicodeText,
  type JsonObject,
  startFuzzTarget,
  type ErrorForm,
  type FuzzTarget,
} from './helpers/fuzz-bodies.js';
import type { RawResponse } from './helpers/http.js';
import { PROTOCOL_PATHS, namedEvents } from './helpers/protocols.js';

type Form = ErrorForm;
type Name = 'responses' | 'messages';

const name = fc.string({ minLength: 1, maxLength: 10 });
const schemaObject = fc.dictionary(key, jsonValue, { maxKeys: 3 });
const base64 = fc.base64String({ minLength: 4, maxLength: 40 });

// ---------------------------------------------------------------------------------------------
// Responses bodies

// `previous_response_id`, `conversation` and `prompt` are refused by name, outside the schema: not "unknown".
const withResponsesExtras = extrasAdder(extrasOutside(schemaNames(responsesRequestSchema, ['previous_response_id', 'conversation', 'prompt'])));

const inputText = withResponsesExtras(fc.record({ type: fc.constant('input_text'), text: unicodeText }));
const inputImage = withResponsesExtras(
  fc.record(
    {
      type: fc.constant('input_image'),
      image_url: fc.oneof(fc.webUrl(), base64.map((data) => `data:image/png;base64,${data}`)),
      detail: fc.constantFrom('auto', 'low', 'high'),
      file_id: fc.constant(null),
    },
    { requiredKeys: ['type', 'image_url'] },
  ),
);
const inputFile = withResponsesExtras(fc.record({ type: fc.constant('input_file'), file_data: base64, filename: fc.string({ maxLength: 10 }) }, { requiredKeys: ['type', 'file_data'] }));
const assistantPart = fc.oneof(
  withResponsesExtras(fc.record({ type: fc.constant('output_text'), text: unicodeText })),
  inputText,
  withResponsesExtras(fc.record({ type: fc.constant('refusal'), refusal: unicodeText })),
);

/** A message item, with or without `type: "message"`. */
function messageItem(role: fc.Arbitrary<string>, part: fc.Arbitrary<JsonObject>): fc.Arbitrary<JsonObject> {
  const content = fc.oneof(unicodeText, fc.array(part, { maxLength: 3 }));
  return withResponsesExtras(fc.record({ type: fc.constant('message'), role, content }, { requiredKeys: ['role', 'content'] }));
}

const inputItem: fc.Arbitrary<JsonObject> = fc.oneof(
  { weight: 3, arbitrary: messageItem(fc.constant('user'), fc.oneof(inputText, inputImage, inputFile)) },
  { weight: 1, arbitrary: messageItem(fc.constantFrom('system', 'developer'), inputText) },
  { weight: 2, arbitrary: messageItem(fc.constant('assistant'), assistantPart) },
  {
    weight: 2,
    arbitrary: withResponsesExtras(
      fc.record({ type: fc.constant('function_call'), call_id: name, name, arguments: fc.json({ maxDepth: 2 }), id: fc.string({ maxLength: 8 }) }, { requiredKeys: ['type', 'call_id', 'name', 'arguments'] }),
    ),
  },
  { weight: 2, arbitrary: withResponsesExtras(fc.record({ type: fc.constant('function_call_output'), call_id: name, output: fc.oneof(unicodeText, fc.array(inputText, { maxLength: 2 })) })) },
  { weight: 1, arbitrary: withResponsesExtras(fc.record({ type: fc.constant('reasoning'), summary: fc.constant([]) })) },
);

const functionTool = withResponsesExtras(
  fc.record(
    { type: fc.constant('function'), name: fc.stringMatching(/^[a-zA-Z0-9_-]{1,64}$/), description: nullable(unicodeText), parameters: nullable(schemaObject), strict: nullable(fc.boolean()) },
    { requiredKeys: ['type', 'name'] },
  ),
);

const textFormat = fc.oneof(
  fc.record({ type: fc.constantFrom('text', 'json_object') }),
  fc.record(
    { type: fc.constant('json_schema'), name: fc.stringMatching(/^[a-zA-Z0-9_-]{1,64}$/), schema: schemaObject, description: unicodeText, strict: nullable(fc.boolean()) },
    { requiredKeys: ['type', 'name', 'schema'] },
  ),
);

const responsesBody: fc.Arbitrary<JsonObject> = withResponsesExtras(
  fc.record(
    {
      model: modelName,
      // Only reasoning items leave nothing to send (a 400 naming `input`): a valid body says something.
      input: fc.oneof(unicodeText, fc.array(inputItem, { minLength: 1, maxLength: 5 }).filter((items) => items.some((item) => item['type'] !== 'reasoning'))),
      instructions: nullable(unicodeText),
      tools: fc.array(functionTool, { maxLength: 2 }),
      tool_choice: fc.oneof(fc.constantFrom('none', 'auto', 'required'), fc.record({ type: fc.constant('function'), name })),
      parallel_tool_calls: nullable(fc.boolean()),
      max_output_tokens: nullable(fc.integer({ min: 1, max: 1_000_000 })),
      temperature: nullable(fc.double({ min: 0, max: 2, noNaN: true })),
      top_p: nullable(fc.double({ min: 0, max: 1, noNaN: true })),
      text: nullable(fc.record({ format: textFormat, verbosity: fc.constantFrom('low', 'medium', 'high', null) })),
      reasoning: nullable(fc.record({ effort: fc.constantFrom('none', 'minimal', 'low', 'medium', 'high', 'xhigh', null) })),
      stream: nullable(fc.boolean()),
      stream_options: nullable(fc.record({ include_obfuscation: fc.boolean() })),
      store: nullable(fc.boolean()),
      background: fc.constantFrom(false, null),
      user: fc.string(),
      metadata: nullable(fc.dictionary(key, fc.string(), { maxKeys: 3 })),
      prompt_cache_key: fc.string(),
      safety_identifier: fc.string(),
      service_tier: fc.constantFrom('auto', 'default', 'flex'),
    },
    { requiredKeys: ['model', 'input'] },
  ),
);

// ---------------------------------------------------------------------------------------------
// Messages bodies

const withMessagesExtras = extrasAdder(extrasOutside(schemaNames(messagesRequestSchema)));

const textBlock = withMessagesExtras(fc.record({ type: fc.constant('text'), text: unicodeText }));
const imageBlock = withMessagesExtras(
  fc.record({
    type: fc.constant('image'),
    source: fc.oneof(
      fc.record({ type: fc.constant('base64'), media_type: fc.constantFrom('image/jpeg', 'image/png', 'image/gif', 'image/webp'), data: base64 }),
      fc.record({ type: fc.constant('url'), url: fc.webUrl() }),
    ),
  }),
);
const toolResultBlock = withMessagesExtras(
  fc.record(
    { type: fc.constant('tool_result'), tool_use_id: name, content: fc.oneof(unicodeText, fc.array(fc.oneof(textBlock, imageBlock), { maxLength: 2 })), is_error: fc.boolean() },
    { requiredKeys: ['type', 'tool_use_id'] },
  ),
);
const toolUseBlock = withMessagesExtras(fc.record({ type: fc.constant('tool_use'), id: name, name, input: schemaObject }));
const thinkingBlock = fc.oneof(
  withMessagesExtras(fc.record({ type: fc.constant('thinking'), thinking: unicodeText, signature: fc.string({ maxLength: 10 }) })),
  withMessagesExtras(fc.record({ type: fc.constant('redacted_thinking'), data: fc.string({ maxLength: 10 }) })),
);

const turn = (role: string, block: fc.Arbitrary<JsonObject>): fc.Arbitrary<JsonObject> =>
  withMessagesExtras(fc.record({ role: fc.constant(role), content: fc.oneof(unicodeText, fc.array(block, { maxLength: 3 })) }));

const customTool = withMessagesExtras(
  fc.record(
    {
      type: fc.constant('custom'),
      // Anthropic's own rule (docs, Define tools: ^[a-zA-Z0-9_-]{1,64}$), the Messages schema's and the chat path's.
      name: fc.stringMatching(/^[a-zA-Z0-9_-]{1,64}$/),
      description: unicodeText,
      input_schema: fc.record({ type: fc.constant('object'), properties: schemaObject }, { requiredKeys: ['type'] }),
    },
    { requiredKeys: ['name', 'input_schema'] },
  ),
);

const parallel = { disable_parallel_tool_use: fc.boolean() };
const anthropicToolChoice = fc.oneof(
  fc.record({ type: fc.constantFrom('auto', 'any'), ...parallel }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constant('tool'), name, ...parallel }, { requiredKeys: ['type', 'name'] }),
  fc.record({ type: fc.constant('none') }),
);

const messagesBody: fc.Arbitrary<JsonObject> = withMessagesExtras(
  fc.record(
    {
      model: modelName,
      max_tokens: fc.integer({ min: 1, max: 1_000_000 }),
      messages: fc.array(fc.oneof(turn('user', fc.oneof(textBlock, imageBlock, toolResultBlock)), turn('assistant', fc.oneof(textBlock, toolUseBlock, thinkingBlock))), {
        minLength: 1,
        maxLength: 4,
      }),
      system: fc.oneof(unicodeText, fc.array(textBlock, { maxLength: 2 })),
      // Anthropic sets no limit on their number, but the gateway refuses more than the chat `stop` holds (4,
      // see lib/protocols/messages/schema.ts): more are not a valid body here (a regression case below sends 5).
      stop_sequences: fc.array(stopSequence, { maxLength: 4 }),
      temperature: fc.double({ min: 0, max: 1, noNaN: true }),
      top_p: fc.double({ min: 0, max: 1, noNaN: true }),
      top_k: fc.integer({ min: 0, max: 500 }),
      tools: fc.array(customTool, { maxLength: 2 }),
      tool_choice: anthropicToolChoice,
      metadata: fc.record({ user_id: nullable(fc.string({ maxLength: 10 })) }),
      stream: fc.boolean(),
      thinking: fc.oneof(fc.record({ type: fc.constant('enabled'), budget_tokens: fc.integer({ min: 1024, max: 32_000 }) }), fc.record({ type: fc.constant('disabled') })),
      mcp_servers: fc.constant([]),
    },
    { requiredKeys: ['model', 'max_tokens', 'messages'] },
  ),
);

// ---------------------------------------------------------------------------------------------

/** A request body as fast-check reports it: long runs of one character abbreviated (`[×6000`), so a counterexample stays readable. */
class Sent {
  constructor(readonly text: string) {}
  abbreviated(): string {
    return this.text.replace(/(.)\1{19,}/gsu, (run: string, char: string) => `${char}×${[...run].length}`);
  }
  [fc.toStringMethod](): string {
    return JSON.stringify(this.abbreviated());
  }
}

interface Subject {
  protocol: Protocol;
  validBody: fc.Arbitrary<JsonObject>;
  /** Every body of the pure property, as text (the property parses it, or takes the text itself when it is not JSON). */
  anyBody: fc.Arbitrary<Sent>;
  /** Every request body of the HTTP property, as the text sent. */
  requestText: fc.Arbitrary<Sent>;
}

function subject(protocol: Protocol, validBody: fc.Arbitrary<JsonObject>): Subject {
  const mutated = mutatedBodyOf(validBody);
  const notAnObject = notAnObjectOf(validBody);
  return {
    protocol,
    validBody,
    anyBody: fc.oneof(validBody.map((b) => JSON.stringify(b)), mutated.map(serialize), notAnObject).map((text) => new Sent(text)),
    requestText: fc
      .oneof({ weight: 3, arbitrary: validBody.map((b) => JSON.stringify(b)) }, { weight: 6, arbitrary: mutated.map(serialize) }, { weight: 2, arbitrary: notAnObject })
      .map((text) => new Sent(text)),
  };
}

const SUBJECTS: Record<Name, Subject> = { responses: subject(responsesProtocol, responsesBody), messages: subject(messagesProtocol, messagesBody) };

// ---------------------------------------------------------------------------------------------
// Checks

const chatValidator = compileRequestValidator();

/** Why the chat validator refuses `request` (the internal request every later stage relies on), if it does. */
function chatRefusal(request: unknown): string | undefined {
  try {
    validateChatCompletionRequest(chatValidator, request);
    return undefined;
  } catch (error) {
    return `the mapped request is not a valid chat request: ${(error as Error).message} (${printable(request)})`;
  }
}

/** The start of `value` as JSON, or a note when it is too deep for `JSON.stringify`. */
function printable(value: unknown): string {
  try {
    return new Sent(JSON.stringify(value)).abbreviated().slice(0, 300);
  } catch {
    return '(too deeply nested to print)';
  }
}

/** A 400's message names a field: `Request body…`, or `Invalid request: '<path into body>' …`. */
function expectNamesField(message: string, body: unknown): void {
  if (message.startsWith('Request body')) return;
  const prefix = "Invalid request: '";
  expect(message.startsWith(prefix)).toBe(true);
  // The field may itself hold a quote: any `'` followed by a space or a dot may close it.
  const candidates = [...message.slice(prefix.length).matchAll(/'(?=[ .])/g)].map((m) => message.slice(prefix.length, prefix.length + (m.index ?? 0)));
  expect({ message, named: candidates.some((field) => field !== '' && isPathInto(body, field)) }).toEqual({ message, named: true });
}

/** The pure property: the body maps to a valid chat request, or a `BadRequestError` names a field of it. */
function expectMapsOrNamesField(protocol: Protocol, body: unknown): void {
  let request: unknown;
  try {
    request = protocol.toChatRequest(body);
  } catch (error) {
    if (!(error instanceof BadRequestError)) throw new Error(`${protocol.name}.toChatRequest threw ${String(error)}, not a BadRequestError`, { cause: error });
    expect(error.status).toBe(400);
    const param = error.param as string;
    expect(typeof param).toBe('string');
    expect({ param, inBody: param !== '' && isPathInto(body, param) }).toEqual({ param, inBody: true });
    if (param === 'body') expect(error.message).toMatch(/^Request body/);
    else expect(error.message).toContain(`'${param}'`);
    expectNamesField(error.message, body);
    return;
  }
  expect(chatRefusal(request)).toBeUndefined();
}

/** A Messages error body, strictly: `{"type":"error","error":{"type","message"}}`. */
function messagesError(res: RawResponse): { type: unknown; message: string } {
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  const json = JSON.parse(res.text) as Record<string, unknown>;
  expect(Object.keys(json).sort()).toEqual(['error', 'type']);
  expect(json['type']).toBe('error');
  const error = json['error'] as Record<string, unknown>;
  expect(Object.keys(error).sort()).toEqual(['message', 'type']);
  expect(typeof error['message']).toBe('string');
  return { type: error['type'], message: error['message'] as string };
}

/** The events of a stream, well-formed, ending with exactly one of `terminal` as the last event and no error. */
function expectStream(res: RawResponse, first: string, terminal: readonly string[]): ReturnType<typeof namedEvents> {
  const events = namedEvents(res.text);
  expect(events[0]?.event).toBe(first);
  expect(terminal).toContain(events.at(-1)?.event);
  expect(events.filter((e) => terminal.includes(e.event as string))).toHaveLength(1);
  expect(events.filter((e) => e.event === 'error' || e.event === 'response.failed')).toEqual([]);
  return events;
}

/** The one property of every HTTP answer: a 400 in the protocol's shape naming the field, or a well-formed answer. */
function checkAnswer(protocol: Name, res: RawResponse, form: Form, sent: string): void {
  expect(res.error).toBeUndefined();
  expect(res.complete).toBe(true);
  assertNoLeak(res);
  // The gateway reads a body that starts with a byte order mark as JSON.parse reads the rest (as body-parser does).
  const parsed = parseOr(sent.replace(/^\ufeff/, ''), undefined);
  if (res.status === 400 || res.status === 413) {
    if (protocol === 'responses') return expectChatStyleRefusal(res, form, sent);
    const error = messagesError(res);
    expect(error.type).toBe(res.status === 413 ? 'request_too_large' : 'invalid_request_error');
    if (parsed !== undefined) expectNamesField(error.message, parsed);
    else expect(error.message).toMatch(/^Request body/);
    return;
  }
  const stops = (parsed as { stop_sequences?: unknown } | undefined)?.stop_sequences;
  if (protocol === 'messages' && res.status === 502 && Array.isArray(stops) && stops.length > 0) {
    // A mutated stop sequence the mock's answer starts with empties it: the router's "no content" is right then.
    expect(messagesError(res)).toEqual({ type: 'api_error', message: 'The provider answered without any content.' });
    return;
  }
  expect(res.status).toBe(200);
  const contentType = String(res.headers['content-type']);
  if (protocol === 'responses') {
    if (contentType.startsWith('text/event-stream')) {
      const events = expectStream(res, 'response.created', ['response.completed', 'response.incomplete']);
      events.forEach(({ data }, i) => expect(data['sequence_number']).toBe(i));
    } else {
      expect(contentType).toMatch(/^application\/json/);
      const response = JSON.parse(res.text) as Record<string, unknown>;
      expect(response['object']).toBe('response');
      expect(['completed', 'incomplete']).toContain(response['status']);
      expect(Array.isArray(response['output'])).toBe(true);
    }
  } else if (contentType.startsWith('text/event-stream')) {
    const events = expectStream(res, 'message_start', ['message_stop']);
    expect(events.filter((e) => e.event === 'message_delta')).toHaveLength(1);
  } else {
    expect(contentType).toMatch(/^application\/json/);
    const message = JSON.parse(res.text) as Record<string, unknown>;
    expect([message['type'], message['role']]).toEqual(['message', 'assistant']);
    expect(Array.isArray(message['content'])).toBe(true);
    expect(typeof message['stop_reason']).toBe('string');
  }
}

// ---------------------------------------------------------------------------------------------

let target: FuzzTarget;
beforeAll(async () => {
  target = await startFuzzTarget();
});
afterAll(() => target.close());

/** A JSON body with a value `depth` levels deep (built as text: the test's own `JSON.stringify` would overflow). */
function deepBody(body: JsonObject, depth: number): string {
  return JSON.stringify(body).replace('"<deep>"', `${'['.repeat(depth)}1${']'.repeat(depth)}`);
}

describe.each<Name>(['responses', 'messages'])(`fuzz: %s bodies (Express ${EXPRESS_MAJOR}, seed ${SEED})`, (name) => {
  const { protocol, validBody, anyBody, requestText } = SUBJECTS[name];

  it('toChatRequest returns a valid chat request or throws a BadRequestError whose param is a path into the body (pure, many runs)', () => {
    fc.assert(
      fc.property(anyBody, ({ text }) => expectMapsOrNamesField(protocol, parseOr(text, text))),
      fcOptions(2_000, 8_000),
    );
  }, 30_000);

  it('valid bodies of every item and block kind, with unknown fields, always map to a valid chat request (pure)', () => {
    fc.assert(
      fc.property(validBody, (body) => {
        const request = protocol.toChatRequest(body);
        expect(chatRefusal(request)).toBeUndefined();
      }),
      fcOptions(800, 5_000),
    );
  }, 30_000);

  for (const form of ['gateway', 'openai'] as const) {
    it(`over HTTP (${form} error form): a 400 in the protocol's shape naming the field or a well-formed answer; never a 500, a stack or a hang`, async () => {
      const { url } = target.gateways[form].server;
      await fc.assert(
        fc.asyncProperty(requestText, async ({ text }) => {
          const res = await post(url, text, PROTOCOL_PATHS[name]);
          checkAnswer(name, res, form, text);
        }),
        fcOptions(200, 8_000),
      );
    }, 30_000);
  }

  it('a body over the size limit is a 413 naming the body, not a 500', async () => {
    const body = JSON.stringify({ model: 'm', max_tokens: 10, input: 'x'.repeat(11 * 1024 * 1024), messages: [{ role: 'user', content: 'hi' }] });
    const res = await post(target.gateways.openai.server.url, body, PROTOCOL_PATHS[name]);
    checkAnswer(name, res, 'openai', body);
    expect(res.status).toBe(413);
  });

  it('special keys at every level of a valid body (__proto__, constructor) map like any unknown field', () => {
    // As JSON text: in an object literal, `__proto__` would set the prototype instead of an own key.
    const specials = '"__proto__":{"polluted":true},"constructor":{"prototype":1},"prototype":null,"toString":"x","hasOwnProperty":[]';
    const text = (b: unknown) => JSON.stringify(b).replace(/"\$special":\{\}/g, specials);
    const base =
      name === 'responses'
        ? { model: 'constructor', $special: {}, input: [{ role: 'user', $special: {}, content: [{ type: 'input_text', text: 'hi', $special: {} }] }], tools: [{ type: 'function', name: 'f', parameters: { $special: {} } }] }
        : { model: '__proto__', $special: {}, max_tokens: 5, messages: [{ role: 'assistant', $special: {}, content: [{ type: 'tool_use', id: 'a', name: 'f', input: { $special: {} } }] }] };
    const body = JSON.parse(text(base)) as unknown;
    expectMapsOrNamesField(protocol, body);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Regression cases: what the fuzz found in lib/protocols (see the commit message). Each fails until fixed.

describe('fuzz findings (regression cases)', () => {
  const deepTools = { model: 'm', input: 'hi', tools: [{ type: 'function', name: 'f', parameters: { a: '<deep>' } }] };

  it('responses: a tool schema nested thousands of levels deep is a 400 naming `tools`, not a 500 (JSON.stringify overflows upstream)', async () => {
    for (const stream of [false, true]) {
      const body = deepBody({ ...deepTools, stream }, 6_000);
      const res = await post(target.gateways.openai.server.url, body, PROTOCOL_PATHS.responses);
      expect({ stream, status: res.status }).toEqual({ stream, status: 400 });
      checkAnswer('responses', res, 'openai', body);
      expect(JSON.parse(res.text)).toMatchObject({ error: { param: 'tools' } });
    }
  });

  it('responses: text.format.schema nested thousands of levels deep is a 400 naming `text`, not a 500', async () => {
    const body = deepBody({ model: 'm', input: 'hi', text: { format: { type: 'json_schema', name: 'n', schema: { a: '<deep>' } } } }, 6_000);
    const res = await post(target.gateways.openai.server.url, body, PROTOCOL_PATHS.responses);
    expect(res.status).toBe(400);
    checkAnswer('responses', res, 'openai', body);
  });

  it('responses: a deeply nested unknown field of a tool (echoed in the Response, never sent upstream) is a 400, not a stream whose response.failed is not JSON', async () => {
    for (const stream of [true, false]) {
      const body = deepBody({ model: 'm', stream, input: 'hi', tools: [{ type: 'function', name: 'f', x: '<deep>' }] }, 50_000);
      const res = await post(target.gateways.openai.server.url, body, PROTOCOL_PATHS.responses);
      // Today: 200, `error` (500 internal_error), then `response.failed` with `"response":{,"status":"failed",…`.
      const notJson = res.text.split('\n').filter((line) => line.startsWith('data: ') && parseOr(line.slice('data: '.length), undefined) === undefined);
      expect({ stream, notJson }).toEqual({ stream, notJson: [] });
      expect({ stream, status: res.status }).toEqual({ stream, status: 400 });
      checkAnswer('responses', res, 'openai', body);
    }
  });

  it(`responses: a tool schema nested more than MAX_BODY_NESTING (${MAX_BODY_NESTING}) levels maps to a valid chat request or is refused (pure)`, () => {
    expectMapsOrNamesField(responsesProtocol, JSON.parse(deepBody(deepTools, 200)));
  });

  it('responses: an assistant message with no content parts maps to a valid chat request or is refused (pure)', () => {
    // The shrunk counterexample of the valid-body property (seed 20240508).
    expectMapsOrNamesField(responsesProtocol, { model: ' ', input: [{ role: 'assistant', content: [] }, { type: 'function_call_output', call_id: ' ', output: [] }] });
  });

  // The shrunk counterexample of both Messages pure properties (seed 20240508).
  it('messages: more than 4 stop sequences map to a valid chat request (`stop` holds at most 4) or are refused (pure)', () => {
    expectMapsOrNamesField(messagesProtocol, { model: ' ', max_tokens: 1, messages: [{ role: 'user', content: '' }], stop_sequences: ['\u0007', '\u0007', '\u0007', '\u0007', '\u0007'] });
  });

  it('messages: a custom tool name of 65 to 128 characters maps to a valid chat request (names hold at most 64) or is refused (pure)', () => {
    expectMapsOrNamesField(messagesProtocol, { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }], tools: [{ name: 'a'.repeat(65), input_schema: { type: 'object' } }] });
  });

  it.each(['.', '..'])('messages: model %j is refused with a 400 naming `model`, as on the chat and responses paths (pure)', (model) => {
    expectMapsOrNamesField(messagesProtocol, { model, max_tokens: 1, messages: [{ role: 'user', content: 'hi' }] });
  });

  it(`messages: an input_schema nested exactly ${MAX_BODY_NESTING} levels deep maps to a valid chat request (the mapping nests it one level deeper) or is refused (pure)`, () => {
    // body 1, tools 2, [0] 3, input_schema 4: 96 nested arrays under it reach exactly level 100.
    const body = deepBody({ model: 'm', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }], tools: [{ name: 'f', input_schema: { a: '<deep>' } }] }, MAX_BODY_NESTING - 4);
    expectMapsOrNamesField(messagesProtocol, JSON.parse(body));
  });

  it.each(['', '0'])('messages: a too-deep top-level field named %j is refused with a param the chat path would write (body, [0])', (field) => {
    const body = JSON.parse(deepBody({ model: 'm', max_tokens: 1, messages: [{ role: 'user', content: 'hi' }], [field]: '<deep>' }, 200)) as unknown;
    expectMapsOrNamesField(messagesProtocol, body);
  });
});
