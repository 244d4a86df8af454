/**
 * Issue #8 item 5: fuzzing the request body (invariants 5 and 6). Random bodies, valid ones with unknown
 * fields and ones broken at one random place, go through a real gateway (createGateway over a mock OpenAI on
 * the wildcard group, so every model name answers). The answer is always either a 400 naming the field or a
 * normal answer: never a 500, a stack trace or a hang. A pure property checks the validator on many more
 * bodies.
 *
 * Reproduce a failure with `FC_SEED=<seed printed by fast-check> npx jest test/fuzz-request-body`.
 */
import fc from 'fast-check';
import path from 'node:path';
import { BadRequestError, chatCompletionRequestSchema, createGateway, silentLogger, type Gateway } from '../lib/index.js';
import { compileRequestValidator, validateChatCompletionRequest } from '../lib/request-validation.js';
import { startMockOpenAI, type MockServer } from '../lib/testing/index.js';
import { EXPRESS_MAJOR, createApp } from './helpers/express.js';
import { listen, rawRequest, sseData, type RawResponse, type RunningServer } from './helpers/http.js';

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 20_240_508;
// A run stopped by the time limit (a loaded CI machine, or a slow shrink) still reports any failure it found.
const fcOptions = <T>(numRuns: number): fc.Parameters<T> => ({ seed: SEED, numRuns, interruptAfterTimeLimit: 40_000 });

/** Repository paths appear in every stack frame of ours; none may reach a client. */
const REPO_ROOT = path.resolve(__dirname, '..');
const REQUEST_TIMEOUT_MS = 5_000;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

// ---------------------------------------------------------------------------------------------
// Arbitraries

const SPECIAL_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', ''];
const SPECIAL_TAGS = [...SPECIAL_KEYS.filter((k) => k !== ''), 'TEXT', 'text ', 'image', 'users', 'Assistant', 'null'];
const UNICODE_SAMPLES = ['😀', '👩‍👩‍👧', '漢字かな', 'é', 'é', '\u0301', 'ﷺ', '\u2028', '\u0000', '\ud83d', '🏳️‍🌈', 'Ω≈ç√'];

const unicodeText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.array(fc.constantFrom(...UNICODE_SAMPLES), { maxLength: 6 }).map((a) => a.join('')),
);
const key = fc.oneof({ weight: 3, arbitrary: fc.string({ maxLength: 12 }) }, fc.constantFrom(...SPECIAL_KEYS), fc.string({ unit: 'grapheme', maxLength: 6 }));
const jsonValue: fc.Arbitrary<Json> = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>;

/** Every property name the schema knows, at any level: an "unknown" field must not be one of them. */
const SCHEMA_NAMES = new Set<string>();
(function collect(node: unknown): void {
  if (node === null || typeof node !== 'object') return;
  const properties = (node as { properties?: unknown }).properties;
  if (properties !== null && typeof properties === 'object') for (const name of Object.keys(properties)) SCHEMA_NAMES.add(name);
  for (const child of Object.values(node)) collect(child);
})(chatCompletionRequestSchema);

/** Unknown fields: random names (including `__proto__`/`constructor`) with random JSON. */
const extras = fc.dictionary(key.filter((k) => !SCHEMA_NAMES.has(k)), jsonValue, { maxKeys: 3 }) as fc.Arbitrary<JsonObject>;

function withExtras<T extends JsonObject>(base: fc.Arbitrary<T>): fc.Arbitrary<JsonObject> {
  return fc.tuple(base, fc.option(extras, { nil: undefined })).map(([b, e]) => (e ? { ...e, ...b } : b));
}

const textPart = withExtras(fc.record({ type: fc.constant('text'), text: unicodeText }));
const imagePart = withExtras(
  fc.record(
    { type: fc.constant('image_url'), image_url: fc.record({ url: fc.webUrl(), detail: fc.constantFrom('auto', 'low', 'high') }, { requiredKeys: ['url'] }) },
  ),
);
const toolCall = fc.record({
  id: fc.string({ maxLength: 10 }),
  type: fc.constant('function'),
  function: fc.record({ name: fc.string({ minLength: 1, maxLength: 10 }), arguments: fc.json({ maxDepth: 2 }) }),
});

