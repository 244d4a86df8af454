/**
 * Issue 14: raw forwarding on the OpenAI-compatible path. For the same upstream answer, a gateway with no
 * output filter (the raw path: chunks and bodies go out as the upstream's text) and the same gateway with a
 * pass-through output filter (the parsed path: every chunk parsed and re-serialized) write the same bytes
 * to the client, streaming and not: with and without usage, tool calls, several choices, in-band errors
 * before and after commit, Azure's leading and annotation chunks, keep-alives, malformed chunks.
 *
 * Real loopback HTTP: a tiny upstream that sends exactly the bytes a test gives it, and
 * gatewayContext() → (pass-through filter) → createRouter() → sseErrorWriter().
 */
import type { RequestHandler } from 'express';
import fc from 'fast-check';
import { createRouter, gatewayContext, getContext, sseErrorWriter, type GatewayRouter } from '../lib/index.js';
import { LazyAbort } from '../lib/lazy-abort.js';
import { type RawChunk, compactChunk, scanChunk } from '../lib/raw-chunk.js';
import type { RouterOptions } from '../lib/router-config.js';
import { createApp } from './helpers/express.js';
import { listen, rawRequest, sseData, type RawResponse, type RunningServer } from './helpers/http.js';

/** What the upstream sends next: SSE text (in pieces, one write each) or a JSON body. */
let upstreamPieces: string[] = [];
let upstreamJson = '';
let upstream: RunningServer;

beforeAll(async () => {
  upstream = await listen((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const streaming = (JSON.parse(body) as { stream?: boolean }).stream === true;
      if (!streaming) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(upstreamJson);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const pieces = [...upstreamPieces];
      const next = (): void => {
        const piece = pieces.shift();
        if (piece === undefined) res.end();
        else res.write(piece, () => setImmediate(next));
      };
      next();
    });
  });
});
afterAll(() => upstream.close());

interface Gateways {
  raw: RunningServer;
  parsed: RunningServer;
}
const started: { server: RunningServer; router: GatewayRouter }[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map(async ({ server, router }) => { await server.close(); await router.close(); }));
});

/** An output filter that changes nothing: its presence alone forces the parsed path. */
const passThroughFilter: RequestHandler = (req, _res, next) => {
  getContext(req).hooks.output.push(() => ({ chunk: (c) => [c], end: () => [], completion: (c) => c }));
  next();
};

async function startGateway(parsed: boolean, options: Partial<RouterOptions>): Promise<RunningServer> {
  const router = createRouter({
    models: [{ name: 'm', deployments: [{ provider: 'openai', baseUrl: `${upstream.url}/v1`, model: 'up', apiKey: 'k' }] }],
    retries: { maxRetries: 0 },
    ...options,
  });
  const app = createApp();
  app.post('/v1/chat/completions', gatewayContext(), ...(parsed ? [passThroughFilter] : []), router);
  app.use(sseErrorWriter());
  const server = await listen(app);
  started.push({ server, router });
  return server;
}

async function gateways(options: Partial<RouterOptions> = {}): Promise<Gateways> {
  const [raw, parsed] = await Promise.all([startGateway(false, options), startGateway(true, options)]);
  return { raw, parsed };
}

function ask(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'm', messages: [{ role: 'user', content: 'Hi' }], ...extra };
}

/** Both paths, one after the other, for the same upstream answer. */
async function both(extra: Record<string, unknown>, options: Partial<RouterOptions> = {}): Promise<{ raw: RawResponse; parsed: RawResponse }> {
  const g = await gateways(options);
  const raw = await rawRequest(g.raw.url, { body: ask(extra) });
  const parsed = await rawRequest(g.parsed.url, { body: ask(extra) });
  return { raw, parsed };
}

function expectSameBytes(r: { raw: RawResponse; parsed: RawResponse }): void {
  expect(r.raw.status).toBe(r.parsed.status);
  expect(r.raw.headers['content-type']).toBe(r.parsed.headers['content-type']);
  expect(r.raw.headers['content-length']).toBe(r.parsed.headers['content-length']);
  expect(r.raw.text).toBe(r.parsed.text);
  expect(r.raw.complete).toBe(true);
}

