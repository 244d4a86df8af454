/**
 * What the request-body fuzzes share (test/fuzz-request-body.test.ts for the chat path,
 * test/fuzz-protocol-bodies.test.ts for `/v1/responses` and `/v1/messages`): the seed, the random JSON
 * pieces (unicode, special keys, unknown fields), the mutations that break a valid body at one random place
 * (wrong types, deletions, out-of-range numbers, huge strings, deep nesting, prototype-ish keys), bodies that
 * are not a JSON object at all, and the checks every answer passes (a `param` that points into the body, no
 * stack or repository path, an answer within bounded time, the chat-style error body), and the gateways they
 * send bodies to.
 */
import fc from 'fast-check';
import path from 'node:path';
import { createGateway, silentLogger, type Gateway } from '../../lib/index.js';
import { startMockOpenAI, type MockServer } from '../../lib/testing/index.js';
import { createApp } from './express.js';
import { listen, rawRequest, type RawResponse, type RunningServer } from './http.js';

export const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 20_240_508;
// A run stopped by the time limit (a loaded CI machine, or a slow shrink) still reports any failure it found.
export const fcOptions = <T>(numRuns: number, timeLimitMs = 40_000): fc.Parameters<T> => ({ seed: SEED, numRuns, interruptAfterTimeLimit: timeLimitMs });

/** Repository paths appear in every stack frame of ours; none may reach a client. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const REQUEST_TIMEOUT_MS = 5_000;

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

// ---------------------------------------------------------------------------------------------
// Random JSON pieces

export const SPECIAL_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', ''];
export const SPECIAL_TAGS = [...SPECIAL_KEYS.filter((k) => k !== ''), 'TEXT', 'text ', 'image', 'users', 'Assistant', 'null'];
const UNICODE_SAMPLES = ['😀', '👩‍👩‍👧', '漢字かな', 'é', 'é', '\u0301', 'ﷺ', '\u2028', '\u0000', '\ud83d', '🏳️‍🌈', 'Ω≈ç√'];

export const unicodeText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.array(fc.constantFrom(...UNICODE_SAMPLES), { maxLength: 6 }).map((a) => a.join('')),
);
export const key = fc.oneof({ weight: 3, arbitrary: fc.string({ maxLength: 12 }) }, fc.constantFrom(...SPECIAL_KEYS), fc.string({ unit: 'grapheme', maxLength: 6 }));
export const jsonValue: fc.Arbitrary<Json> = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>;

/** A model name (`.` and `..` are refused as model names: they would be path segments upstream). */
export const modelName = fc
  .oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }), fc.constantFrom(...SPECIAL_TAGS))
  .filter((m) => m !== '.' && m !== '..');

/** Stop sequences no mock answer can contain (a stop at its first character would empty it). */
export const stopSequence = fc.string({ maxLength: 8 }).map((t) => `\u0007${t}`);

export const nullable = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(a, { nil: null, freq: 8 });

/** Every property name a JSON schema knows, at any level (plus `more`): an "unknown" field must not be one of them. */
export function schemaNames(schema: unknown, more: readonly string[] = []): Set<string> {
  const names = new Set<string>(more);
  (function collect(node: unknown): void {
    if (node === null || typeof node !== 'object') return;
    const properties = (node as { properties?: unknown }).properties;
    if (properties !== null && typeof properties === 'object') for (const name of Object.keys(properties)) names.add(name);
    for (const child of Object.values(node)) collect(child);
  })(schema);
  return names;
}

/** Unknown fields: random names (including `__proto__`/`constructor`) outside `known`, with random JSON. */
export function extrasOutside(known: ReadonlySet<string>): fc.Arbitrary<JsonObject> {
  return fc.dictionary(key.filter((k) => !known.has(k)), jsonValue, { maxKeys: 3 }) as fc.Arbitrary<JsonObject>;
}

/** `withExtras(base)`: `base` with, sometimes, unknown fields from `extras` next to its own. */
export function extrasAdder(extras: fc.Arbitrary<JsonObject>): <T extends JsonObject>(base: fc.Arbitrary<T>) => fc.Arbitrary<JsonObject> {
  return (base) => fc.tuple(base, fc.option(extras, { nil: undefined })).map(([b, e]) => (e ? { ...e, ...b } : b));
}

// ---------------------------------------------------------------------------------------------
// Broken bodies

/** A path in `body` (array indexes and keys), chosen at random among all its nodes. */
export function pathsOf(value: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => pathsOf(v, [...prefix, i], out));
  else if (value !== null && typeof value === 'object') for (const k of Object.keys(value)) pathsOf(value[k] as Json, [...prefix, k], out);
  return out;
}