const message: fc.Arbitrary<JsonObject> = fc.oneof(
  withExtras(fc.record({ role: fc.constantFrom('system', 'developer'), content: fc.oneof(unicodeText, fc.array(textPart, { minLength: 1, maxLength: 2 })) })),
  withExtras(
    fc.record(
      { role: fc.constant('user'), content: fc.oneof(unicodeText, fc.array(fc.oneof(textPart, imagePart), { minLength: 1, maxLength: 3 })), name: fc.string({ maxLength: 8 }) },
      { requiredKeys: ['role', 'content'] },
    ),
  ),
  // An assistant message says something: text, or (with no text) at least one tool call.
  withExtras(
    fc.record(
      { role: fc.constant('assistant'), content: unicodeText, tool_calls: fc.array(toolCall, { maxLength: 2 }) },
      { requiredKeys: ['role', 'content'] },
    ),
  ),
  withExtras(
    fc.record(
      { role: fc.constant('assistant'), content: fc.constant(null), tool_calls: fc.array(toolCall, { minLength: 1, maxLength: 2 }) },
      { requiredKeys: ['role', 'tool_calls'] },
    ),
  ),
  withExtras(fc.record({ role: fc.constant('tool'), content: unicodeText, tool_call_id: fc.string({ minLength: 1, maxLength: 10 }) })),
);

const tool = fc.record({
  type: fc.constant('function'),
  function: fc.record(
    { name: fc.stringMatching(/^[a-zA-Z0-9_-]{1,64}$/), description: unicodeText, parameters: fc.dictionary(fc.string({ maxLength: 6 }), jsonValue, { maxKeys: 3 }) },
    { requiredKeys: ['name'] },
  ),
});

const stopSequence = fc.string({ maxLength: 8 }).map((t) => `\u0007${t}`);

const nullable = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(a, { nil: null, freq: 8 });

/** A body the schema accepts, with random optional fields and unknown ones. */
const validBody: fc.Arbitrary<JsonObject> = fc
  .tuple(
    fc.record(
      {
        // `.` and `..` are refused as model names (they would be path segments upstream).
        model: fc
          .oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }), fc.constantFrom(...SPECIAL_TAGS))
          .filter((m) => m !== '.' && m !== '..'),
        messages: fc.array(message, { minLength: 1, maxLength: 4 }),
        stream: nullable(fc.boolean()),
        stream_options: fc.record({ include_usage: fc.boolean() }),
        n: nullable(fc.integer({ min: 1, max: 3 })),
        temperature: nullable(fc.double({ min: 0, max: 2, noNaN: true })),
        top_p: nullable(fc.double({ min: 0, max: 1, noNaN: true })),
        presence_penalty: nullable(fc.double({ min: -2, max: 2, noNaN: true })),
        frequency_penalty: nullable(fc.double({ min: -2, max: 2, noNaN: true })),
        max_tokens: nullable(fc.integer({ min: 1, max: 1_000_000 })),
        max_completion_tokens: nullable(fc.integer({ min: 1, max: 1_000_000 })),
        seed: nullable(fc.integer()),
        tools: fc.array(tool, { maxLength: 2 }),
        tool_choice: fc.oneof(fc.constantFrom('none', 'auto', 'required'), fc.record({ type: fc.constant('function'), function: fc.record({ name: fc.string() }) })),
        parallel_tool_calls: fc.boolean(),
        response_format: fc.record({ type: fc.constantFrom('text', 'json_object') }),
        // Stop sequences the mock's answer cannot contain (a stop at its first character would empty it).
        stop: fc.oneof(stopSequence, fc.constant(null), fc.array(stopSequence, { maxLength: 4 })),
        user: fc.string(),
        metadata: nullable(fc.dictionary(key, fc.string(), { maxKeys: 3 })),
        logprobs: nullable(fc.boolean()),
        top_logprobs: nullable(fc.integer({ min: 0, max: 20 })),
        logit_bias: nullable(fc.dictionary(fc.string({ maxLength: 6 }), fc.integer({ min: -100, max: 100 }), { maxKeys: 3 })),
      },
      { requiredKeys: ['model', 'messages'] },
    ),
    fc.option(extras, { nil: undefined }),
  )
  .map(([body, extra]) => (extra ? { ...extra, ...body } : body) as JsonObject);

/** A path in `body` (array indexes and keys), chosen at random among all its nodes. */
function pathsOf(value: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => pathsOf(v, [...prefix, i], out));
  else if (value !== null && typeof value === 'object') for (const k of Object.keys(value)) pathsOf(value[k] as Json, [...prefix, k], out);
  return out;
}