// ---- upstream streams, in OpenAI's compact JSON ----

const BASE = { id: 'chatcmpl-9x', object: 'chat.completion.chunk', created: 1730000000, model: 'gpt-4o-mini-2024-07-18', system_fingerprint: 'fp_1' };
const USAGE = { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21, prompt_tokens_details: { cached_tokens: 0 } };

type Delta = Record<string, unknown>;
/** One chunk as OpenAI writes it (with `usage: null` on every chunk when usage was asked for). */
function chunk(choices: { index?: number; delta?: Delta; finish?: string | null; extra?: Record<string, unknown> }[], usage: 'null' | 'none' = 'null'): Record<string, unknown> {
  return {
    ...BASE,
    choices: choices.map(({ index = 0, delta = {}, finish = null, extra = {} }) => ({ index, delta, logprobs: null, finish_reason: finish, ...extra })),
    ...(usage === 'null' ? { usage: null } : {}),
  };
}
const data = (value: unknown): string => `data: ${JSON.stringify(value)}\n\n`;
const DONE = 'data: [DONE]\n\n';
const usageChunk = { ...BASE, choices: [], usage: USAGE };

const TEXT_PARTS = ['Hello', ', "quoted"', ' wörld ☃ 😀', '\nnew\tline \\ back', ' </script> \u2028 end'];

function textStream(usage: 'null' | 'none' = 'null'): string[] {
  return [
    data(chunk([{ delta: { role: 'assistant', content: '', refusal: null } }], usage)),
    ...TEXT_PARTS.map((t) => data(chunk([{ delta: { content: t } }], usage))),
    data(chunk([{ delta: {}, finish: 'stop' }], usage)),
    data(usageChunk),
    DONE,
  ];
}