/**
 * Deep nesting is built as text: a value thousands of levels deep overflows `JSON.stringify` in the test
 * itself. A mutation puts a placeholder string; `serialize` swaps it for the nested JSON text.
 */
export const DEEP_MARK = '\u0001deep:';

export function deepText(depth: number, asObject: boolean): string {
  return asObject ? `${'{"a":'.repeat(depth)}"deep"${'}'.repeat(depth)}` : `${'['.repeat(depth)}"deep"${']'.repeat(depth)}`;
}

export function serialize(value: Json): string {
  return JSON.stringify(value).replace(/"\\u0001deep:(\d+):(object|array)"/g, (_, depth: string, kind: string) => deepText(Number(depth), kind === 'object'));
}

export function parseOr<T>(text: string, fallback: T): unknown {
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

/** A valid body broken at one random place (send it through `serialize`). */
export function mutatedBodyOf(validBody: fc.Arbitrary<JsonObject>): fc.Arbitrary<Json> {
  return validBody.chain((body) => {
    const paths = pathsOf(body);
    return fc.tuple(fc.constantFrom(...paths), mutation).map(([at, m]) => mutate(body, at, m));
  });
}

/** Bodies that are not a JSON object at all (random text, JSON that is not an object, truncated or trailing-comma bodies). */
export function notAnObjectOf(validBody: fc.Arbitrary<JsonObject>): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ unit: 'binary', maxLength: 50 }),
    fc.jsonValue({ maxDepth: 2 }).filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)).map((v) => JSON.stringify(v)),
    validBody.chain((b) => {
      const text = JSON.stringify(b);
      return fc.integer({ min: 0, max: Math.max(0, text.length - 1) }).map((cut) => text.slice(0, cut)); // truncated JSON
    }),
    validBody.map((b) => `${JSON.stringify(b)},`),
    fc.constantFrom('', ' ', '\n', 'null', '[]', '[{}]', '"{}"', 'true', '1e999', '{"model": "m", "messages": [}', "{'model': 'm'}", '\ufeff{}', 'NaN'),
  );
}

// ---------------------------------------------------------------------------------------------
// Checks

/** Where `param` can point in `body`: an existing node, a missing property of an existing object, or 'body'. */
export function isPathInto(body: unknown, param: string): boolean {
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

export function assertNoLeak(res: RawResponse): void {
  expect(res.text).not.toContain(REPO_ROOT);
  expect(res.text).not.toMatch(/\n\s+at .+:\d+:\d+/);
  expect(res.text).not.toMatch(/<html|<pre>/i);
}

/**
 * A 400 or 413 in the chat path's error body (`/v1/chat/completions` and `/v1/responses`): only `error`,
 * `invalid_request_error`, and a message naming the field (with `param` pointing into `sent` in the openai form).
 */
export function expectChatStyleRefusal(res: RawResponse, form: 'gateway' | 'openai', sent: string): void {
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
}

/** POSTs `body` as it is; a request not answered within `REQUEST_TIMEOUT_MS` fails as a hang. */
export async function post(url: string, body: string, requestPath?: string): Promise<RawResponse> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms (a hang) for ${JSON.stringify(body.slice(0, 200))}`)), REQUEST_TIMEOUT_MS);
  });
  try {
    return await Promise.race([rawRequest(url, requestPath === undefined ? { body } : { body, path: requestPath }), hang]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// The gateways under test

export type ErrorForm = 'gateway' | 'openai';

export interface FuzzTarget {
  /** One gateway per error body form, each with every protocol, over the same mock. */
  gateways: Record<ErrorForm, { server: RunningServer; gateway: Gateway }>;
  close(): Promise<void>;
}

/** createGateway over a mock OpenAI on the wildcard group (every model name answers, with the mock's `normal` scenario), once per error form. */
export async function startFuzzTarget(): Promise<FuzzTarget> {
  const mock: MockServer = await startMockOpenAI({ name: 'fuzz', chunks: 2 });
  const gateways = {} as FuzzTarget['gateways'];
  for (const form of ['gateway', 'openai'] as const) {
    const gateway = createGateway({
      models: [{ name: '*', deployments: [{ provider: 'openai', baseUrl: `${mock.url}/v1`, model: 'normal', apiKey: 'sk-fuzz-key-0123456789' }] }],
      router: { retries: { maxRetries: 0 } },
      errors: { bodyForm: form },
      logger: silentLogger,
    });
    const app = createApp();
    app.use(gateway);
    gateways[form] = { server: await listen(app), gateway };
  }
  return {
    gateways,
    async close() {
      for (const { server, gateway } of Object.values(gateways)) {
        await server.close();
        await gateway.close();
      }
      await mock.close();
    },
  };
}
