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
import { BadRequestError, chatCompletionRequestSchema } from '../lib/index.js';
import { compileRequestValidator, validateChatCompletionRequest } from '../lib/request-validation.js';
import { EXPRESS_MAJOR } from './helpers/express.js';
import {
  DEEP_MARK,
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
  type Json,
  type JsonObject,
  startFuzzTarget,
  type FuzzTarget,
} from './helpers/fuzz-bodies.js';
import { sseData, type RawResponse } from './helpers/http.js';

// ---------------------------------------------------------------------------------------------
// Arbitraries (the shared pieces and mutations are in test/helpers/fuzz-bodies.ts)

/** Unknown fields: random names (including `__proto__`/`constructor`) with random JSON. */
const extras = extrasOutside(schemaNames(chatCompletionRequestSchema));
const withExtras = extrasAdder(extras);

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

/** A body the schema accepts, with random optional fields and unknown ones. */
const validBody: fc.Arbitrary<JsonObject> = fc
  .tuple(
    fc.record(
      {
        model: modelName,
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

const mutatedBody: fc.Arbitrary<Json> = mutatedBodyOf(validBody);

/** Bodies that are not a JSON object at all. */
const notAnObject: fc.Arbitrary<string> = notAnObjectOf(validBody);

/** Every request body of the HTTP property, as the text sent. */
const requestText: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: validBody.map((b) => JSON.stringify(b)) },
  { weight: 6, arbitrary: mutatedBody.map(serialize) },
  { weight: 2, arbitrary: notAnObject },
);

// ---------------------------------------------------------------------------------------------
// Checks

/** The one property of every HTTP answer: a 400 naming the field, or a complete normal answer. */
function checkAnswer(res: RawResponse, form: 'gateway' | 'openai', sent: string): void {
  expect(res.error).toBeUndefined();
  expect(res.complete).toBe(true);
  assertNoLeak(res);
  if (res.status === 400 || res.status === 413) {
    expectChatStyleRefusal(res, form, sent);
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

// ---------------------------------------------------------------------------------------------

let target: FuzzTarget;
beforeAll(async () => {
  target = await startFuzzTarget();
});
afterAll(() => target.close());

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
      const { url } = target.gateways[form].server;
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
    const res = await post(target.gateways.openai.server.url, body);
    checkAnswer(res, 'openai', body);
    expect(res.status).toBe(413);
    expect(JSON.parse(res.text)).toMatchObject({ error: { param: 'body' } });
  });

  it('deep nesting in an unknown field is a 400 naming the field (it used to be a 500: JSON.stringify overflowed the stack)', async () => {
    for (const stream of [false, true]) {
      const body = serialize({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }], extra: `${DEEP_MARK}10000:array` });
      const res = await post(target.gateways.openai.server.url, body);
      checkAnswer(res, 'openai', body);
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toMatchObject({ error: { param: 'extra' } });
    }
    const fine = serialize({ model: 'm', messages: [{ role: 'user', content: 'hi' }], extra: `${DEEP_MARK}90:object` });
    expect((await post(target.gateways.openai.server.url, fine)).status).toBe(200);
  });
});