describe.each([true, false])('stream: %s', (stream) => {
  const streamExtra = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ stream, ...extra });

  it('a text answer: the same bytes on both paths', async () => {
    upstreamPieces = textStream();
    upstreamJson = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, message: { role: 'assistant', content: TEXT_PARTS.join(''), refusal: null }, logprobs: null, finish_reason: 'stop' }], usage: USAGE });
    const r = await both(streamExtra());
    expectSameBytes(r);
    if (stream) {
      // The client did not ask for usage: no usage chunk, no `usage` key, as before raw forwarding.
      expect(r.raw.text).not.toContain('usage');
      expect(sseData(r.raw.text).slice(1, -1).map((f) => JSON.parse(f).choices[0].delta.content).join('')).toBe(TEXT_PARTS.join(''));
    } else {
      expect(r.raw.text).toBe(upstreamJson);
    }
  });

  it('the raw path makes no AbortSignal: neither the request nor the attempt is asked for one (undici takes the attempt)', async () => {
    upstreamPieces = textStream();
    upstreamJson = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, message: { role: 'assistant', content: 'Hi' }, finish_reason: 'stop' }] });
    const g = await gateways();
    const signalRead = jest.spyOn(LazyAbort.prototype, 'signal', 'get');
    try {
      const r = await rawRequest(g.raw.url, { body: ask(streamExtra()) });
      expect(r.status).toBe(200);
      expect(r.complete).toBe(true);
      expect(signalRead).not.toHaveBeenCalled();
    } finally {
      signalRead.mockRestore();
    }
  });

  it('a tool call with escaped arguments: the same bytes on both paths', async () => {
    const args = ['{"ci', 'ty": "Par', 'is \\"FR\\""}'];
    upstreamPieces = [
      data(chunk([{ delta: { role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'weather', arguments: '' } }], refusal: null } }])),
      ...args.map((a) => data(chunk([{ delta: { tool_calls: [{ index: 0, function: { arguments: a } }] } }]))),
      data(chunk([{ delta: {}, finish: 'tool_calls' }])),
      data(usageChunk),
      DONE,
    ];
    upstreamJson = JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: args.join('') } }] }, finish_reason: 'tool_calls' }] });
    expectSameBytes(await both(streamExtra()));
  });

  it('an in-band error before commit: the same JSON error on both paths', async () => {
    upstreamPieces = [data(chunk([{ delta: { role: 'assistant', content: '' } }])), data({ error: { message: 'Rate limit reached', type: 'rate_limit_error', code: 'rate_limit_exceeded' } }), DONE];
    upstreamJson = JSON.stringify({ error: { message: 'Rate limit reached', type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
    const r = await both(streamExtra());
    expectSameBytes(r);
    expect(r.raw.status).toBe(429);
  });

  it('content_filter before any content: the same content-policy error on both paths', async () => {
    upstreamPieces = [data(chunk([{ delta: { role: 'assistant', content: '' } }])), data(chunk([{ delta: {}, finish: 'content_filter' }])), DONE];
    upstreamJson = JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, message: { role: 'assistant', content: null }, finish_reason: 'content_filter' }] });
    const r = await both(streamExtra());
    expectSameBytes(r);
    expect(r.raw.status).toBe(400);
  });

  it('an answer without content: the same empty-answer error on both paths', async () => {
    upstreamPieces = [data(chunk([{ delta: { role: 'assistant', content: '' } }])), data(chunk([{ delta: {}, finish: 'stop' }])), DONE];
    upstreamJson = JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, message: { role: 'assistant', content: '' }, finish_reason: 'stop' }] });
    const r = await both(streamExtra());
    expectSameBytes(r);
    expect(r.raw.status).toBe(502);
  });

  it('non-compact upstream JSON: the raw path keeps its formatting, the same JSON values as the parsed path', async () => {
    const spaced = (value: unknown): string => JSON.stringify(value, null, 1).replace(/\n/g, ' ');
    upstreamPieces = [
      `data: ${spaced(chunk([{ delta: { role: 'assistant', content: 'caf\u00e9' } }], 'none'))}\n\n`.replace('café', 'caf\\u00e9'),
      `data: ${spaced(chunk([{ delta: {}, finish: 'stop' }]))}\n\n`,
      DONE,
    ];
    upstreamJson = JSON.stringify(JSON.parse(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'up', choices: [{ index: 0, message: { role: 'assistant', content: 'café' }, finish_reason: 'stop' }] })), null, 2);
    const r = await both(streamExtra());
    expect(r.raw.status).toBe(200);
    if (stream) {
      const raw = sseData(r.raw.text);
      const parsed = sseData(r.parsed.text);
      expect(raw[0]).toContain('caf\\u00e9'); // the upstream's own spelling went out: the raw path ran
      expect(raw).not.toEqual(parsed);
      expect(raw.map((f) => (f === '[DONE]' ? f : JSON.parse(f)))).toEqual(parsed.map((f) => (f === '[DONE]' ? f : JSON.parse(f))));
      expect(raw[1]).not.toContain('usage'); // `"usage": null` with spaces is dropped too
    } else {
      expect(r.raw.text).toBe(upstreamJson);
      expect(JSON.parse(r.raw.text)).toEqual(JSON.parse(r.parsed.text));
      expect(r.raw.headers['content-length']).toBe(String(Buffer.byteLength(upstreamJson)));
    }
  });
});