/**
 * Deep nesting is built as text: a value thousands of levels deep overflows `JSON.stringify` in the test
 * itself. A mutation puts a placeholder string; `serialize` swaps it for the nested JSON text.
 */
const DEEP_MARK = '\u0001deep:';

function deepText(depth: number, asObject: boolean): string {
  return asObject ? `${'{"a":'.repeat(depth)}"deep"${'}'.repeat(depth)}` : `${'['.repeat(depth)}"deep"${']'.repeat(depth)}`;
}

function serialize(value: Json): string {
  return JSON.stringify(value).replace(/"\\u0001deep:(\d+):(object|array)"/g, (_, depth: string, kind: string) => deepText(Number(depth), kind === 'object'));
}

function parseOr<T>(text: string, fallback: T): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return fallback;
  }
}

type Mutation =
  | { kind: 'set'; value: Json }
  | { kind: 'delete' }
  | { kind: 'addKey'; key: string; value: Json };

const outOfRange = fc.oneof(
  fc.constantFrom(-1, 0, 2.5, 3, 129, 1e308, -1e308, 21, -3, 0.5, 1.5, Number.MAX_SAFE_INTEGER + 2),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: -1000, max: 1000 }),
);

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  // wrong type / random value
  jsonValue.map((value) => ({ kind: 'set' as const, value })),
  fc.constant({ kind: 'delete' as const }),
  outOfRange.map((value) => ({ kind: 'set' as const, value })),
  // an unknown role / part type / tag value
  fc.oneof(fc.constantFrom(...SPECIAL_TAGS), fc.string({ maxLength: 10 })).map((value) => ({ kind: 'set' as const, value })),
  // huge strings (well under the body limit)
  fc.integer({ min: 10_000, max: 1_500_000 }).map((n) => ({ kind: 'set' as const, value: 'x'.repeat(n) })),
  fc.integer({ min: 1_000, max: 40_000 }).map((n) => ({ kind: 'set' as const, value: '漢😀'.repeat(n) })),
  // deep nesting, on both sides of any sane limit
  fc
    .tuple(fc.constantFrom(5, 50, 99, 101, 150, 1_000, 6_000, 50_000), fc.boolean())
    .map(([depth, asObject]) => ({ kind: 'set' as const, value: `${DEEP_MARK}${depth}:${asObject ? 'object' : 'array'}` })),
  unicodeText.map((value) => ({ kind: 'set' as const, value })),
  // prototype-ish keys next to the real ones
  fc.tuple(fc.constantFrom(...SPECIAL_KEYS), jsonValue).map(([k, value]) => ({ kind: 'addKey' as const, key: k, value })),
);

/** Applies `m` at `at` in a deep copy of `body` (a copy made with JSON, so `__proto__` stays an own key). */
function mutate(body: JsonObject, at: (string | number)[], m: Mutation): Json {
  const copy = JSON.parse(JSON.stringify(body)) as Json;
  if (at.length === 0) {
    if (m.kind === 'set') return m.value;
    if (m.kind === 'delete') return {};
    return setOwn(copy as JsonObject, m.key, m.value);
  }
  let parent = copy as Json;
  for (const segment of at.slice(0, -1)) parent = (parent as Record<string | number, Json>)[segment] as Json;
  const last = at[at.length - 1] as string | number;
  const container = parent as Record<string | number, Json>;
  if (m.kind === 'set') setOwn(container, last, m.value);
  else if (m.kind === 'delete') {
    if (Array.isArray(container)) container.splice(last as number, 1);
    else delete container[last];
  } else {
    const target = container[last];
    if (target !== null && typeof target === 'object' && !Array.isArray(target)) setOwn(target, m.key, m.value);
    else setOwn(container, last, setOwn({}, m.key, m.value));
  }
  return copy;
}

function setOwn<T extends Record<string | number, Json>>(target: T, k: string | number, value: Json): T {
  Object.defineProperty(target, k, { value, enumerable: true, writable: true, configurable: true });
  return target;
}

const mutatedBody: fc.Arbitrary<Json> = validBody.chain((body) => {
  const paths = pathsOf(body);
  return fc.tuple(fc.constantFrom(...paths), mutation).map(([at, m]) => mutate(body, at, m));
});