describe('streams only', () => {
  it.each([
    ['OpenAI, usage null on every chunk', textStream('null')],
    ['vLLM, no usage key', textStream('none')],
  ])('%s, with and without include_usage: the same bytes on both paths', async (_name, pieces) => {
    upstreamPieces = pieces;
    expectSameBytes(await both({ stream: true }));
    const withUsage = await both({ stream: true, stream_options: { include_usage: true } });
    expectSameBytes(withUsage);
    const frames = sseData(withUsage.raw.text);
    expect(JSON.parse(frames[frames.length - 2]!)).toEqual(usageChunk);
  });

  it('the whole stream in one network read, and one character per read: the same bytes', async () => {
    const whole = textStream().join('');
    upstreamPieces = [whole];
    const one = await both({ stream: true });
    expectSameBytes(one);
    upstreamPieces = [...whole];
    const split = await both({ stream: true });
    expectSameBytes(split);
    expect(split.raw.text).toBe(one.raw.text);
  });

  it('several choices (n: 2), interleaved, with a role chunk per choice: the same bytes', async () => {
    upstreamPieces = [
      data(chunk([{ index: 0, delta: { role: 'assistant', content: '' } }])),
      data(chunk([{ index: 1, delta: { role: 'assistant', content: '' } }])),
      data(chunk([{ index: 1, delta: { content: 'Second' } }])),
      data(chunk([{ index: 0, delta: { content: 'First' } }])),
      data(chunk([{ index: 0, delta: { content: ' one' } }, { index: 1, delta: { content: ' two' } }])),
      data(chunk([{ index: 0, delta: {}, finish: 'stop' }])),
      data(chunk([{ index: 1, delta: {}, finish: 'length' }])),
      data(usageChunk),
      DONE,
    ];
    expectSameBytes(await both({ stream: true, n: 2 }));
    expectSameBytes(await both({ stream: true, n: 2, stream_options: { include_usage: true } }));
  });

  it('an in-band error after commit: the same content, error frame and [DONE] on both paths', async () => {
    upstreamPieces = [
      data(chunk([{ delta: { role: 'assistant', content: '' } }])),
      data(chunk([{ delta: { content: 'Partial' } }])),
      data({ error: { message: 'The server had an error', type: 'server_error' } }),
      DONE,
    ];
    const r = await both({ stream: true });
    expectSameBytes(r);
    const frames = sseData(r.raw.text);
    expect(frames).toHaveLength(4);
    expect(JSON.parse(frames[2]!).error).toBeDefined();
  });

  it('a stream that stops before any finish reason: the same error frame after the partial answer', async () => {
    upstreamPieces = [data(chunk([{ delta: { role: 'assistant', content: 'Cut' } }])), data(chunk([{ delta: { content: ' here' } }]))];
    const r = await both({ stream: true });
    expectSameBytes(r);
    expect(r.raw.text).toContain('ended before it finished');
  });

  it("Azure: the leading prompt_filter_results chunk, content_filter_results on choices, an annotation without delta: the same bytes", async () => {
    const filter = { hate: { filtered: false, severity: 'safe' }, violence: { filtered: false, severity: 'safe' } };
    upstreamPieces = [
      data({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [{ prompt_index: 0, content_filter_results: filter }] }),
      data(chunk([{ delta: { role: 'assistant', content: '' }, extra: { content_filter_results: {} } }], 'none')),
      data(chunk([{ delta: { content: 'Hi' }, extra: { content_filter_results: filter } }], 'none')),
      data(chunk([{ delta: { content: ' there' }, extra: { content_filter_results: filter } }], 'none')),
      data({ ...BASE, choices: [{ index: 0, finish_reason: null, content_filter_offsets: { check_offset: 0, start_offset: 0, end_offset: 8 }, content_filter_results: filter }] }),
      data(chunk([{ delta: {}, finish: 'stop', extra: { content_filter_results: {} } }], 'none')),
      data(usageChunk),
      DONE,
    ];
    const r = await both({ stream: true });
    expectSameBytes(r);
    expect(r.raw.text).not.toContain('prompt_filter_results');
    expect(r.raw.text).toContain('"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{}}'); // the parsed path's normalization, on both
  });

  it('keep-alives: data: {}, blank data, SSE comments, event: ping, unknown events: the same bytes', async () => {
    const [role, ...rest] = textStream();
    upstreamPieces = [': keep-alive\n\n', 'data: {}\n\n', role!, 'event: ping\ndata: {"type":"ping"}\n\n', 'data:\n\n', rest[0]!, 'event: metadata\ndata: not json\n\n', 'data: {"type":"metadata"}\n\n', ...rest.slice(1)];
    expectSameBytes(await both({ stream: true }));
  });

  it.each(['error', 'skip'] as const)('a malformed chunk mid-stream under malformedChunks: %s: the same bytes', async (policy) => {
    const [role, first, ...rest] = textStream();
    upstreamPieces = [role!, first!, 'data: {"id":"x","choices":[{"index":0,"delta":{"content":"bro\n\n', 'data: {"choices":{"0":1}}\n\n', ...rest];
    const r = await both({ stream: true }, { malformedChunks: policy });
    expectSameBytes(r);
    if (policy === 'error') expect(r.raw.text).toContain('malformed chunk');
    else expect(r.raw.text).not.toContain('"error"');
  });

  it('a chunk the scan is unsure of (duplicate key, escaped key, usage object, non-integer index) goes the parsed way: the same bytes', async () => {
    const [role, ...rest] = textStream();
    upstreamPieces = [
      role!,
      'data: {"id":"a","choices":[{"index":0,"delta":{"content":"one"},"finish_reason":null}],"choices":[{"index":0,"delta":{"content":"two"},"finish_reason":null}]}\n\n',
      'data: {"id":"b","choices":[{"index":0,"delta":{"con\\u0074ent":" three"},"finish_reason":null}]}\n\n',
      'data: {"id":"c","choices":[{"index":0,"delta":{"content":" four"},"finish_reason":null}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n',
      'data: {"id":"d","choices":[{"index":0.0,"delta":{"content":" five"},"finish_reason":null}]}\n\n',
      ...rest,
    ];
    const r = await both({ stream: true });
    expectSameBytes(r);
    expect(r.raw.text).toContain('"content":"two"');
    expect(r.raw.text).toContain('"content":" three"');
    expect(r.raw.text).not.toContain('prompt_tokens');
  });
});

describe('non-streaming only', () => {
  it('an error object under HTTP 200: the same classified error on both paths', async () => {
    upstreamJson = JSON.stringify({ error: { message: 'Rate limit reached', type: 'rate_limit_error', code: 'rate_limit_exceeded' } });
    const r = await both({});
    expectSameBytes(r);
    expect(r.raw.status).toBe(429);
  });

  it('a body that is not JSON: the same 502 on both paths', async () => {
    upstreamJson = '{"id":"c","choices":[';
    const r = await both({});
    expectSameBytes(r);
    expect(r.raw.status).toBe(502);
  });
});

// ---- the scan against JSON.parse, over generated chunks ----

describe('scanChunk (property)', () => {
  /** What the router and the writer compute from a parsed chunk (router.ts / response-writer.ts). */
  function oracle(value: Record<string, unknown>): Omit<RawChunk, 'data'> {
    const choices = value['choices'] as { index: unknown; delta: Delta; finish_reason: unknown }[];
    let leading: RawChunk['leading'] = 'other';
    let outputChars = 0;
    let text0 = '';
    let toolCall0 = false;
    for (const { index, delta, finish_reason } of choices) {
      const calls = delta['tool_calls'] as { function?: { arguments?: string } | null }[] | null | undefined;
      const content = delta['content'] as string | null | undefined;
      const refusal = delta['refusal'] as string | null | undefined;
      if (leading === 'other') {
        if (content || calls?.length || refusal) leading = 'content';
        else if (finish_reason === 'content_filter') leading = 'blocked';
      }
      outputChars += (content?.length ?? 0) + (refusal?.length ?? 0);
      for (const call of calls ?? []) outputChars += call.function?.arguments?.length ?? 0;
      if (index === 0) {
        if (content) text0 += content;
        if (calls?.length || delta['function_call']) toolCall0 = true;
      }
    }
    return { leading, finished: choices.some((c) => c.finish_reason != null), outputChars, text0, toolCall0 };
  }

  /**
   * The facts of a scanned chunk, as `oracle` gives them. A chunk in the compact layout also carries choice 0's
   * text as escaped JSON and its finish reason: both checked against the parsed chunk here, then left out.
   */
  function factsOf(scanned: RawChunk, value: Record<string, unknown>): Omit<RawChunk, 'data'> {
    const { data: _data, text0Json, finish0, ...facts } = scanned;
    if (text0Json !== undefined) {
      const [choice] = value['choices'] as { delta: Delta; finish_reason: unknown }[];
      expect(JSON.parse(`"${text0Json}"`)).toBe(scanned.text0);
      expect(finish0).toBe(choice?.finish_reason ?? null);
    } else {
      expect(finish0).toBeUndefined();
    }
    return facts;
  }

  const text = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.constantFrom('', '"', '\\', '\n\u0000\u001f', '\ud800', '</script>'));
  const toolCall = fc.record(
    { index: fc.nat(3), id: fc.string(), type: fc.constant('function'), function: fc.option(fc.record({ name: fc.string(), arguments: fc.option(text) }, { requiredKeys: [] })) },
    { requiredKeys: ['index'] },
  );
  const delta = fc.record(
    { role: fc.constant('assistant'), content: fc.option(text), refusal: fc.option(text), tool_calls: fc.option(fc.array(toolCall, { maxLength: 2 })), function_call: fc.option(fc.record({ name: fc.string(), arguments: fc.string() })), audio: fc.jsonValue() },
    { requiredKeys: [] },
  );
  const choice = fc.record(
    { index: fc.nat(2), delta, logprobs: fc.constant(null), finish_reason: fc.option(fc.constantFrom('stop', 'length', 'tool_calls', 'content_filter')), extra: fc.jsonValue() },
    { requiredKeys: ['delta'] },
  );
  const chunkValue = fc.record(
    { id: fc.string(), object: fc.constantFrom('chat.completion.chunk', ''), created: fc.integer(), model: fc.string(), choices: fc.array(choice, { minLength: 1, maxLength: 3 }), usage: fc.constant(null), meta: fc.jsonValue() },
    { requiredKeys: ['choices'] },
  );

  it('agrees with JSON.parse on every fact, and its text is what the parsed path would write (compact JSON)', () => {
    fc.assert(
      fc.property(chunkValue, fc.boolean(), (value, dropNullUsage) => {
        const text = JSON.stringify(value);
        const scanned = scanChunk(text, dropNullUsage);
        expect(scanned).toBeDefined();
        const parsed = JSON.parse(text) as Record<string, unknown>;
        if (dropNullUsage && parsed['usage'] !== undefined) parsed['usage'] = undefined;
        expect(scanned!.data).toBe(JSON.stringify(parsed));
        expect(factsOf(scanned!, parsed)).toEqual(oracle(parsed));
      }),
      { numRuns: 2000 },
    );
  });

  it('the same facts for the same JSON written with spaces', () => {
    fc.assert(
      fc.property(chunkValue, (value) => {
        const scanned = scanChunk(JSON.stringify(value, null, 2), true);
        expect(scanned).toBeDefined();
        expect(JSON.parse(scanned!.data)).toEqual(JSON.parse(JSON.stringify({ ...value, usage: undefined })));
        const parsed = JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
        expect(factsOf(scanned!, parsed)).toEqual(oracle(parsed));
      }),
      { numRuns: 500 },
    );
  });

  // The layout OpenAI sends (compact, keys in its order): what scanChunk's fast path matches.
  // Strings JSON writes without an escape (the content may have escapes; these may not).
  const plain = fc.oneof(fc.string({ unit: 'grapheme' }).filter((v) => !/["\\\u0000-\u001f]/.test(v)), fc.constantFrom('', 'chatcmpl-1', 'gpt-4o', 'fp_44709d6fcb'));
  const compactDelta = fc.oneof(
    fc.record({ role: fc.option(fc.constantFrom('assistant', ''), { nil: undefined }), content: fc.option(fc.option(text), { nil: undefined }), refusal: fc.option(fc.constant(null), { nil: undefined }) }),
    fc.constant({}),
  );
  const compactChunkValue = fc.record({
    id: plain,
    object: fc.constant('chat.completion.chunk'),
    created: fc.oneof(fc.nat(), fc.constant(0), fc.constant(1796259514)),
    model: plain,
    system_fingerprint: fc.option(plain, { nil: undefined }),
    choices: fc.tuple(
      fc.record({
        index: fc.constant(0),
        delta: compactDelta,
        logprobs: fc.option(fc.constant(null), { nil: undefined }),
        finish_reason: fc.option(fc.oneof(fc.constantFrom('stop', 'length', 'tool_calls', 'content_filter'), plain)),
      }),
    ),
    usage: fc.option(fc.constant(null), { nil: undefined }),
  });

  it('the compact OpenAI layout (its fast path): the same facts and text as JSON.parse and the parsed path', () => {
    fc.assert(
      fc.property(compactChunkValue, fc.boolean(), (value, dropNullUsage) => {
        const text = JSON.stringify(value);
        const scanned = scanChunk(text, dropNullUsage);
        expect(scanned).toBeDefined();
        expect(compactChunk(text, dropNullUsage)).toEqual(scanned); // the fast path answered
        expect(scanned!.text0Json).toBeDefined();
        const parsed = JSON.parse(text) as Record<string, unknown>;
        if (dropNullUsage && parsed['usage'] !== undefined) parsed['usage'] = undefined;
        expect(scanned!.data).toBe(JSON.stringify(parsed));
        expect(factsOf(scanned!, parsed)).toEqual(oracle(parsed));
      }),
      { numRuns: 3000 },
    );
  });

  it('the compact OpenAI layout cut, or with one character changed: never accepted when JSON.parse refuses it, the same facts when not', () => {
    fc.assert(
      fc.property(compactChunkValue, fc.nat(), fc.constantFrom('', '"', '\\', '}', ']', '{', '[', ',', ':', 'x', '0', '\u0001', ' '), (value, at, replacement) => {
        const text = JSON.stringify(value);
        const i = at % text.length;
        for (const changed of [text.slice(0, i), text.slice(0, i) + replacement + text.slice(i + 1), text.slice(0, i) + replacement + text.slice(i)]) {
          let parsed: unknown;
          try {
            parsed = JSON.parse(changed);
          } catch {
            expect(scanChunk(changed, true)).toBeUndefined();
            continue;
          }
          const scanned = scanChunk(changed, false);
          if (scanned === undefined) continue; // left to the parsed path
          const value2 = parsed as Record<string, unknown>;
          expect(scanned.data).toBe(changed);
          expect(factsOf(scanned, value2)).toEqual(oracle(value2));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('the usage chunk (choices: []) goes the parsed way, compact or not, whatever follows; a nested empty "choices" does not', () => {
    for (const value of [usageChunk, { ...usageChunk, system_fingerprint: null }, { id: 'x', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [] }, { choices: [], usage: USAGE }]) {
      const text = JSON.stringify(value);
      expect(scanChunk(text, true)).toBeUndefined();
      expect(scanChunk(text, false)).toBeUndefined();
      expect(scanChunk(JSON.stringify(value, null, 1), true)).toBeUndefined();
      expect(scanChunk(`${text.slice(0, text.indexOf('[]') + 2)},"usage":{`, true)).toBeUndefined();
    }
    const nested = { ...chunk([{ delta: { content: 'a' } }]), meta: { choices: [] } };
    expect(scanChunk(JSON.stringify(nested), false)?.text0).toBe('a');
  });

  it('never accepts what JSON.parse refuses (cut, or with one character changed)', () => {
    fc.assert(
      fc.property(chunkValue, fc.nat(), fc.constantFrom('', '"', '\\', '}', ']', ',', ':', 'x', '\u0001', ' '), (value, at, replacement) => {
        const text = JSON.stringify(value);
        const i = at % text.length;
        for (const broken of [text.slice(0, i), text.slice(0, i) + replacement + text.slice(i + 1)]) {
          let valid = true;
          try {
            JSON.parse(broken);
          } catch {
            valid = false;
          }
          if (!valid) expect(scanChunk(broken, true)).toBeUndefined();
        }
      }),
      { numRuns: 3000 },
    );
  });
});