/** Bodies that are not a JSON object at all. */
const notAnObject: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 50 }),
  fc.jsonValue({ maxDepth: 2 }).filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)).map((v) => JSON.stringify(v)),
  validBody.chain((b) => {
    const text = JSON.stringify(b);
    return fc.integer({ min: 0, max: Math.max(0, text.length - 1) }).map((cut) => text.slice(0, cut)); // truncated JSON
  }),
  validBody.map((b) => `${JSON.stringify(b)},`),
  fc.constantFrom('', ' ', '\n', 'null', '[]', '[{}]', '"{}"', 'true', '1e999', '{"model": "m", "messages": [}', "{'model': 'm'}", '\ufeff{}', 'NaN'),
);

/** Every request body of the HTTP property, as the text sent. */
const requestText: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: validBody.map((b) => JSON.stringify(b)) },
  { weight: 6, arbitrary: mutatedBody.map(serialize) },
  { weight: 2, arbitrary: notAnObject },
);

// ---------------------------------------------------------------------------------------------
// Checks

/** Where `param` can point in `body`: an existing node, a missing property of an existing object, or 'body'. */
function isPathInto(body: unknown, param: string): boolean {
  if (param === 'body') return true;
  const stack: { value: unknown; prefix: string }[] = [{ value: body, prefix: '' }];
  while (stack.length > 0) {
    const { value, prefix } = stack.pop() as { value: unknown; prefix: string };
    if (prefix === param) return true;
    if (value === null || typeof value !== 'object') continue;
    // A required property that is missing (every required name in the schema is a plain identifier).
    const rest = prefix === '' ? param : param.startsWith(`${prefix}.`) ? param.slice(prefix.length + 1) : undefined;
    if (!Array.isArray(value) && rest !== undefined && /^[A-Za-z_]+$/.test(rest) && !Object.hasOwn(value, rest)) return true;
    const entries: [string, unknown][] = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    for (const [k, v] of entries) {
      const next = /^\d+$/.test(k) ? `${prefix}[${k}]` : prefix === '' ? k : `${prefix}.${k}`;
      if (param.startsWith(next)) stack.push({ value: v, prefix: next });
    }
  }
  return false;
}

function assertNoLeak(res: RawResponse): void {
  expect(res.text).not.toContain(REPO_ROOT);
  expect(res.text).not.toMatch(/\n\s+at .+:\d+:\d+/);
  expect(res.text).not.toMatch(/<html|<pre>/i);
}

/** The one property of every HTTP answer: a 400 naming the field, or a complete normal answer. */
function checkAnswer(res: RawResponse, form: 'gateway' | 'openai', sent: string): void {
  expect(res.error).toBeUndefined();
  expect(res.complete).toBe(true);
  assertNoLeak(res);
  if (res.status === 400 || res.status === 413) {
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const body = JSON.parse(res.text) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(['error']);
    const { message, type, code, param } = body.error;
    expect(type).toBe('invalid_request_error');
    expect(typeof message).toBe('string');
    const text = message as string;
    if (form === 'gateway') {
      expect(code).toBe(res.status);
      expect(text.startsWith('Request body') || /'.+'/s.test(text)).toBe(true);
    } else {
      expect(code).toBe(String(res.status));
      expect(typeof param).toBe('string');
      if (param === 'body') expect(text).toMatch(/^Request body/);
      else expect(text).toContain(`'${param as string}'`);
      const parsed = parseOr(sent, undefined);
      if (parsed !== undefined) expect(isPathInto(parsed, param as string)).toBe(true);
    }
    return;
  }
  const parsed = parseOr(sent, undefined) as { stop?: unknown } | undefined;
  if (res.status === 502 && parsed?.stop != null) {
    // A mutated `stop` the mock's answer starts with empties it: the router's "no content" is right then.
    expect(JSON.parse(res.text)).toMatchObject({ error: { type: 'upstream_error', message: 'The provider answered without any content.' } });
    return;
  }
  expect(res.status).toBe(200);
  const contentType = String(res.headers['content-type']);
  if (contentType.startsWith('text/event-stream')) {
    const frames = sseData(res.text);
    expect(frames.at(-1)).toBe('[DONE]');
    for (const frame of frames.slice(0, -1)) {
      const data = JSON.parse(frame) as Record<string, unknown>;
      expect(data['error']).toBeUndefined();
      expect(data['object']).toBe('chat.completion.chunk');
    }
    expect(frames.filter((f) => f === '[DONE]')).toHaveLength(1);
  } else {
    expect(contentType).toMatch(/^application\/json/);
    const completion = JSON.parse(res.text) as Record<string, unknown>;
    expect(completion['object']).toBe('chat.completion');
    expect(Array.isArray(completion['choices'])).toBe(true);
  }
}

async function post(url: string, body: string): Promise<RawResponse> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms (a hang) for ${JSON.stringify(body.slice(0, 200))}`)), REQUEST_TIMEOUT_MS);
  });
  try {
    return await Promise.race([rawRequest(url, { body }), hang]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------

let mock: MockServer;
const gateways: Record<'gateway' | 'openai', { server: RunningServer; gateway: Gateway }> = {} as never;

beforeAll(async () => {
  mock = await startMockOpenAI({ name: 'fuzz', chunks: 2 });
  for (const form of ['gateway', 'openai'] as const) {
    const gateway = createGateway({
      // The wildcard group: every model name answers, always with the mock's `normal` scenario.
      models: [{ name: '*', deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: 'normal', apiKey: 'sk-fuzz-key-0123456789' }] }],
      router: { retries: { maxRetries: 0 } },
      errors: { bodyForm: form },
      logger: silentLogger,
    });
    const app = createApp();
    app.use(gateway);
    gateways[form] = { server: await listen(app), gateway };
  }
});

afterAll(async () => {
  for (const { server, gateway } of Object.values(gateways)) {
    await server.close();
    await gateway.close();
  }
  await mock.close();
});

describe(`fuzz: request bodies (Express ${EXPRESS_MAJOR}, seed ${SEED})`, () => {
  const validate = compileRequestValidator();

  it('validateChatCompletionRequest returns the body or throws a BadRequestError whose param is a path into it (pure, many runs)', () => {
    const anyBody = fc.oneof(validBody, mutatedBody.map((b) => parseOr(serialize(b), undefined)), notAnObject.map((t) => parseOr(t, t)));
    fc.assert(
      fc.property(anyBody, (body) => {
        let result: unknown;
        try {
          result = validateChatCompletionRequest(validate, body);
        } catch (error) {
          expect(error).toBeInstanceOf(BadRequestError);
          const e = error as BadRequestError;
          expect(e.status).toBe(400);
          expect(typeof e.param).toBe('string');
          expect(e.param).not.toBe('');
          expect(isPathInto(body, e.param as string)).toBe(true);
          if (e.param === 'body') expect(e.message).toMatch(/^Request body/);
          else expect(e.message).toContain(`'${e.param as string}'`);
          return;
        }
        expect(result).toBe(body);
      }),
      fcOptions(2_000),
    );
  }, 60_000);

  it('valid bodies with unknown fields always validate (pure)', () => {
    fc.assert(
      fc.property(validBody, (body) => {
        expect(validateChatCompletionRequest(validate, body)).toBe(body);
      }),
      fcOptions(1_000),
    );
  }, 60_000);

  for (const form of ['gateway', 'openai'] as const) {
    it(`over HTTP (${form} error form): a 400 naming the field or a valid answer; never a 500, a stack or a hang`, async () => {
      const { url } = gateways[form].server;
      await fc.assert(
        fc.asyncProperty(requestText, async (text) => {
          const res = await post(url, text);
          checkAnswer(res, form, text);
        }),
        fcOptions(200),
      );
    }, 60_000);
  }

  it('a body over the size limit is a 413 naming the body, not a 500', async () => {
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(11 * 1024 * 1024) }] });
    const res = await post(gateways.openai.server.url, body);
    checkAnswer(res, 'openai', body);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text)).toMatchObject({ error: { param: 'body' } });
  });

  it('deep nesting in an unknown field is a 400 naming the field (it used to be a 500: JSON.stringify overflowed the stack)', async () => {
    for (const stream of [false, true]) {
      const body = serialize({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }], extra: `${DEEP_MARK}10000:array` });
      const res = await post(gateways.openai.server.url, body);
      checkAnswer(res, 'openai', body);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toMatchObject({ error: { param: 'extra' } });
    }
    const fine = serialize({ model: 'm', messages: [{ role: 'user', content: 'hi' }], extra: `${DEEP_MARK}90:object` });
    expect((await post(gateways.openai.server.url, fine)).status).toBe(200);
  });
});
